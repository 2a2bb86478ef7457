//! The search planner: from the clauses of a [`SearchQuery`] to SQL over the `resource` table
//! and the `search_*` index tables, with the caller's access scope inside it.
//!
//! Shape: `FROM (<keys of the driving clause>) d CROSS JOIN resource r WHERE r.res_key =
//! d.res_key AND r.res_type IN (..) AND NOT r.deleted AND <scope> AND <other clauses>`. The
//! most selective clause (see [`selectivity`]) produces the candidate keys from its own index
//! and comes first in the join (`CROSS JOIN` keeps SQLite from reordering); every other clause
//! is a correlated `EXISTS` probe on an index's `(res_key, param_id, ...)` primary key. Chains
//! and `_has` nest the same shape around the resources they join, scope included.
//!
//! [`SearchQuery`]: crate::fhir::search::query::SearchQuery

use super::index::cut;
use super::keys::{CompositeForm, ParamIds, COMPONENT_SEPARATOR};
use super::sql::{Bind, Sql};
use crate::access::AccessScope;
use crate::fhir::search::normalize::normalize;
use crate::fhir::search::query::{
    Clause, DateValue, NumberValue, ParamKey, Prefix, SortBy, SortKey, StringMode, SystemMatch,
    UriMode, Value,
};
use crate::fhir::search::{ucum, ParamType};

/// A search the index cannot answer (the parser accepts only indexed parameters, so this is
/// rare: an expression outside the supported FHIRPath subset, a sort on a composite).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("search parameter \"{0}\" is not indexed by this server")]
    NotIndexed(String),
    #[error(
        "search parameter \"{0}\" was added after resources it applies to were stored and is not \
         searchable until they are reindexed: POST [base]/$reindex"
    )]
    Pending(String),
    #[error("{0}")]
    Unsupported(String),
}

/// The index table a value lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    String,
    Token,
    Reference,
    Date,
    Number,
    Quantity,
    Uri,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::String => "search_string",
            Table::Token => "search_token",
            Table::Reference => "search_reference",
            Table::Date => "search_date",
            Table::Number => "search_number",
            Table::Quantity => "search_quantity",
            Table::Uri => "search_uri",
        }
    }

    fn of_kind(kind: ParamType) -> Option<Table> {
        Some(match kind {
            ParamType::String => Table::String,
            ParamType::Token => Table::Token,
            ParamType::Reference => Table::Reference,
            ParamType::Date => Table::Date,
            ParamType::Number => Table::Number,
            ParamType::Quantity => Table::Quantity,
            ParamType::Uri => Table::Uri,
            ParamType::Composite | ParamType::Special => return None,
        })
    }
}

/// Where a value is looked up: the table and the key-name suffix (`:text`...).
fn target_of(value: &Value) -> (Table, &'static str) {
    match value {
        Value::String { .. } => (Table::String, ""),
        Value::Token { .. } => (Table::Token, ""),
        Value::TokenText(_) => (Table::String, ":text"),
        Value::TokenOfType { .. } => (Table::Token, ":of-type"),
        Value::Reference { .. } | Value::ReferenceUrl(_) => (Table::Reference, ""),
        Value::ReferenceIdentifier { .. } => (Table::Token, ":identifier"),
        Value::Date(_) => (Table::Date, ""),
        Value::Number(_) => (Table::Number, ""),
        Value::Quantity { .. } => (Table::Quantity, ""),
        Value::Uri { .. } => (Table::Uri, ""),
        // Composites are planned component by component.
        Value::Composite(_) => (Table::Token, ""),
    }
}

/// Lower is more selective; `None` never drives (negations, `:missing`, `:contains`,
/// `_lastUpdated`...). A heuristic by kind: identifiers and references name few resources,
/// codes and statuses many, ranges more.
fn selectivity(clause: &Clause) -> Option<u8> {
    match clause {
        Clause::Id(_) => Some(0),
        Clause::Match {
            negate: false,
            param,
            values,
        } => values
            .iter()
            .map(|v| value_selectivity(param, v))
            .collect::<Option<Vec<u8>>>()?
            .into_iter()
            .max(),
        Clause::Match { negate: true, .. } | Clause::Missing { .. } | Clause::LastUpdated(_) => {
            None
        }
        Clause::Chain { inner, .. } => Some(selectivity(inner)?.saturating_add(1)),
        Clause::Has { inner, .. } => Some(selectivity(inner)?.saturating_add(2)),
    }
}

fn value_selectivity(param: &ParamKey, value: &Value) -> Option<u8> {
    let identifying = matches!(
        param.code.as_str(),
        "identifier" | "email" | "phone" | "telecom" | "url"
    );
    Some(match value {
        Value::Reference { .. } | Value::ReferenceUrl(_) => 1,
        Value::TokenOfType { .. } | Value::ReferenceIdentifier { .. } => 1,
        Value::Token { code: Some(_), .. } if identifying => 1,
        Value::String {
            mode: StringMode::Exact,
            ..
        } => 3,
        Value::String {
            mode: StringMode::StartsWith,
            ..
        }
        | Value::Uri { .. } => 4,
        Value::Token { code: Some(_), .. } => 5,
        Value::TokenText(_) => 6,
        Value::Composite(parts) => value_selectivity(param, parts.first()?)?,
        Value::Date(_) | Value::Number(_) | Value::Quantity { .. } => 8,
        Value::Token { code: None, .. }
        | Value::String {
            mode: StringMode::Contains,
            ..
        } => return None,
    })
}

