//! Reading and writing resources: create, update, delete, read and vread, each in one
//! transaction, each under the caller's access scope.

use std::sync::Arc;

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use super::backend::{on_backend, DbConnection};
use super::schema::{resource, resource_compartment, resource_version};
use super::search::index::{self, IndexRows};
use super::{now_micros, pg_bulk, unique, Store, StoreError};
use crate::access::AccessScope;

/// How many times a write starts over after losing a race to create the same id.
const MAX_WRITE_ATTEMPTS: usize = 8;

/// The current state of a resource.
#[derive(Debug, Clone, Queryable)]
pub struct Current {
    pub version: i64,
    pub last_updated: i64,
    pub deleted: bool,
    /// The JSON text of the current version; `None` when deleted.
    pub body: Option<String>,
}

/// One stored version.
#[derive(Debug, Clone, Queryable)]
pub struct Version {
    pub res_type: String,
    pub res_id: String,
    pub version: i64,
    pub last_updated: i64,
    pub method: String,
    /// `None` for a deletion.
    pub body: Option<String>,
}

/// The HTTP verb that produced a version, kept for history bundles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMethod {
    Post,
    Put,
    Patch,
}

impl WriteMethod {
    fn as_str(self) -> &'static str {
        match self {
            WriteMethod::Post => "POST",
            WriteMethod::Put => "PUT",
            WriteMethod::Patch => "PATCH",
        }
    }
}

/// Which resource a write addresses, and its preconditions.
#[derive(Debug, Clone)]
pub struct WriteTarget<'a> {
    pub res_type: &'a str,
    pub res_id: &'a str,
    pub method: WriteMethod,
    /// `If-Match`: write only if the current version is this one.
    pub if_match: Option<i64>,
    /// Refuse to write when the resource already exists (a create with a server-chosen id).
    pub must_be_new: bool,
    /// Hand the current body to `prepare` (PATCH needs it; PUT does not pay for it).
    pub needs_current_body: bool,
}

/// What exists before a write, as seen under the write's row lock.
#[derive(Debug, Clone, Copy)]
pub enum Prior<'a> {
    Absent,
    Deleted,
    /// The body is only read when the target asked for it.
    Live(Option<&'a str>),
}

/// The new version, produced by the caller once the version and timestamp are known.
pub struct Prepared {
    /// Patients whose compartments hold the new content, main one first.
    pub patients: Vec<String>,
    /// The JSON text to store, carrying the assigned version and timestamp.
    pub body: String,
    /// The search index rows of the new content ([`Store::index_rows`]); shared, so that a
    /// caller computes them once, outside the write's critical section.
    pub index: Arc<IndexRows>,
    /// `(system, value)` identifiers that no other live resource of the type may hold;
    /// `None` when the type keeps none (its writes do not touch that table at all).
    pub unique: Option<Vec<(String, String)>>,
}

impl Prepared {
    fn identifiers(&self) -> &[(String, String)] {
        self.unique.as_deref().unwrap_or(&[])
    }
}

/// The outcome of a successful write.
#[derive(Debug, Clone)]
pub struct Written {
    pub version: i64,
    pub last_updated: i64,
    /// True when no live resource existed before (first write, or write after a deletion).
    pub created: bool,
    pub body: String,
}

/// A write fails in the store, or because the caller's `prepare` refused the change.
#[derive(Debug)]
pub enum WriteError<E> {
    Store(StoreError),
    Rejected(E),
}

impl<E> From<StoreError> for WriteError<E> {
    fn from(e: StoreError) -> Self {
        WriteError::Store(e)
    }
}

/// The outcome of a delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletion {
    Deleted { version: i64, last_updated: i64 },
    AlreadyDeleted,
    NotFound,
}

/// Why one attempt of a write transaction ended early.
enum Attempt<E> {
    Retry,
    Fail(StoreError),
    Rejected(E),
}

impl<E> From<DieselError> for Attempt<E> {
    fn from(e: DieselError) -> Self {
        match e {
            // Two creates of one id raced; the loser retries and finds the row.
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => Attempt::Retry,
            DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => {
                Attempt::Retry
            }
            other => Attempt::Fail(other.into()),
        }
    }
}

impl<E> From<StoreError> for Attempt<E> {
    fn from(e: StoreError) -> Self {
        Attempt::Fail(e)
    }
}

