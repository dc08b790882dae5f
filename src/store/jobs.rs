//! The operator's view of apalis' queue tables: list jobs, and re-queue a dead one. (apalis'
//! own board needs its own origin and has no authentication; this is the same information
//! behind the admin token.)

use super::{SqlitePools, Store, StoreError};

/// One job row, for the admin view.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct JobRow {
    pub id: String,
    pub queue: String,
    pub status: String,
    pub attempts: i64,
    pub max_attempts: i64,
    /// Unix seconds.
    pub run_at: i64,
    pub args: String,
    pub last_result: Option<String>,
    pub lock_by: Option<String>,
}

/// Which jobs to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Killed, or failed with no runs left.
    Dead,
    /// Waiting to run (including failed runs that will be retried).
    Waiting,
    /// Claimed or running.
    Running,
}

impl JobState {
    pub fn parse(name: &str) -> Option<JobState> {
        match name {
            "dead" => Some(JobState::Dead),
            "waiting" => Some(JobState::Waiting),
            "running" => Some(JobState::Running),
            _ => None,
        }
    }

    fn condition(self) -> &'static str {
        match self {
            JobState::Dead => {
                "(status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))"
            }
            JobState::Waiting => {
                "(status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts))"
            }
            JobState::Running => "status IN ('Queued', 'Running')",
        }
    }
}

const DEAD: &str = "(status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))";

impl Store {
    /// Up to `limit` jobs of `queue` in `state`, oldest first.
    pub async fn jobs(
        &self,
        queue: &str,
        state: JobState,
        limit: i64,
    ) -> Result<Vec<JobRow>, StoreError> {
        let rows = match self {
            Store::Sqlite(SqlitePools { reader: pool, .. }) => {
                let sql = format!(
                    "SELECT id, job_type AS queue, status, attempts, max_attempts, run_at, \
                     CAST(job AS TEXT) AS args, last_result, lock_by FROM Jobs \
                     WHERE job_type = $1 AND {} ORDER BY run_at LIMIT $2",
                    state.condition()
                );
                sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(queue)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
            }
            Store::Postgres(pool) => {
                let sql = format!(
                    "SELECT id, job_type AS queue, status, attempts::BIGINT AS attempts, \
                     max_attempts::BIGINT AS max_attempts, EXTRACT(EPOCH FROM run_at)::BIGINT AS run_at, \
                     convert_from(job, 'UTF8') AS args, last_result::TEXT AS last_result, lock_by \
                     FROM apalis.jobs WHERE job_type = $1 AND {} ORDER BY run_at LIMIT $2",
                    state.condition()
                );
                sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(queue)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
            }
        };
        Ok(rows)
    }

    /// Gives a dead job its runs back and queues it now; false if it is not dead (or gone).
    /// Safe for our jobs: each re-checks its order's status before acting.
    pub async fn retry_job(&self, id: &str) -> Result<bool, StoreError> {
        let changed = match self {
            Store::Sqlite(SqlitePools { writer: pool, .. }) => {
                let sql = format!(
                    "UPDATE Jobs SET status = 'Pending', attempts = 0, lock_by = NULL, lock_at = NULL, \
                     done_at = NULL, run_at = strftime('%s', 'now') WHERE id = $1 AND {DEAD}"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .execute(pool)
                    .await?
                    .rows_affected()
            }
            Store::Postgres(pool) => {
                let sql = format!(
                    "UPDATE apalis.jobs SET status = 'Pending', attempts = 0, lock_by = NULL, lock_at = NULL, \
                     done_at = NULL, run_at = now() WHERE id = $1 AND {DEAD}"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .execute(pool)
                    .await?
                    .rows_affected()
            }
        };
        Ok(changed == 1)
    }
}
