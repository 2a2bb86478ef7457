//! Writing the search indexes of one resource: its extracted values become rows of the
//! `search_*` tables, in the write's transaction; the rows of the version it supersedes go.

use diesel::prelude::*;
use diesel::result::Error as DieselError;

use super::keys::{ParamIds, COMPONENT_SEPARATOR};
use crate::fhir::search::{ucum, IndexEntry, IndexValue};
use crate::store::backend::{on_backend, DbConnection};
use crate::store::schema::{
    search_date, search_number, search_quantity, search_reference, search_string, search_token,
    search_uri,
};

/// Indexed texts are cut to this many bytes: B-tree entries have a size limit, and a prefix of
/// this length still serves every realistic search.
pub const MAX_TEXT_BYTES: usize = 512;

/// Rows per multi-row INSERT: far below SQLite's bound-parameter limit.
const ROWS_PER_INSERT: usize = 500;

/// Parameters answered from the `resource` row itself, never indexed.
pub fn is_resource_column(code: &str) -> bool {
    matches!(code, "_id" | "_lastUpdated")
}

/// The rows of one resource, per table, sorted and without duplicates.
#[derive(Debug, Default)]
pub struct IndexRows {
    pub(in crate::store) string: Vec<(i32, i32, String, String)>,
    pub(in crate::store) token: Vec<(i32, i32, String, String)>,
    pub(in crate::store) reference: Vec<(i32, i32, String, String, String)>,
    pub(in crate::store) date: Vec<(i32, i32, i64, i64)>,
    pub(in crate::store) number: Vec<(i32, i32, f64, f64)>,
    pub(in crate::store) quantity: Vec<QuantityRow>,
    pub(in crate::store) uri: Vec<(i32, i32, String)>,
}

#[derive(Debug, PartialEq)]
pub(in crate::store) struct QuantityRow {
    pub param: i32,
    pub grp: i32,
    pub low: f64,
    pub high: f64,
    pub system: String,
    pub code: String,
    pub canon_unit: String,
    pub canon_low: f64,
    pub canon_high: f64,
}

