//! The rules of `transaction` and `batch` Bundles (R4 http.html#transaction, bundle.html),
//! without HTTP or SQL: reading the envelope, the order entries are processed in, the map from
//! `fullUrl`s (and resolved conditional references) to `Type/id`, and the rewriting of
//! references inside the resources.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use base64::Engine;
use serde_json::{Map, Value};

use super::outcome::Issue;
use super::preconditions::{self, Precondition};

/// `Bundle.type` of a request this server processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Transaction,
    Batch,
}

impl Kind {
    /// The `Bundle.type` of the answer.
    pub fn response_type(self) -> &'static str {
        match self {
            Kind::Transaction => "transaction-response",
            Kind::Batch => "batch-response",
        }
    }
}

/// `Bundle.entry.request.method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    fn parse(text: &str) -> Option<Method> {
        Some(match text {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            _ => return None,
        })
    }

    /// The specification's processing order: DELETE, POST, PUT and PATCH, then GET and HEAD.
    fn rank(self) -> u8 {
        match self {
            Method::Delete => 0,
            Method::Post => 1,
            Method::Put | Method::Patch => 2,
            Method::Get | Method::Head => 3,
        }
    }

    pub fn is_write(self) -> bool {
        !matches!(self, Method::Get | Method::Head)
    }
}

/// What `Bundle.entry.request.url` addresses, relative to the server's base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// `Patient`: a create, or a search without parameters.
    Type(String),
    /// `Patient/1`.
    Instance(String, String),
    /// `Patient/1/_history/2`.
    Version(String, String, String),
    /// `Patient?identifier=...`: the type and the query string (without `?`).
    Search(String, String),
}

impl Address {
    pub fn res_type(&self) -> &str {
        match self {
            Address::Type(t)
            | Address::Instance(t, _)
            | Address::Version(t, _, _)
            | Address::Search(t, _) => t,
        }
    }

    /// Reads a request URL, relative (`Patient/1`) or absolute under `base_url`.
    fn parse(url: &str, base_url: &str) -> Result<Address, String> {
        let mut rest = url.trim();
        let base = base_url.trim_end_matches('/');
        if let Some(r) = rest.strip_prefix(base) {
            if r.is_empty() || r.starts_with('/') || r.starts_with('?') {
                rest = r;
            }
        }
        let rest = rest.strip_prefix('/').unwrap_or(rest);
        if rest.contains("://") || rest.starts_with("urn:") {
            return Err(format!(
                "{url:?} is not a URL of this server; use a relative URL such as Patient/123"
            ));
        }
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let segments: Vec<&str> = path.split('/').collect();
        let valid_type = |t: &str| {
            t.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && t.chars().all(|c| c.is_ascii_alphanumeric())
        };
        if !valid_type(segments[0]) {
            return Err(format!(
                "{url:?} does not start with a resource type (e.g. Patient, Patient/123, Patient?identifier=...)"
            ));
        }
        let ty = segments[0].to_string();
        match (segments.as_slice(), query) {
            ([_], Some(q)) => Ok(Address::Search(ty, q.to_string())),
            ([_], None) => Ok(Address::Type(ty)),
            ([_, id], None) if !id.is_empty() => Ok(Address::Instance(ty, id.to_string())),
            ([_, id, "_history", v], None) if !id.is_empty() && !v.is_empty() => {
                Ok(Address::Version(ty, id.to_string(), v.to_string()))
            }
            _ => Err(format!(
                "{url:?} is not an address this server processes in a bundle: \
                 Type, Type/id, Type/id/_history/vid or Type?criteria"
            )),
        }
    }
}

/// One entry of the request, as read from the envelope.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Position in `Bundle.entry`.
    pub index: usize,
    pub full_url: Option<String>,
    pub method: Method,
    pub address: Address,
    pub resource: Option<Value>,
    pub if_none_exist: Option<String>,
    /// `ifMatch` as a version (`W/"3"` -> 3).
    pub if_match: Option<i64>,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
}

/// An entry that cannot be processed as written.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryError {
    pub index: usize,
    pub full_url: Option<String>,
    pub issue: Issue,
}

/// Why the Bundle as a whole is refused.
#[derive(Debug, Clone, PartialEq)]
pub enum BundleError {
    /// More entries than the server accepts (413).
    TooMany(Issue),
    /// Not a transaction or batch Bundle, or an envelope rule broken (400).
    Invalid(Issue),
}

