//! Search: the index tables' rows ([`index`]), their keys ([`keys`]), the planner that turns a
//! [`SearchQuery`] into SQL under the caller's scope ([`plan`], [`sql`]), and the execution of
//! a page: matches in keyset order, the total, `_include`/`_revinclude`.

pub mod cursor;
pub mod index;
pub mod keys;
pub mod plan;
pub mod reindex;
pub mod sql;

use std::collections::HashSet;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Nullable, Text};

use self::cursor::{SearchCursor, SortValue};
use self::plan::{PlanError, Planner, SortType};
use self::sql::{Bind, Sql};
use super::backend::DbConnection;
use super::{now_micros, Store, StoreError};
use crate::access::AccessScope;
use crate::fhir::search::query::{Include, SearchQuery};

/// At most this many `_sort` keys.
pub const MAX_SORT_KEYS: usize = 3;
/// `_include:iterate` follows references at most this many times.
const MAX_INCLUDE_DEPTH: usize = 4;

/// One page of a search.
#[derive(Debug, Clone)]
pub struct SearchRequest<'q> {
    pub query: &'q SearchQuery,
    /// Compartment search: only resources in this patient's compartment.
    pub compartment: Option<&'q str>,
    /// Page size; 0 for a count only.
    pub count: usize,
    pub cursor: Option<&'q SearchCursor>,
    /// Included resources beyond this many are left out (and reported).
    pub max_included: usize,
}

/// A current resource found by a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub res_type: String,
    pub res_id: String,
    pub version: i64,
    pub last_updated: i64,
    pub body: String,
}

#[derive(Debug, Clone, Default)]
pub struct SearchPage {
    pub matches: Vec<Found>,
    pub included: Vec<Found>,
    /// Whether included resources were left out at `max_included`.
    pub included_truncated: bool,
    pub total: Option<i64>,
    pub next: Option<SearchCursor>,
    pub previous: Option<SearchCursor>,
}

/// Why a search failed before reaching the database, or in it.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(
        "the paging cursor does not fit this search's sort order; start again from the first page"
    )]
    BadCursor,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<diesel::result::Error> for SearchError {
    fn from(e: diesel::result::Error) -> Self {
        SearchError::Store(StoreError::from(e))
    }
}

// `KeyRow` has one typed slot per sort key.
const _: () = assert!(MAX_SORT_KEYS == 3);

#[derive(QueryableByName)]
struct KeyRow {
    #[diesel(sql_type = BigInt)]
    res_key: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    i0: Option<i64>,
    #[diesel(sql_type = Nullable<Double>)]
    f0: Option<f64>,
    #[diesel(sql_type = Nullable<Text>)]
    t0: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    i1: Option<i64>,
    #[diesel(sql_type = Nullable<Double>)]
    f1: Option<f64>,
    #[diesel(sql_type = Nullable<Text>)]
    t1: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    i2: Option<i64>,
    #[diesel(sql_type = Nullable<Double>)]
    f2: Option<f64>,
    #[diesel(sql_type = Nullable<Text>)]
    t2: Option<String>,
}

impl KeyRow {
    fn sort_values(&self, types: &[SortType]) -> Vec<SortValue> {
        let slots = [
            (self.i0, self.f0, &self.t0),
            (self.i1, self.f1, &self.t1),
            (self.i2, self.f2, &self.t2),
        ];
        types
            .iter()
            .zip(slots)
            .map(|(ty, (i, f, t))| match ty {
                SortType::Int => SortValue::Int(i.unwrap_or_default()),
                SortType::Float => SortValue::Float(f.unwrap_or_default()),
                SortType::Text => SortValue::Text(t.clone().unwrap_or_default()),
            })
            .collect()
    }
}

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct BodyRow {
    #[diesel(sql_type = BigInt)]
    res_key: i64,
    #[diesel(sql_type = Text)]
    res_type: String,
    #[diesel(sql_type = Text)]
    res_id: String,
    #[diesel(sql_type = BigInt)]
    version: i64,
    #[diesel(sql_type = BigInt)]
    last_updated: i64,
    #[diesel(sql_type = Nullable<Text>)]
    body: Option<String>,
}

#[derive(QueryableByName)]
struct KeyOnly {
    #[diesel(sql_type = BigInt)]
    res_key: i64,
}

#[derive(QueryableByName)]
struct TypedKey {
    #[diesel(sql_type = BigInt)]
    res_key: i64,
    #[diesel(sql_type = Text)]
    res_type: String,
    #[diesel(sql_type = Text)]
    res_id: String,
}