/// The clause a context is driven from, if any is selective enough.
fn driver(clauses: &[Clause]) -> Option<usize> {
    clauses
        .iter()
        .enumerate()
        .filter_map(|(i, c)| selectivity(c).map(|s| (s, i)))
        .min()
        .map(|(_, i)| i)
}

/// The SQL type of a sort key, so that cursors bind it back with the same type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortType {
    Int,
    Float,
    Text,
}

/// Writes the filters of one search into a [`Sql`].
pub struct Planner<'a> {
    pub sql: Sql,
    ids: &'a ParamIds,
    scope: &'a AccessScope,
    /// For `ap` on dates: "approximately" is relative to how far the value is from now.
    now: i64,
    aliases: usize,
    /// PostgreSQL: the aliases whose rows come from a driver `d{alias}`; their probes are
    /// tied to the driver's key (see [`Planner::key`]).
    driven: Vec<String>,
    /// PostgreSQL: the driven aliases whose driver streams its keys in order (a compartment,
    /// one exact value): their probes end with `OFFSET 0` (see [`Planner::fence`]).
    fenced: Vec<String>,
}

impl<'a> Planner<'a> {
    pub fn new(sql: Sql, ids: &'a ParamIds, scope: &'a AccessScope, now: i64) -> Planner<'a> {
        Planner {
            sql,
            ids,
            scope,
            now,
            aliases: 0,
            driven: Vec::new(),
            fenced: Vec::new(),
        }
    }

    /// The key column that probes of the resource row `alias` are tied to: on PostgreSQL,
    /// when the rows come from a driver, the driver's key `d{alias}.res_key` (equal to
    /// `{alias}.res_key`), so that PostgreSQL can check the probes against the driver's keys
    /// (a merge or hash semi-join of two index scans, or a probe per key, by its statistics)
    /// before it looks up the resource rows. Tied to the resource row, which is a lateral
    /// lookup there, every driver key was looked up before any probe could discard it.
    fn key(&self, alias: &str) -> String {
        if self.driven.iter().any(|a| a == alias) {
            format!("d{alias}.res_key")
        } else {
            format!("{alias}.res_key")
        }
    }

    /// What ends a probe of the resource row `alias`: ` OFFSET 0` on PostgreSQL when its
    /// driver streams keys in order, which keeps the probe a correlated subplan run for each
    /// key as it comes (PostgreSQL does not flatten a subquery with `OFFSET` into a join), so
    /// that `ORDER BY <driver key> LIMIT n` stops at the page. As a semi-join PostgreSQL
    /// hashed the probed index (every date of the parameter, 1,228 buffers, 40 ms) before the
    /// first row of a population search, where probing the first 347 keys found the page.
    /// Elsewhere (a driver that is deduplicated, hence read whole) the probes are left to
    /// PostgreSQL's statistics: intersecting two index scans beats a probe per key there.
    fn fence(&self, alias: &str) -> &'static str {
        if self.fenced.iter().any(|a| a == alias) {
            " OFFSET 0"
        } else {
            ""
        }
    }

    /// Whether the driver keys of `clause` stream in key order without `DISTINCT` (see
    /// [`Planner::group`]).
    fn streams(&self, types: &[String], clause: &Clause) -> bool {
        let Clause::Match { values, param, .. } = clause else {
            return false;
        };
        let groups = groups(values);
        let [group] = groups.as_slice() else {
            return false;
        };
        if matches!(group[0], Value::Composite(_)) {
            return false;
        }
        let name = format!("{}{}", param.code, target_of(group[0]).1);
        group.len() == 1
            && types.iter().all(|t| self.ids.lookup(t, &name).len() <= 1)
            && one_row_per_resource(group[0])
    }

    fn alias(&mut self, prefix: &str) -> String {
        self.aliases += 1;
        format!("{prefix}{}", self.aliases)
    }

    /// The ids of key `name` over `types`; an error when no type indexes it, or when one
    /// still waits for a reindex.
    fn param_ids(&self, types: &[String], name: &str) -> Result<Vec<i64>, PlanError> {
        let ids = self.searchable(types.iter().flat_map(|t| self.ids.lookup(t, name)), name)?;
        if ids.is_empty() {
            return Err(PlanError::NotIndexed(code_of(name).to_string()));
        }
        Ok(ids)
    }

    /// `ids`, unless one of them waits for a reindex.
    fn searchable(
        &self,
        ids: impl IntoIterator<Item = i32>,
        name: &str,
    ) -> Result<Vec<i64>, PlanError> {
        ids.into_iter()
            .map(|id| match self.ids.is_pending(id) {
                true => Err(PlanError::Pending(code_of(name).to_string())),
                false => Ok(i64::from(id)),
            })
            .collect()
    }

    /// `FROM <driver> d CROSS JOIN resource alias WHERE alias.res_key = d.res_key AND
    /// <conditions>`: the resources of `types` (or of the `compartment`) for which every clause
    /// holds. The most selective clause produces the candidate keys and comes first in the
    /// join (`CROSS JOIN` keeps SQLite from reordering it); the rest are probes.
    ///
    /// Returns the column to order and page by: the driver's key when there is a driver (equal
    /// to `alias.res_key`, but ordering by it lets the driving index stream in key order and
    /// the page stop early), else `alias.res_key`.
    pub fn context(
        &mut self,
        alias: &str,
        types: &[String],
        clauses: &[Clause],
        compartment: Option<&str>,
    ) -> Result<String, PlanError> {
        let driver = driver(clauses);
        self.from(alias, types, clauses, driver, compartment)?;
        self.sql.push(" WHERE ");
        self.conditions(alias, types, clauses, driver, compartment)?;
        Ok(if driver.is_some() || compartment.is_some() {
            format!("d{alias}.res_key")
        } else {
            format!("{alias}.res_key")
        })
    }

    /// The FROM part of a context: the driver's keys joined to the resource rows, or the
    /// resource table alone.
    fn from(
        &mut self,
        alias: &str,
        types: &[String],
        clauses: &[Clause],
        driver: Option<usize>,
        compartment: Option<&str>,
    ) -> Result<(), PlanError> {
        match (driver, compartment) {
            (Some(i), _) => {
                self.sql.push("(");
                self.driver_keys(types, &clauses[i])?;
                let join = self.sql.resource_of(&format!("d{alias}"), alias);
                self.sql.push(&format!(") d{alias}")).push(&join);
                if self.sql.lateral() {
                    self.driven.push(alias.to_string());
                    if self.streams(types, &clauses[i]) {
                        self.fenced.push(alias.to_string());
                    }
                }
            }
            (None, Some(patient)) => {
                self.sql
                    .push("(SELECT res_key FROM resource_compartment WHERE patient = ");
                self.sql.bind_text(patient);
                let join = self.sql.resource_of(&format!("d{alias}"), alias);
                self.sql.push(&format!(") d{alias}")).push(&join);
                if self.sql.lateral() {
                    // The compartment's primary key streams its keys in order.
                    self.driven.push(alias.to_string());
                    self.fenced.push(alias.to_string());
                }
            }
            (None, None) => {
                self.sql.push(&format!("resource {alias}"));
            }
        }
        Ok(())
    }

    /// The WHERE part of a context (without the keyword).
    fn conditions(
        &mut self,
        alias: &str,
        types: &[String],
        clauses: &[Clause],
        driver: Option<usize>,
        compartment: Option<&str>,
    ) -> Result<(), PlanError> {
        if driver.is_some() || compartment.is_some() {
            self.sql
                .push(&format!("{alias}.res_key = d{alias}.res_key AND "));
        }
        self.sql.push(alias).push(".res_type IN ");
        self.sql.bind_list(types.iter().map(String::as_str));
        self.sql.push(" AND NOT ").push(alias).push(".deleted");
        self.scope(alias);
        if let (Some(patient), Some(_)) = (compartment, driver) {
            let key = self.key(alias);
            self.sql.push(&format!(
                " AND {key} IN (SELECT res_key FROM resource_compartment WHERE patient = "
            ));
            self.sql.bind_text(patient).push(")");
        }
        for (i, clause) in clauses.iter().enumerate() {
            if Some(i) != driver {
                self.sql.push(" AND ");
                self.probe(alias, types, clause)?;
            }
        }
        Ok(())
    }

    /// ` AND alias.res_key IN (<keys of the scope's compartments>)`, or nothing.
    pub fn scope(&mut self, alias: &str) {
        if let Some(patients) = self.scope.patient_ids() {
            let key = self.key(alias);
            // Left to PostgreSQL's statistics even after a streaming driver: under a narrow
            // scope it reads the scope's compartments first (a population search under one
            // patient's scope: 3,881 buffers, against 20,081 as a probe per key).
            self.sql
                .push(" AND ")
                .push(&key)
                .push(" IN (SELECT res_key FROM resource_compartment WHERE patient IN ");
            self.sql.bind_list(patients.iter().map(String::as_str));
            self.sql.push(")");
        }
        if let Some(types) = self.scope.types() {
            self.sql.push(" AND ").push(alias).push(".res_type IN ");
            self.sql.bind_list(types.iter().map(String::as_str));
        }
    }

    /// `SELECT DISTINCT ... res_key FROM ... WHERE ...`: the keys of the resources of `types`
    /// that satisfy `clause`, read from the clause's own index.
    fn driver_keys(&mut self, types: &[String], clause: &Clause) -> Result<(), PlanError> {
        let hint = self.sql.probe_hint();
        match clause {
            Clause::Id(ids) => {
                self.sql
                    .push("SELECT res_key FROM resource WHERE res_type IN ");
                self.sql.bind_list(types.iter().map(String::as_str));
                self.sql.push(" AND res_id IN ");
                self.sql.bind_list(ids.iter().map(String::as_str));
            }
            Clause::Match { param, values, .. } => {
                for (i, group) in groups(values).iter().enumerate() {
                    if i > 0 {
                        self.sql.push(" UNION ");
                    }
                    self.group(None, types, param, group)?;
                }
            }
            Clause::Chain {
                param,
                target_types,
                inner,
            } => {
                let ids = self.param_ids(types, &param.code)?;
                let (x, t) = (self.alias("c"), self.alias("t"));
                let inner = std::slice::from_ref(inner.as_ref());
                let driver = driver(inner);
                self.sql.push(&format!("SELECT DISTINCT {x}.res_key FROM "));
                self.from(&t, target_types, inner, driver, None)?;
                self.sql
                    .push(&format!(" CROSS JOIN search_reference {x} WHERE "));
                self.conditions(&t, target_types, inner, driver, None)?;
                self.sql.push(&format!(
                    " AND {x}.target_type = {t}.res_type AND {x}.target_id = {t}.res_id AND {x}.param_id IN "
                ));
                self.sql.int_list(ids);
            }
            Clause::Has {
                source_type,
                param,
                inner,
            } => {
                let sources = std::slice::from_ref(source_type);
                let ids = self.param_ids(sources, &param.code)?;
                let (x, s, tr) = (self.alias("h"), self.alias("s"), self.alias("r"));
                let inner = std::slice::from_ref(inner.as_ref());
                let driver = driver(inner);
                self.sql
                    .push(&format!("SELECT DISTINCT {tr}.res_key FROM "));
                self.from(&s, sources, inner, driver, None)?;
                self.sql.push(&format!(
                    " CROSS JOIN search_reference {x} CROSS JOIN resource {tr} WHERE "
                ));
                self.conditions(&s, sources, inner, driver, None)?;
                self.sql.push(&format!(
                    " AND {x}.res_key = {s}.res_key AND {hint}{x}.param_id IN "
                ));
                self.sql.int_list(ids);
                self.sql.push(&format!(" AND {x}.target_type IN "));
                self.sql.bind_list(types.iter().map(String::as_str));
                self.sql.push(&format!(
                    " AND {tr}.res_type = {x}.target_type AND {tr}.res_id = {x}.target_id"
                ));
            }
            Clause::LastUpdated(_) | Clause::Missing { .. } => {
                return Err(PlanError::Unsupported(
                    "internal: this clause cannot drive a search".into(),
                ))
            }
        }
        Ok(())
    }

    /// The clause as a condition on the resource row `alias`: `EXISTS` probes that start from
    /// the row's key (the `+` before `param_id` keeps SQLite on the `(res_key, ...)` primary
    /// key rather than a `param_id` index that would scan the parameter's whole range).
    fn probe(&mut self, alias: &str, types: &[String], clause: &Clause) -> Result<(), PlanError> {
        let hint = self.sql.probe_hint();
        match clause {
            Clause::Id(ids) => {
                self.sql.push(alias).push(".res_id IN ");
                self.sql.bind_list(ids.iter().map(String::as_str));
            }
            Clause::LastUpdated(values) => {
                let low = format!("{alias}.last_updated");
                let high = format!("({alias}.last_updated + 1)");
                self.sql.push("(");
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        self.sql.push(" OR ");
                    }
                    self.date(&low, &high, v);
                }
                self.sql.push(")");
            }
            Clause::Match {
                param,
                negate,
                values,
            } => {
                if *negate {
                    self.sql.push("NOT ");
                }
                self.sql.push("(");
                for (i, group) in groups(values).iter().enumerate() {
                    if i > 0 {
                        self.sql.push(" OR ");
                    }
                    self.sql.push("EXISTS (");
                    self.group(Some(alias), types, param, group)?;
                    let fence = self.fence(alias);
                    self.sql.push(fence).push(")");
                }
                self.sql.push(")");
            }
            Clause::Missing { param, missing } => {
                let table = Table::of_kind(param.kind).ok_or_else(|| {
                    PlanError::Unsupported(format!(
                        ":missing is not supported on the {:?} parameter \"{}\"",
                        param.kind, param.code
                    ))
                })?;
                let ids = self.param_ids(types, &param.code)?;
                if *missing {
                    self.sql.push("NOT ");
                }
                let (x, key) = (self.alias("m"), self.key(alias));
                self.sql.push(&format!(
                    "EXISTS (SELECT 1 FROM {} {x} WHERE {x}.res_key = {key} AND {hint}{x}.param_id IN ",
                    table.name()
                ));
                let fence = self.fence(alias);
                self.sql.int_list(ids).push(fence).push(")");
            }
            Clause::Chain {
                param,
                target_types,
                inner,
            } => {
                let ids = self.param_ids(types, &param.code)?;
                let (x, t, key) = (self.alias("c"), self.alias("t"), self.key(alias));
                self.sql.push(&format!(
                    "EXISTS (SELECT 1 FROM search_reference {x} CROSS JOIN resource {t} \
                     WHERE {x}.res_key = {key} AND {hint}{x}.param_id IN "
                ));
                self.sql.int_list(ids);
                self.sql.push(&format!(
                    " AND {t}.res_type = {x}.target_type AND {t}.res_id = {x}.target_id AND "
                ));
                let inner = std::slice::from_ref(inner.as_ref());
                self.conditions(&t, target_types, inner, None, None)?;
                let fence = self.fence(alias);
                self.sql.push(fence).push(")");
            }
            Clause::Has {
                source_type,
                param,
                inner,
            } => {
                let sources = std::slice::from_ref(source_type);
                let ids = self.param_ids(sources, &param.code)?;
                let (x, s) = (self.alias("h"), self.alias("s"));
                self.sql.push(&format!(
                    "EXISTS (SELECT 1 FROM search_reference {x} CROSS JOIN resource {s} \
                     WHERE {x}.target_type = {alias}.res_type AND {x}.target_id = {alias}.res_id AND {x}.param_id IN "
                ));
                self.sql.int_list(ids);
                self.sql
                    .push(&format!(" AND {s}.res_key = {x}.res_key AND "));
                let inner = std::slice::from_ref(inner.as_ref());
                self.conditions(&s, sources, inner, None, None)?;
                let fence = self.fence(alias);
                self.sql.push(fence).push(")");
            }
        }
        Ok(())
    }

    /// One group of values from one index table: with `alias`, the body of an `EXISTS` probe
    /// on that resource; without, a `SELECT` of the matching keys.
    fn group(
        &mut self,
        alias: Option<&str>,
        types: &[String],
        param: &ParamKey,
        group: &[&Value],
    ) -> Result<(), PlanError> {
        let hint = self.sql.probe_hint();
        if let [Value::Composite(parts)] = group {
            return self.composite(alias, types, param, parts);
        }
        let (table, suffix) = target_of(group[0]);
        let name = format!("{}{suffix}", param.code);
        let ids = self.param_ids(types, &name)?;
        // A union parameter (`combo-code`) reads several keys of one type: a resource may
        // match under each.
        let one_key_per_type = types.iter().all(|t| self.ids.lookup(t, &name).len() <= 1);
        let x = self.alias("x");
        let table = table.name();
        match alias {
            Some(alias) => {
                let key = self.key(alias);
                self.sql.push(&format!(
                    "SELECT 1 FROM {table} {x} WHERE {x}.res_key = {key} AND {hint}{x}.param_id IN "
                ))
            }
            None => {
                // One exact value of one key matches at most one row per resource (the
                // primary key), so the keys need no DISTINCT and stream from the index in key
                // order.
                let unique = group.len() == 1 && one_key_per_type && one_row_per_resource(group[0]);
                let distinct = if unique { "" } else { "DISTINCT " };
                self.sql.push(&format!(
                    "SELECT {distinct}{x}.res_key FROM {table} {x} WHERE {x}.param_id IN "
                ))
            }
        };
        self.sql.int_list(ids).push(" AND (");
        for (i, value) in group.iter().enumerate() {
            if i > 0 {
                self.sql.push(" OR ");
            }
            self.sql.push("(");
            self.value(&x, value)?;
            self.sql.push(")");
        }
        self.sql.push(")");
        Ok(())
    }

    /// A composite value: matched by any of the parameter's [`CompositeForm`]s (one for most
    /// composites, two for a union such as `combo-code-value-quantity`). With `alias`, the body
    /// of an `EXISTS` probe; without, a `SELECT` of the matching keys.
    fn composite(
        &mut self,
        alias: Option<&str>,
        types: &[String],
        param: &ParamKey,
        parts: &[Value],
    ) -> Result<(), PlanError> {
        // The forms of every type, merged when their keys are the same.
        let mut forms: Vec<(CompositeForm, Vec<Vec<i64>>)> = Vec::new();
        for ty in types {
            for form in self.ids.composite_forms(ty, &param.code) {
                if form.keys.len() != parts.len() {
                    continue;
                }
                let ids: Vec<Vec<i64>> = form
                    .keys
                    .iter()
                    .zip(parts)
                    .map(|(key, part)| {
                        let name = format!("{key}{}", target_of(part).1);
                        self.searchable(self.ids.lookup(ty, &name), &param.code)
                    })
                    .collect::<Result<_, _>>()?;
                if ids.iter().any(Vec::is_empty) {
                    continue;
                }
                match forms.iter_mut().find(|(f, _)| *f == form) {
                    Some((_, all)) => all.iter_mut().zip(ids).for_each(|(a, b)| a.extend(b)),
                    None => forms.push((form, ids)),
                }
            }
        }
        if forms.is_empty() {
            return Err(PlanError::Unsupported(format!(
                "composite parameter \"{}\" needs one value per component, separated by $",
                param.code
            )));
        }
        match alias {
            Some(alias) if forms.len() > 1 => {
                self.sql.push("SELECT 1 WHERE ");
                for (i, (form, ids)) in forms.iter().enumerate() {
                    if i > 0 {
                        self.sql.push(" OR ");
                    }
                    self.sql.push("EXISTS (");
                    self.composite_form(Some(alias), form, ids, parts)?;
                    self.sql.push(")");
                }
            }
            _ => {
                for (i, (form, ids)) in forms.iter().enumerate() {
                    if i > 0 {
                        self.sql.push(" UNION ");
                    }
                    self.composite_form(alias, form, ids, parts)?;
                }
            }
        }
        Ok(())
    }

    /// One form of a composite: one index row per component (`ids[i]` its keys), tied by the
    /// same `grp` when the form is grouped.
    fn composite_form(
        &mut self,
        alias: Option<&str>,
        form: &CompositeForm,
        ids: &[Vec<i64>],
        parts: &[Value],
    ) -> Result<(), PlanError> {
        let joined: Vec<(String, Table)> = parts
            .iter()
            .map(|part| (self.alias("k"), target_of(part).0))
            .collect();
        let first = joined[0].0.clone();
        let tables: Vec<String> = joined
            .iter()
            .map(|(k, table)| format!("{} {k}", table.name()))
            .collect();
        match alias {
            Some(alias) => {
                let key = self.key(alias);
                self.sql.push(&format!(
                    "SELECT 1 FROM {} WHERE {first}.res_key = {key} AND ",
                    tables.join(" CROSS JOIN ")
                ))
            }
            None => self.sql.push(&format!(
                "SELECT DISTINCT {first}.res_key FROM {} WHERE ",
                tables.join(" CROSS JOIN ")
            )),
        };
        for (i, ((k, _), part)) in joined.iter().zip(parts).enumerate() {
            if i > 0 {
                self.sql
                    .push(&format!(" AND {k}.res_key = {first}.res_key AND "));
                if form.grouped {
                    self.sql.push(&format!("{k}.grp = {first}.grp AND "));
                }
            }
            // The first component is found through its value index when driving.
            let hint = if i == 0 && alias.is_none() {
                ""
            } else {
                self.sql.probe_hint()
            };
            self.sql.push(&format!("{hint}{k}.param_id IN "));
            self.sql.int_list(ids[i].iter().copied()).push(" AND ");
            self.value(k, part)?;
        }
        Ok(())
    }

    /// The predicate of one value on the index row `x`.
    fn value(&mut self, x: &str, value: &Value) -> Result<(), PlanError> {
        let sql = &mut self.sql;
        match value {
            Value::String { mode, text } => match mode {
                StringMode::StartsWith => starts_with(sql, &format!("{x}.normalized"), &cut(text)),
                StringMode::Exact => {
                    sql.push(&format!("{x}.normalized = "))
                        .bind_text(&cut(&normalize(text)));
                    sql.push(&format!(" AND {x}.exact = "))
                        .bind_text(&cut(text));
                }
                StringMode::Contains => {
                    sql.push(&format!("{x}.normalized LIKE "))
                        .bind(Bind::Text(format!("%{}%", escape_like(text))));
                    sql.push(" ESCAPE '\\'");
                }
            },
            Value::TokenText(text) => starts_with(sql, &format!("{x}.normalized"), &cut(text)),
            Value::Token { system, code } => token(sql, x, system, code.as_deref()),
            Value::ReferenceIdentifier { system, value } => token(sql, x, system, Some(value)),
            Value::TokenOfType {
                type_system,
                type_code,
                value,
            } => {
                sql.push(&format!("{x}.code = ")).bind_text(&cut(value));
                sql.push(&format!(" AND {x}.system = "))
                    .bind_text(&cut(&format!("{type_system}|{type_code}")));
            }
            Value::Reference {
                resource_type, id, ..
            } => {
                sql.push(&format!("{x}.target_id = ")).bind_text(&cut(id));
                match resource_type {
                    Some(t) => sql.push(&format!(" AND {x}.target_type = ")).bind_text(t),
                    None => sql.push(&format!(" AND {x}.target_type <> ''")),
                };
            }
            Value::ReferenceUrl(url) => {
                // The repeated `<> ''` lets SQLite use the partial index on URLs.
                sql.push(&format!("{x}.url = ")).bind_text(&cut(url));
                sql.push(&format!(" AND {x}.url <> ''"));
            }
            Value::Date(date) => {
                let (low, high) = (format!("{x}.low"), format!("{x}.high"));
                self.date(&low, &high, date);
            }
            Value::Number(n) => number(sql, &format!("{x}.low"), &format!("{x}.high"), n),
            Value::Quantity {
                number: n,
                system,
                code,
            } => quantity(sql, x, n, system, code.as_deref()),
            Value::Uri { mode, text } => match mode {
                UriMode::Exact => {
                    sql.push(&format!("{x}.uri = ")).bind_text(&cut(text));
                }
                UriMode::Below => {
                    // The URI itself, or anything under it as a path.
                    let base = text.trim_end_matches('/');
                    sql.push(&format!("({x}.uri = ")).bind_text(base);
                    sql.push(" OR (");
                    starts_with(sql, &format!("{x}.uri"), &format!("{base}/"));
                    sql.push("))");
                }
                UriMode::Above => {
                    sql.push(&format!("{x}.uri IN "));
                    sql.bind_list(uri_ancestors(text).iter().map(String::as_str));
                }
            },
            Value::Composite(_) => {
                return Err(PlanError::Unsupported(
                    "a composite cannot nest inside a composite".into(),
                ))
            }
        }
        Ok(())
    }

    /// A date comparison of the row interval `[low, high)` (column expressions) with `d`.
    fn date(&mut self, low: &str, high: &str, d: &DateValue) {
        let sql = &mut self.sql;
        let (sl, sh) = (d.low, d.high);
        match d.prefix {
            Prefix::Eq => {
                sql.push(&format!("({low} >= ")).bind_int(sl);
                sql.push(&format!(" AND {high} <= ")).bind_int(sh).push(")");
            }
            Prefix::Ne => {
                sql.push(&format!("({low} < ")).bind_int(sl);
                sql.push(&format!(" OR {high} > ")).bind_int(sh).push(")");
            }
            Prefix::Gt => {
                sql.push(&format!("{high} > ")).bind_int(sh);
            }
            Prefix::Lt => {
                sql.push(&format!("{low} < ")).bind_int(sl);
            }
            Prefix::Ge => {
                sql.push(&format!("({high} > ")).bind_int(sh);
                sql.push(&format!(" OR ({low} >= ")).bind_int(sl);
                sql.push(&format!(" AND {high} <= "))
                    .bind_int(sh)
                    .push("))");
            }
            Prefix::Le => {
                sql.push(&format!("({low} < ")).bind_int(sl);
                sql.push(&format!(" OR ({low} >= ")).bind_int(sl);
                sql.push(&format!(" AND {high} <= "))
                    .bind_int(sh)
                    .push("))");
            }
            Prefix::Sa => {
                sql.push(&format!("{low} >= ")).bind_int(sh);
            }
            Prefix::Eb => {
                sql.push(&format!("{high} <= ")).bind_int(sl);
            }
            Prefix::Ap => {
                // 10% of the distance to now, at least the value's own precision.
                let margin = (self.now.saturating_sub(sl)).unsigned_abs() / 10;
                let margin = i64::try_from(margin).unwrap_or(i64::MAX);
                sql.push(&format!("({low} < "))
                    .bind_int(sh.saturating_add(margin));
                sql.push(&format!(" AND {high} > "))
                    .bind_int(sl.saturating_sub(margin))
                    .push(")");
            }
        }
    }

    /// A sort key of the resource `alias`: its SQL expression and type. Several values sort
    /// by the lowest ascending and by the highest descending; resources without a value come
    /// last either way.
    pub fn sort_key(
        &self,
        alias: &str,
        types: &[String],
        key: &SortKey,
    ) -> Result<(String, SortType), PlanError> {
        let desc = key.descending;
        let hint = self.sql.probe_hint();
        let param = match &key.by {
            SortBy::Id => return Ok((format!("{alias}.res_id"), SortType::Text)),
            SortBy::LastUpdated => return Ok((format!("{alias}.last_updated"), SortType::Int)),
            SortBy::Param(param) => param,
        };
        let ids = self.param_ids(types, &param.code)?;
        let (table, column, ty) = match param.kind {
            ParamType::Date => (
                Table::Date,
                if desc { "o.high" } else { "o.low" },
                SortType::Int,
            ),
            ParamType::Number => (
                Table::Number,
                if desc { "o.high" } else { "o.low" },
                SortType::Float,
            ),
            // In canonical units where the unit converts, so that 500 g sorts before 72 kg.
            ParamType::Quantity => (
                Table::Quantity,
                if desc {
                    "CASE WHEN o.canon_unit <> '' THEN o.canon_high ELSE o.high END"
                } else {
                    "CASE WHEN o.canon_unit <> '' THEN o.canon_low ELSE o.low END"
                },
                SortType::Float,
            ),
            ParamType::String => (Table::String, "o.normalized", SortType::Text),
            ParamType::Token => (Table::Token, "o.code", SortType::Text),
            ParamType::Reference => (Table::Reference, "o.target_id", SortType::Text),
            ParamType::Uri => (Table::Uri, "o.uri", SortType::Text),
            ParamType::Composite | ParamType::Special => {
                return Err(PlanError::Unsupported(format!(
                    "cannot sort by the {:?} parameter \"{}\"",
                    param.kind, param.code
                )))
            }
        };
        let aggregate = if desc { "MAX" } else { "MIN" };
        let missing = match (ty, desc) {
            // Typed, so that PostgreSQL does not widen the column to numeric.
            (SortType::Int, false) => format!("CAST({} AS BIGINT)", i64::MAX),
            (SortType::Int, true) => format!("CAST({} AS BIGINT)", i64::MIN + 1),
            (SortType::Float, false) => "CAST(1e308 AS DOUBLE PRECISION)".to_string(),
            (SortType::Float, true) => "CAST(-1e308 AS DOUBLE PRECISION)".to_string(),
            (SortType::Text, false) => format!("'{}'", char::MAX),
            (SortType::Text, true) => "''".to_string(),
        };
        let list = ids
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        Ok((
            format!(
                "COALESCE((SELECT {aggregate}({column}) FROM {} o WHERE o.res_key = {alias}.res_key AND {hint}o.param_id IN ({list})), {missing})",
                table.name()
            ),
            ty,
        ))
    }
}

