//! Reading the sources: the files to load (directories walked in sorted order), and each file
//! turned into units of work, prepared (parsed, validated, indexed) on the reading thread.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;

use serde_json::{json, Value};

use crate::fhir::{json as strict, served};
use crate::interaction::bulk::{self, PreparedWrite};
use crate::interaction::transaction::{self, Context, PlannedBundle};
use crate::interaction::{ApiError, Services};

/// How a file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One resource per line.
    Ndjson,
    /// One JSON document: a Bundle or a single resource.
    Json,
}

/// A file to load, and where a previous run stopped in it.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    /// Its canonical path, the key of its progress row.
    pub key: String,
    pub format: Format,
    pub size: u64,
    pub modified: i64,
    /// Bytes and lines already committed (0 for a fresh file).
    pub start_bytes: u64,
    pub start_lines: u64,
}

/// The files named by `paths`: files as given, directories walked recursively in sorted order
/// (`*.ndjson` and `*.json`).
pub fn list(paths: &[PathBuf]) -> Result<Vec<(PathBuf, Format)>, String> {
    let mut out = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.is_dir() {
            walk(path, &mut out)?;
        } else {
            out.push((path.clone(), format_of(path).unwrap_or(Format::Json)));
        }
    }
    Ok(out)
}

fn format_of(path: &Path) -> Option<Format> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("ndjson") => Some(Format::Ndjson),
        Some("json") => Some(Format::Json),
        _ => None,
    }
}

fn walk(dir: &Path, out: &mut Vec<(PathBuf, Format)>) -> Result<(), String> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, out)?;
        } else if let Some(format) = format_of(&path) {
            out.push((path, format));
        }
    }
    Ok(())
}

/// One line, or one entry of a batch Bundle, that was refused.
pub struct Reject {
    /// `file:line`, or `file entry N`.
    pub at: String,
    pub error: ApiError,
}

/// What the reading thread hands to the writer.
pub enum Unit {
    /// Single resources (NDJSON lines, a JSON file holding one resource): those prepared, with
    /// their `file:line`, and those already refused.
    Resources {
        source: usize,
        items: Vec<PreparedWrite>,
        /// `file:line` of each item.
        at: Vec<String>,
        refused: Vec<Reject>,
        /// Types left out because this server does not serve them.
        skipped: BTreeMap<String, u64>,
        /// Where the source's committed part ends once this unit is written.
        end_bytes: u64,
        end_lines: u64,
        /// Bytes of the source this unit covers.
        bytes: u64,
    },
    /// A transaction or batch Bundle (a collection is loaded as a transaction).
    Bundle {
        source: usize,
        planned: Result<PlannedBundle, ApiError>,
        /// Entries it writes (or would have).
        entries: u64,
        skipped: BTreeMap<String, u64>,
        bytes: u64,
    },
}

impl Unit {
    /// The position of its file among the round's sources.
    pub fn source(&self) -> usize {
        match self {
            Unit::Resources { source, .. } | Unit::Bundle { source, .. } => *source,
        }
    }

    /// Resources this unit reads.
    pub fn resources(&self) -> u64 {
        match self {
            Unit::Resources { items, refused, .. } => (items.len() + refused.len()) as u64,
            Unit::Bundle { entries, .. } => *entries,
        }
    }
}

/// Reads `sources` in order and sends their units to `tx`, `chunk` resources at most per
/// unit. Stops early when the receiver is gone. Errors are I/O errors of a file.
pub fn read_all(
    services: &Services,
    context: &Context,
    sources: &[Source],
    chunk: usize,
    tx: &SyncSender<Unit>,
) -> Result<(), String> {
    for (index, source) in sources.iter().enumerate() {
        let sent = match source.format {
            Format::Ndjson => read_ndjson(services, index, source, chunk, tx),
            Format::Json => read_json(services, context, index, source, tx),
        }
        .map_err(|e| format!("{}: {e}", source.path.display()))?;
        if !sent {
            return Ok(());
        }
    }
    Ok(())
}

fn read_ndjson(
    services: &Services,
    index: usize,
    source: &Source,
    chunk: usize,
    tx: &SyncSender<Unit>,
) -> std::io::Result<bool> {
    let mut file = File::open(&source.path)?;
    file.seek(SeekFrom::Start(source.start_bytes))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let (mut offset, mut line_no) = (source.start_bytes, source.start_lines);
    let name = source.path.display().to_string();
    let mut line = Vec::new();
    loop {
        let mut items = Vec::new();
        let mut ats = Vec::new();
        let mut refused = Vec::new();
        let mut skipped = BTreeMap::new();
        let unit_start = offset;
        let mut at_end = false;
        while items.len() + refused.len() < chunk {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)?;
            if n == 0 {
                at_end = true;
                break;
            }
            offset += n as u64;
            line_no += 1;
            if line.trim_ascii().is_empty() {
                continue;
            }
            let at = format!("{name}:{line_no}");
            match one_resource(services, &line, &mut skipped) {
                Ok(Some(w)) => {
                    items.push(w);
                    ats.push(at);
                }
                Ok(None) => {}
                Err(error) => refused.push(Reject { at, error }),
            }
        }
        if offset > unit_start || at_end {
            let unit = Unit::Resources {
                source: index,
                items,
                at: ats,
                refused,
                skipped,
                end_bytes: offset,
                end_lines: line_no,
                bytes: offset - unit_start,
            };
            if tx.send(unit).is_err() {
                return Ok(false);
            }
        }
        if at_end {
            return Ok(true);
        }
    }
}

