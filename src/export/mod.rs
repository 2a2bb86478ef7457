//! Bulk export (HL7 Bulk Data Access 2.0): the background worker that runs the jobs accepted
//! by `[base]/$export` and writes their NDJSON files.
//!
//! The HTTP layer (`http/routes/export.rs`) checks a kick-off request, records the job in the
//! store and wakes the worker; it answers status polls and serves the files from what the
//! store and this module say. The worker, one thread per server process, takes the oldest
//! unfinished job it can lock, streams each type's current resources from the store in key
//! order (one statement per batch, the job's access scope inside it) and appends their stored
//! JSON text to `[export-dir]/[job]/[Type]-[part].ndjson`, as is. It checkpoints in the job's
//! row (type, keyset position, file length) at least every half second and whenever a file is
//! finished, so that after a crash or restart it truncates the current file to the
//! checkpointed length and carries on from there. Knows nothing of HTTP.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::fhir::outcome::{operation_outcome, Issue};
use crate::fhir::search::query::{self, SearchQuery, Summary, Total};
use crate::fhir::search::SearchParams;
use crate::fhir::served;
use crate::store::export::{
    ExportCheckpoint, ExportFile, ExportJob, ExportQuery, ExportSpec, ExportStatus, FileKind,
};
use crate::store::{Store, StoreError};

/// Checkpoints are written at least this often while a type is being exported.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// Idle workers look for jobs this often (jobs accepted by other nodes, or left by a node that
/// stopped); jobs accepted by this node wake the worker at once.
const POLL_EVERY: Duration = Duration::from_secs(2);
/// Ended jobs past their retention are removed this often.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// How the worker runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where job directories are written.
    pub dir: PathBuf,
    /// Resources read per statement.
    pub batch_size: usize,
    /// A file reaching this size is closed and the type continues in a new part.
    pub max_file_bytes: u64,
    /// Jobs (and their files) are removed this long after they end.
    pub retention: Duration,
    /// Test-only: a pause after each batch, so that tests can stop a server mid-export.
    pub throttle: Duration,
}

/// What the worker needs from the running server.
pub trait Source: Send + Sync + 'static {
    fn store(&self) -> &Store;
    /// The search parameters in force, to read `_typeFilter` queries.
    fn search_params(&self) -> Arc<SearchParams>;
    fn base_url(&self) -> &str;
}

/// The handle the HTTP layer holds: settings, file locations, and a bell that wakes the worker.
#[derive(Clone)]
pub struct Exporter {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    bell: Mutex<bool>,
    rung: Condvar,
    /// Jobs cancelled through this node, so that its worker stops at the next batch rather
    /// than at the next checkpoint (which notices cancellations made through any node).
    cancelled: Mutex<HashSet<String>>,
}

