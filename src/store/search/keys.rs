//! The index keys: which `param_id` the rows of a search parameter carry.
//!
//! A key is a search parameter of a resource type (`Observation` + `code`) or a value derived
//! from one (`code:text` for `:text`, `identifier:of-type`, `subject:identifier`, and
//! `component-code-value-quantity$1` for a composite's second component). Every node registers
//! the built-in keys at start (an idempotent insert); the ids are then read once and kept.
//!
//! Parameters derived from others ([`Derivation`]) have no keys: their searches read the keys
//! of the parameters they derive from ([`ParamIds::lookup`], [`ParamIds::composite_forms`]).

use std::collections::{HashMap, HashSet};

use diesel::prelude::*;

use crate::fhir::search::{Derivation, ParamType, SearchParam, SearchParams};
use crate::store::backend::DbConnection;
use crate::store::schema::{resource, search_param};
use crate::store::StoreError;

/// Separates a composite parameter's code from its component index in a key name.
pub const COMPONENT_SEPARATOR: char = '$';

/// `(resource type, key name) -> param_id`, as registered in this database, and how derived
/// parameters map to registered keys.
#[derive(Debug, Default)]
pub struct ParamIds {
    ids: HashMap<String, HashMap<String, i32>>,
    /// `type -> code -> derivation`, for the parameters that have no keys of their own.
    derived: HashMap<String, HashMap<String, Derivation>>,
    /// Keys registered (or redefined) after resources of their type were stored, until those
    /// are reindexed: written by new writes, but not searchable. `id -> (type, definition)`.
    pending: HashMap<i32, (String, String)>,
}

/// One way a composite parameter is matched: component `i` is looked up under `keys[i]`; when
/// `grouped`, all components must come from one index group (one context, e.g. one
/// `Observation.component`), else from the resource as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompositeForm {
    pub keys: Vec<String>,
    pub grouped: bool,
}

impl ParamIds {
    /// The id of a key the index writes (derived parameters have none).
    pub fn get(&self, res_type: &str, name: &str) -> Option<i32> {
        self.ids.get(res_type)?.get(name).copied()
    }

    /// The ids a search of key `name` (`code` or `code:suffix`) reads on `res_type`: its own,
    /// or those of the parameters it is the union of.
    pub fn lookup(&self, res_type: &str, name: &str) -> Vec<i32> {
        let (code, suffix) = match name.find(':') {
            Some(i) => name.split_at(i),
            None => (name, ""),
        };
        match self.derivation(res_type, code) {
            Some(Derivation::Union(members)) => members
                .iter()
                .flat_map(|m| self.lookup(res_type, &format!("{m}{suffix}")))
                .collect(),
            _ => self.get(res_type, name).into_iter().collect(),
        }
    }

    /// The ways the composite `code` of `res_type` matches: a union of composites matches
    /// through any of its members.
    pub fn composite_forms(&self, res_type: &str, code: &str) -> Vec<CompositeForm> {
        match self.derivation(res_type, code) {
            Some(Derivation::Union(members)) => members
                .iter()
                .flat_map(|m| self.composite_forms(res_type, m))
                .collect(),
            Some(Derivation::Conjunction(codes)) => vec![CompositeForm {
                keys: codes.clone(),
                grouped: false,
            }],
            None => {
                let own = self.ids.get(res_type).into_iter().flat_map(|m| m.keys());
                let prefix = format!("{code}{COMPONENT_SEPARATOR}");
                let count = own.filter(|k| k.starts_with(&prefix)).count();
                vec![CompositeForm {
                    keys: (0..count).map(|i| format!("{prefix}{i}")).collect(),
                    grouped: true,
                }]
            }
        }
    }

    /// Whether key `id` waits for a reindex of its type before it can be searched.
    pub fn is_pending(&self, id: i32) -> bool {
        self.pending.contains_key(&id)
    }

    /// The types with keys waiting for a reindex.
    pub fn pending_types(&self) -> Vec<String> {
        let mut types: Vec<String> = self.pending.values().map(|(t, _)| t.clone()).collect();
        types.sort();
        types.dedup();
        types
    }

    /// The keys of `types` waiting for a reindex, with their definitions, for
    /// [`mark_indexed`].
    pub fn pending_keys(&self, types: &[String]) -> Vec<(i32, String)> {
        self.pending
            .iter()
            .filter(|(_, (t, _))| types.contains(t))
            .map(|(id, (_, definition))| (*id, definition.clone()))
            .collect()
    }