/// `(res_key, version, deleted, last_updated)` of a resource row.
type RowState = (i64, i64, bool, i64);

impl Store {
    /// The search index rows of a resource of `res_type` with the extracted `entries`
    /// (`fhir::search::index_entries`), for [`Prepared::index`].
    pub fn index_rows(
        &self,
        res_type: &str,
        entries: &[crate::fhir::search::IndexEntry<'_>],
    ) -> Result<IndexRows, StoreError> {
        Ok(IndexRows::new(&*self.search_ids()?, res_type, entries))
    }

    /// Reads the current version of `res_type/res_id`, if the caller may see it.
    pub fn read(
        &self,
        scope: &AccessScope,
        res_type: &str,
        res_id: &str,
    ) -> Result<Option<Current>, StoreError> {
        read_in(&mut *self.conn()?, scope, res_type, res_id)
    }

    /// The current bodies of every live resource of `res_type` the caller may see, for types
    /// that are read whole (the SearchParameter resources at start).
    pub fn current_bodies(
        &self,
        scope: &AccessScope,
        res_type: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut query = resource::table
            .inner_join(
                resource_version::table.on(resource_version::res_key
                    .eq(resource::res_key)
                    .and(resource_version::version.eq(resource::version))),
            )
            .filter(resource::res_type.eq(res_type))
            .filter(resource::deleted.eq(false))
            .order(resource::res_key)
            .select(resource_version::body)
            .into_boxed();
        if !scope.allows_type(res_type) {
            return Ok(Vec::new());
        }
        if let Some(patients) = scope.patient_ids() {
            query = query.filter(resource::res_key.eq_any(compartment_keys(patients)));
        }
        let bodies: Vec<Option<String>> = query.load(&mut *self.conn()?)?;
        Ok(bodies.into_iter().flatten().collect())
    }

    /// Reads one version of `res_type/res_id`, if it exists and the caller may see it.
    pub fn vread(
        &self,
        scope: &AccessScope,
        res_type: &str,
        res_id: &str,
        version: i64,
    ) -> Result<Option<Version>, StoreError> {
        vread_in(&mut *self.conn()?, scope, res_type, res_id, version)
    }

    /// The version of `res_type/res_id` that was current at `instant` (the last one written
    /// at or before it; a deletion has no body), if the resource exists and the caller may
    /// see it. `None` too when it did not exist yet.
    pub fn read_as_of(
        &self,
        scope: &AccessScope,
        res_type: &str,
        res_id: &str,
        instant: i64,
    ) -> Result<Option<Version>, StoreError> {
        let mut conn = self.conn()?;
        let Some(key) = visible_key(&mut conn, scope, res_type, res_id)? else {
            return Ok(None);
        };
        Ok(resource_version::table
            .filter(resource_version::res_key.eq(key))
            .filter(resource_version::last_updated.le(instant))
            .order(resource_version::version.desc())
            .select(version_columns())
            .first::<Version>(&mut *conn)
            .optional()?)
    }

    /// Writes a new version of a resource, creating it when it does not exist (or was
    /// deleted). The row is locked first, so `prepare` sees the true current state and the
    /// version it is given is final: concurrent writers queue instead of losing updates.
    pub fn write<E>(
        &self,
        scope: &AccessScope,
        target: &WriteTarget<'_>,
        prepare: &mut dyn FnMut(Prior<'_>, i64, i64) -> Result<Prepared, E>,
    ) -> Result<Written, WriteError<E>> {
        self.write_with(|conn| write_in(conn, scope, target, prepare))
    }

    /// Deletes a resource by writing a tombstone version.
    pub fn delete(
        &self,
        scope: &AccessScope,
        res_type: &str,
        res_id: &str,
        if_match: Option<i64>,
    ) -> Result<Deletion, StoreError> {
        self.write_with(|conn| {
            conn.transaction(|conn| delete_in(conn, scope, res_type, res_id, if_match))
        })
    }
}

/// [`Store::read`] on a given connection (inside a transaction, it sees its writes).
pub(super) fn read_in(
    conn: &mut DbConnection,
    scope: &AccessScope,
    res_type: &str,
    res_id: &str,
) -> Result<Option<Current>, StoreError> {
    // The unrestricted query has a static shape, so diesel prepares it once per
    // connection: a read by id is then one cached statement and one index lookup.
    if !scope.allows_type(res_type) {
        return Ok(None);
    }
    let current = match scope.patient_ids() {
        None => on_backend!(conn, c => current_by_id(res_type, res_id).first(c)),
        Some(patients) => current_by_id(res_type, res_id)
            .filter(resource::res_key.eq_any(compartment_keys(patients)))
            .first(conn),
    };
    Ok(current.optional()?)
}

/// [`Store::vread`] on a given connection.
pub(super) fn vread_in(
    conn: &mut DbConnection,
    scope: &AccessScope,
    res_type: &str,
    res_id: &str,
    version: i64,
) -> Result<Option<Version>, StoreError> {
    let Some(key) = visible_key(conn, scope, res_type, res_id)? else {
        return Ok(None);
    };
    Ok(resource_version::table
        .filter(resource_version::res_key.eq(key))
        .filter(resource_version::version.eq(version))
        .select(version_columns())
        .first::<Version>(conn)
        .optional()?)
}

/// A write on `conn`, started over when it lost a race to create the same id.
pub(super) fn write_in<E>(
    conn: &mut DbConnection,
    scope: &AccessScope,
    target: &WriteTarget<'_>,
    prepare: &mut dyn FnMut(Prior<'_>, i64, i64) -> Result<Prepared, E>,
) -> Result<Written, WriteError<E>> {
    for _ in 0..MAX_WRITE_ATTEMPTS {
        match conn.transaction(|conn| write_attempt(conn, scope, target, prepare)) {
            Ok(written) => return Ok(written),
            Err(Attempt::Retry) => continue,
            Err(Attempt::Fail(e)) => return Err(WriteError::Store(e)),
            Err(Attempt::Rejected(e)) => return Err(WriteError::Rejected(e)),
        }
    }
    Err(WriteError::Store(StoreError::Contention))
}

/// Locks the row of `res_type/res_id` until the transaction ends and returns its state.
/// A no-op UPDATE is the portable `SELECT ... FOR UPDATE`: on PostgreSQL it waits for a
/// concurrent writer to commit and then returns the committed values.
fn lock_row(
    conn: &mut DbConnection,
    res_type: &str,
    res_id: &str,
) -> Result<Option<RowState>, DieselError> {
    diesel::update(resource::table)
        .filter(resource::res_type.eq(res_type))
        .filter(resource::res_id.eq(res_id))
        .set(resource::version.eq(resource::version))
        .returning((
            resource::res_key,
            resource::version,
            resource::deleted,
            resource::last_updated,
        ))
        .get_result::<RowState>(conn)
        .optional()
}

fn write_attempt<E>(
    conn: &mut DbConnection,
    scope: &AccessScope,
    target: &WriteTarget<'_>,
    prepare: &mut dyn FnMut(Prior<'_>, i64, i64) -> Result<Prepared, E>,
) -> Result<Written, Attempt<E>> {
    let now = now_micros();
    let (key, version, last_updated, created, prepared) =
        match lock_row(conn, target.res_type, target.res_id)? {
            None => {
                if let Some(expected) = target.if_match {
                    return Err(StoreError::VersionConflict {
                        expected,
                        current: 0,
                    }
                    .into());
                }
                let prepared = prepare(Prior::Absent, 1, now).map_err(Attempt::Rejected)?;
                if !scope.permits_write(&prepared.patients) {
                    return Err(StoreError::Forbidden.into());
                }
                unique::check(conn, target.res_type, None, prepared.identifiers())?;
                let key = diesel::insert_into(resource::table)
                    .values((
                        resource::res_type.eq(target.res_type),
                        resource::res_id.eq(target.res_id),
                        resource::version.eq(1),
                        resource::last_updated.eq(now),
                        resource::deleted.eq(false),
                        resource::patient.eq(prepared.patients.first()),
                    ))
                    .returning(resource::res_key)
                    .get_result::<i64>(conn)?;
                (key, 1, now, true, prepared)
            }
            Some((key, current, deleted, previous_update)) => {
                // Visibility first, so that a hidden resource gives the same answer whatever
                // the request.
                if !is_visible(conn, scope, key)? {
                    return Err(StoreError::Forbidden.into());
                }
                if target.must_be_new {
                    return Err(StoreError::AlreadyExists.into());
                }
                if let Some(expected) = target.if_match {
                    if expected != current {
                        return Err(StoreError::VersionConflict { expected, current }.into());
                    }
                }
                // Timestamps of one resource never go backwards, even if the clock does.
                let last_updated = now.max(previous_update + 1);
                let body = if target.needs_current_body && !deleted {
                    current_body(conn, key, current)?
                } else {
                    None
                };
                let prior = if deleted {
                    Prior::Deleted
                } else {
                    Prior::Live(body.as_deref())
                };
                let prepared =
                    prepare(prior, current + 1, last_updated).map_err(Attempt::Rejected)?;
                if !scope.permits_write(&prepared.patients) {
                    return Err(StoreError::Forbidden.into());
                }
                unique::check(conn, target.res_type, Some(key), prepared.identifiers())?;
                diesel::update(resource::table)
                    .filter(resource::res_key.eq(key))
                    .set((
                        resource::version.eq(current + 1),
                        resource::last_updated.eq(last_updated),
                        resource::deleted.eq(false),
                        resource::patient.eq(prepared.patients.first()),
                    ))
                    .execute(conn)?;
                diesel::delete(resource_compartment::table)
                    .filter(resource_compartment::res_key.eq(key))
                    .execute(conn)?;
                if !deleted {
                    index::remove(conn, key)?;
                }
                (key, current + 1, last_updated, deleted, prepared)
            }
        };
    let row = VersionRow {
        key,
        version,
        res_type: target.res_type,
        res_id: target.res_id,
        last_updated,
        method: target.method.as_str(),
        body: Some(&prepared.body),
    };
    insert_version(conn, &row)?;
    insert_compartments(conn, key, &prepared.patients)?;
    index::insert(conn, key, &prepared.index)?;
    if let Some(identifiers) = &prepared.unique {
        unique::replace(conn, key, target.res_type, identifiers, !created)?;
    }
    Ok(Written {
        version,
        last_updated,
        created,
        body: prepared.body,
    })
}

fn current_body(
    conn: &mut DbConnection,
    key: i64,
    version: i64,
) -> Result<Option<String>, DieselError> {
    resource_version::table
        .filter(resource_version::res_key.eq(key))
        .filter(resource_version::version.eq(version))
        .select(resource_version::body)
        .first::<Option<String>>(conn)
}

pub(super) fn delete_in(
    conn: &mut DbConnection,
    scope: &AccessScope,
    res_type: &str,
    res_id: &str,
    if_match: Option<i64>,
) -> Result<Deletion, StoreError> {
    let Some((key, current, deleted, previous_update)) = lock_row(conn, res_type, res_id)? else {
        return Ok(Deletion::NotFound);
    };
    if !is_visible(conn, scope, key)? {
        return Ok(Deletion::NotFound);
    }
    if let Some(expected) = if_match {
        if expected != current {
            return Err(StoreError::VersionConflict { expected, current });
        }
    }
    if deleted {
        return Ok(Deletion::AlreadyDeleted);
    }
    let last_updated = now_micros().max(previous_update + 1);
    diesel::update(resource::table)
        .filter(resource::res_key.eq(key))
        .set((
            resource::version.eq(current + 1),
            resource::last_updated.eq(last_updated),
            resource::deleted.eq(true),
        ))
        .execute(conn)?;
    let row = VersionRow {
        key,
        version: current + 1,
        res_type,
        res_id,
        last_updated,
        method: "DELETE",
        body: None,
    };
    insert_version(conn, &row)?;
    index::remove(conn, key)?;
    unique::remove(conn, key)?;
    // Compartment rows stay: they still decide who may read the history of the deleted resource.
    Ok(Deletion::Deleted {
        version: current + 1,
        last_updated,
    })
}

/// Rows per multi-row INSERT of [`create_many_in`]: far below SQLite's bound-parameter limit.
const CREATES_PER_INSERT: usize = 500;

/// Creates new resources at ids the server chose (`targets`, `(type, id)`), all at version 1
/// and one timestamp, with one multi-row INSERT per table instead of a round trip per
/// statement per resource. `prepare(i, version, last_updated)` renders the `i`th. Fails with
/// the position of the resource at fault, when one is; a taken id is `AlreadyExists`.
pub(super) fn create_many_in<E>(
    conn: &mut DbConnection,
    scope: &AccessScope,
    targets: &[(&str, &str)],
    method: WriteMethod,
    prepare: &mut dyn FnMut(usize, i64, i64) -> Result<Prepared, E>,
) -> Result<Vec<Written>, (Option<usize>, WriteError<E>)> {
    let now = now_micros();
    let mut prepared = Vec::with_capacity(targets.len());
    for i in 0..targets.len() {
        let p = prepare(i, 1, now).map_err(|e| (Some(i), WriteError::Rejected(e)))?;
        if !scope.permits_write(&p.patients) {
            return Err((Some(i), WriteError::Store(StoreError::Forbidden)));
        }
        prepared.push(p);
    }
    let identifiers: Vec<&[(String, String)]> =
        prepared.iter().map(Prepared::identifiers).collect();
    unique::check_among(targets, &identifiers).map_err(|(i, e)| (Some(i), e.into()))?;
    for (i, (ty, _)) in targets.iter().enumerate() {
        if !identifiers[i].is_empty() {
            unique::check(conn, ty, None, identifiers[i]).map_err(|e| (Some(i), e.into()))?;
        }
    }
    let store_error = |e: DieselError| {
        let error = match e {
            // Another writer took one of the unique identifiers after the check above: run
            // again, the check then names the holder.
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info)
                if info.message().contains("unique_identifier") =>
            {
                StoreError::Contention
            }
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                StoreError::AlreadyExists
            }
            other => other.into(),
        };
        (None, WriteError::Store(error))
    };
    conn.transaction(|conn| insert_new(conn, targets, &prepared, now, method))
        .map_err(store_error)?;
    Ok(prepared
        .into_iter()
        .map(|p| Written {
            version: 1,
            last_updated: now,
            created: true,
            body: p.body,
        })
        .collect())
}

fn insert_new(
    conn: &mut DbConnection,
    targets: &[(&str, &str)],
    prepared: &[Prepared],
    now: i64,
    method: WriteMethod,
) -> Result<(), DieselError> {
    if let DbConnection::Postgres(pg) = conn {
        let resource_keys = insert_new_pg(pg, targets, prepared, now, method)?;
        return insert_identifiers(conn, &resource_keys, targets, prepared);
    }
    let mut keys: std::collections::HashMap<(String, String), i64> =
        std::collections::HashMap::with_capacity(targets.len());
    for chunk in targets
        .iter()
        .zip(prepared)
        .collect::<Vec<_>>()
        .chunks(CREATES_PER_INSERT)
    {
        let rows: Vec<_> = chunk
            .iter()
            .map(|((ty, id), p)| {
                (
                    resource::res_type.eq(*ty),
                    resource::res_id.eq(*id),
                    resource::version.eq(1_i64),
                    resource::last_updated.eq(now),
                    resource::deleted.eq(false),
                    resource::patient.eq(p.patients.first()),
                )
            })
            .collect();
        let returned: Vec<(i64, String, String)> = on_backend!(conn, c => diesel::insert_into(resource::table)
            .values(&rows)
            .returning((resource::res_key, resource::res_type, resource::res_id))
            .get_results(c))?;
        for (key, ty, id) in returned {
            keys.insert((ty, id), key);
        }
    }
    let key_of = |ty: &str, id: &str| {
        keys.get(&(ty.to_string(), id.to_string()))
            .copied()
            .ok_or(DieselError::NotFound)
    };
    let mut resource_keys = Vec::with_capacity(targets.len());
    for (ty, id) in targets {
        resource_keys.push(key_of(ty, id)?);
    }
    for chunk in (0..targets.len())
        .collect::<Vec<_>>()
        .chunks(CREATES_PER_INSERT)
    {
        let rows: Vec<_> = chunk
            .iter()
            .map(|&i| {
                let (ty, id) = targets[i];
                (
                    resource_version::res_key.eq(resource_keys[i]),
                    resource_version::version.eq(1_i64),
                    resource_version::res_type.eq(ty),
                    resource_version::res_id.eq(id),
                    resource_version::last_updated.eq(now),
                    resource_version::method.eq(method.as_str()),
                    resource_version::body.eq(Some(prepared[i].body.as_str())),
                )
            })
            .collect();
        on_backend!(conn, c => diesel::insert_into(resource_version::table).values(&rows).execute(c))?;
    }
    let memberships = memberships(prepared, &resource_keys);
    for chunk in memberships.chunks(CREATES_PER_INSERT) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|(patient, key)| {
                (
                    resource_compartment::patient.eq(*patient),
                    resource_compartment::res_key.eq(*key),
                )
            })
            .collect();
        on_backend!(conn, c => diesel::insert_into(resource_compartment::table).values(&rows).execute(c))?;
    }
    let index = index_rows(prepared, &resource_keys);
    index::insert_many(conn, &index)?;
    insert_identifiers(conn, &resource_keys, targets, prepared)
}

