//! Group commit for SQLite. SQLite has one writer at a time and each commit waits for an
//! fsync (about 1.3 ms on this project's machines), which caps single-writer throughput near
//! 700 commits/s. Here writers that arrive while a transaction is open join it: each runs its
//! own work in a savepoint, on its own thread, with the one write connection handed from writer
//! to writer; the first of them (the leader) commits once everyone has run, and every writer
//! learns the outcome of that commit before answering. One fsync then acknowledges many writes,
//! and a failing writer only rolls back its own savepoint.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

use diesel::connection::{Connection, TransactionManager};

use super::backend::{DbConnection, DbPool};
use super::{Conn, StoreError};

/// The transaction manager of the multi-backend connection (ANSI savepoints underneath).
type Transactions = <DbConnection as Connection>::TransactionManager;

/// A batch closes once this many writers joined, so that a steady stream cannot starve it.
const MAX_BATCH: usize = 64;

pub(super) struct GroupCommit {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// The write connection, when no writer is using it.
    conn: Option<Conn>,
    /// A writer is using the connection (or fetching it from the pool).
    busy: bool,
    /// The outcome of the batch new writers join, set by its leader once it commits.
    outcome: Arc<OnceLock<Result<(), String>>>,
    /// That batch's transaction has begun.
    open: bool,
    /// Its leader is committing: new writers wait for the next batch.
    closing: bool,
    /// Writers of the open batch that have not finished their work yet.
    pending: usize,
    /// Writers that joined the open batch.
    size: usize,
    /// A writer of the batch left the transaction in a state it could not restore (a panic,
    /// or SQLite rolling back by itself): the whole batch rolls back rather than commit half
    /// of that work.
    failed: bool,
}

impl GroupCommit {
    pub(super) fn new() -> GroupCommit {
        GroupCommit {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A writer that panicked leaves a consistent state: every field is updated under the
        // lock in one step.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed.wait(guard).unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `work` inside a shared transaction and returns its result once that transaction
    /// is durably committed. `work` must open its own (nested) transaction, which becomes a
    /// savepoint here.
    pub(super) fn run<T, E: From<StoreError>>(
        &self,
        pool: &DbPool,
        work: impl FnOnce(&mut DbConnection) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut state = self.lock();
        while state.closing || state.size >= MAX_BATCH {
            state = self.wait(state);
        }
        let outcome = Arc::clone(&state.outcome);
        let leader = !state.open;
        state.open = true;
        state.size += 1;
        state.pending += 1;
        while state.busy {
            state = self.wait(state);
        }
        state.busy = true;
        let conn = state.conn.take();
        drop(state);

        let (conn, result, spoiled) = self.run_work(pool, conn, leader, work);

        let mut state = self.lock();
        state.failed |= spoiled;
        state.conn = conn;
        state.busy = false;
        state.pending -= 1;
        self.changed.notify_all();
        if leader {
            while state.pending > 0 || state.busy {
                state = self.wait(state);
            }
            state.closing = true;
            let conn = state.conn.take();
            let failed = state.failed;
            drop(state);
            let (conn, committed) = commit(conn, failed);
            let mut state = self.lock();
            state.conn = conn;
            let _ = outcome.set(committed.clone());
            state.outcome = Arc::new(OnceLock::new());
            state.open = false;
            state.closing = false;
            state.size = 0;
            state.failed = false;
            self.changed.notify_all();
            drop(state);
            return combine(result, committed);
        }
        loop {
            if let Some(committed) = outcome.get() {
                drop(state);
                return combine(result, committed.clone());
            }
            state = self.wait(state);
        }
    }

    /// Runs one writer's work on the shared connection; the leader begins the transaction.
    fn run_work<T, E: From<StoreError>>(
        &self,
        pool: &DbPool,
        conn: Option<Conn>,
        leader: bool,
        work: impl FnOnce(&mut DbConnection) -> Result<T, E>,
    ) -> (Option<Conn>, Result<T, E>, bool) {
        let mut conn = match conn {
            Some(conn) => conn,
            None => match pool.get() {
                Ok(conn) => conn,
                Err(e) => return (None, Err(StoreError::from(e).into()), false),
            },
        };
        if leader {
            if let Err(e) = Transactions::begin_transaction(&mut *conn) {
                return (Some(conn), Err(StoreError::Database(e).into()), false);
            }
        }
        // If the leader could not begin, refuse to write outside a transaction.
        let depth = transaction_depth(&mut conn);
        if depth.is_none() {
            let error =
                StoreError::Unavailable("the shared write transaction failed to begin".into());
            return (Some(conn), Err(error.into()), false);
        }
        // A panic must not leave the other writers waiting forever on a batch that never
        // commits, nor commit half of the panicking writer's work: its savepoints are rolled
        // back, and if that fails the whole batch is.
        match catch_unwind(AssertUnwindSafe(|| work(&mut conn))) {
            // Work opens and closes its own savepoints; if the depth moved, SQLite rolled the
            // transaction back under it (disk full, I/O error) and the batch cannot commit.
            Ok(result) => {
                let intact = transaction_depth(&mut conn) == depth;
                (Some(conn), result, !intact)
            }
            Err(_) => {
                let restored = roll_back_to(&mut conn, depth);
                let error =
                    StoreError::Internal("a write failed unexpectedly and was rolled back".into());
                (Some(conn), Err(error.into()), !restored)
            }
        }
    }
}

fn transaction_depth(conn: &mut Conn) -> Option<std::num::NonZeroU32> {
    Transactions::transaction_manager_status_mut(&mut **conn)
        .transaction_depth()
        .ok()
        .flatten()
}

/// Rolls back savepoints until the transaction is back at `depth`; false if it cannot.
fn roll_back_to(conn: &mut Conn, depth: Option<std::num::NonZeroU32>) -> bool {
    while transaction_depth(conn) > depth {
        if Transactions::rollback_transaction(&mut **conn).is_err() {
            return false;
        }
    }
    transaction_depth(conn) == depth
}

/// Commits the shared transaction (or rolls it back when a writer of the batch panicked),
/// rolling back if the commit itself fails.
fn commit(conn: Option<Conn>, failed: bool) -> (Option<Conn>, Result<(), String>) {
    let Some(mut conn) = conn else {
        return (None, Err("the write connection was lost".into()));
    };
    if transaction_depth(&mut conn).is_none() {
        return (
            Some(conn),
            Err("the shared write transaction failed to begin".into()),
        );
    }
    let outcome = if failed {
        Err("a write of this batch failed unexpectedly; the batch was rolled back".to_string())
    } else {
        match Transactions::commit_transaction(&mut *conn) {
            Ok(()) => return (Some(conn), Ok(())),
            Err(e) => Err(format!("committing the write transaction failed: {e}")),
        }
    };
    // A connection that cannot be brought back outside any transaction is dropped; the pool
    // opens a fresh one for the next writer.
    if roll_back_to(&mut conn, None) {
        (Some(conn), outcome)
    } else {
        (None, outcome)
    }
}

/// A writer's own result stands only if its batch committed; its own error wins, being the
/// more precise.
fn combine<T, E: From<StoreError>>(
    result: Result<T, E>,
    outcome: Result<(), String>,
) -> Result<T, E> {
    match (result, outcome) {
        (Err(e), _) => Err(e),
        (Ok(value), Ok(())) => Ok(value),
        (Ok(_), Err(message)) => Err(StoreError::Unavailable(message).into()),
    }
}
