//! HTTP: routes, content negotiation, FHIR headers, and errors as OperationOutcomes.
//! Knows nothing of SQL; what an interaction does is `interaction`'s, called with the
//! caller's access scope.

pub mod error;
mod negotiate;
mod request;
mod response;
mod routes;

use actix_web::web;

pub use crate::interaction::search_params;
pub use crate::interaction::Services;
pub use routes::{Interaction, Level, INTERACTIONS};

/// What every handler shares: the interactions' [`Services`] (reached through `Deref`) and
/// the limits of the HTTP door.
pub struct AppState {
    pub services: Services,
    /// The largest request body accepted, after decompression.
    pub max_body_bytes: usize,
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.services
    }
}

/// Registers every route and the fallback for unknown paths.
pub fn configure(cfg: &mut web::ServiceConfig) {
    routes::configure(cfg);
    cfg.default_service(web::to(routes::not_found));
}
