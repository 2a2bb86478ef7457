//! Bulk export: the persisted jobs (`export_job`, `export_progress`, `export_file`,
//! `export_patient`) and the reading queries that stream a type's current resources in key
//! order, one statement per batch, under the job's access scope. The worker that drives them
//! is `crate::export`.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use super::backend::{on_backend, Backend, DbConnection};
use super::schema::{export_file, export_job, export_patient, export_progress};
use super::search::plan::{PlanError, Planner};
use super::search::sql::Sql;
use super::search::SearchError;
use super::{now_micros, Store, StoreError};
use crate::access::AccessScope;
use crate::fhir::search::query::SearchQuery;

/// Where an export draws its resources from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportLevel {
    /// `[base]/$export`: every resource.
    System,
    /// `[base]/Patient/$export`: resources in the compartment of any patient.
    Patient,
    /// `[base]/Group/[id]/$export`: resources in the compartments of the Group's members,
    /// recorded with the job (`export_patient`).
    Group,
}

impl ExportLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            ExportLevel::System => "system",
            ExportLevel::Patient => "patient",
            ExportLevel::Group => "group",
        }
    }

    fn parse(text: &str) -> Result<ExportLevel, StoreError> {
        match text {
            "system" => Ok(ExportLevel::System),
            "patient" => Ok(ExportLevel::Patient),
            "group" => Ok(ExportLevel::Group),
            other => Err(StoreError::Internal(format!(
                "unknown export level {other:?}"
            ))),
        }
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportStatus {
    Queued,
    Running,
    Completed,
    Failed,
}

impl ExportStatus {
    fn as_str(self) -> &'static str {
        match self {
            ExportStatus::Queued => "queued",
            ExportStatus::Running => "running",
            ExportStatus::Completed => "completed",
            ExportStatus::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Result<ExportStatus, StoreError> {
        match text {
            "queued" => Ok(ExportStatus::Queued),
            "running" => Ok(ExportStatus::Running),
            "completed" => Ok(ExportStatus::Completed),
            "failed" => Ok(ExportStatus::Failed),
            other => Err(StoreError::Internal(format!(
                "unknown export status {other:?}"
            ))),
        }
    }
}

/// What a kick-off asked for: everything about a job that stays as it runs.
#[derive(Debug, Clone)]
pub struct ExportSpec {
    pub id: String,
    /// The caller's identity, `None` for an anonymous caller.
    pub owner: Option<String>,
    /// The caller's access scope: the job never sees more.
    pub scope: AccessScope,
    pub level: ExportLevel,
    pub group_id: Option<String>,
    /// The kick-off request's URL.
    pub request: String,
    pub types: Vec<String>,
    /// `_typeFilter` values as given: `Type?query`.
    pub type_filters: Vec<String>,
    pub since: Option<i64>,
    pub output_format: String,
    pub transaction_time: i64,
    /// What the kick-off ignored under `Prefer: handling=lenient`, for the error file.
    pub messages: Vec<String>,
}

/// A Group member of a Group-level job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportMember {
    /// The Patient's logical id.
    pub patient: String,
    /// Joined the Group after `_since`: the member's whole compartment is exported, not only
    /// what changed since.
    pub added: bool,
}

/// How far a job got; written by the worker as it goes, so that it resumes there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportCheckpoint {
    /// The step being run: an index into the job's steps (`crate::export::Step`).
    pub type_index: i32,
    /// How many resources of that type the export will hold, once counted.
    pub type_total: Option<i64>,
    pub type_done: i64,
    /// Keyset position: the last resource key written.
    pub after_key: i64,
    /// The file being written: its part number (from 1), resources and bytes so far.
    pub file_part: i32,
    pub file_count: i64,
    pub file_bytes: i64,
    /// Resources written by the job so far, every type.
    pub exported: i64,
}

/// A stored job.
#[derive(Debug, Clone)]
pub struct ExportJob {
    pub spec: ExportSpec,
    pub status: ExportStatus,
    pub created: i64,
    pub finished: Option<i64>,
    pub error: Option<String>,
    pub checkpoint: ExportCheckpoint,
}

/// What a file of a job holds, and so which list of the manifest it is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Resources (`output`).
    Output,
    /// Transaction Bundles of `DELETE` entries (`deleted`).
    Deleted,
    /// OperationOutcomes (`error`).
    Error,
}

