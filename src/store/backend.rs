//! The one place that knows there are two database backends: how a URL picks one, how its
//! connections are set up, and which migrations it runs.

use std::fmt;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::{PgConnection, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::StoreError;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
/// The PostgreSQL advisory lock that serialises migrations across nodes (arbitrary, fixed).
const MIGRATION_LOCK: i64 = 0x4341_524e_4554;

/// A connection to either backend; diesel dispatches every query to the right one.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

pub type DbPool = Pool<ConnectionManager<DbConnection>>;

/// The backend type diesel builds queries for, covering both databases.
pub type Db = <DbConnection as diesel::Connection>::Backend;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs `$body` with `$c` bound to the concrete connection inside `$conn`. diesel's
/// multi-backend wrapper rebuilds and re-prepares every statement it runs (it cannot prove them
/// cacheable), which doubles the cost of a read by id; run through the concrete connection,
/// the same query is prepared once per connection and then reused. Use it on hot paths.
macro_rules! on_backend {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::store::backend::DbConnection::Sqlite($c) => $body,
            $crate::store::backend::DbConnection::Postgres($c) => $body,
        }
    };
}
pub(crate) use on_backend;

/// A database location as the user gave it, resolved to a backend.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    backend: Backend,
    /// What diesel connects to: a file path for SQLite, the URL itself for PostgreSQL.
    target: String,
}

