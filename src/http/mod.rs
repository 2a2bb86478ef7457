//! HTTP: routes, content negotiation, FHIR headers, and errors as OperationOutcomes.
//! Knows nothing of SQL; calls the store with the caller's access scope.

mod bundle;
pub mod error;
mod negotiate;
mod request;
mod response;
mod routes;

use actix_web::web;

use crate::fhir::definitions::Definitions;
use crate::store::Store;

pub use routes::{Interaction, Level, INTERACTIONS};

/// What every handler shares.
pub struct AppState {
    pub store: Store,
    pub definitions: &'static Definitions,
    /// The public FHIR base, without a trailing slash, e.g. `https://carnet.example/fhir`.
    pub base_url: String,
    /// The largest request body accepted, after decompression.
    pub max_body_bytes: usize,
    /// The most entries a transaction or batch Bundle may hold.
    pub max_bundle_entries: usize,
}

/// Registers every route and the fallback for unknown paths.
pub fn configure(cfg: &mut web::ServiceConfig) {
    routes::configure(cfg);
    cfg.default_service(web::to(routes::not_found));
}