impl Exporter {
    pub fn new(settings: Settings) -> Exporter {
        Exporter {
            inner: Arc::new(Inner {
                settings,
                bell: Mutex::new(false),
                rung: Condvar::new(),
                cancelled: Mutex::new(HashSet::new()),
            }),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Tells the worker a job is waiting.
    pub fn wake(&self) {
        *self.inner.bell.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.inner.rung.notify_all();
    }

    /// Tells the worker to stop job `id` if it is running it (the job's row is deleted by the
    /// caller).
    pub fn cancel(&self, id: &str) {
        self.cancelled().insert(id.to_string());
    }

    fn is_cancelled(&self, id: &str) -> bool {
        self.cancelled().contains(id)
    }

    fn cancelled(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.inner
            .cancelled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the worker thread.
    pub fn spawn(&self, source: Arc<dyn Source>) -> std::io::Result<()> {
        let worker = Worker {
            exporter: self.clone(),
            source,
        };
        std::thread::Builder::new()
            .name("carnet-export".into())
            .spawn(move || worker.run())
            .map(|_| ())
    }

    fn wait(&self, timeout: Duration) {
        let bell = self.inner.bell.lock().unwrap_or_else(|e| e.into_inner());
        let (mut bell, _) = self
            .inner
            .rung
            .wait_timeout_while(bell, timeout, |rung| !*rung)
            .unwrap_or_else(|e| e.into_inner());
        *bell = false;
    }

    /// The directory of a job's files.
    pub fn job_dir(&self, job: &str) -> PathBuf {
        self.inner.settings.dir.join(job)
    }

    /// Removes a job's files (nothing when there are none).
    pub fn remove_files(&self, job: &str) {
        let dir = self.job_dir(job);
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("cannot remove the export files {}: {e}", dir.display()),
        }
    }
}

/// The steps of a job, in order, numbered by its checkpoint's `type_index`: each type's
/// resources, then (with `_since`) each type's deletions, then the kick-off's warnings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    /// The type's resources: `[Type]-[part].ndjson`, in the manifest's `output`.
    Output(&'a str),
    /// The type's deletions since `_since`: `deleted-[Type]-[part].ndjson`, in `deleted`.
    Deleted(&'a str),
    /// What the kick-off ignored: `errors-[part].ndjson`, in `error`.
    Messages,
}

impl<'a> Step<'a> {
    /// Step `index` of `spec`; `None` past the last.
    pub fn at(spec: &'a ExportSpec, index: i32) -> Option<Step<'a>> {
        let n = spec.types.len();
        let i = usize::try_from(index).ok()?;
        match i {
            _ if i < n => Some(Step::Output(&spec.types[i])),
            _ if i < 2 * n => Some(Step::Deleted(&spec.types[i - n])),
            _ if i == 2 * n => Some(Step::Messages),
            _ => None,
        }
    }

    /// The file name of part `part` of this step.
    pub fn file_name(self, part: i32) -> String {
        match self {
            Step::Output(res_type) => format!("{res_type}-{part}.ndjson"),
            Step::Deleted(res_type) => format!("deleted-{res_type}-{part}.ndjson"),
            Step::Messages => format!("errors-{part}.ndjson"),
        }
    }

    fn kind(self) -> FileKind {
        match self {
            Step::Output(_) => FileKind::Output,
            Step::Deleted(_) => FileKind::Deleted,
            Step::Messages => FileKind::Error,
        }
    }

    /// The resource type of the step's lines, for the manifest.
    fn line_type(self) -> &'a str {
        match self {
            Step::Output(res_type) => res_type,
            Step::Deleted(_) => "Bundle",
            Step::Messages => "OperationOutcome",
        }
    }
}

/// Reads one `_typeFilter` value, `Type?query`, into a search of that type. The query takes the
/// search parameters of the type (no result parameters: `_count`, `_sort`, `_include`...).
pub fn parse_type_filter(
    params: &SearchParams,
    base_url: &str,
    filter: &str,
) -> Result<SearchQuery, String> {
    let (res_type, text) = filter
        .split_once('?')
        .ok_or_else(|| format!("_typeFilter {filter:?} is not of the form Type?query"))?;
    if !served::is_served(res_type) {
        return Err(format!(
            "_typeFilter {filter:?}: {res_type} is not a served resource type"
        ));
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(text)
        .map_err(|e| format!("_typeFilter {filter:?}: malformed query: {e}"))?;
    if pairs.is_empty() {
        return Err(format!("_typeFilter {filter:?} has no search parameter"));
    }
    let mut parsed = query::parse(params, &[res_type], &pairs, base_url, false)
        .map_err(|e| format!("_typeFilter {filter:?}: {}", e.message))?;
    if !parsed.sort.is_empty()
        || !parsed.includes.is_empty()
        || !parsed.revincludes.is_empty()
        || parsed.count.is_some()
        || parsed.total != Total::None
        || parsed.summary != Summary::False
        || !parsed.elements.is_empty()
        || parsed.cursor.is_some()
        || pairs.iter().any(|(k, _)| k == "_type")
    {
        return Err(format!(
            "_typeFilter {filter:?}: only search parameters are allowed (no _count, _sort, \
             _include, _revinclude, _summary, _elements, _total, _type)"
        ));
    }
    parsed.types = vec![res_type.to_string()];
    Ok(parsed)
}

struct Worker {
    exporter: Exporter,
    source: Arc<dyn Source>,
}

/// Why a job stopped before its end.
enum Stop {
    /// The job was deleted (cancelled) meanwhile.
    Cancelled,
    /// It failed; the message is for the client's status poll (no internals).
    Failed(String),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Stop {
        log::error!("export: {e}");
        Stop::Failed("the database failed during the export; the server log has the details".into())
    }
}

impl From<crate::store::search::SearchError> for Stop {
    fn from(e: crate::store::search::SearchError) -> Stop {
        match e {
            crate::store::search::SearchError::Store(e) => e.into(),
            other => Stop::Failed(other.to_string()),
        }
    }
}

fn io_failure(path: &Path, e: std::io::Error) -> Stop {
    log::error!("export: writing {}: {e}", path.display());
    Stop::Failed("writing the export files failed; the server log has the details".into())
}

/// The file a type is being written to.
struct OpenFile {
    path: PathBuf,
    writer: BufWriter<File>,
}

impl OpenFile {
    /// Creates the file, or, when resuming (`keep` > 0 bytes), opens it and cuts whatever was
    /// written after the last checkpoint.
    fn open(path: PathBuf, keep: u64) -> Result<OpenFile, Stop> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| io_failure(dir, e))?;
        }
        let file = if keep == 0 {
            File::create(&path)
        } else {
            OpenOptions::new().write(true).open(&path).and_then(|f| {
                f.set_len(keep)?;
                Ok(f)
            })
        }
        .map_err(|e| io_failure(&path, e))?;
        let mut writer = BufWriter::with_capacity(1 << 20, file);
        if keep > 0 {
            use std::io::Seek;
            writer
                .seek(std::io::SeekFrom::End(0))
                .map_err(|e| io_failure(&path, e))?;
        }
        Ok(OpenFile { path, writer })
    }

    fn write(&mut self, body: &str) -> Result<(), Stop> {
        self.writer
            .write_all(body.as_bytes())
            .and_then(|_| self.writer.write_all(b"\n"))
            .map_err(|e| io_failure(&self.path, e))
    }

    /// Everything written so far is on disk (before a checkpoint says so).
    fn sync(&mut self) -> Result<(), Stop> {
        self.writer
            .flush()
            .and_then(|_| self.writer.get_ref().sync_data())
            .map_err(|e| io_failure(&self.path, e))
    }
}

impl Worker {
    fn store(&self) -> &Store {
        self.source.store()
    }

