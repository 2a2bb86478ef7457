//! Several operations in one database transaction: what a transaction Bundle (and each entry
//! of a batch, in its own savepoint) runs in. [`Tx`] resolves search criteria, reads, searches,
//! writes and deletes, always under the caller's scope; when the work fails, everything it did
//! rolls back. On SQLite the transaction is a savepoint of the group-commit transaction (see
//! `group_commit`), so a failing bundle undoes only its own work.

use diesel::connection::Connection;
use diesel::sql_types::{Array, BigInt};
use diesel::RunQueryDsl;

use super::backend::DbConnection;
use super::resources::{create_many_in, delete_in, existing_in, read_in, vread_in, write_in};
use super::search::{SearchError, SearchPage, SearchRequest};
use super::{
    Current, Deletion, Prepared, Prior, Store, StoreError, Version, WriteError, WriteMethod,
    WriteTarget, Written,
};
use crate::access::AccessScope;
use crate::fhir::search::query::SearchQuery;

/// What criteria matched, under the caller's scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    None,
    One {
        res_id: String,
        version: i64,
        last_updated: i64,
        body: String,
    },
    /// More than one: the specification's 412 for conditional interactions.
    Many,
}

/// The open transaction.
pub struct Tx<'c> {
    store: &'c Store,
    pub(super) conn: &'c mut DbConnection,
}

/// Failure of the work, or of the database around it.
enum Failure<E> {
    Work(E),
    Database(diesel::result::Error),
}

impl<E> From<diesel::result::Error> for Failure<E> {
    fn from(e: diesel::result::Error) -> Self {
        Failure::Database(e)
    }
}

impl<E: From<StoreError>> Failure<E> {
    fn into_error(self) -> E {
        match self {
            Failure::Work(e) => e,
            Failure::Database(e) => StoreError::from(e).into(),
        }
    }
}

/// Runs `work` in a (possibly nested) transaction of `conn`: a savepoint when one is open.
fn nested<T, E: From<StoreError>>(
    conn: &mut DbConnection,
    work: impl FnOnce(&mut DbConnection) -> Result<T, E>,
) -> Result<T, E> {
    conn.transaction::<T, Failure<E>, _>(|conn| work(conn).map_err(Failure::Work))
        .map_err(Failure::into_error)
}

impl Store {
    /// Runs `work` in one write transaction; nothing it did remains when it fails.
    pub fn transaction<T, E: From<StoreError>>(
        &self,
        work: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.write_with(|conn| nested(conn, |conn| work(&mut Tx { store: self, conn })))
    }
}

