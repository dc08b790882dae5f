//! What differs between SQLite and PostgreSQL inside a transaction: how a job is queued, and
//! how other processes hear that an order changed.

use std::time::Duration;

use apalis_core::task::Task;
use apalis_core::task::builder::TaskBuilder;
use minipay_jobs::Job;
use sqlx::{PgConnection, SqliteConnection};

use super::StoreError;

/// A queued job row as apalis stores it: JSON args, the job's idempotency key, and its
/// retry budget (`Job::RUNS`; apalis' default is 25, re-run at once; docs/apalis.md §2.4).
pub fn job_task<J: Job>(job: &J, run_after: Option<Duration>) -> Result<Task<Vec<u8>>, StoreError> {
    let mut builder = task_builder(job)?;
    if let Some(delay) = run_after {
        builder = builder.run_after(delay);
    }
    Ok(builder.build())
}

/// [`job_task`] due `pause` from now, never earlier: apalis keeps `run_at` in whole seconds
/// and its `run_after` rounds down (a 500 ms pause could run at once), so this rounds up.
pub fn job_task_after<J: Job>(job: &J, pause: Duration) -> Result<Task<Vec<u8>>, StoreError> {
    let due = std::time::SystemTime::now() + pause;
    let due_ms = due
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let due_secs = u64::try_from(due_ms.div_ceil(1000)).unwrap_or(u64::MAX);
    Ok(task_builder(job)?.run_at_timestamp(due_secs).build())
}

fn task_builder<J: Job>(job: &J) -> Result<TaskBuilder<Vec<u8>>, StoreError> {
    let args = serde_json::to_vec(job).map_err(|source| StoreError::Encode {
        what: J::QUEUE,
        source,
    })?;
    Ok(TaskBuilder::new(args)
        .idempotency_key(job.idempotency_key())
        .max_attempts(J::RUNS))
}

/// A job row for apalis' PostgreSQL table, inserted by one of our own statements (`INSERT …
/// SELECT … FROM` a data-modifying CTE), so that a row and its job are one statement, one round
/// trip and one commit instead of BEGIN, two INSERTs and COMMIT. The columns are the ones
/// apalis' own insert writes (`apalis_postgres::queries::push_tasks`); the id is a ULID, as
/// apalis parses it back.
pub(crate) struct PgJob {
    id: String,
    queue: &'static str,
    args: Vec<u8>,
    max_attempts: i32,
    key: String,
}

impl PgJob {
    pub(crate) fn new<J: Job>(job: &J) -> Result<PgJob, StoreError> {
        let (id, queue, max_attempts) = Self::columns_of::<J>();
        Ok(PgJob {
            id,
            queue,
            args: serde_json::to_vec(job).map_err(|source| StoreError::Encode {
                what: J::QUEUE,
                source,
            })?,
            max_attempts,
            key: job.idempotency_key(),
        })
    }

    /// `INSERT INTO apalis.jobs … SELECT … FROM {source}`: one job per row of `source` (a CTE
    /// of the caller's statement), its columns bound as parameters `$first` to `$first + 4`.
    pub(crate) fn insert_from(source: &str, first: usize) -> String {
        let p = |i: usize| format!("${}", first + i);
        Self::insert_sql(source, [&p(0), &p(1), &p(2), &p(3), &p(4)])
    }

    /// The same insert with each column given as SQL: the id, queue, JSON args (`bytea`),
    /// retry budget and idempotency key, as parameters or expressions over `source`.
    pub(crate) fn insert_sql(
        source: &str,
        [id, queue, args, max_attempts, key]: [&str; 5],
    ) -> String {
        format!(
            "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, \
             priority, metadata, idempotency_key) \
             SELECT {id}, {queue}, {args}, 'Pending', 0, {max_attempts}, now(), 0, ''::hstore, \
             {key} FROM {source}"
        )
    }

