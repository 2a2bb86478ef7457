//! The writers: each takes a batch of units from the reading thread, writes it in one
//! database transaction with the progress of its files, and commits.
//!
//! On PostgreSQL several writers run at once, each on its own connection, because the
//! server's work (index maintenance, WAL) then runs on several cores while this process
//! prepares the next batch. Two rules keep that equal to one writer going through the
//! batches in order:
//!
//! - **Commits in order.** Batches are numbered as they are taken; a writer does its writes
//!   at once but commits only after the batch before it committed. The progress of a file
//!   (one offset, `import_progress`) is written just before that commit, so what is committed
//!   is always a prefix of the files, as with one writer, and an interruption at any instant
//!   resumes exactly.
//! - **No shared rows.** A batch whose resources (its [`Footprint`]) meet those of an earlier
//!   batch still running waits until that one committed; a batch whose footprint is not known
//!   without the database (conditional creates and references, searches, SearchParameters)
//!   waits for every earlier batch and holds back every later one. A writer therefore never
//!   waits for a row that a later batch holds, and later batches see what earlier ones wrote
//!   when it matters.
//!
//! SQLite has one writer at a time anyway: there is one writer thread.

use std::collections::HashSet;
use std::fs::File;
use std::io::BufWriter;
use std::sync::mpsc;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::display::{Display, Summary};
use super::source::{Source, Unit};
use super::STOP_AFTER_ENV;
use super::{account, first_diagnostics, is_database_failure, unresolved_reference, Outcome};
use crate::interaction::bulk::{self, PreparedWrite};
use crate::interaction::transaction::{Context, PlannedBundle};
use crate::interaction::Services;
use crate::store::import_progress::ImportProgress;
use crate::store::StoreError;

/// How a round of writing goes.
pub(super) struct Limits {
    pub batch_size: usize,
    pub stop_after: Option<u64>,
    /// Bundles are not deferred any more.
    pub last_round: bool,
}

/// The resources a batch writes, as far as they are known before it runs.
#[derive(Debug, Clone)]
pub(super) enum Footprint {
    /// These `(type, id)` (creates at new server ids are in no one else's way).
    Ids(HashSet<(String, String)>),
    /// Not known without the database: the batch runs alone.
    Unknown,
}

impl Footprint {
    fn of(units: &[Unit]) -> Footprint {
        let mut ids = HashSet::new();
        for unit in units {
            match unit {
                Unit::Resources { items, .. } => {
                    for w in items {
                        if w.res_type == "SearchParameter" {
                            return Footprint::Unknown;
                        }
                        if w.method == crate::store::WriteMethod::Put {
                            ids.insert((w.res_type.clone(), w.res_id.clone()));
                        }
                    }
                }
                // A Bundle refused before the database writes nothing.
                Unit::Bundle { planned, .. } => {
                    if let Ok(planned) = planned {
                        match planned.footprint() {
                            Some(found) => ids.extend(found),
                            None => return Footprint::Unknown,
                        }
                    }
                }
            }
        }
        Footprint::Ids(ids)
    }

    fn meets(&self, other: &Footprint) -> bool {
        match (self, other) {
            (Footprint::Ids(a), Footprint::Ids(b)) => {
                let (small, large) = if a.len() < b.len() { (a, b) } else { (b, a) };
                small.iter().any(|id| large.contains(id))
            }
            _ => true,
        }
    }
}

/// What the writers of a round share.
pub(super) struct Shared<'a> {
    /// `None` once closed.
    pub receiver: Mutex<Option<mpsc::Receiver<Unit>>>,
    pub order: Mutex<Order<'a>>,
    pub changed: Condvar,
    pub sources: &'a [Source],
    pub limits: Limits,
    /// Where written resources go to be freed; `None` once closed.
    pub trash: Mutex<Option<mpsc::Sender<Garbage>>>,
}

/// What the writers are done with, freed on a thread of their own: it was allocated by the
/// reader, and freeing it costs a writer about a tenth of its time.
#[allow(dead_code)] // held only to be dropped
pub(super) enum Garbage {
    Writes(Vec<PreparedWrite>),
    Bundle(Box<PlannedBundle>),
}