/// The parameter code of a key name (`code:text`, `combo$1` -> `code`, `combo`).
fn code_of(name: &str) -> &str {
    name.split([':', COMPONENT_SEPARATOR])
        .next()
        .unwrap_or(name)
}

/// Whether a value can match only one index row of a resource: every column of the row's
/// primary key after `(res_key, param_id, grp)` is fixed by it (plain parameters have `grp` 0).
fn one_row_per_resource(value: &Value) -> bool {
    matches!(
        value,
        Value::Token {
            system: SystemMatch::Is(_) | SystemMatch::Absent,
            code: Some(_),
        } | Value::TokenOfType { .. }
            | Value::ReferenceIdentifier {
                system: SystemMatch::Is(_) | SystemMatch::Absent,
                ..
            }
            | Value::String {
                mode: StringMode::Exact,
                ..
            }
            | Value::Uri {
                mode: UriMode::Exact,
                ..
            }
    )
}

/// The values of one clause grouped by the index they are looked up in (`a,b` on one table is
/// one probe with `OR`); each composite value is a group of its own.
fn groups(values: &[Value]) -> Vec<Vec<&Value>> {
    let mut groups: Vec<Vec<&Value>> = Vec::new();
    for value in values {
        let joins = !matches!(value, Value::Composite(_));
        match groups.iter_mut().find(|g| {
            joins && !matches!(g[0], Value::Composite(_)) && target_of(g[0]) == target_of(value)
        }) {
            Some(group) => group.push(value),
            None => groups.push(vec![value]),
        }
    }
    groups
}

