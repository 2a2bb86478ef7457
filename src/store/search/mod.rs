//! Search: the index tables' rows ([`index`]), their keys ([`keys`]), and the planner that
//! turns a [`crate::fhir::search::query::SearchQuery`] into SQL under the caller's scope.

pub mod index;
pub mod keys;
