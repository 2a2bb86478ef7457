//! Persistence: one schema on SQLite and PostgreSQL through diesel. Every operation takes the
//! caller's [`AccessScope`] and applies it in SQL. Knows nothing of HTTP or of FHIR rules: it
//! stores opaque JSON text with the keys the `fhir` layer computed.

pub mod backend;
mod history;
mod resources;
mod schema;

use std::sync::{Mutex, MutexGuard};

use diesel::r2d2::{ConnectionManager, PooledConnection};

pub use backend::{Backend, DatabaseUrl};
pub use history::{HistoryCursor, HistoryPage, HistoryQuery};
pub use resources::{
    Current, Deletion, Prepared, Prior, Version, WriteError, WriteMethod, WriteTarget, Written,
};

use backend::{DbConnection, DbPool};

/// What can go wrong below the HTTP layer; `http::error` maps each kind to a status.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Config(String),
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("migrating the database failed: {0}")]
    Migration(String),
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
    #[error("version conflict: the request expected version {expected} but the current version is {current}")]
    VersionConflict { expected: i64, current: i64 },
    #[error("a resource with this id already exists")]
    AlreadyExists,
    #[error("the resource is outside what this caller may write")]
    Forbidden,
    #[error("the resource is being changed by other requests at the same time; retry")]
    Contention,
}

impl From<diesel::r2d2::PoolError> for StoreError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

/// The resource store: a connection pool plus what a backend needs to write safely.
pub struct Store {
    pool: DbPool,
    backend: Backend,
    /// SQLite has one writer at a time; queueing writers here is faster and fairer than letting
    /// them spin on the database lock, and makes read-then-write transactions safe.
    sqlite_writer: Mutex<()>,
}

type Conn = PooledConnection<ConnectionManager<DbConnection>>;

impl Store {
    /// Connects to `url` with at most `pool_size` connections. Does not migrate.
    pub fn open(url: &DatabaseUrl, pool_size: u32) -> Result<Store, StoreError> {
        let pool = backend::open_pool(url, pool_size)?;
        Ok(Store {
            pool,
            backend: url.backend(),
            sqlite_writer: Mutex::new(()),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies pending migrations; returns how many ran.
    pub fn migrate(&self) -> Result<usize, StoreError> {
        let _writer = self.writer();
        backend::run_migrations(&mut *self.conn()?)
    }

    /// Succeeds when the database answers and its schema is current.
    pub fn check_health(&self) -> Result<(), StoreError> {
        if backend::is_migrated(&mut *self.conn()?)? {
            Ok(())
        } else {
            Err(StoreError::Migration(
                "migrations are pending; run `carnet migrate`".into(),
            ))
        }
    }

    fn conn(&self) -> Result<Conn, StoreError> {
        Ok(self.pool.get()?)
    }

    /// Serialises writers on SQLite; a no-op on PostgreSQL, where row locks do the job.
    fn writer(&self) -> Option<MutexGuard<'_, ()>> {
        match self.backend {
            // A poisoned lock only means another writer panicked; the database is still
            // consistent because its transaction rolled back.
            Backend::Sqlite => Some(self.sqlite_writer.lock().unwrap_or_else(|e| e.into_inner())),
            Backend::Postgres => None,
        }
    }
}

/// The current time in microseconds since the Unix epoch, the unit of every stored timestamp.
fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}
