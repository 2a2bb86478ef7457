//! Identifiers that no two live resources of a type may hold (table `unique_identifier`; the
//! caller says which, in [`Prepared::unique`](super::Prepared)). A write checks first, so
//! that the refusal names the resource holding the identifier; the primary key still refuses
//! the second of two writers that race past the check (the loser's write starts over and then
//! sees the holder).

use diesel::prelude::*;
use diesel::result::Error as DieselError;

use super::backend::{on_backend, DbConnection};
use super::schema::{resource, unique_identifier};
use super::StoreError;

/// Refuses `identifiers` (`(system, value)`) for a resource of `res_type` (`key`, when it
/// exists already) if another live resource holds one of them.
pub(super) fn check(
    conn: &mut DbConnection,
    res_type: &str,
    key: Option<i64>,
    identifiers: &[(String, String)],
) -> Result<(), StoreError> {
    for (system, value) in identifiers {
        let holder: Option<i64> = unique_identifier::table
            .filter(unique_identifier::res_type.eq(res_type))
            .filter(unique_identifier::system.eq(system))
            .filter(unique_identifier::value.eq(value))
            .select(unique_identifier::res_key)
            .first(conn)
            .optional()?;
        let Some(holder) = holder.filter(|h| Some(*h) != key) else {
            continue;
        };
        let res_id: String = resource::table
            .filter(resource::res_key.eq(holder))
            .select(resource::res_id)
            .first(conn)?;
        return Err(StoreError::DuplicateIdentifier {
            holder: format!("{res_type}/{res_id}"),
            identifier: format!("{system}|{value}"),
        });
    }
    Ok(())
}

/// Refuses a set of new resources in which two hold the same identifier; returns the
/// position of the second.
pub(super) fn check_among(
    targets: &[(&str, &str)],
    identifiers: &[&[(String, String)]],
) -> Result<(), (usize, StoreError)> {
    let mut seen: std::collections::HashMap<(&str, &str, &str), usize> =
        std::collections::HashMap::new();
    for (i, ids) in identifiers.iter().enumerate() {
        for (system, value) in ids.iter() {
            if let Some(first) = seen.insert((targets[i].0, system, value), i) {
                return Err((
                    i,
                    StoreError::DuplicateIdentifier {
                        holder: format!("{}/{}", targets[first].0, targets[first].1),
                        identifier: format!("{system}|{value}"),
                    },
                ));
            }
        }
    }
    Ok(())
}

/// The identifiers of the resource `key` are now `identifiers`; `existed` says whether it may
/// hold some already (an update).
pub(super) fn replace(
    conn: &mut DbConnection,
    key: i64,
    res_type: &str,
    identifiers: &[(String, String)],
    existed: bool,
) -> Result<(), DieselError> {
    if existed {
        remove(conn, key)?;
    }
    insert(conn, &[(key, res_type, identifiers)])
}

/// The identifiers of one resource: its key, its type, its `(system, value)` pairs.
pub(super) type Held<'a> = (i64, &'a str, &'a [(String, String)]);

/// Records the identifiers of new resources.
pub(super) fn insert(conn: &mut DbConnection, rows: &[Held<'_>]) -> Result<(), DieselError> {
    let values: Vec<_> = rows
        .iter()
        .flat_map(|(key, ty, ids)| {
            ids.iter().map(move |(system, value)| {
                (
                    unique_identifier::res_type.eq(*ty),
                    unique_identifier::system.eq(system.as_str()),
                    unique_identifier::value.eq(value.as_str()),
                    unique_identifier::res_key.eq(*key),
                )
            })
        })
        .collect();
    if values.is_empty() {
        return Ok(());
    }
    on_backend!(conn, c => diesel::insert_into(unique_identifier::table).values(&values).execute(c))?;
    Ok(())
}

/// Frees the identifiers of a deleted resource.
pub(super) fn remove(conn: &mut DbConnection, key: i64) -> Result<(), DieselError> {
    diesel::delete(unique_identifier::table)
        .filter(unique_identifier::res_key.eq(key))
        .execute(conn)?;
    Ok(())
}
