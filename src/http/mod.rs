//! HTTP: routes, content negotiation, FHIR headers, and errors as OperationOutcomes.
//! Knows nothing of SQL; what an interaction does is `interaction`'s, called with the
//! caller's access scope.

mod caller;
mod cors;
pub mod error;
mod negotiate;
mod request;
mod response;
mod routes;

use actix_web::web;

pub use crate::interaction::search_params;
pub use crate::interaction::Services;
use crate::store::Store;
pub use cors::cors;
pub use routes::{Interaction, Level, INTERACTIONS};

/// What every handler shares: the interactions' [`Services`] (reached through `Deref`) and
/// what belongs to the HTTP door: its body limit and the bulk export worker.
pub struct AppState {
    pub services: Services,
    /// The largest request body accepted, after decompression.
    pub max_body_bytes: usize,
    /// Bulk export: the worker's handle and settings.
    pub export: crate::export::Exporter,
    /// Issues and verifies access tokens.
    pub authority: crate::auth::Authority,
    /// `false` only with `--insecure-no-auth`.
    pub require_auth: bool,
    /// The upstream identity providers people sign in with.
    pub providers: crate::auth::upstream::Providers,
}

impl crate::auth::AuthContext for AppState {
    fn services(&self) -> &Services {
        &self.services
    }

    fn authority(&self) -> &crate::auth::Authority {
        &self.authority
    }

    fn providers(&self) -> &crate::auth::upstream::Providers {
        &self.providers
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.services
    }
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

/// Registers every route and the fallback for unknown paths: the authorization server's
/// endpoints first (some live under `/fhir/.well-known`), then the FHIR API.
pub fn configure(cfg: &mut web::ServiceConfig) {
    crate::auth::endpoints::configure::<AppState>(cfg);
    routes::configure(cfg);
    cfg.default_service(web::to(routes::not_found));
}
