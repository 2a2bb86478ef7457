//! Persistence: one schema on SQLite and PostgreSQL through diesel. Every operation takes the
//! caller's [`AccessScope`] and applies it in SQL. Knows nothing of HTTP or of FHIR rules: it
//! stores opaque JSON text with the keys the `fhir` layer computed.

pub mod auth;
pub mod backend;
pub mod conditional;
pub mod export;
mod group_commit;
mod history;
pub mod import_progress;
mod pg_bulk;
pub mod reindex_job;
mod resources;
mod schema;
pub mod search;
pub mod transaction;
mod unique;

use std::sync::Arc;

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
    Database(diesel::result::Error),
    #[error("version conflict: the request expected version {expected} but the current version is {current}")]
    VersionConflict { expected: i64, current: i64 },
    #[error("a resource with this id already exists")]
    AlreadyExists,
    /// Another live resource holds an identifier that must be unique.
    #[error(
        "{holder} already holds the identifier {identifier}, which only one resource may hold"
    )]
    DuplicateIdentifier { holder: String, identifier: String },
    #[error("the resource is outside what this caller may write")]
    Forbidden,
    #[error("the resource is being changed by other requests at the same time; retry")]
    Contention,
    #[error("internal error: {0}")]
    Internal(String),
}

/// Every database error becomes a `StoreError` here, so that contention is recognised
/// wherever it surfaces.
impl From<diesel::result::Error> for StoreError {
    fn from(e: diesel::result::Error) -> Self {
        if is_contention(&e) {
            log::info!("transaction aborted by contention: {e}");
            StoreError::Contention
        } else {
            StoreError::Database(e)
        }
    }
}

/// Whether PostgreSQL aborted the transaction because of concurrent ones: SQLSTATE 40001
/// (serialization failure) or 40P01 (deadlock detected). diesel does not expose 40P01 as a
/// kind, only its message; PostgreSQL sends it untranslated unless `lc_messages` is changed.
/// Such a transaction may simply be run again.
fn is_contention(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match e {
        Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        Error::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            info.message().starts_with("deadlock detected")
        }
        _ => false,
    }
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
    /// SQLite writers share transactions (see `group_commit`); PostgreSQL needs no help.
    sqlite_writes: group_commit::GroupCommit,
    /// The search index keys of this database, set by [`Store::register_search_params`] and
    /// replaced when parameters are added or reindexed.
    search_ids: std::sync::RwLock<Option<Arc<search::keys::ParamIds>>>,
    /// Seals paging cursors, set by [`Store::register_search_params`].
    cursor_key: std::sync::OnceLock<search::cursor::CursorKey>,
}

pub(crate) type Conn = PooledConnection<ConnectionManager<DbConnection>>;

impl Store {
    /// Connects to `url` with at most `pool_size` connections. Does not migrate.
    pub fn open(url: &DatabaseUrl, pool_size: u32) -> Result<Store, StoreError> {
        Store::open_with_cache(url, pool_size, backend::DEFAULT_SQLITE_CACHE_KIB)
    }

    /// [`Store::open`] with the SQLite page cache of the whole pool set to `sqlite_cache_kib`
    /// (split evenly between its connections; PostgreSQL ignores it).
    pub fn open_with_cache(
        url: &DatabaseUrl,
        pool_size: u32,
        sqlite_cache_kib: u64,
    ) -> Result<Store, StoreError> {
        let pool = backend::open_pool(url, pool_size, sqlite_cache_kib)?;
        Ok(Store {
            pool,
            backend: url.backend(),
            sqlite_writes: group_commit::GroupCommit::new(),
            search_ids: std::sync::RwLock::new(None),
            cursor_key: std::sync::OnceLock::new(),
        })
    }

    /// Applies pending migrations; returns how many ran.
    pub fn migrate(&self) -> Result<usize, StoreError> {
        backend::run_migrations(&mut *self.conn()?)
    }