    fn run(self) {
        let mut last_purge: Option<Instant> = None;
        loop {
            if last_purge.is_none_or(|t| t.elapsed() >= PURGE_EVERY) {
                self.purge();
                last_purge = Some(Instant::now());
            }
            match self.run_one() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => log::error!("export worker: {e}"),
            }
            self.exporter.wait(POLL_EVERY);
        }
    }

    /// Removes the jobs that ended longer ago than the retention, and their files.
    fn purge(&self) {
        let retention =
            i64::try_from(self.exporter.settings().retention.as_micros()).unwrap_or(i64::MAX);
        let before = chrono::Utc::now()
            .timestamp_micros()
            .saturating_sub(retention);
        match self.store().ended_export_jobs(before) {
            Ok(ids) => {
                for id in ids {
                    if let Err(e) = self.store().delete_export_job(&id) {
                        log::error!("export: removing expired job {id}: {e}");
                        continue;
                    }
                    self.exporter.remove_files(&id);
                    log::info!("export job {id} expired; its files are removed");
                }
            }
            Err(e) => log::error!("export: looking for expired jobs: {e}"),
        }
    }

    /// Runs the oldest unfinished job this worker can lock; false when there was none.
    fn run_one(&self) -> Result<bool, StoreError> {
        let unfinished = self.store().unfinished_export_jobs()?;
        // Cancellations of jobs that no longer exist have nothing left to stop.
        self.exporter
            .cancelled()
            .retain(|id| unfinished.contains(id));
        for id in unfinished {
            let Some(lock) = self.store().lock_export_job(&id)? else {
                continue;
            };
            // Read again under the lock: another node may have finished it meanwhile.
            let Some(job) = self.store().export_job(&id)? else {
                continue;
            };
            if !matches!(job.status, ExportStatus::Queued | ExportStatus::Running) {
                continue;
            }
            let resumed = job.status == ExportStatus::Running;
            if resumed {
                log::info!(
                    "export job {id}: resuming at step {} ({:?}), {} resources written",
                    job.checkpoint.type_index + 1,
                    Step::at(&job.spec, job.checkpoint.type_index),
                    job.checkpoint.exported
                );
            }
            self.store().start_export_job(&id)?;
            let started = Instant::now();
            match self.export(&job) {
                Ok(exported) => {
                    self.store().finish_export_job(&id, None)?;
                    let secs = started.elapsed().as_secs_f64();
                    log::info!(
                        "export job {id}: {exported} resources in {secs:.1} s ({:.0}/s)",
                        exported as f64 / secs.max(1e-6)
                    );
                }
                Err(Stop::Cancelled) => {
                    self.exporter.remove_files(&id);
                    log::info!("export job {id} cancelled");
                }
                Err(Stop::Failed(message)) => {
                    log::warn!("export job {id} failed: {message}");
                    self.exporter.remove_files(&id);
                    self.store().finish_export_job(&id, Some(&message))?;
                }
            }
            drop(lock);
            return Ok(true);
        }
        Ok(false)
    }

