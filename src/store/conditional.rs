//! Conditional interactions (create with `If-None-Exist`, update, delete and patch addressed
//! by search criteria): the search and the write run in one transaction, and on PostgreSQL
//! under an advisory lock keyed by the criteria, so two identical conditional creates arriving
//! together cannot both create (on SQLite, writers are serialised already).

use diesel::connection::Connection;
use diesel::sql_types::BigInt;
use diesel::RunQueryDsl;

use super::backend::DbConnection;
use super::resources::{delete_in, write_in};
use super::search::{SearchError, SearchRequest};
use super::{Deletion, Prepared, Prior, Store, StoreError, WriteError, WriteTarget, Written};
use crate::access::AccessScope;
use crate::fhir::search::query::SearchQuery;

/// What the criteria matched, under the caller's scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    None,
    One {
        res_id: String,
        version: i64,
        last_updated: i64,
        body: String,
    },
    /// More than one: the specification's 412 for create, update, patch and delete.
    Many,
}

/// The transaction a conditional interaction acts in, once it knows what matched.
pub struct Tx<'c> {
    conn: &'c mut DbConnection,
}

impl Tx<'_> {
    /// As [`Store::write`], inside this transaction.
    pub fn write<E>(
        &mut self,
        scope: &AccessScope,
        target: &WriteTarget<'_>,
        prepare: &mut dyn FnMut(Prior<'_>, i64, i64) -> Result<Prepared, E>,
    ) -> Result<Written, WriteError<E>> {
        write_in(self.conn, scope, target, prepare)
    }

    /// As [`Store::delete`], inside this transaction.
    pub fn delete(
        &mut self,
        scope: &AccessScope,
        res_type: &str,
        res_id: &str,
    ) -> Result<Deletion, StoreError> {
        self.conn
            .transaction(|conn| delete_in(conn, scope, res_type, res_id, None))
    }
}

/// A conditional interaction fails in the search, or in what the caller did with its result.
#[derive(Debug)]
pub enum ConditionalError<E> {
    Search(SearchError),
    Failed(E),
}

impl<E> From<StoreError> for ConditionalError<E> {
    fn from(e: StoreError) -> Self {
        ConditionalError::Search(SearchError::Store(e))
    }
}

impl<E> From<diesel::result::Error> for ConditionalError<E> {
    fn from(e: diesel::result::Error) -> Self {
        ConditionalError::Search(e.into())
    }
}

impl Store {
    /// Resolves `criteria` (a search of one type) and runs `act` on the result, in one
    /// transaction; the transaction rolls back when `act` fails.
    pub fn conditional<T, E>(
        &self,
        scope: &AccessScope,
        criteria: &SearchQuery,
        act: impl FnOnce(&mut Tx<'_>, Resolved) -> Result<T, E>,
    ) -> Result<T, ConditionalError<E>> {
        let mut criteria = criteria.clone();
        criteria.includes.clear();
        criteria.revincludes.clear();
        criteria.sort.clear();
        let key = lock_key(&criteria);
        let mut act = Some(act);
        self.write_with(|conn| {
            conn.transaction(|conn| {
                if let DbConnection::Postgres(pg) = conn {
                    diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
                        .bind::<BigInt, _>(key)
                        .execute(pg)?;
                }
                let request = SearchRequest {
                    query: &criteria,
                    compartment: None,
                    count: 2,
                    cursor: None,
                    max_included: 0,
                };
                let page = self
                    .search_on(conn, scope, &request)
                    .map_err(ConditionalError::Search)?;
                let resolved = match page.matches.as_slice() {
                    [] => Resolved::None,
                    [one] => Resolved::One {
                        res_id: one.res_id.clone(),
                        version: one.version,
                        last_updated: one.last_updated,
                        body: one.body.clone(),
                    },
                    _ => Resolved::Many,
                };
                let act = act.take().expect("a transaction body runs once");
                act(&mut Tx { conn }, resolved).map_err(ConditionalError::Failed)
            })
        })
    }
}

/// The advisory lock of a set of criteria: a 64-bit FNV-1a hash of the types and the
/// parameters as applied (order-independent).
fn lock_key(criteria: &SearchQuery) -> i64 {
    let mut parts: Vec<String> = criteria
        .applied
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    parts.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in criteria.types.iter().chain(parts.iter()) {
        for b in part.bytes().chain(std::iter::once(0)) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash as i64
}
