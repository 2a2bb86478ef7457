//! The index keys: which `param_id` the rows of a search parameter carry.
//!
//! A key is a search parameter of a resource type (`Observation` + `code`) or a value derived
//! from one (`code:text` for `:text`, `identifier:of-type`, `subject:identifier`, and
//! `component-code-value-quantity$1` for a composite's second component). Every node registers
//! the built-in keys at start (an idempotent insert); the ids are then read once and kept.
//!
//! Parameters derived from others ([`Derivation`]) have no keys: their searches read the keys
//! of the parameters they derive from ([`ParamIds::lookup`], [`ParamIds::composite_forms`]).

use std::collections::HashMap;

use diesel::prelude::*;

use crate::fhir::search::{Derivation, ParamType, SearchParams};
use crate::store::backend::DbConnection;
use crate::store::schema::{resource, search_param};
use crate::store::StoreError;

/// Separates a composite parameter's code from its component index in a key name.
pub const COMPONENT_SEPARATOR: char = '$';

/// `(resource type, key name) -> param_id`, as registered in this database, and how derived
/// parameters map to registered keys.
#[derive(Debug, Default, Clone)]
pub struct ParamIds {
    ids: HashMap<String, HashMap<String, i32>>,
    /// `type -> code -> derivation`, for the parameters that have no keys of their own.
    derived: HashMap<String, HashMap<String, Derivation>>,
    /// Keys registered after resources of their type were stored, until those are reindexed:
    /// written by new writes, but not searchable.
    pending: HashMap<i32, String>,
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

    /// The types with keys waiting for a reindex, and those keys' ids.
    pub fn pending(&self) -> (Vec<String>, Vec<i32>) {
        let mut types: Vec<String> = self.pending.values().cloned().collect();
        types.sort();
        types.dedup();
        (types, self.pending.keys().copied().collect())
    }

    /// Makes the keys `ids` searchable (their types were reindexed).
    pub fn settle(&mut self, ids: &[i32]) {
        for id in ids {
            self.pending.remove(id);
        }
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

/// The key names of every parameter of `types`, as `(type, name)`.
pub fn key_names<'t>(params: &SearchParams, types: &[&'t str]) -> Vec<(&'t str, String)> {
    let mut names = Vec::new();
    for &ty in types {
        for param in params.for_type(ty) {
            if param.unsupported().is_some()
                || super::index::is_resource_column(&param.code)
                || params.derivation(ty, &param.code).is_some()
            {
                continue;
            }
            let code = &param.code;
            names.push((ty, code.clone()));
            match param.kind {
                ParamType::Token => {
                    names.push((ty, format!("{code}:text")));
                    names.push((ty, format!("{code}:of-type")));
                }
                ParamType::Reference => names.push((ty, format!("{code}:identifier"))),
                ParamType::Composite => {
                    for i in 0..param.components.len() {
                        names.push((ty, format!("{code}{COMPONENT_SEPARATOR}{i}")));
                    }
                }
                _ => {}
            }
        }
    }
    names
}

/// Registers `names` (idempotent, safe when several nodes start at once) and reads back
/// every registered id. New keys of a type with resources are pending ([`ParamIds::pending`]):
/// those resources were indexed without them (or not at all, before the search tables existed) and need
/// a reindex ([`Store::reindex`](crate::store::Store::reindex)) before they are searchable.
pub fn register(
    conn: &mut DbConnection,
    params: &SearchParams,
    names: &[(&str, String)],
) -> Result<ParamIds, StoreError> {
    let before = load(conn)?;
    let missing: Vec<&(&str, String)> = names
        .iter()
        .filter(|(ty, name)| before.get(ty, name).is_none())
        .collect();
    // A type with no resources yet has nothing to reindex.
    let mut stored: HashMap<&str, bool> = HashMap::new();
    for (ty, _) in &missing {
        if !stored.contains_key(ty) {
            let any = diesel::select(diesel::dsl::exists(
                resource::table.filter(resource::res_type.eq(*ty)),
            ))
            .get_result::<bool>(conn)?;
            stored.insert(ty, any);
        }
    }
    for chunk in missing.chunks(400) {
        let values: Vec<_> = chunk
            .iter()
            .map(|(ty, name)| {
                (
                    search_param::res_type.eq(*ty),
                    search_param::name.eq(name),
                    search_param::indexed.eq(!stored[ty]),
                )
            })
            .collect();
        crate::store::backend::on_backend!(&mut *conn, c => diesel::insert_into(search_param::table)
            .values(&values)
            .on_conflict_do_nothing()
            .execute(c))?;
    }
    let mut ids = if missing.is_empty() {
        before
    } else {
        load(conn)?
    };
    for (ty, _) in names {
        if !ids.derived.contains_key(*ty) {
            let derived = params
                .for_type(ty)
                .filter_map(|p| Some((p.code.clone(), params.derivation(ty, &p.code)?.clone())))
                .collect();
            ids.derived.insert(ty.to_string(), derived);
        }
    }
    Ok(ids)
}

fn load(conn: &mut DbConnection) -> Result<ParamIds, StoreError> {
    let rows: Vec<(i32, String, String, bool)> = search_param::table
        .select((
            search_param::param_id,
            search_param::res_type,
            search_param::name,
            search_param::indexed,
        ))
        .load(conn)?;
    let mut ids = ParamIds::default();
    for (id, ty, name, indexed) in rows {
        if !indexed {
            ids.pending.insert(id, ty.clone());
        }
        ids.ids.entry(ty).or_default().insert(name, id);
    }
    Ok(ids)
}

/// Marks the keys `ids` searchable, once their types were reindexed.
pub fn mark_indexed(conn: &mut DbConnection, ids: &[i32]) -> Result<(), StoreError> {
    diesel::update(search_param::table)
        .filter(search_param::param_id.eq_any(ids))
        .set(search_param::indexed.eq(true))
        .execute(conn)?;
    Ok(())
}
