//! FHIR PATCH with JSON Patch (RFC 6902) documents.

use serde_json::Value;

use super::outcome::Issue;

/// Why a patch could not be applied; the two cases get different HTTP statuses.
#[derive(Debug)]
pub enum PatchError {
    /// The patch document itself is malformed (400).
    Malformed(Issue),
    /// The document is fine but does not apply to this resource, e.g. a failed `test` (422).
    Unprocessable(Issue),
}

/// Applies `patch` to a copy of `resource` and returns the result. The result still has to be
/// validated like any write; `id` and `resourceType` may not change.
pub fn apply_json_patch(resource: &Value, patch: Value) -> Result<Value, PatchError> {
    if !patch.is_array() {
        return Err(PatchError::Malformed(Issue::error(
            "structure",
            "a JSON Patch document is an array of operations, e.g. \
             [{\"op\": \"replace\", \"path\": \"/active\", \"value\": false}]",
        )));
    }
    let patch: json_patch::Patch = serde_json::from_value(patch).map_err(|e| {
        PatchError::Malformed(Issue::error(
            "structure",
            format!("invalid JSON Patch document: {e}"),
        ))
    })?;
    let mut patched = resource.clone();
    json_patch::patch(&mut patched, &patch).map_err(|e| {
        PatchError::Unprocessable(Issue::error(
            "processing",
            format!("the patch does not apply to the current version: {e}"),
        ))
    })?;
    for element in ["resourceType", "id"] {
        if patched.get(element) != resource.get(element) {
            return Err(PatchError::Unprocessable(
                Issue::error("processing", format!("a patch may not change {element}")).at(element),
            ));
        }
    }
    Ok(patched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn applies_tests_and_guards_identity() {
        let r = json!({"resourceType": "Patient", "id": "a", "active": true});
        let ok = apply_json_patch(
            &r,
            json!([{"op": "replace", "path": "/active", "value": false}]),
        );
        assert_eq!(ok.unwrap()["active"], json!(false));
        let failed_test = apply_json_patch(
            &r,
            json!([{"op": "test", "path": "/active", "value": false}]),
        );
        assert!(matches!(failed_test, Err(PatchError::Unprocessable(_))));
        let id = apply_json_patch(&r, json!([{"op": "replace", "path": "/id", "value": "b"}]));
        assert!(matches!(id, Err(PatchError::Unprocessable(_))));
        assert!(matches!(
            apply_json_patch(&r, json!({"op": "x"})),
            Err(PatchError::Malformed(_))
        ));
        let bad_op = apply_json_patch(&r, json!([{"op": "frobnicate", "path": "/a"}]));
        assert!(matches!(bad_op, Err(PatchError::Malformed(_))));
    }
}
