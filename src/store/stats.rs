//! Counts for `/metrics` and `/readyz`: orders by status, queue depth and age, dead jobs.

use minipay_jobs::OrderStatus;

use super::orders::is;
use super::{SqlitePools, Store, StoreError, on_reader};

/// How many orders have one status.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StatusCount {
    #[sqlx(try_from = "String")]
    pub status: OrderStatus,
    pub count: i64,
}

/// One apalis queue's backlog.
#[derive(Debug, Clone, Default, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct QueueStats {
    pub queue: String,
    /// Jobs waiting or running (including failed runs that will be retried).
    pub depth: i64,
    /// Age in seconds of the oldest job that is due and not yet started.
    pub oldest_pending_secs: i64,
    /// Jobs that will never run again: killed, or failed with no runs left.
    pub dead: i64,
}

const QUEUE_STATS_SQLITE: &str = "SELECT job_type AS queue, \
       SUM(CASE WHEN status IN ('Pending', 'Queued', 'Running') OR (status = 'Failed' AND attempts < max_attempts) THEN 1 ELSE 0 END) AS depth, \
       COALESCE(MAX(CASE WHEN status = 'Pending' AND run_at <= $1 THEN $1 - run_at END), 0) AS oldest_pending_secs, \
       SUM(CASE WHEN status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts) THEN 1 ELSE 0 END) AS dead \
     FROM Jobs GROUP BY job_type";

const QUEUE_STATS_POSTGRES: &str = "SELECT job_type AS queue, \
       COUNT(*) FILTER (WHERE status IN ('Pending', 'Queued', 'Running') OR (status = 'Failed' AND attempts < max_attempts)) AS depth, \
       COALESCE(MAX(EXTRACT(EPOCH FROM (to_timestamp($1) - run_at))::BIGINT) FILTER (WHERE status = 'Pending' AND run_at <= to_timestamp($1)), 0)::BIGINT AS oldest_pending_secs, \
       COUNT(*) FILTER (WHERE status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts)) AS dead \
     FROM apalis.jobs GROUP BY job_type";

super::orders::status_sql!(
    /// Ready orders that became ready before `$1` (and so are still unpaid).
    READY_OVERDUE = "SELECT COUNT(*) FROM orders WHERE {} AND ready_at < $1",
    is(OrderStatus::Ready)
);

impl Store {
    /// Orders by status (statuses without orders are absent).
    pub async fn status_counts(&self) -> Result<Vec<StatusCount>, StoreError> {
        let rows = on_reader!(self, pool => {
            sqlx::query_as("SELECT status, COUNT(*) AS count FROM orders GROUP BY status")
                .fetch_all(pool)
                .await?
        });
        Ok(rows)
    }

    /// `ready` orders with no payment `delay_ms` after they became ready.
    pub async fn ready_overdue(&self, ready_before_ms: i64) -> Result<i64, StoreError> {
        let n = on_reader!(self, pool => {
            sqlx::query_scalar(READY_OVERDUE.as_str())
                .bind(ready_before_ms)
                .fetch_one(pool)
                .await?
        });
        Ok(n)
    }

    /// Backlog of each apalis queue; `now_secs` is the clock apalis' `run_at` is compared to.
    pub async fn queue_stats(&self, now_secs: i64) -> Result<Vec<QueueStats>, StoreError> {
        let stats = match self {
            Store::Sqlite(SqlitePools { reader: pool, .. }) => {
                sqlx::query_as(QUEUE_STATS_SQLITE)
                    .bind(now_secs)
                    .fetch_all(pool)
                    .await?
            }
            Store::Postgres(pool) => {
                sqlx::query_as(QUEUE_STATS_POSTGRES)
                    .bind(now_secs as f64)
                    .fetch_all(pool)
                    .await?
            }
        };
        Ok(stats)
    }

    /// Deletes finished jobs older than `older_than_secs` (apalis keeps them forever, and
    /// apalis-sqlite slows down as they pile up).
    pub async fn vacuum_jobs(
        &self,
        now_secs: i64,
        older_than_secs: i64,
    ) -> Result<u64, StoreError> {
        let cutoff = now_secs - older_than_secs;
        let deleted = match self {
            Store::Sqlite(SqlitePools { writer: pool, .. }) => {
                sqlx::query("DELETE FROM Jobs WHERE status IN ('Done', 'Killed') AND done_at < $1")
                    .bind(cutoff)
                    .execute(pool)
                    .await?
                    .rows_affected()
            }
            Store::Postgres(pool) => {
                sqlx::query("DELETE FROM apalis.jobs WHERE status IN ('Done', 'Killed') AND done_at < to_timestamp($1)")
                    .bind(cutoff as f64)
                    .execute(pool)
                    .await?
                    .rows_affected()
            }
        };
        Ok(deleted)
    }

    /// Whether a worker named `node…` (this process's) wrote a heartbeat in the last `within_secs`.
    pub async fn workers_alive(
        &self,
        node: &str,
        now_secs: i64,
        within_secs: i64,
    ) -> Result<bool, StoreError> {
        let pattern = format!("{node}-%");
        let alive: i64 = match self {
            Store::Sqlite(SqlitePools { reader: pool, .. }) => {
                sqlx::query_scalar("SELECT COUNT(*) FROM Workers WHERE last_seen >= $1 AND id LIKE $2")
                    .bind(now_secs - within_secs)
                    .bind(&pattern)
                    .fetch_one(pool)
                    .await?
            }
            Store::Postgres(pool) => {
                sqlx::query_scalar("SELECT COUNT(*) FROM apalis.workers WHERE last_seen >= to_timestamp($1) AND id LIKE $2")
                    .bind((now_secs - within_secs) as f64)
                    .bind(&pattern)
                    .fetch_one(pool)
                    .await?
            }
        };
        Ok(alive > 0)
    }
}