impl IndexRows {
    /// Maps the extracted values of a `res_type` resource to rows. Entries whose key is not
    /// registered are skipped (they cannot be searched either).
    pub fn new(ids: &ParamIds, res_type: &str, entries: &[IndexEntry<'_>]) -> IndexRows {
        let mut rows = IndexRows::default();
        let mut group = 0;
        for entry in entries {
            if is_resource_column(entry.code) {
                continue;
            }
            if let IndexValue::Composite(components) = &entry.value {
                group += 1;
                for (i, value) in components.iter().enumerate() {
                    let key = format!("{}{COMPONENT_SEPARATOR}{i}", entry.code);
                    if let Some(param) = ids.get(res_type, &key) {
                        rows.push(ids, res_type, entry.code, param, group, value);
                    }
                }
            } else if let Some(param) = ids.get(res_type, entry.code) {
                rows.push(ids, res_type, entry.code, param, 0, &entry.value);
            }
        }
        rows.string.sort();
        rows.string.dedup();
        rows.token.sort();
        rows.token.dedup();
        rows.reference.sort();
        rows.reference.dedup();
        rows.date.sort();
        rows.date.dedup();
        rows.number.sort_by(|a, b| {
            (a.0, a.1)
                .cmp(&(b.0, b.1))
                .then(a.2.total_cmp(&b.2))
                .then(a.3.total_cmp(&b.3))
        });
        rows.number.dedup();
        rows.quantity.sort_by(|a, b| {
            (a.param, a.grp, &a.code, &a.system)
                .cmp(&(b.param, b.grp, &b.code, &b.system))
                .then(a.low.total_cmp(&b.low))
                .then(a.high.total_cmp(&b.high))
        });
        rows.quantity.dedup();
        rows.uri.sort();
        rows.uri.dedup();
        rows
    }

    fn push(
        &mut self,
        ids: &ParamIds,
        res_type: &str,
        code: &str,
        param: i32,
        grp: i32,
        value: &IndexValue,
    ) {
        let derived = |suffix: &str| ids.get(res_type, &format!("{code}:{suffix}"));
        match value {
            IndexValue::String { normalized, exact } => {
                self.string.push((param, grp, cut(normalized), cut(exact)));
            }
            IndexValue::Token { system, code } => {
                self.token
                    .push((param, grp, cut(system.as_deref().unwrap_or("")), cut(code)));
            }
            IndexValue::TokenText(text) => {
                if let Some(param) = derived("text") {
                    let normalized = crate::fhir::search::normalize::normalize(text);
                    self.string.push((param, grp, cut(&normalized), cut(text)));
                }
            }
            IndexValue::TokenOfType {
                type_system,
                type_code,
                value,
            } => {
                if let Some(param) = derived("of-type") {
                    let system = format!("{}|{type_code}", type_system.as_deref().unwrap_or(""));
                    self.token.push((param, grp, cut(&system), cut(value)));
                }
            }
            IndexValue::Reference {
                resource_type,
                id,
                url,
                ..
            } => {
                self.reference.push((
                    param,
                    grp,
                    cut(resource_type.as_deref().unwrap_or("")),
                    cut(id.as_deref().unwrap_or("")),
                    cut(url.as_deref().unwrap_or("")),
                ));
            }
            IndexValue::ReferenceIdentifier { system, value } => {
                if let Some(param) = derived("identifier") {
                    self.token
                        .push((param, grp, cut(system.as_deref().unwrap_or("")), cut(value)));
                }
            }
            IndexValue::Date { low, high } => self.date.push((param, grp, *low, *high)),
            IndexValue::Number { text, low, high } => {
                let (low, high) = point_or_range(text, *low, *high);
                self.number.push((param, grp, low, high));
            }
            IndexValue::Quantity {
                text,
                low,
                high,
                system,
                code,
                unit,
            } => {
                let (low, high) = point_or_range(text, *low, *high);
                let is_ucum = system.as_deref() == Some(ucum::SYSTEM);
                let canonical = code
                    .as_deref()
                    .filter(|_| is_ucum)
                    .and_then(ucum::search_canonical);
                let (canon_unit, canon_low, canon_high) = match canonical {
                    Some(c) => (
                        c.unit,
                        (low * c.factor).max(f64::MIN),
                        (high * c.factor).min(f64::MAX),
                    ),
                    None => (String::new(), low, high),
                };
                let code = code.as_deref().or(unit.as_deref()).unwrap_or("");
                self.quantity.push(QuantityRow {
                    param,
                    grp,
                    low,
                    high,
                    system: cut(system.as_deref().unwrap_or("")),
                    code: cut(code),
                    canon_unit,
                    canon_low,
                    canon_high,
                });
            }
            IndexValue::Uri(uri) => self.uri.push((param, grp, cut(uri))),
            // Composites are split by the caller; nested ones do not exist in R4.
            IndexValue::Composite(_) => {}
        }
    }
}

/// A value with text is the point `[v, v]`; a Range (no text) keeps its bounds, open ends
/// clamped to the largest finite doubles so that both databases store them.
fn point_or_range(text: &str, low: f64, high: f64) -> (f64, f64) {
    match text.parse::<f64>() {
        Ok(v) if !text.is_empty() => (v, v),
        _ => (low.max(f64::MIN), high.min(f64::MAX)),
    }
}

/// `text` cut to at most [`MAX_TEXT_BYTES`], at a character boundary.
pub fn cut(text: &str) -> String {
    if text.len() <= MAX_TEXT_BYTES {
        return text.to_string();
    }
    let mut end = MAX_TEXT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// Removes every index row of the resource `key`.
pub fn remove(conn: &mut DbConnection, key: i64) -> Result<(), DieselError> {
    diesel::delete(search_string::table.filter(search_string::res_key.eq(key))).execute(conn)?;
    diesel::delete(search_token::table.filter(search_token::res_key.eq(key))).execute(conn)?;
    diesel::delete(search_reference::table.filter(search_reference::res_key.eq(key)))
        .execute(conn)?;
    diesel::delete(search_date::table.filter(search_date::res_key.eq(key))).execute(conn)?;
    diesel::delete(search_number::table.filter(search_number::res_key.eq(key))).execute(conn)?;
    diesel::delete(search_quantity::table.filter(search_quantity::res_key.eq(key)))
        .execute(conn)?;
    diesel::delete(search_uri::table.filter(search_uri::res_key.eq(key))).execute(conn)?;
    Ok(())
}

/// Inserts `rows` for the resource `key`: one multi-row INSERT per table that has rows.
pub fn insert(conn: &mut DbConnection, key: i64, rows: &IndexRows) -> Result<(), DieselError> {
    insert_many(conn, &[(key, rows)])
}

/// Inserts the rows of several resources `(key, rows)`: one multi-row INSERT per table that
/// has rows (per [`ROWS_PER_INSERT`]), whatever the number of resources.
pub fn insert_many(
    conn: &mut DbConnection,
    resources: &[(i64, &IndexRows)],
) -> Result<(), DieselError> {
    if let DbConnection::Postgres(pg) = conn {
        return crate::store::pg_bulk::insert_index(pg, resources);
    }
    use search_string as s;
    let all: Vec<_> = resources
        .iter()
        .flat_map(|(key, rows)| rows.string.iter().map(move |row| (*key, row)))
        .collect();
    for chunk in all.chunks(ROWS_PER_INSERT) {
        let values: Vec<_> = chunk
            .iter()
            .map(|(key, (p, g, n, e))| {
                (
                    s::res_key.eq(*key),
                    s::param_id.eq(p),
                    s::grp.eq(g),
                    s::normalized.eq(n),
                    s::exact.eq(e),
                )
            })
            .collect();
        on_backend!(&mut *conn, c => diesel::insert_into(s::table).values(&values).execute(c))?;
    }
    use search_token as t;
    let all: Vec<_> = resources
        .iter()
        .flat_map(|(key, rows)| rows.token.iter().map(move |row| (*key, row)))
        .collect();
    for chunk in all.chunks(ROWS_PER_INSERT) {
        let values: Vec<_> = chunk
            .iter()
            .map(|(key, (p, g, system, code))| {
                (
                    t::res_key.eq(*key),
                    t::param_id.eq(p),
                    t::grp.eq(g),
                    t::system.eq(system),
                    t::code.eq(code),
                )
            })
            .collect();
        on_backend!(&mut *conn, c => diesel::insert_into(t::table).values(&values).execute(c))?;
    }
    use search_reference as r;
    let all: Vec<_> = resources
        .iter()
        .flat_map(|(key, rows)| rows.reference.iter().map(move |row| (*key, row)))
        .collect();
    for chunk in all.chunks(ROWS_PER_INSERT) {
        let values: Vec<_> = chunk
            .iter()
            .map(|(key, (p, g, ty, id, url))| {
                (
                    r::res_key.eq(*key),
                    r::param_id.eq(p),
                    r::grp.eq(g),
                    r::target_type.eq(ty),
                    r::target_id.eq(id),
                    r::url.eq(url),
                )
            })
            .collect();
        on_backend!(&mut *conn, c => diesel::insert_into(r::table).values(&values).execute(c))?;
    }
    use search_date as d;
    let all: Vec<_> = resources
        .iter()
        .flat_map(|(key, rows)| rows.date.iter().map(move |row| (*key, row)))
        .collect();
    for chunk in all.chunks(ROWS_PER_INSERT) {
        let values: Vec<_> = chunk
            .iter()
            .map(|(key, (p, g, low, high))| {
                (
                    d::res_key.eq(*key),
                    d::param_id.eq(p),
                    d::grp.eq(g),
                    d::low.eq(low),
                    d::high.eq(high),
                )
            })
            .collect();
        on_backend!(&mut *conn, c => diesel::insert_into(d::table).values(&values).execute(c))?;
    }
    use search_number as n;
    let all: Vec<_> = resources
        .iter()
        .flat_map(|(key, rows)| rows.number.iter().map(move |row| (*key, row)))
        .collect();
    for chunk in all.chunks(ROWS_PER_INSERT) {
        let values: Vec<_> = chunk
            .iter()
            .map(|(key, (p, g, low, high))| {
                (
                    n::res_key.eq(*key),
                    n::param_id.eq(p),
                    n::grp.eq(g),
                    n::low.eq(low),
                    n::high.eq(high),
                )
            })
            .collect();
        on_backend!(&mut *conn, c => diesel::insert_into(n::table).values(&values).execute(c))?;
    }
    use search_quantity as q;
    let all: Vec<_> = resources
        .iter()
        .flat_map(|(key, rows)| rows.quantity.iter().map(move |row| (*key, row)))
        .collect();
    for chunk in all.chunks(ROWS_PER_INSERT) {
        let values: Vec<_> = chunk
            .iter()
            .map(|(key, row)| {
                (
                    q::res_key.eq(*key),
                    q::param_id.eq(row.param),
                    q::grp.eq(row.grp),
                    q::low.eq(row.low),
                    q::high.eq(row.high),
                    q::system.eq(&row.system),
                    q::code.eq(&row.code),
                    q::canon_unit.eq(&row.canon_unit),
                    q::canon_low.eq(row.canon_low),
                    q::canon_high.eq(row.canon_high),
                )
            })
            .collect();
        on_backend!(&mut *conn, c => diesel::insert_into(q::table).values(&values).execute(c))?;
    }
    use search_uri as u;
    let all: Vec<_> = resources
        .iter()
        .flat_map(|(key, rows)| rows.uri.iter().map(move |row| (*key, row)))
        .collect();
    for chunk in all.chunks(ROWS_PER_INSERT) {
        let values: Vec<_> = chunk
            .iter()
            .map(|(key, (p, g, uri))| {
                (
                    u::res_key.eq(*key),
                    u::param_id.eq(p),
                    u::grp.eq(g),
                    u::uri.eq(uri),
                )
            })
            .collect();
        on_backend!(&mut *conn, c => diesel::insert_into(u::table).values(&values).execute(c))?;
    }
    Ok(())
}
