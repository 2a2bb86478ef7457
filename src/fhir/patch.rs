//! FHIR PATCH with JSON Patch (RFC 6902) documents.

use serde_json::Value;

use super::outcome::Issue;

/// A JSON Patch document, checked once when the request arrives.
#[derive(Debug, Clone)]
pub struct JsonPatch(json_patch::Patch);

impl JsonPatch {
    /// Reads a patch document; an error means the document itself is malformed (400).
    pub fn parse(document: Value) -> Result<JsonPatch, Issue> {
        if !document.is_array() {
            return Err(Issue::error(
                "structure",
                "a JSON Patch document is an array of operations, e.g. \
                 [{\"op\": \"replace\", \"path\": \"/active\", \"value\": false}]",
            ));
        }
        serde_json::from_value(document)
            .map(JsonPatch)
            .map_err(|e| Issue::error("structure", format!("invalid JSON Patch document: {e}")))
    }

    /// Applies the patch to a copy of `resource`. An error means the patch does not apply to
    /// this resource, e.g. a failed `test` (422). The result still has to be validated like
    /// any write; `id` and `resourceType` may not change.
    pub fn apply(&self, resource: &Value) -> Result<Value, Issue> {
        let mut patched = resource.clone();
        json_patch::patch(&mut patched, &self.0).map_err(|e| {
            Issue::error(
                "processing",
                format!("the patch does not apply to the current version: {e}"),
            )
        })?;
        for element in ["resourceType", "id"] {
            if patched.get(element) != resource.get(element) {
                return Err(Issue::error(
                    "processing",
                    format!("a patch may not change {element}"),
                )
                .at(element));
            }
        }
        Ok(patched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(resource: &Value, document: Value) -> Result<Value, Issue> {
        JsonPatch::parse(document)
            .expect("well-formed")
            .apply(resource)
    }

    #[test]
    fn applies_tests_and_guards_identity() {
        let r = json!({"resourceType": "Patient", "id": "a", "active": true});
        let ok = apply(
            &r,
            json!([{"op": "replace", "path": "/active", "value": false}]),
        );
        assert_eq!(ok.unwrap()["active"], json!(false));
        assert!(apply(
            &r,
            json!([{"op": "test", "path": "/active", "value": false}])
        )
        .is_err());
        assert!(apply(&r, json!([{"op": "replace", "path": "/id", "value": "b"}])).is_err());
        assert!(JsonPatch::parse(json!({"op": "x"})).is_err());
        assert!(JsonPatch::parse(json!([{"op": "frobnicate", "path": "/a"}])).is_err());
    }
}