/// The request Bundle: its kind and its entries, each read or refused on its own (a batch
/// answers a refused entry in place; a transaction fails on the first).
#[derive(Debug)]
pub struct Request {
    pub kind: Kind,
    pub entries: Vec<Result<Entry, EntryError>>,
}

/// Reads a request Bundle (parsed strictly, see `fhir::json`). Entries keep their resources
/// as parsed: nothing is re-serialised.
pub fn parse_request(
    mut bundle: Value,
    base_url: &str,
    max_entries: usize,
) -> Result<Request, BundleError> {
    let invalid = |code, message: String, at: &str| {
        BundleError::Invalid(Issue::error(code, message).at(at.to_string()))
    };
    match bundle.get("resourceType").and_then(Value::as_str) {
        Some("Bundle") => {}
        Some(other) => {
            return Err(invalid(
                "invalid",
                format!(
                    "POST to the base takes a Bundle of type transaction or batch, not a {other}"
                ),
                "resourceType",
            ))
        }
        None => {
            return Err(invalid(
                "required",
                "POST to the base takes a Bundle of type transaction or batch".into(),
                "resourceType",
            ))
        }
    }
    let kind = match bundle.get("type").and_then(Value::as_str) {
        Some("transaction") => Kind::Transaction,
        Some("batch") => Kind::Batch,
        Some(other) => {
            return Err(invalid(
                "invalid",
                format!(
                    "Bundle.type {other:?} is not processed here; send a transaction or a batch"
                ),
                "Bundle.type",
            ))
        }
        None => {
            return Err(invalid(
                "required",
                "Bundle.type is required: transaction or batch".into(),
                "Bundle.type",
            ))
        }
    };
    let entries = match bundle.get_mut("entry") {
        None => Vec::new(),
        Some(Value::Array(entries)) => std::mem::take(entries),
        Some(_) => {
            return Err(invalid(
                "structure",
                "Bundle.entry must be an array".into(),
                "Bundle.entry",
            ))
        }
    };
    if entries.len() > max_entries {
        return Err(BundleError::TooMany(Issue::error(
            "too-costly",
            format!(
                "the Bundle has {} entries; this server accepts at most {max_entries} per Bundle \
                 (--max-bundle-entries): split it",
                entries.len()
            ),
        )));
    }
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(entries.len());
    let mut out = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        let full_url = entry
            .get("fullUrl")
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(url) = &full_url {
            if let Some(first) = seen.insert(url.clone(), index) {
                return Err(invalid(
                    "invalid",
                    format!("entries {first} and {index} have the same fullUrl {url:?}"),
                    &format!("Bundle.entry[{index}].fullUrl"),
                ));
            }
        }
        out.push(
            parse_entry(index, entry, base_url).map_err(|issue| EntryError {
                index,
                full_url,
                issue,
            }),
        );
    }
    Ok(Request { kind, entries: out })
}

