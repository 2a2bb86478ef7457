//! Conditional interactions (create with `If-None-Exist`, update, delete and patch addressed
//! by search criteria): the search and the write run in one transaction, and on PostgreSQL
//! under an advisory lock keyed by the criteria, so two identical conditional creates arriving
//! together cannot both create (on SQLite, writers are serialised already).

use super::search::SearchError;
use super::{Store, StoreError};
use crate::access::AccessScope;
use crate::fhir::search::query::SearchQuery;

pub use super::transaction::{Resolved, Tx};

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
        self.transaction(|tx| {
            tx.lock(&[criteria], &[])?;
            let resolved = tx
                .resolve(scope, criteria)
                .map_err(ConditionalError::Search)?;
            act(tx, resolved).map_err(ConditionalError::Failed)
        })
    }
}