/// The order of the batches, and everything a commit updates (changed by one writer at a
/// time: the one whose turn it is to commit).
pub(super) struct Order<'a> {
    /// Number of the next batch taken.
    pub next: u64,
    /// Batches committed: batch `n` commits when this is `n`.
    pub committed: u64,
    /// A writer failed: the others roll back and stop.
    pub failed: bool,
    /// Batches taken and not yet committed, with their footprints.
    pub running: Vec<(u64, Footprint)>,
    pub progress: Vec<ImportProgress>,
    /// Bundles to run again at the end (positions in the round's sources).
    pub deferred: Vec<usize>,
    /// Commits in this process, for the test hook.
    pub batches: &'a mut u64,
    pub summary: &'a mut Summary,
    pub display: &'a mut Display,
    pub rejects_file: &'a mut Option<BufWriter<File>>,
}

impl<'a> Shared<'a> {
    /// Drops the receiving end of the reader's channel and the sending end of the freeing
    /// thread's, once the writers are done, so that both threads end.
    pub fn close(&self) {
        self.receiver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        self.trash.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// The Bundles deferred by the committed batches (positions in the round's sources).
    pub fn into_deferred(self) -> Vec<usize> {
        self.order
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .deferred
    }

    fn lock(&self) -> MutexGuard<'_, Order<'a>> {
        self.order.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `ready` holds or a writer failed; `false` when one failed.
    fn wait_for<'s>(
        &'s self,
        mut order: MutexGuard<'s, Order<'a>>,
        ready: impl Fn(&Order<'a>) -> bool,
    ) -> (MutexGuard<'s, Order<'a>>, bool) {
        loop {
            if order.failed {
                return (order, false);
            }
            if ready(&order) {
                return (order, true);
            }
            order = self.changed.wait(order).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// One writer: takes batches until the reading thread is done, or a writer failed.
pub(super) fn run(
    services: &Services,
    context: &Context,
    shared: &Shared<'_>,
) -> Result<(), String> {
    loop {
        let waiting = Instant::now();
        let Some((seq, mut units, footprint)) = take(shared) else {
            shared.lock().summary.waiting += waiting.elapsed();
            return Ok(());
        };
        // Waiting for the reader; waiting for an earlier batch below counts as writing.
        let waited = waiting.elapsed();
        let writing = Instant::now();
        let (order, go) = shared.wait_for(shared.lock(), |o| {
            !o.running
                .iter()
                .any(|(n, f)| *n < seq && f.meets(&footprint))
        });
        drop(order);
        if !go {
            return Ok(());
        }
        let mut written = BatchResult::default();
        let committed = services.store.transaction(|tx| -> Result<(), StoreError> {
            written = write_batch(tx, services, context, shared, &mut units)?;
            let (mut order, go) = shared.wait_for(shared.lock(), |o| o.committed == seq);
            if !go {
                return Err(StoreError::Internal("another writer failed".into()));
            }
            let now = chrono::Utc::now().timestamp_micros();
            for (unit, outcome) in units.iter().zip(&written.outcomes) {
                let p = match (unit, outcome) {
                    (_, Outcome::Deferred) => continue,
                    (
                        Unit::Resources {
                            source,
                            end_bytes,
                            end_lines,
                            ..
                        },
                        _,
                    ) => {
                        let p = &mut order.progress[*source];
                        p.committed_bytes = *end_bytes as i64;
                        p.committed_lines = *end_lines as i64;
                        p.done = p.committed_bytes >= p.size;
                        p
                    }
                    (Unit::Bundle { source, .. }, _) => {
                        let p = &mut order.progress[*source];
                        p.committed_bytes = p.size;
                        p.committed_lines = 1;
                        p.done = true;
                        p
                    }
                };
                p.updated = now;
            }
            let mut touched: Vec<usize> = units
                .iter()
                .zip(&written.outcomes)
                .filter(|(_, o)| !matches!(o, Outcome::Deferred))
                .map(|(u, _)| u.source())
                .collect();
            touched.sort_unstable();
            touched.dedup();
            for s in touched {
                tx.record_import_progress(&order.progress[s])?;
            }
            Ok(())
        });
        let mut order = shared.lock();
        if let Err(e) = committed {
            let first = !order.failed;
            order.failed = true;
            shared.changed.notify_all();
            if !first && matches!(&e, StoreError::Internal(m) if m == "another writer failed") {
                return Ok(());
            }
            return Err(format!(
                "writing to the database failed: {e}; what was committed stays, run the same \
                 command again to resume"
            ));
        }
        let result = after_commit(
            services,
            shared,
            &mut order,
            units,
            written,
            waited,
            writing.elapsed(),
        );
        order.committed = seq + 1;
        order.running.retain(|(n, _)| *n != seq);
        shared.changed.notify_all();
        if result.is_err() {
            order.failed = true;
        }
        result?;
    }
}

/// The next batch: units up to the batch size, numbered, its footprint registered.
fn take(shared: &Shared<'_>) -> Option<(u64, Vec<Unit>, Footprint)> {
    let receiver = shared.receiver.lock().unwrap_or_else(|e| e.into_inner());
    let receiver = receiver.as_ref()?;
    if shared.lock().failed {
        return None;
    }
    let first = receiver.recv().ok()?;
    let mut resources = first.resources();
    let mut units = vec![first];
    while resources < shared.limits.batch_size as u64 {
        match receiver.recv() {
            Ok(unit) => {
                resources += unit.resources();
                units.push(unit);
            }
            Err(_) => break,
        }
    }
    let footprint = Footprint::of(&units);
    let mut order = shared.lock();
    let seq = order.next;
    order.next += 1;
    order.running.push((seq, footprint.clone()));
    Some((seq, units, footprint))
}

/// What a batch's transaction did, accounted once it is committed.
#[derive(Default)]
struct BatchResult {
    outcomes: Vec<Outcome>,
    deferred: Vec<usize>,
    search_params: bool,
}

/// Writes a batch's units inside `tx`: resources together, each Bundle in a savepoint (a
/// refused transaction Bundle leaves nothing and does not stop the others).
fn write_batch(
    tx: &mut crate::store::transaction::Tx<'_>,
    services: &Services,
    context: &Context,
    shared: &Shared<'_>,
    units: &mut [Unit],
) -> Result<BatchResult, StoreError> {
    let mut written = BatchResult::default();
    for unit in units.iter_mut() {
        match unit {
            Unit::Resources { items, .. } => {
                let results = bulk::write_many(tx, services, &context.scope_for_import(), items)?;
                written.outcomes.push(Outcome::Resources(results));
                written.search_params |= items.iter().any(|w| w.res_type == "SearchParameter");
            }
            Unit::Bundle {
                source, planned, ..
            } => {
                let outcome = match planned {
                    Ok(planned) => {
                        written.search_params |= planned.changes_search_params();
                        match tx.savepoint(|tx| planned.execute(tx, services, context)) {
                            Ok(responses) => Outcome::Bundle(Ok(responses)),
                            Err(e) if is_database_failure(&e) => {
                                return Err(StoreError::Internal(first_diagnostics(&e)))
                            }
                            Err(e) if !shared.limits.last_round && unresolved_reference(&e) => {
                                written.deferred.push(*source);
                                Outcome::Deferred
                            }
                            Err(e) => Outcome::Bundle(Err(e)),
                        }
                    }
                    Err(_) => Outcome::Refused,
                };
                written.outcomes.push(outcome);
            }
        }
    }
    Ok(written)
}

/// Accounts a committed batch (in commit order): summary, rejects, display, the test hook.
fn after_commit(
    services: &Services,
    shared: &Shared<'_>,
    order: &mut Order<'_>,
    units: Vec<Unit>,
    written: BatchResult,
    waited: Duration,
    writing: Duration,
) -> Result<(), String> {
    order.summary.waiting += waited;
    order.summary.writing += writing;
    order.deferred.extend(written.deferred);
    if written.search_params {
        services.after_write("SearchParameter", None);
    }
    let trash = shared
        .trash
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    for (mut unit, outcome) in units.into_iter().zip(written.outcomes) {
        if let (Unit::Resources { items, .. }, Some(trash)) = (&mut unit, &trash) {
            let _ = trash.send(Garbage::Writes(std::mem::take(items)));
        }
        account(
            shared.sources,
            unit,
            outcome,
            order.summary,
            order.rejects_file,
            trash.as_ref(),
        )?;
    }
    order.display.update(order.summary);
    *order.batches += 1;
    if shared.limits.stop_after == Some(*order.batches) {
        // The test hook of an interruption: as abrupt as a kill, after a commit.
        eprintln!(
            "carnet import: stopping after {} transaction(s) ({STOP_AFTER_ENV})",
            order.batches
        );
        std::process::exit(75);
    }
    Ok(())
}