impl FileKind {
    fn as_str(self) -> &'static str {
        match self {
            FileKind::Output => "output",
            FileKind::Deleted => "deleted",
            FileKind::Error => "error",
        }
    }

    fn parse(text: &str) -> Result<FileKind, StoreError> {
        match text {
            "output" => Ok(FileKind::Output),
            "deleted" => Ok(FileKind::Deleted),
            "error" => Ok(FileKind::Error),
            other => Err(StoreError::Internal(format!(
                "unknown export file kind {other:?}"
            ))),
        }
    }
}

/// A finished NDJSON file of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFile {
    pub seq: i32,
    pub kind: FileKind,
    /// The type of its lines (`Bundle` for deletions, `OperationOutcome` for errors).
    pub res_type: String,
    /// The file's name in the job's directory, also the last segment of its URL.
    pub name: String,
    pub count: i64,
    pub bytes: i64,
}

#[derive(Queryable)]
struct JobRow {
    id: String,
    owner: Option<String>,
    scope: Option<String>,
    level: String,
    group_id: Option<String>,
    request: String,
    types: String,
    type_filters: String,
    since: Option<i64>,
    output_format: String,
    transaction_time: i64,
    status: String,
    created: i64,
    finished: Option<i64>,
    error: Option<String>,
    messages: String,
}

#[derive(Queryable)]
struct ProgressRow {
    _job_id: String,
    type_index: i32,
    type_total: Option<i64>,
    type_done: i64,
    after_key: i64,
    file_part: i32,
    file_count: i64,
    file_bytes: i64,
    exported: i64,
}

fn json_list(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Internal(format!("corrupt export job list {text:?}: {e}")))
}

fn to_json_list(items: &[String]) -> String {
    serde_json::Value::from(items).to_string()
}

impl JobRow {
    fn into_job(self, progress: ProgressRow) -> Result<ExportJob, StoreError> {
        Ok(ExportJob {
            spec: ExportSpec {
                scope: match &self.scope {
                    None => AccessScope::everything(),
                    Some(list) => AccessScope::patients(json_list(list)?),
                },
                level: ExportLevel::parse(&self.level)?,
                types: json_list(&self.types)?,
                type_filters: json_list(&self.type_filters)?,
                messages: json_list(&self.messages)?,
                id: self.id,
                owner: self.owner,
                group_id: self.group_id,
                request: self.request,
                since: self.since,
                output_format: self.output_format,
                transaction_time: self.transaction_time,
            },
            status: ExportStatus::parse(&self.status)?,
            created: self.created,
            finished: self.finished,
            error: self.error,
            checkpoint: ExportCheckpoint {
                type_index: progress.type_index,
                type_total: progress.type_total,
                type_done: progress.type_done,
                after_key: progress.after_key,
                file_part: progress.file_part,
                file_count: progress.file_count,
                file_bytes: progress.file_bytes,
                exported: progress.exported,
            },
        })
    }
}

/// What one step of an export reads: the job (scope, level, time window) and the type with
/// its `_typeFilter` queries (a resource is exported when any of them matches; none: every
/// one).
#[derive(Debug, Clone, Copy)]
pub struct ExportQuery<'a> {
    pub spec: &'a ExportSpec,
    pub res_type: &'a str,
    pub filters: &'a [SearchQuery],
}

/// One exported resource: its key (the keyset position) and its stored JSON text.
#[derive(Debug, QueryableByName)]
pub struct ExportRow {
    #[diesel(sql_type = BigInt)]
    pub res_key: i64,
    #[diesel(sql_type = Text)]
    pub body: String,
}

/// One resource deleted within the export's window: its key (the keyset position) and id.
#[derive(Debug, QueryableByName)]
pub struct DeletedRow {
    #[diesel(sql_type = BigInt)]
    pub res_key: i64,
    #[diesel(sql_type = Text)]
    pub res_id: String,
}

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Holds the right to run a job. On PostgreSQL a session advisory lock, on a connection kept
/// for the job's duration: a node that dies releases it with its connection, so that another
/// node (or the same one restarted) resumes the job at once. SQLite has one server process
/// and one worker, so nothing needs holding.
pub struct ExportLock {
    conn: Option<super::Conn>,
    key: i64,
}

impl Drop for ExportLock {
    fn drop(&mut self) {
        if let Some(conn) = &mut self.conn {
            if let DbConnection::Postgres(pg) = &mut **conn {
                let _ = diesel::sql_query("SELECT pg_advisory_unlock($1)")
                    .bind::<BigInt, _>(self.key)
                    .execute(pg);
            }
        }
    }
}

