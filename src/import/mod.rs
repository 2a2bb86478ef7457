//! `carnet import FILE_OR_DIR...`: bulk load of NDJSON files and JSON Bundles or resources.
//!
//! Nothing is written differently from the REST API: lines go through
//! `interaction::bulk` (a `PUT` at the resource's id, `POST` without one) and Bundles through
//! `interaction::transaction` (the machinery of `POST [base]`), so every resource is
//! validated, stamped, put in its compartments and indexed as a REST write would be.
//!
//! One thread reads and prepares (parse, validation, index rows, first-version bodies);
//! writer threads (`writer`: one on SQLite, several on PostgreSQL) write many resources per
//! database transaction, commit in the order the batches were read, and record in the same
//! transaction how far each file was committed (`import_progress`), so that a second run
//! after an interruption starts where the first stopped and loads nothing twice.

mod display;
mod source;
mod writer;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{mpsc, Condvar, Mutex};
use std::time::Instant;

use crate::fhir::outcome::operation_outcome;
use crate::interaction::bundle::Return;
use crate::interaction::transaction::Context;
use crate::interaction::{ApiError, Services};
use crate::store::import_progress::ImportProgress;

pub use display::Summary;
use source::{Reject, Source, Unit};

/// What to load and how.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub paths: Vec<PathBuf>,
    /// Where to write the refused resources, as NDJSON OperationOutcomes.
    pub rejects: Option<PathBuf>,
    /// Resources per database transaction (at least; a Bundle is never split).
    pub batch_size: usize,
    /// Redraw a progress bar (a terminal) rather than log a line now and then.
    pub progress_bar: bool,
    /// Writer threads, each with its own connection and transactions (PostgreSQL; SQLite
    /// has one writer).
    pub writers: usize,
}

/// Test hook: stop the process (as a crash would) after this many committed transactions.
const STOP_AFTER_ENV: &str = "CARNET_IMPORT_STOP_AFTER_BATCHES";