fn token(sql: &mut Sql, x: &str, system: &SystemMatch, code: Option<&str>) {
    let mut and = "";
    if let Some(code) = code {
        sql.push(&format!("{x}.code = ")).bind_text(&cut(code));
        and = " AND ";
    }
    match system {
        SystemMatch::Any => {
            if code.is_none() {
                sql.push("1 = 1");
            }
        }
        SystemMatch::Absent => {
            sql.push(&format!("{and}{x}.system = ''"));
        }
        SystemMatch::Is(s) => {
            sql.push(&format!("{and}{x}.system = ")).bind_text(&cut(s));
        }
    }
}

/// A quantity: in canonical UCUM units when the search gives a UCUM unit that has a canonical
/// form (`5.4|http://unitsofmeasure.org|mmol/L` finds `5400 umol/L`), else the number with
/// the unit compared as written (`value||code` matches the code or the unit text).
fn quantity(sql: &mut Sql, x: &str, n: &NumberValue, system: &SystemMatch, code: Option<&str>) {
    let is_ucum = matches!(system, SystemMatch::Is(s) if s == ucum::SYSTEM);
    if let Some(canonical) = code.filter(|_| is_ucum).and_then(ucum::search_canonical) {
        let f = canonical.factor;
        let scaled = NumberValue {
            prefix: n.prefix,
            value: n.value * f,
            low: n.low * f,
            high: n.high * f,
        };
        sql.push(&format!("{x}.canon_unit = "))
            .bind_text(&canonical.unit);
        sql.push(" AND ");
        number(
            sql,
            &format!("{x}.canon_low"),
            &format!("{x}.canon_high"),
            &scaled,
        );
        return;
    }
    number(sql, &format!("{x}.low"), &format!("{x}.high"), n);
    if let Some(code) = code {
        sql.push(&format!(" AND {x}.code = ")).bind_text(&cut(code));
        match system {
            SystemMatch::Any => {}
            SystemMatch::Absent => {
                sql.push(&format!(" AND {x}.system = ''"));
            }
            SystemMatch::Is(s) => {
                sql.push(&format!(" AND {x}.system = ")).bind_text(&cut(s));
            }
        }
    }
}

