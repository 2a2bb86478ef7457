//! `reindex_job`: asynchronous `$reindex` runs, recorded so that any node answers a status
//! poll. The reindex itself keeps its state where it always did (the pending keys of
//! `search_param`); these rows only report on it.

use diesel::prelude::*;

use super::schema::{reindex_job, resource};
use super::{now_micros, Store, StoreError};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReindexStatus {
    Running,
    Completed,
    Failed,
}

impl ReindexStatus {
    fn as_str(self) -> &'static str {
        match self {
            ReindexStatus::Running => "running",
            ReindexStatus::Completed => "completed",
            ReindexStatus::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Result<ReindexStatus, StoreError> {
        match text {
            "running" => Ok(ReindexStatus::Running),
            "completed" => Ok(ReindexStatus::Completed),
            "failed" => Ok(ReindexStatus::Failed),
            other => Err(StoreError::Internal(format!(
                "unknown reindex status {other:?}"
            ))),
        }
    }
}

/// A recorded job.
#[derive(Debug, Clone)]
pub struct ReindexJob {
    pub id: String,
    pub types: Vec<String>,
    pub status: ReindexStatus,
    /// Live resources of the types when the job started.
    pub total: i64,
    pub done: i64,
    pub created: i64,
    /// The runner's last heartbeat.
    pub updated: i64,
    pub finished: Option<i64>,
    /// The outcome once ended: the count and time, or why it failed.
    pub message: Option<String>,
}

type JobRow = (
    String,
    String,
    String,
    i64,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<String>,
);

impl Store {
    /// How many live resources `types` hold.
    pub fn count_live(&self, types: &[String]) -> Result<i64, StoreError> {
        Ok(resource::table
            .filter(resource::res_type.eq_any(types))
            .filter(resource::deleted.eq(false))
            .count()
            .get_result(&mut *self.conn()?)?)
    }

    /// Records a running job over `types` (`total` resources), and forgets the jobs that
    /// ended before `forget_before` (µs).
    pub fn create_reindex_job(
        &self,
        id: &str,
        types: &[String],
        total: i64,
        forget_before: i64,
    ) -> Result<(), StoreError> {
        let now = now_micros();
        self.write_with(|conn| {
            diesel::delete(reindex_job::table.filter(reindex_job::finished.lt(forget_before)))
                .execute(conn)?;
            diesel::insert_into(reindex_job::table)
                .values((
                    reindex_job::id.eq(id),
                    reindex_job::types.eq(serde_json::Value::from(types).to_string()),
                    reindex_job::status.eq(ReindexStatus::Running.as_str()),
                    reindex_job::total.eq(total),
                    reindex_job::done.eq(0),
                    reindex_job::created.eq(now),
                    reindex_job::updated.eq(now),
                ))
                .execute(conn)?;
            Ok::<_, StoreError>(())
        })
    }

    /// A job by id.
    pub fn reindex_job(&self, id: &str) -> Result<Option<ReindexJob>, StoreError> {
        let row: Option<JobRow> = reindex_job::table
            .find(id)
            .first(&mut *self.conn()?)
            .optional()?;
        let Some((id, types, status, total, done, created, updated, finished, message)) = row
        else {
            return Ok(None);
        };
        Ok(Some(ReindexJob {
            types: serde_json::from_str(&types).map_err(|e| {
                StoreError::Internal(format!("corrupt reindex job types {types:?}: {e}"))
            })?,
            status: ReindexStatus::parse(&status)?,
            id,
            total,
            done,
            created,
            updated,
            finished,
            message,
        }))
    }

    /// Records progress (and the heartbeat).
    pub fn reindex_job_progress(&self, id: &str, done: i64) -> Result<(), StoreError> {
        self.write_with(|conn| {
            diesel::update(reindex_job::table.find(id))
                .set((
                    reindex_job::done.eq(done),
                    reindex_job::updated.eq(now_micros()),
                ))
                .execute(conn)?;
            Ok::<_, StoreError>(())
        })
    }

    /// Ends a job: completed with `Ok(message)`, failed with `Err(message)`.
    pub fn finish_reindex_job(
        &self,
        id: &str,
        outcome: Result<&str, &str>,
    ) -> Result<(), StoreError> {
        let (status, message) = match outcome {
            Ok(m) => (ReindexStatus::Completed, m),
            Err(m) => (ReindexStatus::Failed, m),
        };
        let now = now_micros();
        self.write_with(|conn| {
            diesel::update(reindex_job::table.find(id))
                .set((
                    reindex_job::status.eq(status.as_str()),
                    reindex_job::message.eq(message),
                    reindex_job::updated.eq(now),
                    reindex_job::finished.eq(now),
                ))
                .execute(conn)?;
            Ok::<_, StoreError>(())
        })
    }
}