/// A resource of a line or file, prepared; `None` when its type is not served (counted in
/// `skipped`).
fn one_resource(
    services: &Services,
    bytes: &[u8],
    skipped: &mut BTreeMap<String, u64>,
) -> Result<Option<PreparedWrite>, ApiError> {
    let resource = strict::parse_resource(bytes).map_err(ApiError::bad_request)?;
    one_value(services, resource, skipped)
}

fn one_value(
    services: &Services,
    resource: Value,
    skipped: &mut BTreeMap<String, u64>,
) -> Result<Option<PreparedWrite>, ApiError> {
    let ty = resource["resourceType"].as_str().unwrap_or_default();
    if !ty.is_empty()
        && !served::is_served(ty)
        && crate::fhir::definitions::r4().is_resource_type(ty)
    {
        *skipped.entry(ty.to_string()).or_default() += 1;
        return Ok(None);
    }
    bulk::prepare(services, resource).map(Some)
}

fn read_json(
    services: &Services,
    context: &Context,
    index: usize,
    source: &Source,
    tx: &SyncSender<Unit>,
) -> std::io::Result<bool> {
    let mut bytes = Vec::with_capacity(source.size as usize);
    File::open(&source.path)?.read_to_end(&mut bytes)?;
    let size = bytes.len() as u64;
    let name = source.path.display().to_string();
    let mut skipped = BTreeMap::new();
    let parsed = strict::parse_resource(&bytes).map_err(ApiError::bad_request);
    drop(bytes);
    let unit = match parsed {
        Ok(value) if value["resourceType"] == "Bundle" => {
            let (bundle, aliases, entries) = bundle_for_import(value, &mut skipped);
            Unit::Bundle {
                source: index,
                planned: transaction::plan(services, context, bundle, &aliases),
                entries,
                skipped,
                bytes: size,
            }
        }
        parsed => {
            let at = format!("{name}:1");
            let (items, ats, refused) =
                match parsed.and_then(|v| one_value(services, v, &mut skipped)) {
                    Ok(Some(w)) => (vec![w], vec![at], Vec::new()),
                    Ok(None) => (Vec::new(), Vec::new(), Vec::new()),
                    Err(error) => (Vec::new(), Vec::new(), vec![Reject { at, error }]),
                };
            Unit::Resources {
                source: index,
                items,
                at: ats,
                refused,
                skipped,
                end_bytes: size,
                end_lines: 1,
                bytes: size,
            }
        }
    };
    Ok(tx.send(unit).is_ok())
}

/// The Bundle as the transaction machinery takes it: a collection (or any Bundle that is not
/// a transaction or batch) becomes a transaction whose entries `PUT` at their ids (`POST`
/// without one); entries whose type this server does not serve are left out, and their
/// fullUrls given as aliases `Type/id` so that references to them stay readable. Returns the
/// Bundle, the aliases, and the number of entries kept.
fn bundle_for_import(
    mut bundle: Value,
    skipped: &mut BTreeMap<String, u64>,
) -> (Value, Vec<(String, String)>, u64) {
    let kind = bundle["type"].as_str().unwrap_or_default().to_string();
    let as_transaction = kind != "transaction" && kind != "batch";
    if as_transaction {
        bundle["type"] = json!("transaction");
    }
    let mut aliases = Vec::new();
    if let Some(Value::Array(entries)) = bundle.get_mut("entry") {
        entries.retain_mut(|entry| {
            let ty = entry
                .pointer("/resource/resourceType")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let id = entry
                .pointer("/resource/id")
                .and_then(Value::as_str)
                .map(str::to_string);
            if !ty.is_empty()
                && !served::is_served(&ty)
                && crate::fhir::definitions::r4().is_resource_type(&ty)
            {
                *skipped.entry(ty.clone()).or_default() += 1;
                if let Some(url) = entry.get("fullUrl").and_then(Value::as_str) {
                    let id = id.or_else(|| url.rsplit([':', '/']).next().map(str::to_string));
                    if let Some(id) = id {
                        aliases.push((url.to_string(), format!("{ty}/{id}")));
                    }
                }
                return false;
            }
            if as_transaction && entry.get("request").is_none() {
                entry["request"] = match &id {
                    Some(id) => json!({"method": "PUT", "url": format!("{ty}/{id}")}),
                    None => json!({"method": "POST", "url": ty}),
                };
            }
            true
        });
    }
    let kept = bundle["entry"].as_array().map_or(0, Vec::len) as u64;
    (bundle, aliases, kept)
}
