//! The parts of a resource the server owns: `id`, `meta.versionId` and `meta.lastUpdated`.

use serde_json::{Map, Value};

use super::instant::format_instant;

/// Sets the server-owned elements, keeping the client's other `meta` content (profiles,
/// tags, security labels, source). `resource` must be a JSON object.
pub fn stamp(resource: &mut Value, id: &str, version: i64, last_updated: i64) {
    set_id(resource, id);
    let Value::Object(object) = resource else {
        return;
    };
    if !matches!(object.get("meta"), Some(Value::Object(_))) {
        set_near_top(object, "meta", Value::Object(Map::new()), 2);
    }
    if let Some(Value::Object(meta)) = object.get_mut("meta") {
        meta.insert("versionId".into(), Value::String(version.to_string()));
        meta.insert(
            "lastUpdated".into(),
            Value::String(format_instant(last_updated)),
        );
    }
}

/// Sets the logical id (the server's on create, the URL's on update).
pub fn set_id(resource: &mut Value, id: &str) {
    if let Value::Object(object) = resource {
        set_near_top(object, "id", Value::String(id.to_string()), 1);
    }
}

/// Replaces `key` in place, or inserts it at `index` so that the usual order
/// (`resourceType`, `id`, `meta`, ...) holds for new keys.
fn set_near_top(object: &mut Map<String, Value>, key: &str, value: Value, index: usize) {
    if let Some(existing) = object.get_mut(key) {
        *existing = value;
    } else {
        let index = index.min(object.len());
        object.shift_insert(index, key.to_string(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stamping_keeps_client_meta_and_order() {
        let mut r = json!({"resourceType": "Patient", "meta": {"profile": ["p"]}, "active": true});
        stamp(&mut r, "a1", 3, 0);
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"resourceType":"Patient","id":"a1","meta":{"profile":["p"],"versionId":"3","lastUpdated":"1970-01-01T00:00:00.000000Z"},"active":true}"#
        );
    }
}