/// Numbers and quantities: the row holds `[low, high]`, equal for a plain value.
fn number(sql: &mut Sql, low: &str, high: &str, n: &NumberValue) {
    // A value with more digits than a double holds has a precision range narrower than one
    // step of f64: widen it to at least the value itself, so that a value equals itself.
    let n = &NumberValue {
        low: n.low.min(n.value),
        high: n.high.max(next_up(n.value)),
        ..*n
    };
    match n.prefix {
        Prefix::Eq => {
            sql.push(&format!("({low} >= ")).bind_float(n.low);
            sql.push(&format!(" AND {high} < "))
                .bind_float(n.high)
                .push(")");
        }
        Prefix::Ne => {
            sql.push(&format!("({low} < ")).bind_float(n.low);
            sql.push(&format!(" OR {high} >= "))
                .bind_float(n.high)
                .push(")");
        }
        Prefix::Gt => {
            sql.push(&format!("{high} > ")).bind_float(n.value);
        }
        Prefix::Lt => {
            sql.push(&format!("{low} < ")).bind_float(n.value);
        }
        Prefix::Ge => {
            sql.push(&format!("{high} >= ")).bind_float(n.value);
        }
        Prefix::Le => {
            sql.push(&format!("{low} <= ")).bind_float(n.value);
        }
        // As gt/lt: R4 ignores the implicit precision for these prefixes.
        Prefix::Sa => {
            sql.push(&format!("{low} > ")).bind_float(n.value);
        }
        Prefix::Eb => {
            sql.push(&format!("{high} < ")).bind_float(n.value);
        }
        Prefix::Ap => {
            // Within 10% of the value, and never tighter than its precision.
            let margin = (n.value.abs() / 10.0).max((n.high - n.low) / 2.0);
            sql.push(&format!("({low} <= "))
                .bind_float(n.value + margin);
            sql.push(&format!(" AND {high} >= "))
                .bind_float(n.value - margin)
                .push(")");
        }
    }
}

