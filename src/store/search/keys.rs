//! The index keys: which `param_id` the rows of a search parameter carry.
//!
//! A key is a search parameter of a resource type (`Observation` + `code`) or a value derived
//! from one (`code:text` for `:text`, `identifier:of-type`, `subject:identifier`, and
//! `code-value-quantity$1` for a composite's second component). Every node registers the
//! built-in keys at start (an idempotent insert); the ids are then read once and kept.

use std::collections::HashMap;

use diesel::prelude::*;

use crate::fhir::search::{ParamType, SearchParams};
use crate::store::backend::DbConnection;
use crate::store::schema::search_param;
use crate::store::StoreError;

/// Separates a composite parameter's code from its component index in a key name.
pub const COMPONENT_SEPARATOR: char = '$';

/// `(resource type, key name) -> param_id`, as registered in this database.
#[derive(Debug, Default)]
pub struct ParamIds {
    ids: HashMap<String, HashMap<String, i32>>,
}

impl ParamIds {
    pub fn get(&self, res_type: &str, name: &str) -> Option<i32> {
        self.ids.get(res_type)?.get(name).copied()
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
            if param.unsupported().is_some() || super::index::is_resource_column(&param.code) {
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
/// every registered id. Also returns the types that gained keys: their resources were indexed
/// without them (or not at all, before the search tables existed) and need a reindex.
pub fn register(
    conn: &mut DbConnection,
    names: &[(&str, String)],
) -> Result<(ParamIds, Vec<String>), StoreError> {
    let before = load(conn)?;
    let missing: Vec<&(&str, String)> = names
        .iter()
        .filter(|(ty, name)| before.get(ty, name).is_none())
        .collect();
    let mut gained: Vec<String> = Vec::new();
    for (ty, _) in &missing {
        if !gained.iter().any(|t| t == ty) {
            gained.push(ty.to_string());
        }
    }
    for chunk in missing.chunks(400) {
        let values: Vec<_> = chunk
            .iter()
            .map(|(ty, name)| (search_param::res_type.eq(*ty), search_param::name.eq(name)))
            .collect();
        crate::store::backend::on_backend!(&mut *conn, c => diesel::insert_into(search_param::table)
            .values(&values)
            .on_conflict_do_nothing()
            .execute(c))?;
    }
    let ids = if missing.is_empty() {
        before
    } else {
        load(conn)?
    };
    Ok((ids, gained))
}

fn load(conn: &mut DbConnection) -> Result<ParamIds, StoreError> {
    let rows: Vec<(i32, String, String)> = search_param::table
        .select((
            search_param::param_id,
            search_param::res_type,
            search_param::name,
        ))
        .load(conn)?;
    let mut ids = ParamIds::default();
    for (id, ty, name) in rows {
        ids.ids.entry(ty).or_default().insert(name, id);
    }
    Ok(ids)
}
