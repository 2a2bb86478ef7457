//! FHIR interactions without a transport: what a create, update, patch or Bundle does,
//! whichever door it came through. The REST handlers (`http`) and the bulk loader (`import`)
//! both call this layer, so that every resource is written the same way: validated against
//! the definitions and the server's rules, given its id and `meta`, its patient compartments
//! and its search index rows computed, and stored in one database transaction.
//!
//! Sits between the doors and `fhir`/`store`; knows nothing of requests, headers or
//! terminals.

pub mod bulk;
pub mod bundle;
pub mod by_identifier;
pub mod criteria;
pub mod error;
pub mod search_params;
pub mod transaction;
pub mod write;

use crate::fhir::definitions::Definitions;
use crate::store::Store;

pub use error::ApiError;

/// What every interaction shares: the store, the search parameters in force, the definitions
/// and the public base.
pub struct Services {
    pub store: Store,
    /// The search parameters in force.
    pub search: search_params::SearchRegistry,
    pub definitions: &'static Definitions,
    /// The public FHIR base, without a trailing slash, e.g. `https://carnet.example/fhir`.
    /// References to it are made relative when resources are written.
    pub base_url: String,
    /// The most entries a transaction or batch Bundle may hold.
    pub max_bundle_entries: usize,
}

impl Services {
    /// Keeps what the server derives from stored resources current after a committed write of
    /// `res_type` (`body` the new version, `None` for a deletion): an active SearchParameter,
    /// or any change while definitions are in force, changes the search parameters in force.
    /// (Only drafts written while none is in force, such as HL7's examples, skip the reload.)
    pub fn after_write(&self, res_type: &str, body: Option<&str>) {
        if res_type != "SearchParameter" {
            return;
        }
        if let Some(body) = body {
            let Ok(resource) = crate::fhir::json::parse_strict(body.as_bytes()) else {
                return;
            };
            if resource["status"] != "active" && !self.search.current().has_custom() {
                return;
            }
        }
        match self.search.reload(&self.store) {
            Ok(pending) if !pending.is_empty() => log::info!(
                "search parameters added on {}: searchable after POST [base]/$reindex",
                pending.join(", ")
            ),
            Ok(_) => {}
            Err(e) => log::error!("reloading the search parameters failed: {e}"),
        }
    }
}
