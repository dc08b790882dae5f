//! What differs between SQLite and PostgreSQL inside a transaction: how a job is queued, and
//! how other processes hear that an order changed.

use std::time::Duration;

use apalis_core::task::Task;
use apalis_core::task::builder::TaskBuilder;
use serde::Serialize;
use sqlx::{PgConnection, SqliteConnection};

/// A queued job row as apalis stores it: JSON args, our idempotency key, a bounded number of
/// runs (apalis' default is 25, re-run at once; docs/apalis.md §2.4).
pub fn job_task<T: Serialize>(
    job: &T,
    idempotency_key: String,
    max_attempts: usize,
    run_after: Option<Duration>,
) -> Result<Task<Vec<u8>>, serde_json::Error> {
    let mut builder = TaskBuilder::new(serde_json::to_vec(job)?)
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

    /// Tells every process that `out_trade_no` changed, at commit (PostgreSQL NOTIFY).
    /// SQLite is single-process: the caller wakes its in-process waiters after commit.
    async fn announce(&mut self, out_trade_no: &str) -> Result<(), sqlx::Error>;
}

/// The PostgreSQL channel carrying order changes; the payload is the out_trade_no.
pub const ORDER_CHANNEL: &str = "minipay_order";

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
        apalis_postgres::queries::push_tasks(self, queue, vec![task])
            .await
            .map_err(queue_error)
    }

    async fn announce(&mut self, out_trade_no: &str) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(ORDER_CHANNEL)
            .bind(out_trade_no)
            .execute(self)
            .await?;
        Ok(())
    }
}
