//! Bundles written as text around the stored JSON, so that a page of history never re-parses
//! or re-serialises the resources it carries.

use crate::fhir::instant::format_instant;
use crate::store::Version;

use super::response::etag;

fn quote(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

/// A `history` Bundle of `entries`, newest first.
pub fn history_bundle(
    base_url: &str,
    self_link: &str,
    next_link: Option<&str>,
    total: Option<i64>,
    entries: &[Version],
) -> String {
    let size: usize = entries
        .iter()
        .map(|e| e.body.as_ref().map_or(0, String::len) + 256)
        .sum();
    let mut out = String::with_capacity(size + 512);
    out.push_str(r#"{"resourceType":"Bundle","id":"#);
    out.push_str(&quote(&uuid::Uuid::new_v4().to_string()));
    out.push_str(r#","meta":{"lastUpdated":"#);
    out.push_str(&quote(&format_instant(
        chrono::Utc::now().timestamp_micros(),
    )));
    out.push_str(r#"},"type":"history""#);
    if let Some(total) = total {
        out.push_str(&format!(r#","total":{total}"#));
    }
    out.push_str(r#","link":[{"relation":"self","url":"#);
    out.push_str(&quote(self_link));
    out.push('}');
    if let Some(next) = next_link {
        out.push_str(r#",{"relation":"next","url":"#);
        out.push_str(&quote(next));
        out.push('}');
    }
    out.push(']');
    if !entries.is_empty() {
        out.push_str(r#","entry":["#);
        for (i, entry) in entries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_entry(&mut out, base_url, entry);
        }
        out.push(']');
    }
    out.push('}');
    out
}

fn push_entry(out: &mut String, base_url: &str, entry: &Version) {
    let relative = format!("{}/{}", entry.res_type, entry.res_id);
    out.push_str(r#"{"fullUrl":"#);
    out.push_str(&quote(&format!("{base_url}/{relative}")));
    if let Some(body) = &entry.body {
        out.push_str(r#","resource":"#);
        out.push_str(body);
    }
    let (url, status) = match entry.method.as_str() {
        "POST" => (entry.res_type.clone(), "201 Created"),
        "DELETE" => (relative, "204 No Content"),
        _ => (relative, "200 OK"),
    };
    out.push_str(r#","request":{"method":"#);
    out.push_str(&quote(&entry.method));
    out.push_str(r#","url":"#);
    out.push_str(&quote(&url));
    out.push_str(r#"},"response":{"status":"#);
    out.push_str(&quote(status));
    out.push_str(r#","etag":"#);
    out.push_str(&quote(&etag(entry.version)));
    out.push_str(r#","lastModified":"#);
    out.push_str(&quote(&format_instant(entry.last_updated)));
    out.push_str("}}");
}
