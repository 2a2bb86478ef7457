//! Bundles written as text around the stored JSON, so that a page of history or of search
//! results never re-parses or re-serialises the resources it carries.

use crate::fhir::instant::format_instant;
use crate::fhir::outcome::{operation_outcome, Issue};
use crate::store::search::SearchPage;
use crate::store::Version;

/// How much of the written resource to send back (`Prefer: return=...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Return {
    Minimal,
    Representation,
    OperationOutcome,
}

/// The ETag of a version, `W/"3"`.
fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

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
    open(
        &mut out,
        "history",
        total,
        &[("self", Some(self_link)), ("next", next_link)],
    );
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

/// One resource of a search result.
pub struct SearchEntry<'a> {
    pub res_type: &'a str,
    pub res_id: &'a str,
    pub body: String,
    /// `match` or `include`.
    pub mode: &'static str,
}

impl<'a> SearchEntry<'a> {
    /// The entries of a search page: its matches, then its included resources, each body as
    /// `shape` makes it (`_summary`, `_elements`).
    pub fn of_page<E>(
        page: &'a SearchPage,
        mut shape: impl FnMut(&str) -> Result<String, E>,
    ) -> Result<Vec<SearchEntry<'a>>, E> {
        let matches = page.matches.iter().map(|f| (f, "match"));
        let included = page.included.iter().map(|f| (f, "include"));
        matches
            .chain(included)
            .map(|(found, mode)| {
                Ok(SearchEntry {
                    res_type: &found.res_type,
                    res_id: &found.res_id,
                    body: shape(&found.body)?,
                    mode,
                })
            })
            .collect()
    }
}

/// A `searchset` Bundle: matches, then included resources, then an OperationOutcome entry
/// (`search.mode` `outcome`) when there are `warnings`.
pub fn search_bundle(
    base_url: &str,
    self_link: &str,
    next_link: Option<&str>,
    previous_link: Option<&str>,
    total: Option<i64>,
    entries: &[SearchEntry<'_>],
    warnings: &[Issue],
) -> String {
    let size: usize = entries.iter().map(|e| e.body.len() + 128).sum();
    let mut out = String::with_capacity(size + 512);
    let links = [
        ("self", Some(self_link)),
        ("next", next_link),
        ("previous", previous_link),
    ];
    open(&mut out, "searchset", total, &links);
    if !entries.is_empty() || !warnings.is_empty() {
        out.push_str(r#","entry":["#);
        for (i, entry) in entries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(r#"{"fullUrl":"#);
            out.push_str(&quote(&format!(
                "{base_url}/{}/{}",
                entry.res_type, entry.res_id
            )));
            out.push_str(r#","resource":"#);
            out.push_str(&entry.body);
            out.push_str(r#","search":{"mode":"#);
            out.push_str(&quote(entry.mode));
            out.push_str("}}");
        }
        if !warnings.is_empty() {
            if !entries.is_empty() {
                out.push(',');
            }
            out.push_str(r#"{"resource":"#);
            out.push_str(&operation_outcome(warnings).to_string());
            out.push_str(r#","search":{"mode":"outcome"}}"#);
        }
        out.push(']');
    }
    out.push('}');
    out
}

/// Writes the start of a new Bundle: `{"resourceType":"Bundle","id":...,"meta":...,"type":kind`.
fn start(out: &mut String, kind: &str) {
    out.push_str(r#"{"resourceType":"Bundle","id":"#);
    out.push_str(&quote(&uuid::Uuid::new_v4().to_string()));
    out.push_str(r#","meta":{"lastUpdated":"#);
    out.push_str(&quote(&format_instant(
        chrono::Utc::now().timestamp_micros(),
    )));
    out.push_str(r#"},"type":"#);
    out.push_str(&quote(kind));
}

/// Writes the Bundle up to its links: `{"resourceType":"Bundle",...,"link":[...]`.
fn open(out: &mut String, kind: &str, total: Option<i64>, links: &[(&str, Option<&str>)]) {
    start(out, kind);
    if let Some(total) = total {
        out.push_str(&format!(r#","total":{total}"#));
    }
    out.push_str(r#","link":["#);
    let mut first = true;
    for (relation, url) in links {
        let Some(url) = url else { continue };
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(r#"{"relation":"#);
        out.push_str(&quote(relation));
        out.push_str(r#","url":"#);
        out.push_str(&quote(url));
        out.push('}');
    }
    out.push(']');
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

/// One entry of a `transaction-response` or `batch-response`.
#[derive(Debug, Default)]
pub struct ResponseEntry {
    pub full_url: Option<String>,
    /// `201 Created`, `200 OK`, `400 Bad Request`...
    pub status: String,
    /// `Type/id/_history/version`.
    pub location: Option<String>,
    pub version: Option<i64>,
    pub last_modified: Option<i64>,
    /// JSON text of the resource returned.
    pub resource: Option<String>,
    /// JSON text of an OperationOutcome (`response.outcome`).
    pub outcome: Option<String>,
}

/// A `transaction-response` or `batch-response` Bundle, written around the resources' text.
pub fn response_bundle(kind: &str, entries: &[ResponseEntry]) -> String {
    let size: usize = entries
        .iter()
        .map(|e| {
            e.resource.as_ref().map_or(0, String::len)
                + e.outcome.as_ref().map_or(0, String::len)
                + 256
        })
        .sum();
    let mut out = String::with_capacity(size + 256);
    start(&mut out, kind);
    out.push_str(r#","entry":["#);
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('{');
        if let Some(url) = &entry.full_url {
            out.push_str(r#""fullUrl":"#);
            out.push_str(&quote(url));
            out.push(',');
        }
        if let Some(resource) = &entry.resource {
            out.push_str(r#""resource":"#);
            out.push_str(resource);
            out.push(',');
        }
        out.push_str(r#""response":{"status":"#);
        out.push_str(&quote(&entry.status));
        if let Some(location) = &entry.location {
            out.push_str(r#","location":"#);
            out.push_str(&quote(location));
        }
        if let Some(version) = entry.version {
            out.push_str(r#","etag":"#);
            out.push_str(&quote(&etag(version)));
        }
        if let Some(at) = entry.last_modified {
            out.push_str(r#","lastModified":"#);
            out.push_str(&quote(&format_instant(at)));
        }
        if let Some(outcome) = &entry.outcome {
            out.push_str(r#","outcome":"#);
            out.push_str(outcome);
        }
        out.push_str("}}");
    }
    out.push_str("]}");
    out
}

/// The OperationOutcome that `Prefer: return=OperationOutcome` asks for after a write.
pub fn written_outcome(created: bool, res_type: &str, res_id: &str, version: i64) -> String {
    let verb = if created { "created" } else { "updated" };
    let issue = Issue::information(
        "informational",
        format!("{res_type}/{res_id} {verb}, version {version}"),
    );
    operation_outcome(&[issue]).to_string()
}