/// Loads `options.paths` into the store of `services`. Refused resources do not stop the
/// load; they are in the summary. An error is a failure to read a file or to write to the
/// database: what was committed stays, and running the same command again resumes.
pub fn run(services: &Services, options: &ImportOptions) -> Result<Summary, String> {
    let started = Instant::now();
    let files = source::list(&options.paths)?;
    let mut sources = Vec::new();
    let mut summary = Summary::default();
    for (path, format) in files {
        let meta = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let key = std::fs::canonicalize(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .display()
            .to_string();
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_micros() as i64);
        let size = meta.len();
        let mut source = Source {
            path,
            key,
            format,
            size,
            modified,
            start_bytes: 0,
            start_lines: 0,
        };
        match services
            .store
            .import_progress(&source.key)
            .map_err(|e| e.to_string())?
        {
            Some(p) if p.size == size as i64 && p.modified == modified => {
                if p.done {
                    summary.files_already_done += 1;
                    continue;
                }
                source.start_bytes = p.committed_bytes as u64;
                source.start_lines = p.committed_lines as u64;
                summary.files_resumed += 1;
                log::info!(
                    "{}: resuming after line {} (byte {})",
                    source.path.display(),
                    p.committed_lines,
                    p.committed_bytes
                );
            }
            Some(_) => log::warn!(
                "{}: changed since it was last imported; loading it from the start",
                source.path.display()
            ),
            None => {}
        }
        sources.push(source);
    }
    let total_bytes: u64 = sources.iter().map(|s| s.size - s.start_bytes).sum();
    let mut rejects_file = match &options.rejects {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?,
        )),
        None => None,
    };
    let stop_after: Option<u64> = std::env::var(STOP_AFTER_ENV)
        .ok()
        .and_then(|v| v.parse().ok());
    let context = Context {
        caller: None,
        prefer: Return::Minimal,
        lenient: false,
    };
    let mut display = display::Display::new(options.progress_bar, total_bytes);
    let batch_size = options.batch_size.max(1);
    // Small units keep the writers busy while the reader prepares the next ones.
    let chunk = batch_size.clamp(1, 500);
    let writers = options.writers.max(1);
    summary.writers = writers;
    let mut batches = 0u64;
    let mut round: Vec<Source> = sources;
    let mut last_round = false;
    let result = loop {
        let (sender, receiver) = mpsc::sync_channel::<Unit>(8 * writers);
        let (trash, bin) = mpsc::channel::<writer::Garbage>();
        let progress = round
            .iter()
            .map(|s| ImportProgress {
                source: s.key.clone(),
                size: s.size as i64,
                modified: s.modified,
                committed_bytes: s.start_bytes as i64,
                committed_lines: s.start_lines as i64,
                done: false,
                updated: 0,
            })
            .collect();
        let shared = writer::Shared {
            receiver: Mutex::new(Some(receiver)),
            order: Mutex::new(writer::Order {
                next: 0,
                committed: 0,
                failed: false,
                running: Vec::new(),
                progress,
                deferred: Vec::new(),
                batches: &mut batches,
                summary: &mut summary,
                display: &mut display,
                rejects_file: &mut rejects_file,
            }),
            changed: Condvar::new(),
            sources: &round,
            limits: writer::Limits {
                batch_size,
                stop_after,
                last_round,
            },
            trash: Mutex::new(Some(trash)),
        };
        let result = std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                let sender = sender;
                source::read_all(services, &context, &round, chunk, &sender)
            });
            scope.spawn(move || bin.into_iter().for_each(drop));
            let handles: Vec<_> = (0..writers)
                .map(|_| scope.spawn(|| writer::run(services, &context, &shared)))
                .collect();
            let mut written = Ok(());
            for handle in handles {
                let result = handle
                    .join()
                    .unwrap_or_else(|_| Err("a writing thread panicked".into()));
                if written.is_ok() {
                    written = result;
                }
            }
            // The reader stops at its next unit once nobody receives; the freeing thread once
            // nobody sends.
            shared.close();
            let read = reader
                .join()
                .unwrap_or_else(|_| Err("the reading thread panicked".into()));
            written.and(read)
        });
        let deferred = shared.into_deferred();
        let result = result.map(|()| deferred);
        match result {
            // Bundles whose conditional references matched nothing run again once the rest
            // is loaded: the resources they refer to may come from files read after them.
            Ok(mut deferred) if !deferred.is_empty() && !last_round => {
                log::info!(
                    "{} Bundle(s) with unresolved conditional references: running them again",
                    deferred.len()
                );
                deferred.sort_unstable();
                round = deferred.into_iter().map(|i| round[i].clone()).collect();
                last_round = true;
            }
            Ok(_) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    display.finish();
    if let Some(file) = &mut rejects_file {
        file.flush()
            .map_err(|e| format!("writing the rejects file: {e}"))?;
    }
    summary.elapsed = started.elapsed();
    result.map(|()| summary)
}

/// Whether a Bundle failed on a conditional reference that matched nothing.
fn unresolved_reference(e: &ApiError) -> bool {
    e.issues
        .iter()
        .any(|i| i.code == "not-found" && i.diagnostics.contains("conditional reference"))
}

enum Outcome {
    Resources(Vec<Result<crate::store::Written, ApiError>>),
    Bundle(Result<Vec<crate::interaction::bundle::ResponseEntry>, ApiError>),
    /// The Bundle was refused before the database (its error is in the unit).
    Refused,
    /// The Bundle runs again at the end (see [`unresolved_reference`]).
    Deferred,
}

/// A failure of the database itself (not of the data): the import stops rather than
/// reporting every following resource as refused.
fn is_database_failure(e: &ApiError) -> bool {
    e.status == actix_web::http::StatusCode::INTERNAL_SERVER_ERROR
        || e.status == actix_web::http::StatusCode::SERVICE_UNAVAILABLE
}

