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

/// A resource serialised before its write as its first version, all but the time of the
/// write: a bulk loader renders bodies on its reading thread, and the writer only puts the
/// time in (the same bytes as [`stamp`] then `to_string`).
#[derive(Debug)]
pub struct FirstVersion {
    text: String,
    /// Where the placeholder of `meta.lastUpdated` starts in `text`.
    at: usize,
}

/// Stands for `meta.lastUpdated` until the write: as long as any instant this server writes,
/// and not a valid instant, so that a validated resource cannot hold it anywhere.
const LAST_UPDATED_PLACEHOLDER: &str = "####-##-##T##:##:##.######Z";

impl FirstVersion {
    /// Stamps `resource` as version 1 of `id` (its time a placeholder) and renders it.
    pub fn render(resource: &mut Value, id: &str) -> Option<FirstVersion> {
        set_id(resource, id);
        let Value::Object(object) = resource else {
            return None;
        };
        if !matches!(object.get("meta"), Some(Value::Object(_))) {
            set_near_top(object, "meta", Value::Object(Map::new()), 2);
        }
        if let Some(Value::Object(meta)) = object.get_mut("meta") {
            meta.insert("versionId".into(), Value::String("1".into()));
            meta.insert(
                "lastUpdated".into(),
                Value::String(LAST_UPDATED_PLACEHOLDER.into()),
            );
        }
        let text = resource.to_string();
        let needle = format!("\"lastUpdated\":\"{LAST_UPDATED_PLACEHOLDER}\"");
        let at = text.find(&needle)? + needle.len() - LAST_UPDATED_PLACEHOLDER.len() - 1;
        Some(FirstVersion { text, at })
    }

    /// The body of version 1 written at `last_updated`.
    pub fn finish(mut self, last_updated: i64) -> String {
        // Same width as the placeholder for years 0 to 9999: replaced in place.
        let time = format_instant(last_updated);
        self.text
            .replace_range(self.at..self.at + LAST_UPDATED_PLACEHOLDER.len(), &time);
        self.text
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
    fn a_first_version_rendered_ahead_is_the_stamped_body() {
        for body in [
            json!({"resourceType": "Patient", "name": [{"family": "A"}]}),
            json!({"resourceType": "Patient", "meta": {"profile": ["http://x"]}, "id": "old",
                   "contained": [{"resourceType": "Patient", "meta": {"lastUpdated": "2020-01-01T00:00:00Z"}}]}),
        ] {
            let t = 1_795_000_000_123_456;
            let mut stamped = body.clone();
            stamp(&mut stamped, "p1", 1, t);
            let mut ahead = body.clone();
            let first = FirstVersion::render(&mut ahead, "p1").unwrap();
            assert_eq!(first.finish(t), stamped.to_string());
            // Stamped again for real (an update after all), the value is as if stamped once.
            stamp(&mut ahead, "p1", 4, t);
            let mut once = body;
            stamp(&mut once, "p1", 4, t);
            assert_eq!(ahead, once);
        }
    }

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