impl Tx<'_> {
    /// Runs `work` in a savepoint: when it fails, only its own changes roll back and the
    /// transaction goes on (a batch entry).
    pub fn savepoint<T, E: From<StoreError>>(
        &mut self,
        work: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let store = self.store;
        nested(self.conn, |conn| work(&mut Tx { store, conn }))
    }

    /// As [`Store::write`], inside this transaction.
    pub fn write<E>(
        &mut self,
        scope: &AccessScope,
        target: &WriteTarget<'_>,
        prepare: &mut dyn FnMut(Prior<'_>, i64, i64) -> Result<Prepared, E>,
    ) -> Result<Written, WriteError<E>> {
        write_in(self.conn, scope, target, prepare)
    }

    /// Creates resources at new server-chosen ids (`(type, id)`), all in one set of
    /// multi-row statements: version 1, one timestamp, `prepare(i, version, last_updated)`
    /// rendering the `i`th. An error carries the position of the resource at fault, if any.
    pub fn create_many<E>(
        &mut self,
        scope: &AccessScope,
        targets: &[(&str, &str)],
        prepare: &mut dyn FnMut(usize, i64, i64) -> Result<Prepared, E>,
    ) -> Result<Vec<Written>, (Option<usize>, WriteError<E>)> {
        create_many_in(self.conn, scope, targets, WriteMethod::Post, prepare)
    }

    /// As [`Tx::create_many`], for resources that a client named (`PUT` at ids that
    /// [`Tx::existing`] found free): their first version is recorded as a `PUT`.
    pub fn create_many_at<E>(
        &mut self,
        scope: &AccessScope,
        targets: &[(&str, &str)],
        prepare: &mut dyn FnMut(usize, i64, i64) -> Result<Prepared, E>,
    ) -> Result<Vec<Written>, (Option<usize>, WriteError<E>)> {
        create_many_in(self.conn, scope, targets, WriteMethod::Put, prepare)
    }

    /// Which of `targets` (`(type, id)`) exist, live or deleted: one query per 500.
    pub fn existing(
        &mut self,
        targets: &[(&str, &str)],
    ) -> Result<std::collections::HashSet<(String, String)>, StoreError> {
        existing_in(self.conn, targets)
    }

    /// As [`Store::delete`], inside this transaction.
    pub fn delete(
        &mut self,
        scope: &AccessScope,
        res_type: &str,
        res_id: &str,
        if_match: Option<i64>,
    ) -> Result<Deletion, StoreError> {
        self.conn
            .transaction(|conn| delete_in(conn, scope, res_type, res_id, if_match))
    }

    /// As [`Store::read`], seeing this transaction's writes.
    pub fn read(
        &mut self,
        scope: &AccessScope,
        res_type: &str,
        res_id: &str,
    ) -> Result<Option<Current>, StoreError> {
        read_in(self.conn, scope, res_type, res_id)
    }

    /// As [`Store::vread`], seeing this transaction's writes.
    pub fn vread(
        &mut self,
        scope: &AccessScope,
        res_type: &str,
        res_id: &str,
        version: i64,
    ) -> Result<Option<Version>, StoreError> {
        vread_in(self.conn, scope, res_type, res_id, version)
    }

    /// As [`Store::search`], seeing this transaction's writes.
    pub fn search(
        &mut self,
        scope: &AccessScope,
        request: &SearchRequest<'_>,
    ) -> Result<SearchPage, SearchError> {
        self.store.search_on(self.conn, scope, request)
    }

    /// What `criteria` (a search of one type, no result parameters) match now.
    pub fn resolve(
        &mut self,
        scope: &AccessScope,
        criteria: &SearchQuery,
    ) -> Result<Resolved, SearchError> {
        let mut criteria = criteria.clone();
        criteria.includes.clear();
        criteria.revincludes.clear();
        criteria.sort.clear();
        let request = SearchRequest {
            query: &criteria,
            compartment: None,
            count: 2,
            cursor: None,
            max_included: 0,
        };
        let page = self.store.search_on(self.conn, scope, &request)?;
        Ok(match page.matches.as_slice() {
            [] => Resolved::None,
            [one] => Resolved::One {
                res_id: one.res_id.clone(),
                version: one.version,
                last_updated: one.last_updated,
                body: one.body.clone(),
            },
            _ => Resolved::Many,
        })
    }

    /// On PostgreSQL, takes until the transaction ends the advisory locks of these criteria
    /// (so that identical conditional creates arriving together cannot both create) and of
    /// these resources (`(type, id)`, that the caller will write), all in one global order:
    /// sorted by key, in one statement. Two transactions that touch the same resources in
    /// opposite orders then queue behind each other instead of deadlocking on the row locks
    /// of their writes. SQLite serialises writers already.
    pub fn lock(
        &mut self,
        criteria: &[&SearchQuery],
        resources: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        let DbConnection::Postgres(pg) = &mut *self.conn else {
            return Ok(());
        };
        let mut keys: Vec<i64> = criteria.iter().map(|c| lock_key(c)).collect();
        keys.extend(resources.iter().map(|(t, i)| resource_lock_key(t, i)));
        if keys.is_empty() {
            return Ok(());
        }
        keys.sort_unstable();
        keys.dedup();
        // The subquery hands the keys over in order: each lock is taken before the next.
        diesel::sql_query(
            "SELECT pg_advisory_xact_lock(k) FROM (SELECT k FROM unnest($1) AS u(k) ORDER BY k) s",
        )
        .bind::<Array<BigInt>, _>(keys)
        .execute(pg)?;
        Ok(())
    }
}

fn fnv1a<'a>(parts: impl Iterator<Item = &'a str>) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0)) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash as i64
}

/// The advisory lock of one resource, apart from those of criteria (a leading marker no type
/// or parameter has).
fn resource_lock_key(res_type: &str, res_id: &str) -> i64 {
    fnv1a(["@resource", res_type, res_id].into_iter())
}

/// The advisory lock of a set of criteria: a 64-bit FNV-1a hash of the types and the
/// parameters as applied (order-independent).
pub(super) fn lock_key(criteria: &SearchQuery) -> i64 {
    let mut parts: Vec<String> = criteria
        .applied
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    parts.sort();
    fnv1a(
        criteria
            .types
            .iter()
            .chain(parts.iter())
            .map(String::as_str),
    )
}