impl DatabaseUrl {
    /// Accepts `postgres://...`/`postgresql://...`, `sqlite:PATH`, `sqlite://PATH` or a bare path.
    pub fn parse(url: &str) -> Result<DatabaseUrl, StoreError> {
        let url = url.trim();
        if url.is_empty() {
            return Err(StoreError::Config(
                "the database URL is empty: give a path, sqlite:PATH or postgres://...".into(),
            ));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseUrl {
                backend: Backend::Postgres,
                target: url.to_string(),
            });
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        if path.is_empty() || path.contains("://") {
            return Err(StoreError::Config(format!(
                "unsupported database URL {url:?}: use a path, sqlite:PATH or postgres://..."
            )));
        }
        Ok(DatabaseUrl {
            backend: Backend::Sqlite,
            target: path.to_string(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The database file, for SQLite.
    pub fn sqlite_file(&self) -> Option<&std::path::Path> {
        (self.backend == Backend::Sqlite).then(|| std::path::Path::new(&self.target))
    }
}

impl fmt::Display for DatabaseUrl {
    /// Shows where the data is without printing a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.backend {
            Backend::Sqlite => write!(f, "sqlite:{}", self.target),
            Backend::Postgres => {
                let redacted = match (self.target.find("://"), self.target.rfind('@')) {
                    (Some(scheme), Some(at)) if at > scheme => {
                        let credentials = &self.target[scheme + 3..at];
                        match credentials.split_once(':') {
                            Some((user, _)) => format!(
                                "{}{}:***{}",
                                &self.target[..scheme + 3],
                                user,
                                &self.target[at..]
                            ),
                            None => self.target.clone(),
                        }
                    }
                    _ => self.target.clone(),
                };
                f.write_str(&redacted)
            }
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The SQLite page cache of the whole pool, in KiB, when nothing else is configured
/// (`--sqlite-cache-size`, in MiB): 64 MiB.
pub const DEFAULT_SQLITE_CACHE_KIB: u64 = 64 * 1024;

/// The page cache of one SQLite connection, in KiB, when the pool of `pool_size`
/// connections shares `budget_kib`: an equal share, never below SQLite's own default of
/// 2 MiB, never above 32 MiB (the former per-connection figure).
pub fn sqlite_cache_per_connection(budget_kib: u64, pool_size: u32) -> u64 {
    (budget_kib / u64::from(pool_size.max(1))).clamp(2 * 1024, 32 * 1024)
}

/// Per-connection settings applied whenever the pool opens a connection.
#[derive(Debug)]
struct ConnectionSetup {
    backend: Backend,
    /// SQLite: this connection's share of the pool's page-cache budget, in KiB.
    cache_kib: u64,
}

impl CustomizeConnection<DbConnection, diesel::r2d2::Error> for ConnectionSetup {
    fn on_acquire(&self, conn: &mut DbConnection) -> Result<(), diesel::r2d2::Error> {
        let sql = match self.backend {
            // WAL lets readers run beside the writer; synchronous=FULL makes every acknowledged
            // commit durable across a power loss, not only a process crash. Each connection
            // keeps its own page cache: the pool shares one budget (`--sqlite-cache-size`)
            // instead of each connection holding 32 MiB (16 connections grew the server to
            // 716 MiB under load); pages beyond it are re-read from the operating system's
            // file cache. Checkpointing every 10,000 WAL pages (40 MiB) instead of 1,000
            // copies a page that many commits rewrote into the database once instead of many
            // times. Sorts and DISTINCTs of searches build their temporary B-trees in memory,
            // not in files. The busy timeout comes first: a connection opened while another
            // writes waits for the lock instead of failing on `journal_mode`.
            Backend::Sqlite => format!(
                "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
                 PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
                 PRAGMA cache_size = -{}; PRAGMA wal_autocheckpoint = 10000; \
                 PRAGMA temp_store = MEMORY;",
                self.cache_kib
            ),
            Backend::Postgres => "SET application_name = 'carnet';".to_string(),
        };
        conn.batch_execute(&sql)
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Opens a pool of `size` connections; fails fast with a clear message when the database
/// cannot be reached. On SQLite the connections share a page cache of `sqlite_cache_kib`.
pub fn open_pool(
    url: &DatabaseUrl,
    size: u32,
    sqlite_cache_kib: u64,
) -> Result<DbPool, StoreError> {
    let manager = ConnectionManager::<DbConnection>::new(url.target.clone());
    Pool::builder()
        .max_size(size.max(1))
        .min_idle(Some(1))
        // A broken connection fails its query and is dropped then; pinging on every checkout
        // would double the round trips of a read.
        .test_on_check_out(false)
        .connection_timeout(Duration::from_secs(10))
        .connection_customizer(Box::new(ConnectionSetup {
            backend: url.backend,
            cache_kib: sqlite_cache_per_connection(sqlite_cache_kib, size),
        }))
        .build(manager)
        .map_err(|e| StoreError::Unavailable(format!("cannot open {url}: {e}")))
}

/// Applies the migrations of this backend that have not run yet.
pub fn run_migrations(conn: &mut DbConnection) -> Result<usize, StoreError> {
    let applied = match conn {
        DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
        DbConnection::Postgres(c) => {
            // Stateless nodes may start together: one migrates, the others wait and then find
            // nothing pending. The lock belongs to the session, so it cannot outlive it.
            use diesel::RunQueryDsl;
            diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})")).execute(c)?;
            let applied = c
                .run_pending_migrations(POSTGRES_MIGRATIONS)
                .map(|v| v.len());
            diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})")).execute(c)?;
            applied
        }
    };
    applied.map_err(|e| StoreError::Migration(e.to_string()))
}

/// Whether every migration of this backend has been applied.
pub fn is_migrated(conn: &mut DbConnection) -> Result<bool, StoreError> {
    let pending = match conn {
        DbConnection::Sqlite(c) => c.has_pending_migration(SQLITE_MIGRATIONS),
        DbConnection::Postgres(c) => c.has_pending_migration(POSTGRES_MIGRATIONS),
    };
    pending
        .map(|p| !p)
        .map_err(|e| StoreError::Migration(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_the_backend() {
        let pg = DatabaseUrl::parse("postgres://u:secret@localhost/db").unwrap();
        assert_eq!(pg.backend(), Backend::Postgres);
        assert_eq!(pg.to_string(), "postgres://u:***@localhost/db");
        assert_eq!(
            DatabaseUrl::parse("sqlite:carnet.db").unwrap().target,
            "carnet.db"
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///tmp/x.db").unwrap().target,
            "/tmp/x.db"
        );
        assert_eq!(
            DatabaseUrl::parse("./data/c.db").unwrap().backend(),
            Backend::Sqlite
        );
        assert!(DatabaseUrl::parse("mysql://x").is_err());
        assert!(DatabaseUrl::parse("").is_err());
    }
}