    /// A job of queue `J` whose args and key the statement computes: its id, queue and retry
    /// budget, for [`PgJob::insert_sql`].
    pub(crate) fn columns_of<J: Job>() -> (String, &'static str, i32) {
        (
            ulid::Ulid::generate().to_string(),
            J::QUEUE,
            i32::try_from(J::RUNS).unwrap_or(i32::MAX),
        )
    }

    /// Binds the job's columns, in [`PgJob::insert_from`]'s order, after the caller's own.
    pub(crate) fn bind<'q, O>(
        self,
        query: sqlx::query::QueryScalar<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryScalar<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
        query
            .bind(self.id)
            .bind(self.queue)
            .bind(self.args)
            .bind(self.max_attempts)
            .bind(self.key)
    }
}

/// Operations whose SQL differs per backend, on a connection inside a transaction.
pub(crate) trait Dialect {
    /// Queues `job` on its queue in the caller's transaction.
    async fn enqueue<J: Job>(&mut self, job: &J) -> Result<(), StoreError> {
        let task = job_task(job, None)?;
        self.push(J::QUEUE, task).await
    }

    /// Queues a built task on `queue` in the caller's transaction.
    async fn push(&mut self, queue: &str, task: Task<Vec<u8>>) -> Result<(), StoreError>;

    /// Tells every process that `out_trade_no` changed, at commit (PostgreSQL NOTIFY).
    /// SQLite is single-process: the caller wakes its in-process waiters after commit.
    async fn announce(&mut self, out_trade_no: &str) -> Result<(), StoreError>;

    /// Makes the waiting job of `queue` with `key` due now (a no-op when there is none).
    async fn run_now(&mut self, queue: &str, key: &str) -> Result<(), StoreError>;

    /// Holds, until the transaction ends, a lock that one user's order placements share
    /// (PostgreSQL advisory lock); SQLite's single writer already serializes them.
    async fn lock_user(&mut self, openid: &str) -> Result<(), StoreError>;
}

/// The first key of the user locks (`pg_advisory_xact_lock(int, int)`), apart from any other
/// advisory lock.
const USER_LOCK_CLASS: i32 = 0x6d70_7531; // "mpu1"

/// The PostgreSQL channel carrying order changes; the payload is the out_trade_no.
pub const ORDER_CHANNEL: &str = "minipay_order";

fn queue_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Enqueue(e.to_string())
}

impl Dialect for SqliteConnection {
    async fn push(&mut self, queue: &str, task: Task<Vec<u8>>) -> Result<(), StoreError> {
        apalis_sqlite::queries::push_tasks(self, queue, &[task])
            .await
            .map_err(queue_error)?;
        super::group_commit::note_enqueued(queue);
        Ok(())
    }

    async fn announce(&mut self, _out_trade_no: &str) -> Result<(), StoreError> {
        Ok(())
    }

    async fn run_now(&mut self, queue: &str, key: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE Jobs SET run_at = strftime('%s', 'now') \
             WHERE job_type = $1 AND idempotency_key = $2 AND status = 'Pending'",
        )
        .bind(queue)
        .bind(key)
        .execute(self)
        .await?;
        Ok(())
    }

    async fn lock_user(&mut self, _openid: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

impl Dialect for PgConnection {
    async fn push(&mut self, queue: &str, task: Task<Vec<u8>>) -> Result<(), StoreError> {
        apalis_postgres::queries::push_tasks(self, queue, vec![task])
            .await
            .map_err(queue_error)
    }

    async fn announce(&mut self, out_trade_no: &str) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(ORDER_CHANNEL)
            .bind(out_trade_no)
            .execute(self)
            .await?;
        Ok(())
    }

    async fn run_now(&mut self, queue: &str, key: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE apalis.jobs SET run_at = now() \
             WHERE job_type = $1 AND idempotency_key = $2 AND status = 'Pending'",
        )
        .bind(queue)
        .bind(key)
        .execute(self)
        .await?;
        Ok(())
    }

    async fn lock_user(&mut self, openid: &str) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(USER_LOCK_CLASS)
            .bind(openid)
            .execute(self)
            .await?;
        Ok(())
    }
}