/// The advisory lock key of a job: FNV-1a of its id, in a space apart from the criteria locks
/// by a fixed prefix.
fn lock_key(id: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in b"export-job:".iter().chain(id.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

impl Store {
    /// Records a new job, queued, with its Group members.
    pub fn create_export_job(
        &self,
        job: &ExportSpec,
        members: &[ExportMember],
    ) -> Result<(), StoreError> {
        // The job's types are explicit (those the caller may export), so only the
        // compartments of its scope are kept.
        let scope = job.scope.patient_ids().map(to_json_list);
        let now = now_micros();
        self.write_with(|conn| {
            conn.transaction(|conn| {
                diesel::insert_into(export_job::table)
                    .values((
                        export_job::id.eq(&job.id),
                        export_job::owner.eq(&job.owner),
                        export_job::scope.eq(&scope),
                        export_job::level.eq(job.level.as_str()),
                        export_job::group_id.eq(&job.group_id),
                        export_job::request.eq(&job.request),
                        export_job::types.eq(to_json_list(&job.types)),
                        export_job::type_filters.eq(to_json_list(&job.type_filters)),
                        export_job::since.eq(job.since),
                        export_job::output_format.eq(&job.output_format),
                        export_job::transaction_time.eq(job.transaction_time),
                        export_job::status.eq(ExportStatus::Queued.as_str()),
                        export_job::created.eq(now),
                        export_job::messages.eq(to_json_list(&job.messages)),
                    ))
                    .execute(conn)?;
                diesel::insert_into(export_progress::table)
                    .values((
                        export_progress::job_id.eq(&job.id),
                        export_progress::type_index.eq(0),
                        export_progress::type_total.eq(None::<i64>),
                        export_progress::type_done.eq(0),
                        export_progress::after_key.eq(0),
                        export_progress::file_part.eq(1),
                        export_progress::file_count.eq(0),
                        export_progress::file_bytes.eq(0),
                        export_progress::exported.eq(0),
                    ))
                    .execute(conn)?;
                for chunk in members.chunks(500) {
                    let rows: Vec<_> = chunk
                        .iter()
                        .map(|m| {
                            (
                                export_patient::job_id.eq(&job.id),
                                export_patient::patient.eq(&m.patient),
                                export_patient::added.eq(m.added),
                            )
                        })
                        .collect();
                    on_backend!(conn, c => diesel::insert_into(export_patient::table)
                        .values(&rows)
                        .execute(c))?;
                }
                Ok::<_, StoreError>(())
            })
        })
    }

    /// A job by id.
    pub fn export_job(&self, id: &str) -> Result<Option<ExportJob>, StoreError> {
        let row: Option<(JobRow, ProgressRow)> = export_job::table
            .inner_join(export_progress::table)
            .filter(export_job::id.eq(id))
            .first(&mut *self.conn()?)
            .optional()?;
        row.map(|(job, progress)| job.into_job(progress))
            .transpose()
    }

    /// The finished files of a job, in order.
    pub fn export_files(&self, id: &str) -> Result<Vec<ExportFile>, StoreError> {
        let rows: Vec<(i32, String, String, String, i64, i64)> = export_file::table
            .filter(export_file::job_id.eq(id))
            .order(export_file::seq)
            .select((
                export_file::seq,
                export_file::kind,
                export_file::res_type,
                export_file::name,
                export_file::count,
                export_file::bytes,
            ))
            .load(&mut *self.conn()?)?;
        rows.into_iter()
            .map(|(seq, kind, res_type, name, count, bytes)| {
                Ok(ExportFile {
                    seq,
                    kind: FileKind::parse(&kind)?,
                    res_type,
                    name,
                    count,
                    bytes,
                })
            })
            .collect()
    }

    /// Forgets a job (its files and members go with it); false when there was none.
    pub fn delete_export_job(&self, id: &str) -> Result<bool, StoreError> {
        self.write_with(|conn| {
            conn.transaction(|conn| {
                // SQLite enforces ON DELETE CASCADE only with foreign_keys on (it is, see
                // backend.rs); deleting the children first does not depend on it.
                diesel::delete(export_file::table.filter(export_file::job_id.eq(id)))
                    .execute(conn)?;
                diesel::delete(export_patient::table.filter(export_patient::job_id.eq(id)))
                    .execute(conn)?;
                diesel::delete(export_progress::table.find(id)).execute(conn)?;
                let n = diesel::delete(export_job::table.find(id)).execute(conn)?;
                Ok::<_, StoreError>(n > 0)
            })
        })
    }

    /// The jobs a worker still has to run (queued, or interrupted while running), oldest first.
    pub fn unfinished_export_jobs(&self) -> Result<Vec<String>, StoreError> {
        Ok(export_job::table
            .filter(export_job::status.eq_any(vec![
                ExportStatus::Queued.as_str(),
                ExportStatus::Running.as_str(),
            ]))
            .order((export_job::created, export_job::id))
            .select(export_job::id)
            .load(&mut *self.conn()?)?)
    }

    /// The jobs that ended (completed or failed) before `before`.
    pub fn ended_export_jobs(&self, before: i64) -> Result<Vec<String>, StoreError> {
        Ok(export_job::table
            .filter(export_job::finished.lt(before))
            .select(export_job::id)
            .load(&mut *self.conn()?)?)
    }

    /// Takes the right to run job `id`; `None` when another worker holds it.
    pub fn lock_export_job(&self, id: &str) -> Result<Option<ExportLock>, StoreError> {
        let key = lock_key(id);
        match self.backend {
            Backend::Sqlite => Ok(Some(ExportLock { conn: None, key })),
            Backend::Postgres => {
                // The lock holds a connection for the whole job; the batches need another.
                if self.pool.max_size() < 2 {
                    return Err(StoreError::Config(
                        "bulk export on PostgreSQL needs --pool-size 2 or more".into(),
                    ));
                }
                #[derive(QueryableByName)]
                struct Locked {
                    #[diesel(sql_type = diesel::sql_types::Bool)]
                    locked: bool,
                }
                let mut conn = self.conn()?;
                let DbConnection::Postgres(pg) = &mut *conn else {
                    return Err(StoreError::Internal("not a PostgreSQL connection".into()));
                };
                let row: Locked = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked")
                    .bind::<BigInt, _>(key)
                    .get_result(pg)?;
                Ok(row.locked.then_some(ExportLock {
                    conn: Some(conn),
                    key,
                }))
            }
        }
    }

    /// Marks a queued job running; a job already running (resumed) stays so.
    pub fn start_export_job(&self, id: &str) -> Result<bool, StoreError> {
        self.write_with(|conn| {
            let n = diesel::update(
                export_job::table
                    .find(id)
                    .filter(export_job::status.eq(ExportStatus::Queued.as_str())),
            )
            .set(export_job::status.eq(ExportStatus::Running.as_str()))
            .execute(conn)?;
            Ok::<_, StoreError>(n > 0)
        })
    }

    /// Records progress (and, when a file was finished, that file) in one transaction.
    /// Returns false when the job is gone (cancelled): the worker stops.
    pub fn checkpoint_export_job(
        &self,
        id: &str,
        checkpoint: &ExportCheckpoint,
        finished_file: Option<&ExportFile>,
    ) -> Result<bool, StoreError> {
        self.write_with(|conn| {
            conn.transaction(|conn| {
                // The row goes with the job: none left means the job was cancelled.
                let n = diesel::update(export_progress::table.find(id))
                    .set((
                        export_progress::type_index.eq(checkpoint.type_index),
                        export_progress::type_total.eq(checkpoint.type_total),
                        export_progress::type_done.eq(checkpoint.type_done),
                        export_progress::after_key.eq(checkpoint.after_key),
                        export_progress::file_part.eq(checkpoint.file_part),
                        export_progress::file_count.eq(checkpoint.file_count),
                        export_progress::file_bytes.eq(checkpoint.file_bytes),
                        export_progress::exported.eq(checkpoint.exported),
                    ))
                    .execute(conn)?;
                if n == 0 {
                    return Ok(false);
                }
                if let Some(file) = finished_file {
                    diesel::insert_into(export_file::table)
                        .values((
                            export_file::job_id.eq(id),
                            export_file::seq.eq(file.seq),
                            export_file::kind.eq(file.kind.as_str()),
                            export_file::res_type.eq(&file.res_type),
                            export_file::name.eq(&file.name),
                            export_file::count.eq(file.count),
                            export_file::bytes.eq(file.bytes),
                        ))
                        .execute(conn)?;
                }
                Ok::<_, StoreError>(true)
            })
        })
    }

    /// Ends a job: completed when `error` is `None`, else failed with that message.
    pub fn finish_export_job(&self, id: &str, error: Option<&str>) -> Result<bool, StoreError> {
        let status = match error {
            None => ExportStatus::Completed,
            Some(_) => ExportStatus::Failed,
        };
        self.write_with(|conn| {
            let n = diesel::update(export_job::table.find(id))
                .set((
                    export_job::status.eq(status.as_str()),
                    export_job::error.eq(error),
                    export_job::finished.eq(now_micros()),
                ))
                .execute(conn)?;
            Ok::<_, StoreError>(n > 0)
        })
    }

    /// Checks that `filter` can run (its parameters are indexed and searchable), without
    /// running it.
    pub fn check_export_filter(
        &self,
        scope: &AccessScope,
        filter: &SearchQuery,
    ) -> Result<(), SearchError> {
        let ids = self.search_ids()?;
        let mut planner = Planner::new(Sql::new(self.backend), &ids, scope, now_micros());
        planner.sql.push("SELECT 1 FROM ");
        planner.context("r", &filter.types, &filter.clauses, None)?;
        Ok(())
    }

    /// How many resources `query` will export.
    pub fn count_export(&self, query: &ExportQuery<'_>) -> Result<i64, SearchError> {
        let rows: Vec<CountRow> = self.export_statement(query, |planner| {
            planner.sql.push("SELECT COUNT(*) AS n FROM ");
            export_context(planner, query, None).map(drop)
        })?;
        Ok(rows.first().map_or(0, |r| r.n))
    }

    /// The next `limit` resources of `query` after key `after`, in key order, with their
    /// current bodies: one statement. The bodies are read by primary key for the page's rows
    /// only (a scalar subquery), so that no plan joins the whole version table per batch.
    pub fn export_batch(
        &self,
        query: &ExportQuery<'_>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<ExportRow>, SearchError> {
        self.export_statement(query, |planner| {
            planner.sql.push(
                "SELECT k.res_key AS res_key, (SELECT v.body FROM resource_version v \
                 WHERE v.res_key = k.res_key AND v.version = k.version) AS body \
                 FROM (SELECT r.res_key AS res_key, r.version AS version FROM ",
            );
            let key = export_context(planner, query, Some(after))?;
            planner.sql.push(&format!(
                " ORDER BY {key} LIMIT {}) k ORDER BY k.res_key",
                limit.max(1)
            ));
            Ok(())
        })
    }

    /// How many deletions [`Store::deleted_batch`] will list for `query`.
    pub fn count_deleted(&self, query: &ExportQuery<'_>) -> Result<i64, SearchError> {
        let rows: Vec<CountRow> = self.export_statement(query, |planner| {
            planner.sql.push("SELECT COUNT(*) AS n FROM ");
            deleted_context(planner, query, None);
            Ok(())
        })?;
        Ok(rows.first().map_or(0, |r| r.n))
    }

    /// The next `limit` resources of `query`'s type deleted within the job's window (after
    /// `_since`), after key `after`, in key order: the manifest's `deleted` files.
    pub fn deleted_batch(
        &self,
        query: &ExportQuery<'_>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<DeletedRow>, SearchError> {
        self.export_statement(query, |planner| {
            planner
                .sql
                .push("SELECT v.res_key AS res_key, v.res_id AS res_id FROM ");
            deleted_context(planner, query, Some(after));
            planner
                .sql
                .push(&format!(" ORDER BY v.res_key LIMIT {}", limit.max(1)));
            Ok(())
        })
    }

    /// Runs the statement that `build` writes, planned under the job's access scope.
    fn export_statement<R>(
        &self,
        query: &ExportQuery<'_>,
        build: impl FnOnce(&mut Planner<'_>) -> Result<(), PlanError>,
    ) -> Result<Vec<R>, SearchError>
    where
        R: QueryableByName<diesel::sqlite::Sqlite> + QueryableByName<diesel::pg::Pg> + 'static,
    {
        let ids = self.search_ids()?;
        let mut planner = Planner::new(
            Sql::new(self.backend),
            &ids,
            &query.spec.scope,
            now_micros(),
        );
        build(&mut planner)?;
        Ok(planner.sql.load(&mut *self.conn()?)?)
    }
}

/// `resource r ... WHERE ...`: the live resources of the query's type that the scope, level,
/// time window and filters admit, after key `after` when given. Returns the key column to
/// order by.
fn export_context(
    planner: &mut Planner<'_>,
    query: &ExportQuery<'_>,
    after: Option<i64>,
) -> Result<String, PlanError> {
    let types = vec![query.res_type.to_string()];
    let key = match query.filters {
        // One filter drives the statement itself, so that a selective index leads.
        [only] => planner.context("r", &types, &only.clauses, None)?,
        filters => {
            let key = planner.context("r", &types, &[], None)?;
            if !filters.is_empty() {
                planner.sql.push(" AND (");
                for (i, filter) in filters.iter().enumerate() {
                    if i > 0 {
                        planner.sql.push(" OR ");
                    }
                    let alias = format!("f{i}_");
                    planner
                        .sql
                        .push(&format!("r.res_key IN (SELECT {alias}.res_key FROM "));
                    planner.context(&alias, &types, &filter.clauses, None)?;
                    planner.sql.push(")");
                }
                planner.sql.push(")");
            }
            key
        }
    };
    let spec = query.spec;
    planner
        .sql
        .push(" AND r.last_updated <= ")
        .bind_int(spec.transaction_time);
    if let Some(since) = spec.since {
        planner.sql.push(" AND (r.last_updated > ").bind_int(since);
        if spec.level == ExportLevel::Group {
            // Members who joined after `_since` are exported whole: the client has none of it.
            planner.sql.push(
                " OR r.res_key IN (SELECT c.res_key FROM resource_compartment c \
                 JOIN export_patient p ON p.patient = c.patient WHERE p.added AND p.job_id = ",
            );
            planner.sql.bind_text(&spec.id).push(")");
        }
        planner.sql.push(")");
    }
    if let Some(after) = after {
        planner.sql.push(&format!(" AND {key} > ")).bind_int(after);
    }
    level_conditions(planner, spec, "r", after);
    Ok(key)
}

/// `AND ...`: `alias.res_key` is in the compartment the job's level exports. The keyset
/// condition is repeated inside, so that the compartment scans start at the batch too
/// (PostgreSQL turns them into merge joins from the first key).
fn level_conditions(planner: &mut Planner<'_>, spec: &ExportSpec, alias: &str, after: Option<i64>) {
    let after_in = |planner: &mut Planner<'_>| {
        if let Some(after) = after {
            planner.sql.push(" AND c.res_key > ").bind_int(after);
        }
    };
    match spec.level {
        ExportLevel::System => {}
        ExportLevel::Patient => {
            planner.sql.push(&format!(
                " AND EXISTS (SELECT 1 FROM resource_compartment c WHERE c.res_key = {alias}.res_key"
            ));
            after_in(planner);
            planner.sql.push(")");
        }
        ExportLevel::Group => {
            planner.sql.push(&format!(
                " AND {alias}.res_key IN (SELECT c.res_key FROM resource_compartment c \
                 JOIN export_patient p ON p.patient = c.patient WHERE p.job_id = "
            ));
            planner.sql.bind_text(&spec.id);
            after_in(planner);
            planner.sql.push(")");
        }
    }
}

/// `resource_version v WHERE ...`: the resources of the query's type deleted after `_since`
/// and still deleted at the job's `transactionTime`, that the scope and level admit (index
/// rows are gone with the resource: `_typeFilter` cannot apply). Nothing without `_since`.
fn deleted_context(planner: &mut Planner<'_>, query: &ExportQuery<'_>, after: Option<i64>) {
    let spec = query.spec;
    planner
        .sql
        .push("resource_version v WHERE v.res_type = ")
        .bind_text(query.res_type)
        .push(" AND v.method = 'DELETE' AND v.last_updated <= ")
        .bind_int(spec.transaction_time);
    match spec.since {
        Some(since) => planner.sql.push(" AND v.last_updated > ").bind_int(since),
        None => planner.sql.push(" AND 1 = 0"),
    };
    // The deletion is the resource's last version as of the transaction time.
    planner.sql.push(
        " AND NOT EXISTS (SELECT 1 FROM resource_version w WHERE w.res_key = v.res_key \
         AND w.version > v.version AND w.last_updated <= ",
    );
    planner.sql.bind_int(spec.transaction_time).push(")");
    planner.scope("v");
    if let Some(after) = after {
        planner.sql.push(" AND v.res_key > ").bind_int(after);
    }
    level_conditions(planner, spec, "v", after);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_are_stable_and_distinct() {
        assert_eq!(lock_key("a"), lock_key("a"));
        assert_ne!(lock_key("a"), lock_key("b"));
    }
}