/// The compartment rows of new resources (their keys in `resource_keys`), each patient once
/// per resource.
fn memberships<'p>(prepared: &'p [Prepared], resource_keys: &[i64]) -> Vec<(&'p String, i64)> {
    let mut memberships: Vec<(&String, i64)> = Vec::new();
    for (p, &key) in prepared.iter().zip(resource_keys) {
        let start = memberships.len();
        for patient in &p.patients {
            if !memberships[start..].iter().any(|(q, _)| *q == patient) {
                memberships.push((patient, key));
            }
        }
    }
    memberships
}

/// The index rows of new resources, with their keys.
fn index_rows<'p>(prepared: &'p [Prepared], resource_keys: &[i64]) -> Vec<(i64, &'p IndexRows)> {
    resource_keys
        .iter()
        .zip(prepared)
        .map(|(&key, p)| (key, &*p.index))
        .collect()
}

/// The unique identifiers of new resources (their keys in `resource_keys`).
fn insert_identifiers(
    conn: &mut DbConnection,
    resource_keys: &[i64],
    targets: &[(&str, &str)],
    prepared: &[Prepared],
) -> Result<(), DieselError> {
    let identifiers: Vec<unique::Held<'_>> = resource_keys
        .iter()
        .zip(targets)
        .zip(prepared)
        .filter(|(_, p)| !p.identifiers().is_empty())
        .map(|((&key, (ty, _)), p)| (key, *ty, p.identifiers()))
        .collect();
    unique::insert(conn, &identifiers)
}

