//! Carnet: a FHIR R4 server for personal health records.
//!
//! Requests flow one way: `http` parses and answers (and `import` reads files), both through
//! `interaction`, which does what a FHIR interaction does without a transport; `access`
//! decides what a caller may touch, `fhir` knows resource rules, `store` talks SQL. `server`
//! wires them together.

pub mod access;
pub mod auth;
pub mod config;
pub mod export;
pub mod fhir;
pub mod http;
pub mod import;
pub mod interaction;
pub mod server;
pub mod store;