/// The smallest double above `v` (`f64::next_up`, stable only since Rust 1.86).
fn next_up(v: f64) -> f64 {
    if v.is_nan() || v == f64::INFINITY {
        return v;
    }
    if v == 0.0 {
        return f64::from_bits(1);
    }
    let bits = v.to_bits();
    f64::from_bits(if v > 0.0 { bits + 1 } else { bits - 1 })
}

/// `column` starts with `prefix`: a range on the index, not `LIKE`, so that SQLite and
/// PostgreSQL both use the B-tree with a bound value. String texts arrive normalised by the
/// query parser (`fhir::search::query`), like the indexed values they are compared with.
fn starts_with(sql: &mut Sql, column: &str, prefix: &str) {
    sql.push(&format!("{column} >= ")).bind_text(prefix);
    if let Some(upper) = successor(prefix) {
        sql.push(&format!(" AND {column} < ")).bind_text(&upper);
    }
}

/// The smallest string greater than every string starting with `prefix` (code point order,
/// which is the byte order of UTF-8 and of the "C" collation).
fn successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = last as u32 + 1;
        if (0xD800..0xE000).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// `text` (normalised by the parser) with LIKE's wildcards escaped.
fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `http://a/b/c` -> `http://a/b/c`, `http://a/b`, `http://a`: the URIs `:above` accepts.
fn uri_ancestors(uri: &str) -> Vec<String> {
    let mut out = vec![uri.to_string()];
    let start = uri.find("://").map_or(0, |p| p + 3);
    let mut current = uri.trim_end_matches('/');
    while let Some(slash) = current.rfind('/') {
        if slash < start {
            break;
        }
        current = &current[..slash];
        out.push(current.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_up_is_the_next_double() {
        assert!(next_up(82.15498417239294) > 82.15498417239294);
        assert_eq!(next_up(1.0), 1.0 + f64::EPSILON);
        assert!(next_up(-1.0) > -1.0);
        assert!(next_up(0.0) > 0.0);
    }

    #[test]
    fn successors_bound_prefixes() {
        assert_eq!(successor("abc").as_deref(), Some("abd"));
        assert_eq!(successor("a\u{d7ff}").as_deref(), Some("a\u{e000}"));
        assert_eq!(successor("a\u{10ffff}").as_deref(), Some("b"));
        assert_eq!(successor("\u{10ffff}"), None);
    }

    #[test]
    fn uri_ancestors_stop_at_the_authority() {
        assert_eq!(
            uri_ancestors("http://acme.org/fhir/ValueSet/x"),
            [
                "http://acme.org/fhir/ValueSet/x",
                "http://acme.org/fhir/ValueSet",
                "http://acme.org/fhir",
                "http://acme.org"
            ]
        );
    }
}
