//! HTTP: routes, content negotiation, FHIR headers, and errors as OperationOutcomes.
//! Knows nothing of SQL; calls the store with the caller's access scope.

mod bundle;
pub mod error;
mod negotiate;
mod request;
mod response;
mod routes;
pub mod search_params;

use actix_web::web;

use crate::fhir::definitions::Definitions;
use crate::store::Store;

pub use routes::{Interaction, Level, INTERACTIONS};

/// What every handler shares.
pub struct AppState {
    pub store: Store,
    /// The search parameters in force.
    pub search: search_params::SearchRegistry,
    pub definitions: &'static Definitions,
    /// The public FHIR base, without a trailing slash, e.g. `https://carnet.example/fhir`.
    pub base_url: String,
    /// The largest request body accepted, after decompression.
    pub max_body_bytes: usize,
    /// The most entries a transaction or batch Bundle may hold.
    pub max_bundle_entries: usize,
    /// Bulk export: the worker's handle and settings.
    pub export: crate::export::Exporter,
}

impl crate::export::Source for AppState {
    fn store(&self) -> &Store {
        &self.store
    }

    fn search_params(&self) -> std::sync::Arc<crate::fhir::search::SearchParams> {
        self.search.current()
    }

    fn base_url(&self) -> &str {
        &self.base_url
    }
}

impl AppState {
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

/// Registers every route and the fallback for unknown paths.
pub fn configure(cfg: &mut web::ServiceConfig) {
    routes::configure(cfg);
    cfg.default_service(web::to(routes::not_found));
}
