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
/// every registered id.
pub fn register(conn: &mut DbConnection, names: &[(&str, String)]) -> Result<ParamIds, StoreError> {
    for chunk in names.chunks(400) {
        let values: Vec<_> = chunk
            .iter()
            .map(|(ty, name)| (search_param::res_type.eq(*ty), search_param::name.eq(name)))
            .collect();
        crate::store::backend::on_backend!(&mut *conn, c => diesel::insert_into(search_param::table)
            .values(&values)
            .on_conflict_do_nothing()
            .execute(c))?;
    }
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