impl Store {
    /// Runs one page of a search under `scope`: the scope is part of every statement, so
    /// matches, the total, includes and paging only ever see what the caller may see.
    pub fn search(
        &self,
        scope: &AccessScope,
        request: &SearchRequest<'_>,
    ) -> Result<SearchPage, SearchError> {
        // One snapshot for the count, the page, the bodies and the includes: a resource that
        // changes (or leaves the caller's compartments) meanwhile is seen before or after,
        // never half.
        let mut pooled = self.conn()?;
        let conn: &mut DbConnection = &mut pooled;
        conn.transaction(|conn| {
            if let DbConnection::Postgres(pg) = conn {
                diesel::sql_query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .execute(pg)?;
            }
            self.search_on(conn, scope, request)
        })
    }

    /// [`Store::search`] on a given connection (inside a write transaction for conditional
    /// interactions).
    pub(crate) fn search_on(
        &self,
        conn: &mut DbConnection,
        scope: &AccessScope,
        request: &SearchRequest<'_>,
    ) -> Result<SearchPage, SearchError> {
        let ids = self.search_ids()?;
        let backend = self.backend;
        let query = request.query;
        if query.sort.len() > MAX_SORT_KEYS {
            return Err(PlanError::Unsupported(format!(
                "at most {MAX_SORT_KEYS} _sort keys are supported"
            ))
            .into());
        }
        let now = now_micros();
        let types = &query.types;

        let mut page = SearchPage::default();
        if query.total != crate::fhir::search::query::Total::None || request.count == 0 {
            let mut planner = Planner::new(Sql::new(backend), &ids, scope, now);
            planner.sql.push("SELECT COUNT(*) AS n FROM ");
            let _ = planner.context("r", types, &query.clauses, request.compartment)?;
            let rows: Vec<CountRow> = planner.sql.load(conn)?;
            page.total = rows.first().map(|r| r.n);
        }
        if request.count == 0 {
            return Ok(page);
        }

        let mut planner = Planner::new(Sql::new(backend), &ids, scope, now);
        let mut keys = Vec::with_capacity(query.sort.len());
        for key in &query.sort {
            keys.push((planner.sort_key("r", types, key)?, key.descending));
        }
        let sort_types: Vec<SortType> = keys.iter().map(|((_, ty), _)| *ty).collect();
        let backward = request.cursor.is_some_and(|c| c.backward);
        planner.sql.push("SELECT r.res_key AS res_key");
        for slot in 0..MAX_SORT_KEYS {
            for (column, ty) in [
                ("i", SortType::Int),
                ("f", SortType::Float),
                ("t", SortType::Text),
            ] {
                let expr = match keys.get(slot) {
                    Some(((expr, key_ty), _)) if *key_ty == ty => expr.clone(),
                    _ => format!("CAST(NULL AS {})", sql_type(ty)),
                };
                planner.sql.push(&format!(", {expr} AS {column}{slot}"));
            }
        }
        planner.sql.push(" FROM ");
        let key = planner.context("r", types, &query.clauses, request.compartment)?;
        if let Some(cursor) = request.cursor {
            let values = cursor.keys.as_slice();
            if values.len() != keys.len()
                || values
                    .iter()
                    .zip(&sort_types)
                    .any(|(v, ty)| v.sort_type() != *ty)
            {
                return Err(SearchError::BadCursor);
            }
            planner.sql.push(" AND ");
            let exprs: Vec<(&str, bool)> = keys
                .iter()
                .map(|((e, _), desc)| (e.as_str(), *desc))
                .collect();
            keyset(
                &mut planner.sql,
                &key,
                &exprs,
                values,
                cursor.res_key,
                backward,
            );
        }
        planner.sql.push(" ORDER BY ");
        for (slot, ((_, ty), desc)) in keys.iter().enumerate() {
            let column = match ty {
                SortType::Int => "i",
                SortType::Float => "f",
                SortType::Text => "t",
            };
            let descending = *desc != backward;
            planner.sql.push(&format!(
                "{column}{slot} {}, ",
                if descending { "DESC" } else { "ASC" }
            ));
        }
        planner
            .sql
            .push(&format!("{key} {}", if backward { "DESC" } else { "ASC" }));
        planner
            .sql
            .push(&format!(" LIMIT {}", request.count as u64 + 1));
        let mut rows: Vec<KeyRow> = planner.sql.load(conn)?;
        let more = rows.len() > request.count;
        rows.truncate(request.count);
        if backward {
            rows.reverse();
        }
        let cursor_at = |row: &KeyRow, backward: bool| SearchCursor {
            backward,
            keys: row.sort_values(&sort_types),
            res_key: row.res_key,
        };
        // Forward pages know whether more follows; a page reached by going back always has
        // its successor (where it came from), and has a predecessor when more rows were read.
        let (has_next, has_previous) = if backward {
            (true, more)
        } else {
            (more, request.cursor.is_some())
        };
        if has_next {
            page.next = rows.last().map(|r| cursor_at(r, false));
        }
        if has_previous {
            page.previous = rows.first().map(|r| cursor_at(r, true));
        }
        let match_keys: Vec<i64> = rows.iter().map(|r| r.res_key).collect();
        page.matches = bodies(conn, backend, &match_keys)?;

        if !query.includes.is_empty() || !query.revincludes.is_empty() {
            let (included, truncated) =
                self.includes(conn, scope, query, &match_keys, request.max_included)?;
            page.included = bodies(conn, backend, &included)?;
            page.included_truncated = truncated;
        }
        Ok(page)
    }