    fn derivation(&self, res_type: &str, code: &str) -> Option<&Derivation> {
        self.derived.get(res_type)?.get(code)
    }

    /// Every key of `res_type` (for `_revinclude=Type:*`: the reference index holds only
    /// reference keys, so this selects every reference parameter).
    pub fn all(&self, res_type: &str) -> impl Iterator<Item = i32> + '_ {
        self.ids
            .get(res_type)
            .into_iter()
            .flat_map(|m| m.values().copied())
    }
}

/// One key to register: its type, its name, and a fingerprint of the definition its values
/// come from (when the definition changes, existing rows are stale).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyName<'t> {
    pub res_type: &'t str,
    pub name: String,
    pub definition: String,
}

/// The keys of every indexed parameter of `types`.
pub fn key_names<'t>(params: &SearchParams, types: &[&'t str]) -> Vec<KeyName<'t>> {
    let mut names = Vec::new();
    for &ty in types {
        for param in params.for_type(ty) {
            if param.unsupported().is_some()
                || super::index::is_resource_column(&param.code)
                || params.derivation(ty, &param.code).is_some()
            {
                continue;
            }
            let definition = fingerprint(param);
            let mut push = |name: String| {
                names.push(KeyName {
                    res_type: ty,
                    name,
                    definition: definition.clone(),
                })
            };
            let code = &param.code;
            push(code.clone());
            match param.kind {
                ParamType::Token => {
                    push(format!("{code}:text"));
                    push(format!("{code}:of-type"));
                }
                ParamType::Reference => push(format!("{code}:identifier")),
                ParamType::Composite => {
                    for i in 0..param.components.len() {
                        push(format!("{code}{COMPONENT_SEPARATOR}{i}"));
                    }
                }
                _ => {}
            }
        }
    }
    names
}