    /// Registers the search parameters of `types` (after [`Store::migrate`], before serving,
    /// and again when parameters are added): writes index them from then on. Returns the types
    /// whose existing resources must be reindexed ([`Store::reindex`]) before the new
    /// parameters can be searched.
    pub fn register_search_params(
        &self,
        params: &crate::fhir::search::SearchParams,
        types: &[&str],
    ) -> Result<Vec<String>, StoreError> {
        let names = search::keys::key_names(params, types);
        let mut conn = self.conn()?;
        let ids = search::keys::register(&mut conn, params, &names)?;
        let key = search::cursor::CursorKey::load_or_create(&mut conn)?;
        let pending = ids.pending_types();
        self.set_search_ids(ids);
        // A second registration keeps the first key: cursors already handed out stay valid.
        let _ = self.cursor_key.set(key);
        Ok(pending)
    }

    /// The sealed text of a paging cursor of the search described by `context`.
    pub fn seal_cursor(
        &self,
        cursor: &search::cursor::SearchCursor,
        context: &[u8],
    ) -> Result<String, StoreError> {
        Ok(self.cursor_key()?.seal(cursor, context))
    }

    /// The cursor sealed in `text` for the search described by `context`; `None` when it was
    /// not (another search, another database, or not a cursor at all).
    pub fn open_cursor(
        &self,
        text: &str,
        context: &[u8],
    ) -> Result<Option<search::cursor::SearchCursor>, StoreError> {
        Ok(self.cursor_key()?.open(text, context))
    }

    fn cursor_key(&self) -> Result<&search::cursor::CursorKey, StoreError> {
        self.cursor_key.get().ok_or_else(|| {
            StoreError::Internal("search parameters were not registered at start".into())
        })
    }

    /// What the search parameters in force depend on in the database
    /// ([`search::keys::ParamsStamp`]): nodes compare it to learn of each other's changes.
    pub fn search_params_stamp(&self) -> Result<search::keys::ParamsStamp, StoreError> {
        search::keys::params_stamp(&mut *self.conn()?)
    }

    /// The types whose resources must be reindexed before some of their search parameters are
    /// searchable.
    pub fn pending_search_types(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.search_ids()?.pending_types())
    }

    /// The keys of `types` waiting for a reindex, with the definitions they wait under.
    pub fn pending_search_keys(&self, types: &[String]) -> Result<Vec<(i32, String)>, StoreError> {
        Ok(self.search_ids()?.pending_keys(types))
    }

    /// Marks `keys` ([`Store::pending_search_keys`]) searchable after their types were
    /// reindexed, each only if its definition did not change meanwhile. The ids in force are
    /// refreshed by the next [`Store::register_search_params`].
    pub fn mark_indexed(&self, keys: &[(i32, String)]) -> Result<(), StoreError> {
        search::keys::mark_indexed(&mut *self.conn()?, keys)
    }

    fn set_search_ids(&self, ids: search::keys::ParamIds) {
        *self.search_ids.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(ids));
    }

    /// The index keys in force; a search or write keeps the set it started with.
    pub(crate) fn search_ids(&self) -> Result<Arc<search::keys::ParamIds>, StoreError> {
        self.search_ids
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| {
                StoreError::Internal("search parameters were not registered at start".into())
            })
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

    /// Whether a connection is free right now, so that a short query will not wait for one.
    pub fn has_idle_connection(&self) -> bool {
        self.pool.state().idle_connections > 0
    }

    fn conn(&self) -> Result<Conn, StoreError> {
        Ok(self.pool.get()?)
    }

    /// Runs `work` (which opens its own transaction) where writes are safe and fast: on
    /// SQLite inside a shared group-commit transaction, on PostgreSQL on a pooled connection.
    fn write_with<T, E: From<StoreError>>(
        &self,
        work: impl FnOnce(&mut DbConnection) -> Result<T, E>,
    ) -> Result<T, E> {
        match self.backend {
            Backend::Sqlite => self.sqlite_writes.run(&self.pool, work),
            Backend::Postgres => work(&mut *self.conn()?),
        }
    }
}

/// The current time in microseconds since the Unix epoch, the unit of every stored timestamp.
fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}