    /// Records progress (and a finished file); stops the job when it was cancelled.
    fn checkpoint(
        &self,
        job: &str,
        cp: &ExportCheckpoint,
        file: Option<&ExportFile>,
    ) -> Result<(), Stop> {
        match self.store().checkpoint_export_job(job, cp, file)? {
            true => Ok(()),
            false => Err(Stop::Cancelled),
        }
    }

    /// Runs a job from its checkpoint to its end; returns how many resources it holds.
    fn export(&self, job: &ExportJob) -> Result<i64, Stop> {
        let spec = &job.spec;
        let params = self.source.search_params();
        let mut filters: Vec<SearchQuery> = Vec::new();
        for text in &spec.type_filters {
            filters.push(
                parse_type_filter(&params, self.source.base_url(), text).map_err(Stop::Failed)?,
            );
        }
        let mut cp = job.checkpoint.clone();
        if cp.file_part < 1 {
            cp.file_part = 1;
        }
        let mut files = Files {
            dir: self.exporter.job_dir(&spec.id),
            seq: i32::try_from(self.store().export_files(&spec.id)?.len()).unwrap_or(0),
        };
        let batch = self.exporter.settings().batch_size;
        while let Some(step) = Step::at(spec, cp.type_index) {
            let finished = match step {
                Step::Output(res_type) => {
                    let type_filters: Vec<SearchQuery> = filters
                        .iter()
                        .filter(|f| f.types.first().map(String::as_str) == Some(res_type))
                        .cloned()
                        .collect();
                    let query = ExportQuery {
                        spec,
                        res_type,
                        filters: &type_filters,
                    };
                    self.stream(
                        spec,
                        &mut cp,
                        &mut files,
                        step,
                        || Ok(self.store().count_export(&query)?),
                        |after| {
                            let rows = self.store().export_batch(&query, after, batch)?;
                            Ok(rows.into_iter().map(|r| (r.res_key, r.body)).collect())
                        },
                    )?
                }
                Step::Deleted(_) if spec.since.is_none() => None,
                Step::Deleted(res_type) => {
                    let query = ExportQuery {
                        spec,
                        res_type,
                        filters: &[],
                    };
                    self.stream(
                        spec,
                        &mut cp,
                        &mut files,
                        step,
                        || Ok(self.store().count_deleted(&query)?),
                        |after| {
                            let rows = self.store().deleted_batch(&query, after, batch)?;
                            Ok(rows
                                .into_iter()
                                .map(|r| (r.res_key, deletion_line(res_type, &r.res_id)))
                                .collect())
                        },
                    )?
                }
                Step::Messages => self.stream(
                    spec,
                    &mut cp,
                    &mut files,
                    step,
                    || Ok(spec.messages.len() as i64),
                    // Keyed by position from 1: a resumed step carries on after the last one.
                    |after| {
                        Ok(spec
                            .messages
                            .iter()
                            .enumerate()
                            .map(|(i, m)| (i as i64 + 1, m))
                            .filter(|(key, _)| *key > after)
                            .map(|(key, m)| {
                                let outcome =
                                    operation_outcome(&[Issue::warning("informational", m)]);
                                (key, outcome.to_string())
                            })
                            .collect())
                    },
                )?,
            };
            cp = ExportCheckpoint {
                type_index: cp.type_index + 1,
                type_total: None,
                type_done: 0,
                after_key: 0,
                file_part: 1,
                file_count: 0,
                file_bytes: 0,
                exported: cp.exported,
            };
            self.checkpoint(&spec.id, &cp, finished.as_ref())?;
        }
        Ok(cp.exported)
    }