    /// The keys of the resources `_include` and `_revinclude` add to the page `matches`,
    /// following `:iterate` on what they add, never repeating a resource.
    fn includes(
        &self,
        conn: &mut DbConnection,
        scope: &AccessScope,
        query: &SearchQuery,
        matches: &[i64],
        max: usize,
    ) -> Result<(Vec<i64>, bool), SearchError> {
        let mut seen: HashSet<i64> = matches.iter().copied().collect();
        let mut included = Vec::new();
        let mut frontier: Vec<i64> = matches.to_vec();
        for depth in 0..MAX_INCLUDE_DEPTH {
            if frontier.is_empty() {
                break;
            }
            let sources = typed_keys(conn, self.backend, &frontier)?;
            let mut found = Vec::new();
            for include in &query.includes {
                if depth == 0 || include.iterate {
                    let left = max - included.len();
                    found.extend(self.include(conn, scope, include, &sources, false, left)?);
                }
            }
            for include in &query.revincludes {
                if depth == 0 || include.iterate {
                    let left = max - included.len();
                    found.extend(self.include(conn, scope, include, &sources, true, left)?);
                }
            }
            frontier.clear();
            for key in found {
                if seen.insert(key) {
                    if included.len() == max {
                        return Ok((included, true));
                    }
                    included.push(key);
                    frontier.push(key);
                }
            }
        }
        Ok((included, false))
    }

    /// One `_include` (`reverse` false: what `sources` point to) or `_revinclude` (`reverse`
    /// true: what points to `sources`).
    fn include(
        &self,
        conn: &mut DbConnection,
        scope: &AccessScope,
        include: &Include,
        sources: &[TypedKey],
        reverse: bool,
        max: usize,
    ) -> Result<Vec<i64>, SearchError> {
        let ids = self.search_ids()?;
        let source_type = std::slice::from_ref(&include.source_type);
        // `*` (no parameter): every reference parameter of the source type, so that the
        // index on `(param_id, target_id, ...)` still applies.
        let param_ids: Vec<i64> = match &include.param {
            Some(code) => source_type
                .iter()
                .flat_map(|t| ids.lookup(t, code))
                .map(i64::from)
                .collect(),
            None => ids.all(&include.source_type).map(i64::from).collect(),
        };
        if let Some(code) = &include.param {
            if param_ids.iter().any(|id| ids.is_pending(*id as i32)) {
                return Err(PlanError::Pending(code.clone()).into());
            }
        }
        let mut planner = Planner::new(Sql::new(self.backend), &ids, scope, 0);
        if !reverse {
            let keys: Vec<i64> = sources
                .iter()
                .filter(|s| s.res_type == include.source_type)
                .map(|s| s.res_key)
                .collect();
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            planner.sql.push(
                "SELECT DISTINCT t.res_key AS res_key FROM search_reference x JOIN resource t \
                 ON t.res_type = x.target_type AND t.res_id = x.target_id WHERE x.res_key IN ",
            );
            planner.sql.int_list(keys);
            planner.sql.push(" AND x.param_id IN ").int_list(param_ids);
            if let Some(target) = &include.target_type {
                planner.sql.push(" AND t.res_type = ").bind_text(target);
            }
            planner.sql.push(" AND NOT t.deleted");
            planner.scope("t");
        } else {
            let targets: Vec<&TypedKey> = sources
                .iter()
                .filter(|s| {
                    include
                        .target_type
                        .as_ref()
                        .is_none_or(|t| *t == s.res_type)
                })
                .collect();
            if targets.is_empty() {
                return Ok(Vec::new());
            }
            planner.sql.push(
                "SELECT DISTINCT s.res_key AS res_key FROM search_reference x JOIN resource s \
                 ON s.res_key = x.res_key WHERE s.res_type = ",
            );
            planner.sql.bind_text(&include.source_type);
            planner.sql.push(" AND x.param_id IN ").int_list(param_ids);
            planner.sql.push(" AND (");
            let mut types: Vec<&str> = targets.iter().map(|t| t.res_type.as_str()).collect();
            types.sort_unstable();
            types.dedup();
            for (i, ty) in types.iter().enumerate() {
                if i > 0 {
                    planner.sql.push(" OR ");
                }
                planner.sql.push("(x.target_type = ").bind_text(ty);
                planner.sql.push(" AND x.target_id IN ");
                planner.sql.bind_list(
                    targets
                        .iter()
                        .filter(|t| t.res_type == *ty)
                        .map(|t| t.res_id.as_str()),
                );
                planner.sql.push(")");
            }
            planner.sql.push(") AND NOT s.deleted");
            planner.scope("s");
        }
        // No more than the page may still take (the caller notices the excess).
        planner
            .sql
            .push(&format!(" LIMIT {}", max.saturating_add(1)));
        let rows: Vec<KeyOnly> = planner.sql.load(conn)?;
        Ok(rows.into_iter().map(|r| r.res_key).collect())
    }
}