fn parse_entry(index: usize, entry: Value, base_url: &str) -> Result<Entry, Issue> {
    let at = |path: &str| format!("Bundle.entry[{index}]{path}");
    let Value::Object(mut entry) = entry else {
        return Err(Issue::error("structure", "an entry must be an object").at(at("")));
    };
    let full_url = match entry.get("fullUrl") {
        None => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => {
            return Err(
                Issue::error("value", "fullUrl must be a non-empty string").at(at(".fullUrl"))
            )
        }
    };
    let Some(Value::Object(request)) = entry.remove("request") else {
        return Err(Issue::error(
            "required",
            "the entry has no request (method and url are required in a transaction or batch)",
        )
        .at(at(".request")));
    };
    let text = |request: &Map<String, Value>, key: &str| -> Result<Option<String>, Issue> {
        match request.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(
                Issue::error("value", format!("request.{key} must be a string"))
                    .at(at(&format!(".request.{key}"))),
            ),
        }
    };
    let method_text = text(&request, "method")?.ok_or_else(|| {
        Issue::error("required", "request.method is required").at(at(".request.method"))
    })?;
    let method = Method::parse(&method_text).ok_or_else(|| {
        Issue::error(
            "value",
            format!(
                "request.method {method_text:?} is not one of GET, HEAD, POST, PUT, PATCH, DELETE"
            ),
        )
        .at(at(".request.method"))
    })?;
    let url = text(&request, "url")?
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| {
            Issue::error("required", "request.url is required").at(at(".request.url"))
        })?;
    let address = Address::parse(&url, base_url)
        .map_err(|m| Issue::error("value", m).at(at(".request.url")))?;
    let if_match = match text(&request, "ifMatch")? {
        None => None,
        Some(tag) => Some(parse_etag(&tag).ok_or_else(|| {
            Issue::error(
                "value",
                format!("ifMatch {tag:?} is not a version tag; expected W/\"<versionId>\""),
            )
            .at(at(".request.ifMatch"))
        })?),
    };
    let resource = match entry.remove("resource") {
        None | Some(Value::Null) => None,
        Some(r @ Value::Object(_)) => Some(r),
        Some(_) => {
            return Err(Issue::error("structure", "resource must be an object").at(at(".resource")))
        }
    };
    // What each method needs in its address and body.
    let allowed = matches!(
        (method, &address),
        (Method::Post, Address::Type(_))
            | (
                Method::Put | Method::Patch | Method::Delete,
                Address::Instance(..) | Address::Search(..)
            )
            | (Method::Get | Method::Head, _)
    );
    if !allowed {
        return Err(Issue::error(
            "value",
            format!("{method_text} {url}: not an interaction this server processes in a bundle"),
        )
        .at(at(".request.url")));
    }
    if matches!(method, Method::Post | Method::Put | Method::Patch) {
        let Some(resource) = &resource else {
            return Err(Issue::error(
                "required",
                format!("a {method_text} entry needs a resource"),
            )
            .at(at(".resource")));
        };
        let sent = resource.get("resourceType").and_then(Value::as_str);
        let expected = if method == Method::Patch {
            "Binary"
        } else {
            address.res_type()
        };
        if sent != Some(expected) {
            return Err(Issue::error(
                "invalid",
                format!(
                    "the entry's resource is a {} but {method_text} {url} needs a {expected}",
                    sent.unwrap_or("resource without resourceType")
                ),
            )
            .at(at(".resource.resourceType")));
        }
    }
    for precondition in Precondition::ALL {
        let element = precondition.element();
        if let Some(value) = text(&request, element)? {
            preconditions::check(method, precondition, &value, &format!("request.{element}"))
                .map_err(|issue| issue.at(at(&format!(".request.{element}"))))?;
        }
    }
    Ok(Entry {
        index,
        full_url,
        method,
        address,
        resource,
        if_none_exist: text(&request, "ifNoneExist")?,
        if_match,
        if_none_match: text(&request, "ifNoneMatch")?,
        if_modified_since: text(&request, "ifModifiedSince")?,
    })
}

/// A version from an ETag (`W/"3"`, `"3"` or `3`).
pub fn parse_etag(text: &str) -> Option<i64> {
    let text = text.trim();
    let text = text.strip_prefix("W/").unwrap_or(text);
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    text.parse::<i64>().ok().filter(|v| *v > 0)
}

/// The order entries are processed in: DELETE, POST, PUT/PATCH, GET/HEAD, each group in
/// Bundle order. Takes the methods of the entries, by position.
pub fn processing_order(methods: &[Method]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..methods.len()).collect();
    order.sort_by_key(|&i| methods[i].rank());
    order
}

/// Whether `text` is a conditional reference (`Patient?identifier=...`).
pub fn is_conditional_reference(text: &str) -> bool {
    match text.split_once('?') {
        Some((ty, query)) => {
            !query.is_empty()
                && ty.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && ty.chars().all(|c| c.is_ascii_alphanumeric())
        }
        None => false,
    }
}

/// Where the references of a transaction point once ids are known: `fullUrl` -> `Type/id`
/// for every entry that creates or updates, and each resolved conditional reference ->
/// `Type/id`.
#[derive(Debug, Default, Clone)]
pub struct References {
    targets: HashMap<String, String>,
    /// Every fullUrl of the Bundle, for precise errors (a batch may not use them); shared by
    /// the per-entry maps of a batch.
    declared: Arc<HashSet<String>>,
    /// `(base, Type/id)` -> `Type/newid` for entries whose fullUrl is an absolute URL: a
    /// relative reference in an entry under the same base means that entry.
    relative: HashMap<(String, String), String>,
}

impl References {
    pub fn new() -> References {
        References::default()
    }

    /// Notes a fullUrl of the Bundle, whether or not it gets a target.
    pub fn declare(&mut self, full_url: &str) {
        if !self.declared.contains(full_url) {
            Arc::make_mut(&mut self.declared).insert(full_url.to_string());
        }
    }