/// What a parameter's rows depend on: its kind, expression and components, hashed.
fn fingerprint(param: &SearchParam) -> String {
    let mut text = format!(
        "{:?}\n{}",
        param.kind,
        param.expression_text.as_deref().unwrap_or("")
    );
    for c in &param.components {
        text.push_str(&format!("\n{:?} {}", c.kind, c.expression_text));
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Registers `names` (idempotent, safe when several nodes start at once) and reads back every
/// registered id. The keys of `names`' types are made to match them:
/// - a new key, or a key whose definition changed (its rows are dropped), is pending
///   ([`ParamIds::pending`]) when its type has resources: they must be reindexed
///   ([`Store::reindex`](crate::store::Store::reindex)) before it is searchable;
/// - a key no longer in force (a retired SearchParameter, a parameter now derived from
///   others) is dropped with its rows, so that it cannot come back with stale rows.
pub fn register(
    conn: &mut DbConnection,
    params: &SearchParams,
    names: &[KeyName<'_>],
) -> Result<ParamIds, StoreError> {
    let registered: Vec<(i32, String, String, String)> = search_param::table
        .select((
            search_param::param_id,
            search_param::res_type,
            search_param::name,
            search_param::definition,
        ))
        .load(conn)?;
    let wanted: HashMap<(&str, &str), &str> = names
        .iter()
        .map(|k| ((k.res_type, k.name.as_str()), k.definition.as_str()))
        .collect();
    let mut has_resources: HashMap<String, bool> = HashMap::new();
    let mut has_resources_of = |conn: &mut DbConnection, ty: &str| -> Result<bool, StoreError> {
        if let Some(known) = has_resources.get(ty) {
            return Ok(*known);
        }
        let any = diesel::select(diesel::dsl::exists(
            resource::table.filter(resource::res_type.eq(ty)),
        ))
        .get_result::<bool>(conn)?;
        has_resources.insert(ty.to_string(), any);
        Ok(any)
    };
    let mut known: HashSet<(&str, &str)> = HashSet::new();
    for (id, ty, name, definition) in &registered {
        known.insert((ty.as_str(), name.as_str()));
        let in_scope = names.iter().any(|k| k.res_type == ty);
        match wanted.get(&(ty.as_str(), name.as_str())) {
            None if in_scope => {
                log::info!("dropping the search index key {ty}.{name}, no longer in force");
                drop_rows(conn, *id)?;
                diesel::delete(search_param::table.filter(search_param::param_id.eq(id)))
                    .execute(conn)?;
            }
            None => {}
            Some(wanted) if *wanted == definition => {}
            // Keys registered before definitions were recorded keep their rows.
            Some(wanted) if definition.is_empty() => {
                diesel::update(search_param::table.filter(search_param::param_id.eq(id)))
                    .set(search_param::definition.eq(*wanted))
                    .execute(conn)?;
            }
            Some(wanted) => {
                log::info!("the definition of {ty}.{name} changed: its rows are rebuilt");
                drop_rows(conn, *id)?;
                let indexed = !has_resources_of(conn, ty)?;
                diesel::update(search_param::table.filter(search_param::param_id.eq(id)))
                    .set((
                        search_param::definition.eq(*wanted),
                        search_param::indexed.eq(indexed),
                    ))
                    .execute(conn)?;
            }
        }
    }
    let missing: Vec<&KeyName<'_>> = names
        .iter()
        .filter(|k| !known.contains(&(k.res_type, k.name.as_str())))
        .collect();
    let mut rows = Vec::with_capacity(missing.len());
    for key in &missing {
        let indexed = !has_resources_of(conn, key.res_type)?;
        rows.push((
            search_param::res_type.eq(key.res_type),
            search_param::name.eq(&key.name),
            search_param::indexed.eq(indexed),
            search_param::definition.eq(&key.definition),
        ));
    }
    for chunk in rows.chunks(400) {
        crate::store::backend::on_backend!(&mut *conn, c => diesel::insert_into(search_param::table)
            .values(chunk)
            .on_conflict_do_nothing()
            .execute(c))?;
    }
    let mut ids = load(conn)?;
    for key in names {
        let ty = key.res_type;
        if !ids.derived.contains_key(ty) {
            let derived = params
                .for_type(ty)
                .filter_map(|p| Some((p.code.clone(), params.derivation(ty, &p.code)?.clone())))
                .collect();
            ids.derived.insert(ty.to_string(), derived);
        }
    }
    Ok(ids)
}

/// Deletes every index row of key `id`.
fn drop_rows(conn: &mut DbConnection, id: i32) -> Result<(), StoreError> {
    for table in [
        "search_string",
        "search_token",
        "search_reference",
        "search_date",
        "search_number",
        "search_quantity",
        "search_uri",
    ] {
        diesel::sql_query(format!("DELETE FROM {table} WHERE param_id = {id}")).execute(conn)?;
    }
    Ok(())
}

fn load(conn: &mut DbConnection) -> Result<ParamIds, StoreError> {
    let rows: Vec<(i32, String, String, bool, String)> = search_param::table
        .select((
            search_param::param_id,
            search_param::res_type,
            search_param::name,
            search_param::indexed,
            search_param::definition,
        ))
        .load(conn)?;
    let mut ids = ParamIds::default();
    for (id, ty, name, indexed, definition) in rows {
        if !indexed {
            ids.pending.insert(id, (ty.clone(), definition));
        }
        ids.ids.entry(ty).or_default().insert(name, id);
    }
    Ok(ids)
}

/// Marks the keys searchable once their types were reindexed: each `(id, definition)` only
/// if its definition is still the one the reindex used.
pub fn mark_indexed(conn: &mut DbConnection, keys: &[(i32, String)]) -> Result<(), StoreError> {
    for (id, definition) in keys {
        diesel::update(search_param::table)
            .filter(search_param::param_id.eq(id))
            .filter(search_param::definition.eq(definition))
            .set(search_param::indexed.eq(true))
            .execute(conn)?;
    }
    Ok(())
}

/// Changes whenever the search parameters in force may have changed, on any node: a
/// SearchParameter written (its versions' count and last update: versions are never
/// removed), or keys registered, dropped or marked indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ParamsStamp {
    definitions: (i64, Option<i64>),
    keys: (i64, i64),
}

pub(crate) fn params_stamp(conn: &mut DbConnection) -> Result<ParamsStamp, StoreError> {
    use crate::store::schema::resource_version;
    let definitions = resource_version::table
        .filter(resource_version::res_type.eq("SearchParameter"))
        .select((
            diesel::dsl::count_star(),
            diesel::dsl::max(resource_version::last_updated),
        ))
        .first(conn)?;
    let keys: Vec<bool> = search_param::table
        .select(search_param::indexed)
        .load(conn)?;
    let indexed = keys.iter().filter(|i| **i).count() as i64;
    Ok(ParamsStamp {
        definitions,
        keys: (keys.len() as i64, indexed),
    })
}