fn first_diagnostics(e: &ApiError) -> String {
    e.issues
        .first()
        .map(|i| i.diagnostics.clone())
        .unwrap_or_default()
}

/// Counts a committed unit and reports what it refused.
fn account(
    sources: &[Source],
    unit: Unit,
    outcome: Outcome,
    summary: &mut Summary,
    rejects_file: &mut Option<std::io::BufWriter<std::fs::File>>,
    trash: Option<&mpsc::Sender<writer::Garbage>>,
) -> Result<(), String> {
    let mut rejects: Vec<Reject> = Vec::new();
    if matches!(outcome, Outcome::Deferred) {
        return Ok(());
    }
    match (unit, outcome) {
        (
            Unit::Resources {
                at,
                refused,
                skipped,
                bytes,
                ..
            },
            Outcome::Resources(results),
        ) => {
            summary.read += (at.len() + refused.len()) as u64;
            summary.bytes += bytes;
            merge(&mut summary.skipped, skipped);
            rejects.extend(refused);
            for (at, result) in at.into_iter().zip(results) {
                match result {
                    Ok(_) => summary.written += 1,
                    Err(error) => rejects.push(Reject { at, error }),
                }
            }
        }
        (
            Unit::Bundle {
                source,
                planned,
                entries,
                skipped,
                bytes,
            },
            outcome,
        ) => {
            let name = sources[source].path.display().to_string();
            summary.read += entries;
            summary.bytes += bytes;
            merge(&mut summary.skipped, skipped);
            match (planned, outcome) {
                (Err(error), _) | (_, Outcome::Bundle(Err(error))) => {
                    summary.rejected_bundles += 1;
                    summary.rejected += entries.saturating_sub(1);
                    rejects.push(Reject { at: name, error });
                }
                (Ok(planned), Outcome::Bundle(Ok(responses))) => {
                    if let Some(trash) = trash {
                        let _ = trash.send(writer::Garbage::Bundle(Box::new(planned)));
                    }
                    for (i, r) in responses.iter().enumerate() {
                        let status: u16 =
                            r.status.get(..3).and_then(|s| s.parse().ok()).unwrap_or(0);
                        if status < 400 {
                            summary.written += 1;
                            continue;
                        }
                        let issues = r
                            .outcome
                            .as_deref()
                            .and_then(|o| serde_json::from_str::<serde_json::Value>(o).ok());
                        let error = ApiError::new(
                            actix_web::http::StatusCode::from_u16(status)
                                .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST),
                            crate::fhir::outcome::Issue::error(
                                "processing",
                                issues
                                    .as_ref()
                                    .and_then(|o| o.pointer("/issue/0/diagnostics"))
                                    .and_then(serde_json::Value::as_str)
                                    .unwrap_or(&r.status)
                                    .to_string(),
                            ),
                        );
                        rejects.push(Reject {
                            at: format!("{name} entry {i}"),
                            error,
                        });
                    }
                }
                _ => {}
            }
        }
        _ => {}
    }
    summary.rejected += rejects.len() as u64;
    for reject in rejects {
        let mut issues = reject.error.issues;
        for issue in &mut issues {
            issue.diagnostics = format!("{}: {}", reject.at, issue.diagnostics);
        }
        let outcome = operation_outcome(&issues);
        if let Some(file) = rejects_file {
            writeln!(file, "{outcome}").map_err(|e| format!("writing the rejects file: {e}"))?;
        }
        if summary.reject_lines.len() < display::REJECTS_SHOWN {
            summary
                .reject_lines
                .extend(issues.into_iter().map(|i| match i.expression {
                    Some(e) => format!("{} (at {e})", i.diagnostics),
                    None => i.diagnostics,
                }));
        }
    }
    Ok(())
}

fn merge(into: &mut BTreeMap<String, u64>, from: BTreeMap<String, u64>) {
    for (k, v) in from {
        *into.entry(k).or_default() += v;
    }
}