    /// `full_url` (an entry's fullUrl) now means `Type/id`.
    pub fn map_full_url(&mut self, full_url: &str, target: String) {
        self.declare(full_url);
        if let Some((base, relative)) = split_absolute(full_url) {
            self.relative
                .insert((base.to_string(), relative.to_string()), target.clone());
        }
        self.targets.insert(full_url.to_string(), target);
    }

    /// A conditional reference resolved to `Type/id`.
    pub fn map_conditional(&mut self, reference: &str, target: String) {
        self.targets.insert(reference.to_string(), target);
    }

    /// Whether `full_url` is the fullUrl of an entry of the Bundle.
    pub fn is_declared(&self, full_url: &str) -> bool {
        self.declared.contains(full_url)
    }

    pub fn target(&self, reference: &str) -> Option<&str> {
        self.targets.get(reference).map(String::as_str)
    }

    fn lookup(&self, value: &str, base: &str) -> Option<&str> {
        if let Some(t) = self.targets.get(value) {
            return Some(t);
        }
        if self.relative.is_empty() || value.contains(':') {
            return None;
        }
        self.relative
            .get(&(base.to_string(), value.to_string()))
            .map(String::as_str)
    }

    /// Rewrites, in `resource` (the resource of the entry whose fullUrl is `full_url`), every
    /// `reference` and `url` element and every `href`/`src` of the narrative that names a
    /// mapped fullUrl or conditional reference. A `urn:uuid:` that no entry maps is an error,
    /// and so is a conditional reference left unresolved.
    pub fn rewrite(
        &self,
        resource: &mut Value,
        full_url: Option<&str>,
        base_url: &str,
    ) -> Result<(), Issue> {
        let base = entry_base(full_url, base_url);
        let ty = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or("Resource")
            .to_string();
        let mut path = ty;
        self.walk(resource, base, &mut path)
    }

    /// As [`References::rewrite`] in a JSON Patch document: inside each operation's `value`,
    /// and the `value` itself when it is a string set at a `.../reference` or `.../url` path.
    pub fn rewrite_patch(
        &self,
        document: &mut Value,
        full_url: Option<&str>,
        base_url: &str,
    ) -> Result<(), Issue> {
        let base = entry_base(full_url, base_url);
        let Some(operations) = document.as_array_mut() else {
            return Ok(());
        };
        for (i, operation) in operations.iter_mut().enumerate() {
            let target = operation
                .get("path")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let mut path = format!("[{i}].value");
            match operation.get_mut("value") {
                Some(Value::String(text))
                    if target.ends_with("/reference") || target.ends_with("/url") =>
                {
                    self.rewrite_value(text, base, &path, target.ends_with("/reference"))?
                }
                Some(value) => self.walk(value, base, &mut path)?,
                None => {}
            }
        }
        Ok(())
    }