/// The rows strictly after (or, going back, before) the cursor in the sort order
/// `(keys..., res_key ASC)`.
fn keyset(
    sql: &mut Sql,
    key: &str,
    keys: &[(&str, bool)],
    values: &[SortValue],
    res_key: i64,
    back: bool,
) {
    let Some((((expr, desc), value), rest)) = keys
        .iter()
        .zip(values)
        .collect::<Vec<_>>()
        .split_first()
        .map(|(f, r)| (*f, r.to_vec()))
    else {
        let op = if back { "<" } else { ">" };
        sql.push(&format!("{key} {op} ")).bind_int(res_key);
        return;
    };
    let greater = *desc == back;
    let op = if greater { ">" } else { "<" };
    sql.push(&format!("({expr} {op} ")).bind(value.bind());
    sql.push(&format!(" OR ({expr} = ")).bind(value.bind());
    sql.push(" AND ");
    let rest_keys: Vec<(&str, bool)> = rest.iter().map(|((e, d), _)| (*e, *d)).collect();
    let rest_values: Vec<SortValue> = rest.iter().map(|(_, v)| (*v).clone()).collect();
    keyset(sql, key, &rest_keys, &rest_values, res_key, back);
    sql.push("))");
}

fn sql_type(ty: SortType) -> &'static str {
    match ty {
        SortType::Int => "BIGINT",
        SortType::Float => "DOUBLE PRECISION",
        SortType::Text => "TEXT",
    }
}

impl SortValue {
    fn bind(&self) -> Bind {
        match self {
            SortValue::Int(v) => Bind::Int(*v),
            SortValue::Float(v) => Bind::Float(*v),
            SortValue::Text(v) => Bind::Text(v.clone()),
        }
    }
}

/// The current bodies of `keys`, in the order of `keys`.
fn bodies(
    conn: &mut DbConnection,
    backend: super::Backend,
    keys: &[i64],
) -> Result<Vec<Found>, SearchError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new(backend);
    sql.push(
        "SELECT r.res_key AS res_key, r.res_type AS res_type, r.res_id AS res_id, \
         r.version AS version, r.last_updated AS last_updated, v.body AS body \
         FROM resource r JOIN resource_version v ON v.res_key = r.res_key AND v.version = r.version \
         WHERE r.res_key IN ",
    );
    sql.int_list(keys.iter().copied());
    let rows: Vec<BodyRow> = sql.load(conn)?;
    let mut by_key: std::collections::HashMap<i64, BodyRow> =
        rows.into_iter().map(|r| (r.res_key, r)).collect();
    Ok(keys
        .iter()
        .filter_map(|k| by_key.remove(k))
        .filter_map(|r| {
            Some(Found {
                body: r.body?,
                res_type: r.res_type,
                res_id: r.res_id,
                version: r.version,
                last_updated: r.last_updated,
            })
        })
        .collect())
}

fn typed_keys(
    conn: &mut DbConnection,
    backend: super::Backend,
    keys: &[i64],
) -> Result<Vec<TypedKey>, SearchError> {
    let mut sql = Sql::new(backend);
    sql.push("SELECT res_key, res_type, res_id FROM resource WHERE res_key IN ");
    sql.int_list(keys.iter().copied());
    Ok(sql.load(conn)?)
}
