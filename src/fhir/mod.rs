//! Resource rules: definitions, validation, compartments, patches. Knows nothing of HTTP or SQL.

pub mod compartment;
pub mod definitions;
#[cfg(test)]
pub(crate) mod hl7_examples;
pub mod ins;
pub mod instant;
pub mod json;
pub mod measures;
pub mod meta;
pub mod outcome;
pub mod patch;
pub mod preconditions;
pub mod search;
pub mod served;
pub mod summary;
pub mod transaction;
pub mod unique;
pub mod validate;