    fn walk(&self, value: &mut Value, base: &str, path: &mut String) -> Result<(), Issue> {
        match value {
            Value::Object(object) => {
                for (key, child) in object.iter_mut() {
                    let len = path.len();
                    path.push('.');
                    path.push_str(key);
                    match child {
                        Value::String(text) if key == "reference" || key == "url" => {
                            self.rewrite_value(text, base, path, key == "reference")?
                        }
                        Value::String(text) if key == "div" => {
                            if let Some(new) = self.rewrite_div(text, base, path)? {
                                *text = new;
                            }
                        }
                        Value::Object(_) | Value::Array(_) => self.walk(child, base, path)?,
                        _ => {}
                    }
                    path.truncate(len);
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    self.walk(item, base, path)?;
                    path.truncate(len);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn rewrite_value(
        &self,
        text: &mut String,
        base: &str,
        path: &str,
        is_reference: bool,
    ) -> Result<(), Issue> {
        if let Some(target) = self.lookup(text, base) {
            *text = target.to_string();
            return Ok(());
        }
        self.check_unmapped(text, path, is_reference)
    }

    fn check_unmapped(&self, text: &str, path: &str, is_reference: bool) -> Result<(), Issue> {
        if text.starts_with("urn:uuid:") {
            let message = if self.declared.contains(text) {
                format!(
                    "{text} is the fullUrl of an entry that cannot be referred to here: entries \
                     of a batch are independent and may not refer to each other (use a \
                     transaction), and in a transaction only entries that write can be"
                )
            } else {
                format!("{text} is not the fullUrl of any entry of the Bundle")
            };
            return Err(Issue::error("not-found", message).at(path.to_string()));
        }
        if is_reference && is_conditional_reference(text) {
            return Err(Issue::error(
                "not-found",
                format!("the conditional reference {text} was not resolved"),
            )
            .at(path.to_string()));
        }
        Ok(())
    }

    /// The narrative with its `href` and `src` attributes rewritten; `None` when unchanged.
    fn rewrite_div(&self, div: &str, base: &str, path: &str) -> Result<Option<String>, Issue> {
        let mut out = String::new();
        let mut copied = 0;
        let bytes = div.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            // Bytes, not `&div[i..]`: `i` may be inside a multi-byte character.
            let rest = &bytes[i..];
            let attr_len = if rest.starts_with(b"href=") {
                5
            } else if rest.starts_with(b"src=") {
                4
            } else {
                i += 1;
                continue;
            };
            // An attribute name starts after whitespace.
            if i == 0 || !bytes[i - 1].is_ascii_whitespace() {
                i += 1;
                continue;
            }
            let quote_at = i + attr_len;
            let Some(&quote) = bytes.get(quote_at) else {
                break;
            };
            if quote != b'"' && quote != b'\'' {
                i += 1;
                continue;
            }
            let start = quote_at + 1;
            let Some(len) = div[start..].find(quote as char) else {
                break;
            };
            let value = &div[start..start + len];
            if let Some(target) = self.lookup(value, base) {
                out.push_str(&div[copied..start]);
                out.push_str(target);
                copied = start + len;
            } else {
                self.check_unmapped(value, path, false)?;
            }
            i = start + len + 1;
        }
        if copied == 0 {
            return Ok(None);
        }
        out.push_str(&div[copied..]);
        Ok(Some(out))
    }
}

/// Every conditional reference (`Type?criteria`) in `resource`'s `reference` elements, each
/// once, in document order.
pub fn conditional_references(resource: &Value) -> Vec<String> {
    fn walk<'v>(
        value: &'v Value,
        seen: &mut std::collections::HashSet<&'v str>,
        out: &mut Vec<String>,
    ) {
        match value {
            Value::Object(object) => {
                for (key, child) in object {
                    match child {
                        Value::String(text)
                            if key == "reference"
                                && is_conditional_reference(text)
                                && seen.insert(text) =>
                        {
                            out.push(text.clone());
                        }
                        Value::Object(_) | Value::Array(_) => walk(child, seen, out),
                        _ => {}
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, seen, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(resource, &mut std::collections::HashSet::new(), &mut out);
    out
}

/// The base relative references of an entry are read against: its absolute fullUrl's, or
/// this server's.
fn entry_base<'a>(full_url: Option<&'a str>, base_url: &'a str) -> &'a str {
    full_url
        .and_then(split_absolute)
        .map_or(base_url.trim_end_matches('/'), |(b, _)| b)
}

/// `(base, Type/id)` of an absolute fullUrl ending in a resource type and an id
/// (`https://host/fhir/Patient/1` -> `("https://host/fhir", "Patient/1")`).
fn split_absolute(full_url: &str) -> Option<(&str, &str)> {
    if !(full_url.starts_with("http://") || full_url.starts_with("https://")) {
        return None;
    }
    let (rest, id) = full_url.rsplit_once('/')?;
    let (base, ty) = rest.rsplit_once('/')?;
    let is_type = ty.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && ty.chars().all(|c| c.is_ascii_alphanumeric());
    if !is_type || id.is_empty() || base.ends_with(':') || base.ends_with('/') {
        return None;
    }
    Some((base, &full_url[base.len() + 1..]))
}

/// The JSON Patch document carried by a PATCH entry: a Binary whose `contentType` is
/// `application/json-patch+json` and whose `data` is the patch, base64-encoded.
pub fn patch_document(binary: &Value) -> Result<Value, Issue> {
    let content_type = binary
        .get("contentType")
        .and_then(Value::as_str)
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json-patch+json") {
        return Err(Issue::error(
            "not-supported",
            format!(
                "a PATCH entry takes a Binary with contentType application/json-patch+json \
                 (a JSON Patch); {content_type:?} is not supported"
            ),
        )
        .at("Binary.contentType"));
    }
    let data = binary.get("data").and_then(Value::as_str).unwrap_or("");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.split_ascii_whitespace().collect::<String>())
        .map_err(|e| {
            Issue::error("value", format!("Binary.data is not base64: {e}")).at("Binary.data")
        })?;
    super::json::parse_strict(&bytes).map_err(|mut issue| {
        issue.diagnostics = format!("the JSON Patch in Binary.data: {}", issue.diagnostics);
        issue.at("Binary.data")
    })
}

/// Criteria (a query string, `Type?` optional) with the values of the reference parameters
/// `codes` that name a fullUrl of the Bundle replaced by that entry's `Type/id` (`targets`),
/// so that `ifNoneExist: subject=urn:uuid:...` searches for what the entry became.
pub fn substitute_placeholders(
    res_type: &str,
    text: &str,
    codes: &[&str],
    targets: &HashMap<String, String>,
) -> Result<String, String> {
    let text = text.strip_prefix('?').unwrap_or(text);
    let text = text.strip_prefix(&format!("{res_type}?")).unwrap_or(text);
    let mut pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(text).map_err(|e| format!("malformed criteria: {e}"))?;
    for (key, value) in &mut pairs {
        let code = key.split([':', '.']).next().unwrap_or(key);
        if !codes.contains(&code) {
            continue;
        }
        *value = value
            .split(',')
            .map(|part| targets.get(part).map_or(part, String::as_str))
            .collect::<Vec<_>>()
            .join(",");
    }
    serde_urlencoded::to_string(&pairs).map_err(|e| e.to_string())
}

/// The first two entries that write the same resource, if any: `(first, second)` positions.
pub fn first_overlap<'a>(
    writes: impl IntoIterator<Item = (usize, &'a str)>,
) -> Option<(usize, usize, &'a str)> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (index, identity) in writes {
        if let Some(first) = seen.insert(identity, index) {
            return Some((first, index, identity));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BASE: &str = "https://carnet.example/fhir";

    fn entry(method: &str, url: &str, resource: Option<Value>) -> Value {
        let mut e = json!({"request": {"method": method, "url": url}});
        if let Some(r) = resource {
            e["resource"] = r;
        }
        e
    }

    fn bundle(kind: &str, entries: Vec<Value>) -> Value {
        json!({"resourceType": "Bundle", "type": kind, "entry": entries})
    }

    #[test]
    fn reads_addresses() {
        let p = |u: &str| Address::parse(u, BASE);
        assert_eq!(p("Patient"), Ok(Address::Type("Patient".into())));
        assert_eq!(
            p("Patient/1"),
            Ok(Address::Instance("Patient".into(), "1".into()))
        );
        assert_eq!(
            p(&format!("{BASE}/Patient/1")),
            Ok(Address::Instance("Patient".into(), "1".into()))
        );
        assert_eq!(
            p("/Patient/1/_history/2"),
            Ok(Address::Version("Patient".into(), "1".into(), "2".into()))
        );
        assert_eq!(
            p("Patient?identifier=a|b"),
            Ok(Address::Search("Patient".into(), "identifier=a|b".into()))
        );
        assert!(p("https://elsewhere.example/fhir/Patient/1").is_err());
        assert!(p("patient/1").is_err());
        assert!(p("Patient/1/x").is_err());
        assert!(p("urn:uuid:1").is_err());
    }

    #[test]
    fn envelope_rules() {
        let r = parse_request(json!({"resourceType": "Patient"}), BASE, 10);
        assert!(matches!(r, Err(BundleError::Invalid(_))));
        let r = parse_request(
            json!({"resourceType": "Bundle", "type": "collection"}),
            BASE,
            10,
        );
        assert!(
            matches!(r, Err(BundleError::Invalid(i)) if i.expression.as_deref() == Some("Bundle.type"))
        );
        let many = bundle("batch", vec![entry("GET", "Patient", None); 3]);
        assert!(matches!(
            parse_request(many, BASE, 2),
            Err(BundleError::TooMany(_))
        ));
        // Duplicate fullUrl.
        let mut a = entry("POST", "Patient", Some(json!({"resourceType": "Patient"})));
        a["fullUrl"] = json!("urn:uuid:1");
        let dup = bundle("transaction", vec![a.clone(), a]);
        assert!(
            matches!(parse_request(dup, BASE, 10), Err(BundleError::Invalid(i)) if i.diagnostics.contains("same fullUrl"))
        );

        // Entry-level problems are reported per entry.
        let b = bundle(
            "transaction",
            vec![
                json!({"resource": {"resourceType": "Patient"}}),
                entry("POST", "Patient", None),
                entry(
                    "PUT",
                    "Patient/1",
                    Some(json!({"resourceType": "Observation"})),
                ),
                entry("FETCH", "Patient", None),
                entry(
                    "POST",
                    "Patient/1",
                    Some(json!({"resourceType": "Patient"})),
                ),
                entry("GET", "Patient/1", None),
                entry(
                    "PATCH",
                    "Patient/1",
                    Some(json!({"resourceType": "Binary"})),
                ),
            ],
        );
        let parsed = parse_request(b, BASE, 10).unwrap();
        assert_eq!(parsed.kind, Kind::Transaction);
        let errors: Vec<Option<String>> = parsed
            .entries
            .iter()
            .map(|e| e.as_ref().err().and_then(|e| e.issue.expression.clone()))
            .collect();
        assert_eq!(
            errors,
            vec![
                Some("Bundle.entry[0].request".to_string()),
                Some("Bundle.entry[1].resource".to_string()),
                Some("Bundle.entry[2].resource.resourceType".to_string()),
                Some("Bundle.entry[3].request.method".to_string()),
                Some("Bundle.entry[4].request.url".to_string()),
                None,
                None,
            ]
        );
    }

    #[test]
    fn order_is_delete_post_put_get() {
        use Method::*;
        let methods = [Get, Put, Post, Delete, Patch, Post, Head, Delete];
        assert_eq!(processing_order(&methods), vec![3, 7, 2, 5, 1, 4, 0, 6]);
    }

    #[test]
    fn rewrites_references_attachments_and_narrative() {
        let mut refs = References::new();
        refs.map_full_url("urn:uuid:p", "Patient/new-p".into());
        refs.map_full_url("urn:uuid:b", "Binary/new-b".into());
        refs.map_full_url("http://other.example/base/Device/7", "Device/new-d".into());
        refs.map_conditional("Patient?identifier=s|1", "Patient/existing".into());
        let mut doc = json!({
            "resourceType": "DocumentReference",
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Zoé – <a href=\"urn:uuid:b\">doc</a><img src='urn:uuid:b'/><a href=\"https://x\">x</a> é</div>"},
            "subject": {"reference": "urn:uuid:p"},
            "author": [{"reference": "Patient?identifier=s|1"}, {"reference": "http://other.example/base/Device/7"}],
            "content": [{"attachment": {"contentType": "application/pdf", "url": "urn:uuid:b"}}],
            "extension": [{"url": "http://example.org/ext", "valueString": "urn:uuid:b"}]
        });
        refs.rewrite(&mut doc, Some("urn:uuid:d"), BASE).unwrap();
        assert_eq!(doc["subject"]["reference"], "Patient/new-p");
        assert_eq!(doc["author"][0]["reference"], "Patient/existing");
        assert_eq!(doc["author"][1]["reference"], "Device/new-d");
        assert_eq!(doc["content"][0]["attachment"]["url"], "Binary/new-b");
        assert_eq!(
            doc["text"]["div"],
            "<div xmlns=\"http://www.w3.org/1999/xhtml\">Zoé – <a href=\"Binary/new-b\">doc</a><img src='Binary/new-b'/><a href=\"https://x\">x</a> é</div>"
        );
        // Only references and urls: a string that happens to hold a fullUrl stays.
        assert_eq!(doc["extension"][0]["valueString"], "urn:uuid:b");

        // A relative reference inside an entry under the same base as an absolute fullUrl.
        let mut obs = json!({"resourceType": "Observation", "device": {"reference": "Device/7"}});
        refs.rewrite(
            &mut obs,
            Some("http://other.example/base/Observation/1"),
            BASE,
        )
        .unwrap();
        assert_eq!(obs["device"]["reference"], "Device/new-d");
        let mut elsewhere =
            json!({"resourceType": "Observation", "device": {"reference": "Device/7"}});
        refs.rewrite(&mut elsewhere, Some("urn:uuid:o"), BASE)
            .unwrap();
        assert_eq!(elsewhere["device"]["reference"], "Device/7");
    }

    #[test]
    fn unknown_urn_uuid_and_unresolved_conditions_are_errors() {
        let mut refs = References::new();
        refs.declare("urn:uuid:other");
        let mut obs =
            json!({"resourceType": "Observation", "subject": {"reference": "urn:uuid:nobody"}});
        let issue = refs.rewrite(&mut obs, None, BASE).unwrap_err();
        assert_eq!(
            issue.expression.as_deref(),
            Some("Observation.subject.reference")
        );
        let mut obs =
            json!({"resourceType": "Observation", "performer": [{"reference": "urn:uuid:other"}]});
        let issue = refs.rewrite(&mut obs, None, BASE).unwrap_err();
        assert!(issue.diagnostics.contains("batch"), "{}", issue.diagnostics);
        assert_eq!(
            issue.expression.as_deref(),
            Some("Observation.performer[0].reference")
        );
        let mut obs =
            json!({"resourceType": "Observation", "subject": {"reference": "Patient?name=x"}});
        assert!(refs.rewrite(&mut obs, None, BASE).is_err());
        let mut div = json!({"resourceType": "Patient", "text": {"div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><a href=\"urn:uuid:zz\">x</a></div>"}});
        assert!(refs.rewrite(&mut div, None, BASE).is_err());
        // Ordinary references are untouched.
        let mut fine = json!({"resourceType": "Observation", "subject": {"reference": "Patient/1"}, "hasMember": [{"reference": "#c1"}]});
        let before = fine.clone();
        refs.rewrite(&mut fine, None, BASE).unwrap();
        assert_eq!(fine, before);
    }

    #[test]
    fn finds_conditional_references() {
        let obs = json!({
            "resourceType": "Observation",
            "subject": {"reference": "Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|123"},
            "performer": [{"reference": "Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|123"}, {"reference": "Practitioner/1"}],
            "note": [{"text": "Patient?x=y"}]
        });
        assert_eq!(
            conditional_references(&obs),
            vec!["Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|123".to_string()]
        );
        assert!(!is_conditional_reference("Patient/1"));
        assert!(!is_conditional_reference("http://x/Patient?a=b"));
        assert!(!is_conditional_reference("Patient?"));
    }

    #[test]
    fn patch_documents_come_in_binaries() {
        let data = base64::engine::general_purpose::STANDARD
            .encode(br#"[{"op":"replace","path":"/active","value":false}]"#);
        let binary = json!({"resourceType": "Binary", "contentType": "application/json-patch+json", "data": data});
        assert!(patch_document(&binary).unwrap().is_array());
        let fhirpath =
            json!({"resourceType": "Binary", "contentType": "application/fhir+json", "data": data});
        assert_eq!(patch_document(&fhirpath).unwrap_err().code, "not-supported");
        let bad = json!({"resourceType": "Binary", "contentType": "application/json-patch+json", "data": "!!"});
        assert!(patch_document(&bad).is_err());
    }

    #[test]
    fn patch_values_are_rewritten() {
        let mut refs = References::new();
        refs.map_full_url("urn:uuid:p", "Patient/new-p".into());
        let mut patch = json!([
            {"op": "replace", "path": "/subject/reference", "value": "urn:uuid:p"},
            {"op": "add", "path": "/performer/-", "value": {"reference": "urn:uuid:p"}},
            {"op": "replace", "path": "/status", "value": "urn:uuid:p"}
        ]);
        refs.rewrite_patch(&mut patch, None, BASE).unwrap();
        assert_eq!(patch[0]["value"], "Patient/new-p");
        assert_eq!(patch[1]["value"]["reference"], "Patient/new-p");
        // Not a reference: left as written.
        assert_eq!(patch[2]["value"], "urn:uuid:p");
        let mut unknown =
            json!([{"op": "replace", "path": "/subject/reference", "value": "urn:uuid:nobody"}]);
        assert!(refs.rewrite_patch(&mut unknown, None, BASE).is_err());
    }

    #[test]
    fn placeholders_in_criteria() {
        let targets: HashMap<String, String> =
            [("urn:uuid:p".to_string(), "Patient/7".to_string())].into();
        let out = substitute_placeholders(
            "Observation",
            "Observation?subject=urn:uuid:p&code=urn:uuid:p&patient:Patient=urn:uuid:q,urn:uuid:p",
            &["subject", "patient"],
            &targets,
        )
        .unwrap();
        assert_eq!(
            out,
            "subject=Patient%2F7&code=urn%3Auuid%3Ap&patient%3APatient=urn%3Auuid%3Aq%2CPatient%2F7"
        );
    }

    #[test]
    fn overlaps_and_full_urls() {
        assert_eq!(
            first_overlap([(0, "Patient/1"), (2, "Patient/2"), (5, "Patient/1")]),
            Some((0, 5, "Patient/1"))
        );
        assert_eq!(
            first_overlap([(0, "Patient/1"), (1, "Observation/1")]),
            None
        );
        assert_eq!(
            split_absolute("https://h/fhir/Patient/1"),
            Some(("https://h/fhir", "Patient/1"))
        );
        assert_eq!(split_absolute("urn:uuid:1"), None);
        assert_eq!(split_absolute("https://h/"), None);
        assert_eq!(parse_etag("W/\"3\""), Some(3));
        assert_eq!(parse_etag("x"), None);
    }
}