/// [`insert_new`] on PostgreSQL: one statement per table over arrays (see `pg_bulk`).
/// Returns the new resources' keys, in the order of `targets`.
fn insert_new_pg(
    pg: &mut diesel::PgConnection,
    targets: &[(&str, &str)],
    prepared: &[Prepared],
    now: i64,
    method: WriteMethod,
) -> Result<Vec<i64>, DieselError> {
    let patients: Vec<Option<&str>> = prepared
        .iter()
        .map(|p| p.patients.first().map(String::as_str))
        .collect();
    let created = pg_bulk::insert_resources(pg, targets, &patients, now)?;
    let keys: std::collections::HashMap<(&str, &str), i64> = created
        .iter()
        .map(|c| ((c.res_type.as_str(), c.res_id.as_str()), c.res_key))
        .collect();
    let mut resource_keys = Vec::with_capacity(targets.len());
    for target in targets {
        resource_keys.push(*keys.get(target).ok_or(DieselError::NotFound)?);
    }
    let versions: Vec<(i64, &str, &str, &str)> = targets
        .iter()
        .zip(prepared)
        .zip(&resource_keys)
        .map(|(((ty, id), p), &key)| (key, *ty, *id, p.body.as_str()))
        .collect();
    pg_bulk::insert_versions(pg, &versions, now, method.as_str())?;
    let memberships = memberships(prepared, &resource_keys);
    pg_bulk::insert_compartments(pg, &memberships)?;
    let index = index_rows(prepared, &resource_keys);
    pg_bulk::insert_index(pg, &index)?;
    Ok(resource_keys)
}

