//! Structural validation of incoming resources against the R4 definitions.
//!
//! [`validate_resource`] checks what the FHIR JSON representation and the StructureDefinition
//! snapshots say about shape: known elements only, JSON types, arrays exactly for repeating
//! elements, cardinality, primitive formats, primitive extensions (`_given`), one key per
//! choice element, required bindings whose value sets the package lets us expand, no control
//! characters in strings, and `contained`/`Bundle.entry.resource`/`Parameters.parameter.resource`
//! recursively.
//!
//! FHIRPath invariants (`constraint` in the definitions) are out of scope, except a few
//! written by hand: txt-1 and txt-2 on narratives (`xhtml`: a real XML tokenizer and
//! allow-lists, against stored XSS) and dom-2 to dom-5 on contained resources; see
//! `docs/validation.md`. Validation never panics and never recurses deeper than
//! [`MAX_DEPTH`] objects, whatever the input.

mod bindings;
mod primitives;
mod walker;
mod xhtml;

#[cfg(test)]
mod tests;

use serde_json::Value;

use crate::fhir::definitions::Definitions;
use crate::fhir::outcome::Issue;

/// How many nested JSON objects a resource may have before validation gives up on it (the
/// deepest official R4 example nests about 15).
pub const MAX_DEPTH: u32 = 64;

/// Checks `resource` (a JSON object with a `resourceType`) against `defs`.
///
/// Returns every problem found, each an error whose `expression` is the FHIRPath of the
/// offending element with indexes (`Patient.name[0].given[1]`); an empty vector means valid.
pub fn validate_resource(defs: &Definitions, resource: &Value) -> Vec<Issue> {
    walker::Walker::new(defs).run(resource)
}
