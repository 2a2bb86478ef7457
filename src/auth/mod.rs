//! Who is calling: this server is its own SMART App Launch authorization server. It registers
//! clients ([`clients`]), issues and verifies access tokens ([`tokens`], signed with
//! [`jwt`]), and answers the SMART and OAuth endpoints ([`endpoints`]). What a verified caller
//! may then touch is decided in `access`.

pub mod authorize;
pub mod clients;
pub mod endpoints;
pub mod identity;
pub mod jwt;
mod pages;
pub mod tokens;
pub mod upstream;

pub use tokens::{Authority, Issued, NewGrant, TokenError};

/// What the endpoints need from the server that mounts them (the HTTP layer's state), so that
/// `auth` never reaches up into `http`.
pub trait AuthContext: Send + Sync + 'static {
    /// What sign-in needs to find (or register) the person in the record.
    fn services(&self) -> &crate::interaction::Services;
    fn authority(&self) -> &Authority;
    fn providers(&self) -> &upstream::Providers;

    fn store(&self) -> &crate::store::Store {
        &self.services().store
    }
}

/// The URLs of the authorization server, derived from the FHIR base (`.../fhir` →
/// `.../auth/...`), so that a server behind a path prefix keeps it.
#[derive(Debug, Clone)]
pub struct Urls {
    pub fhir_base: String,
    pub authorize: String,
    pub token: String,
    pub manage: String,
    /// Where upstream providers send people back.
    pub callback: String,
    pub introspect: String,
    pub revoke: String,
    pub jwks: String,
}

impl Urls {
    pub fn new(fhir_base: &str) -> Urls {
        let base = fhir_base.trim_end_matches('/');
        let root = base.strip_suffix("/fhir").unwrap_or(base);
        Urls {
            fhir_base: base.to_string(),
            authorize: format!("{root}/auth/authorize"),
            token: format!("{root}/auth/token"),
            manage: format!("{root}/auth/manage"),
            callback: format!("{root}/auth/callback"),
            introspect: format!("{root}/auth/introspect"),
            revoke: format!("{root}/auth/revoke"),
            jwks: format!("{root}/auth/jwks"),
        }
    }
}