/// One row of `resource_version`, as written.
struct VersionRow<'a> {
    key: i64,
    version: i64,
    res_type: &'a str,
    res_id: &'a str,
    last_updated: i64,
    method: &'a str,
    /// `None` for a deletion.
    body: Option<&'a str>,
}

fn insert_version(conn: &mut DbConnection, row: &VersionRow<'_>) -> Result<(), DieselError> {
    diesel::insert_into(resource_version::table)
        .values((
            resource_version::res_key.eq(row.key),
            resource_version::version.eq(row.version),
            resource_version::res_type.eq(row.res_type),
            resource_version::res_id.eq(row.res_id),
            resource_version::last_updated.eq(row.last_updated),
            resource_version::method.eq(row.method),
            resource_version::body.eq(row.body),
        ))
        .execute(conn)?;
    Ok(())
}

/// One multi-row insert, whatever the number of patients (duplicates dropped).
fn insert_compartments(
    conn: &mut DbConnection,
    key: i64,
    patients: &[String],
) -> Result<(), DieselError> {
    let mut unique: Vec<&String> = Vec::with_capacity(patients.len());
    for patient in patients {
        if !unique.contains(&patient) {
            unique.push(patient);
        }
    }
    if unique.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = unique
        .into_iter()
        .map(|p| {
            (
                resource_compartment::patient.eq(p),
                resource_compartment::res_key.eq(key),
            )
        })
        .collect();
    // The multi-backend wrapper cannot batch inserts; each concrete backend can.
    on_backend!(conn, c => diesel::insert_into(resource_compartment::table).values(&rows).execute(c))?;
    Ok(())
}

