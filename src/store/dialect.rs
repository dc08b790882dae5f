//! What differs between SQLite and PostgreSQL inside a transaction: how a job is queued, and
//! how other processes hear that an order changed.
//!
//! On PostgreSQL, other processes hear of new jobs and changed orders by NOTIFY, sent *after*
//! the transaction commits, never inside it: PostgreSQL holds one cluster-wide lock from a
//! notifying transaction's pre-commit through its commit fsync, so notifying transactions
//! commit one at a time and lose group commit. Measured with pgbench on this machine (16
//! clients, one INSERT per transaction): 15,600 commits/s without NOTIFY, 3,700/s with one in
//! the transaction, 9,400/s with the same NOTIFY sent after commit in a statement of its own
//! (a transaction that writes nothing has no commit record to flush). apalis' insert trigger,
//! which notifies inside the inserting transaction, is dropped for the same reason
//! ([`super::Store::migrate`]); [`Dialect::enqueue`] sends its notification after commit.
//! If the process dies between commit and notification, the workers' safety poll and the
//! long-poll deadline cover the lost wake-up.

use std::cell::RefCell;
use std::time::Duration;

use apalis_core::task::Task;
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::task_id::TaskId;
use serde::Serialize;
use sqlx::{PgConnection, PgPool, SqliteConnection};

/// A queued job row as apalis stores it: JSON args, our idempotency key, a bounded number of
/// runs (apalis' default is 25, re-run at once; apalis-1.0.md §2.4).
pub fn job_task<T: Serialize>(
    job: &T,
    idempotency_key: String,
    max_attempts: usize,
    run_after: Option<Duration>,
) -> Result<Task<Vec<u8>>, serde_json::Error> {
    // Our id rather than one made inside apalis' insert, so that the notification sent after
    // commit can name the job.
    let mut builder = TaskBuilder::new(serde_json::to_vec(job)?)
        .task_id(TaskId::from_ulid(ulid::Ulid::generate()))
        .idempotency_key(idempotency_key)
        .max_attempts(max_attempts);
    if let Some(delay) = run_after {
        builder = builder.run_after(delay);
    }
    Ok(builder.build())
}

/// Operations whose SQL differs per backend, on a connection inside a transaction.
pub(crate) trait Dialect {
    /// Queues `task` on `queue` in the caller's transaction.
    async fn enqueue(&mut self, queue: &str, task: Task<Vec<u8>>) -> Result<(), sqlx::Error>;

    /// Tells every process that `out_trade_no` changed, after commit (PostgreSQL NOTIFY).
    /// SQLite is single-process: the caller wakes its in-process waiters after commit.
    async fn announce(&mut self, out_trade_no: &str) -> Result<(), sqlx::Error>;
}

/// The PostgreSQL channel carrying order changes; the payload is the out_trade_no.
pub const ORDER_CHANNEL: &str = "minipay_order";

/// The channel apalis' workers listen on for new jobs; the payload is `{"job_type", "id"}`.
const JOB_CHANNEL: &str = "apalis::job::insert";

/// A NOTIFY waiting for its transaction to commit: channel and payload.
pub(crate) type Notification = (&'static str, String);

tokio::task_local! {
    /// The notifications of the PostgreSQL transaction running on this task.
    static AFTER_COMMIT: RefCell<Vec<Notification>>;
}

/// Runs a PostgreSQL transaction (`transaction` ends in its commit or rollback), collecting the
/// notifications its statements ask for.
pub(crate) async fn collecting_notifications<T, E>(
    transaction: impl Future<Output = Result<T, E>>,
) -> (Result<T, E>, Vec<Notification>) {
    AFTER_COMMIT
        .scope(RefCell::new(Vec::new()), async {
            let result = transaction.await;
            (result, AFTER_COMMIT.with(RefCell::take))
        })
        .await
}

/// Sends committed notifications in one statement outside any transaction. The data is
/// already durable, so a failure here costs only a prompt wake-up: it is logged, not returned.
pub(crate) async fn send_notifications(pool: &PgPool, notifications: Vec<Notification>) {
    if notifications.is_empty() {
        return;
    }
    let (channels, payloads): (Vec<&str>, Vec<String>) = notifications.into_iter().unzip();
    let sent = sqlx::query("SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS n(c, p)")
        .bind(&channels)
        .bind(&payloads)
        .execute(pool)
        .await;
    if let Err(error) = sent {
        tracing::warn!(%error, "notification after commit not sent; pollers will catch up");
    }
}

fn notify_after_commit(channel: &'static str, payload: String) -> Result<(), sqlx::Error> {
    AFTER_COMMIT
        .try_with(|pending| pending.borrow_mut().push((channel, payload)))
        .map_err(|_| sqlx::Error::Protocol("NOTIFY requested outside a write transaction".into()))
}

fn queue_error(e: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::Protocol(format!("enqueue: {e}"))
}

impl Dialect for SqliteConnection {
    async fn enqueue(&mut self, queue: &str, task: Task<Vec<u8>>) -> Result<(), sqlx::Error> {
        apalis_sqlite::queries::push_tasks(self, queue, &[task])
            .await
            .map_err(queue_error)
    }

    async fn announce(&mut self, _out_trade_no: &str) -> Result<(), sqlx::Error> {
        Ok(())
    }
}

impl Dialect for PgConnection {
    async fn enqueue(&mut self, queue: &str, task: Task<Vec<u8>>) -> Result<(), sqlx::Error> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        // As apalis' trigger did: delayed jobs are found by the poll when due.
        let due = task.run_at().is_none_or(|at| at <= now);
        let id = task.task_id().map(ToString::to_string);
        apalis_postgres::queries::push_tasks(self, queue, vec![task])
            .await
            .map_err(queue_error)?;
        if let (true, Some(id)) = (due, id) {
            let payload = serde_json::json!({ "job_type": queue, "id": id }).to_string();
            notify_after_commit(JOB_CHANNEL, payload)?;
        }
        Ok(())
    }

    async fn announce(&mut self, out_trade_no: &str) -> Result<(), sqlx::Error> {
        notify_after_commit(ORDER_CHANNEL, out_trade_no.to_owned())
    }
}
