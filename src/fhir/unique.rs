//! Identifiers the server keeps unique per resource type, whatever door a write comes by.
//!
//! `DocumentReference.masterIdentifier` is the document's uniqueId in IHE MHD (the XDS
//! uniqueId) and in its French profile PDSm: a document is submitted once. An XDS registry
//! refuses a second submission with a uniqueId it holds (XDSDuplicateUniqueIdInRegistry,
//! whether or not the content is identical), so this server answers 409 and stores nothing;
//! a client that wants a retry to be harmless sends the DocumentReference with
//! `ifNoneExist: identifier=<system>|<value>`, which then answers with the stored one.

use serde_json::Value;

/// `(system, value)` of the identifiers of `resource` that no other live resource of its
/// type may hold (a missing system is the empty string); `None` for the types that keep none,
/// whose writes then leave the store's table of such identifiers alone.
pub fn unique_identifiers(resource: &Value) -> Option<Vec<(String, String)>> {
    if resource["resourceType"] != "DocumentReference" {
        return None;
    }
    let master = &resource["masterIdentifier"];
    Some(match master["value"].as_str() {
        Some(value) => vec![(
            master["system"].as_str().unwrap_or_default().to_string(),
            value.to_string(),
        )],
        None => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn master_identifier_of_documents_only() {
        let doc = json!({"resourceType": "DocumentReference",
            "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.3"}});
        assert_eq!(
            unique_identifiers(&doc),
            Some(vec![(
                "urn:ietf:rfc:3986".to_string(),
                "urn:oid:1.2.3".to_string()
            )])
        );
        let other = json!({"resourceType": "Patient", "masterIdentifier": {"value": "x"}});
        assert_eq!(unique_identifiers(&other), None);
        let bare = json!({"resourceType": "DocumentReference"});
        assert_eq!(unique_identifiers(&bare), Some(Vec::new()));
    }
}