/// The current version of `res_type/res_id`: the resource row joined to its latest version.
#[diesel::dsl::auto_type]
fn current_by_id<'a>(res_type: &'a str, res_id: &'a str) -> _ {
    resource::table
        .inner_join(
            resource_version::table.on(resource_version::res_key
                .eq(resource::res_key)
                .and(resource_version::version.eq(resource::version))),
        )
        .filter(resource::res_type.eq(res_type))
        .filter(resource::res_id.eq(res_id))
        .select((
            resource::version,
            resource::last_updated,
            resource::deleted,
            resource_version::body,
        ))
}

/// The keys of resources in the compartments of `patients`, as a subquery for `eq_any`.
#[diesel::dsl::auto_type]
pub(super) fn compartment_keys<'a>(patients: &'a [String]) -> _ {
    resource_compartment::table
        .filter(resource_compartment::patient.eq_any(patients))
        .select(resource_compartment::res_key)
}

/// Whether the resource with `key` is inside `scope`, decided by the database.
fn is_visible(conn: &mut DbConnection, scope: &AccessScope, key: i64) -> Result<bool, DieselError> {
    match scope.patient_ids() {
        None => Ok(true),
        Some(patients) => diesel::select(diesel::dsl::exists(
            resource_compartment::table
                .filter(resource_compartment::res_key.eq(key))
                .filter(resource_compartment::patient.eq_any(patients)),
        ))
        .get_result(conn),
    }
}