    /// Runs one step from the checkpoint: counts its lines (for `X-Progress`), then writes
    /// what `fetch` returns after the last key written, batch by batch, until it returns
    /// nothing. Returns the last file, finished, for the step's final checkpoint.
    fn stream(
        &self,
        spec: &ExportSpec,
        cp: &mut ExportCheckpoint,
        files: &mut Files,
        step: Step<'_>,
        count: impl FnOnce() -> Result<i64, Stop>,
        mut fetch: impl FnMut(i64) -> Result<Vec<(i64, String)>, Stop>,
    ) -> Result<Option<ExportFile>, Stop> {
        let settings = self.exporter.settings();
        if cp.type_total.is_none() {
            cp.type_total = Some(count()?);
            self.checkpoint(&spec.id, cp, None)?;
        }
        let mut file = match cp.file_bytes {
            0 => None,
            bytes => Some(OpenFile::open(
                files.path(step, cp.file_part),
                bytes as u64,
            )?),
        };
        let mut last_checkpoint = Instant::now();
        loop {
            if self.exporter.is_cancelled(&spec.id) {
                return Err(Stop::Cancelled);
            }
            let lines = fetch(cp.after_key)?;
            if lines.is_empty() {
                break;
            }
            for (key, line) in &lines {
                let out = match &mut file {
                    Some(out) => out,
                    None => file.insert(OpenFile::open(files.path(step, cp.file_part), 0)?),
                };
                out.write(line)?;
                cp.after_key = *key;
                cp.file_bytes += line.len() as i64 + 1;
                cp.type_done += 1;
                cp.file_count += 1;
                if matches!(step, Step::Output(_)) {
                    cp.exported += 1;
                }
                if cp.file_bytes as u64 >= settings.max_file_bytes {
                    let finished = files.close(&mut file, cp, step)?;
                    self.checkpoint(&spec.id, cp, finished.as_ref())?;
                    last_checkpoint = Instant::now();
                }
            }
            if last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
                if let Some(out) = &mut file {
                    out.sync()?;
                }
                self.checkpoint(&spec.id, cp, None)?;
                last_checkpoint = Instant::now();
            }
            if !settings.throttle.is_zero() {
                std::thread::sleep(settings.throttle);
            }
        }
        files.close(&mut file, cp, step)
    }
}

/// One line of a `deleted` file: a transaction Bundle that deletes the resource, as Bulk Data
/// 2.0 describes them.
fn deletion_line(res_type: &str, res_id: &str) -> String {
    serde_json::json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "DELETE", "url": format!("{res_type}/{res_id}")}}],
    })
    .to_string()
}

/// The files of a job being written: where they go and how many are finished.
struct Files {
    dir: PathBuf,
    /// Finished files so far (their manifest order).
    seq: i32,
}

impl Files {
    fn path(&self, step: Step<'_>, part: i32) -> PathBuf {
        self.dir.join(step.file_name(part))
    }

    /// Closes the file being written, if it holds anything, and moves the checkpoint to the
    /// next part; returns the finished file for the checkpoint to record.
    fn close(
        &mut self,
        file: &mut Option<OpenFile>,
        cp: &mut ExportCheckpoint,
        step: Step<'_>,
    ) -> Result<Option<ExportFile>, Stop> {
        let Some(mut open) = file.take() else {
            return Ok(None);
        };
        if cp.file_count == 0 {
            return Ok(None);
        }
        open.sync()?;
        self.seq += 1;
        let finished = ExportFile {
            seq: self.seq,
            kind: step.kind(),
            res_type: step.line_type().to_string(),
            name: step.file_name(cp.file_part),
            count: cp.file_count,
            bytes: cp.file_bytes,
        };
        cp.file_part += 1;
        cp.file_count = 0;
        cp.file_bytes = 0;
        Ok(Some(finished))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_filters_are_searches_of_one_type() {
        let params = crate::fhir::search::params::r4();
        let base = "http://h/fhir";
        let q =
            parse_type_filter(params, base, "Observation?code=http://loinc.org|29463-7").unwrap();
        assert_eq!(q.types, ["Observation"]);
        assert_eq!(q.clauses.len(), 1);
        for bad in [
            "Observation",
            "Observation?",
            "Nope?code=1",
            "Observation?nope=1",
            "Observation?code=1&_count=5",
            "Observation?code=1&_sort=date",
            "Observation?_include=Observation:subject",
        ] {
            assert!(parse_type_filter(params, base, bad).is_err(), "{bad}");
        }
    }
}
