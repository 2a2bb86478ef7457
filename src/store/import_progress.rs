//! `import_progress`: how far `carnet import` loaded each source file, written in the same
//! transaction as the resources it covers.

use diesel::prelude::*;

use super::backend::on_backend;
use super::schema::import_progress;
use super::transaction::Tx;
use super::{Store, StoreError};

/// One file's progress.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Insertable, AsChangeset)]
#[diesel(table_name = import_progress)]
pub struct ImportProgress {
    /// The file's canonical path.
    pub source: String,
    pub size: i64,
    /// Modification time, µs since the epoch.
    pub modified: i64,
    pub committed_bytes: i64,
    pub committed_lines: i64,
    pub done: bool,
    pub updated: i64,
}

impl Store {
    /// The recorded progress of `source`, if any.
    pub fn import_progress(&self, source: &str) -> Result<Option<ImportProgress>, StoreError> {
        let mut conn = self.conn()?;
        Ok(on_backend!(&mut *conn, c => import_progress::table
            .filter(import_progress::source.eq(source))
            .first::<ImportProgress>(c)
            .optional())?)
    }
}

impl Tx<'_> {
    /// Records `progress` (replacing the file's row), committed with the transaction.
    pub fn record_import_progress(&mut self, progress: &ImportProgress) -> Result<(), StoreError> {
        on_backend!(&mut *self.conn, c => diesel::insert_into(import_progress::table)
            .values(progress)
            .on_conflict(import_progress::source)
            .do_update()
            .set(progress)
            .execute(c))?;
        Ok(())
    }
}