/// The key of `res_type/res_id` if it exists (deleted or not) and is inside `scope`.
pub(super) fn visible_key(
    conn: &mut DbConnection,
    scope: &AccessScope,
    res_type: &str,
    res_id: &str,
) -> Result<Option<i64>, StoreError> {
    let mut query = resource::table
        .filter(resource::res_type.eq(res_type))
        .filter(resource::res_id.eq(res_id))
        .select(resource::res_key)
        .into_boxed();
    if !scope.allows_type(res_type) {
        return Ok(None);
    }
    if let Some(patients) = scope.patient_ids() {
        query = query.filter(resource::res_key.eq_any(compartment_keys(patients)));
    }
    Ok(query.first::<i64>(conn).optional()?)
}

pub(super) fn version_columns() -> (
    resource_version::res_type,
    resource_version::res_id,
    resource_version::version,
    resource_version::last_updated,
    resource_version::method,
    resource_version::body,
) {
    (
        resource_version::res_type,
        resource_version::res_id,
        resource_version::version,
        resource_version::last_updated,
        resource_version::method,
        resource_version::body,
    )
}

/// Which of `targets` (`(type, id)`) have a row (live or deleted): one query per type (and
/// 500 ids on SQLite), on the `(res_type, res_id)` unique index.
pub(super) fn existing_in(
    conn: &mut DbConnection,
    targets: &[(&str, &str)],
) -> Result<std::collections::HashSet<(String, String)>, StoreError> {
    let mut by_type: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (ty, id) in targets {
        by_type.entry(ty).or_default().push(id);
    }
    let mut found = std::collections::HashSet::new();
    for (ty, ids) in by_type {
        if let DbConnection::Postgres(pg) = conn {
            let rows = pg_bulk::existing_ids(pg, ty, &ids)?;
            found.extend(rows.into_iter().map(|id| (ty.to_string(), id)));
            continue;
        }
        for chunk in ids.chunks(CREATES_PER_INSERT) {
            let rows: Vec<String> = on_backend!(conn, c => resource::table
                .filter(resource::res_type.eq(ty))
                .filter(resource::res_id.eq_any(chunk))
                .select(resource::res_id)
                .load(c))?;
            found.extend(rows.into_iter().map(|id| (ty.to_string(), id)));
        }
    }
    Ok(found)
}
