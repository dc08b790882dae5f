//! SQLite group commit. Write transactions queue here; a single task applies whatever has
//! queued in one database transaction — one COMMIT, one fsync for all — each in its own
//! SAVEPOINT, so a failing one is rolled back alone. Callers get their result only after the
//! COMMIT, so "stored" still means on disk (`synchronous=FULL`).
//!
//! SQLite takes one writer at a time, and with `synchronous=FULL` each commit costs an fsync;
//! batching is what lets many concurrent requests share them. (PostgreSQL runs writers in
//! parallel and groups WAL flushes itself; it does not use this.)
//!
//! A batch that fails as a whole (a full disk, an I/O error) may leave SQLite's transaction
//! open or already rolled back, depending on the error; the connection is then closed, not
//! reused, so the next batch starts on a fresh one and can never run inside a leftover
//! transaction. Every outcome is reported to [`WriteHealth`].

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;

use futures::FutureExt;
use sqlx::{SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::StoreError;
use super::write_health::WriteHealth;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Most transactions folded into one commit.
const MAX_BATCH: usize = 256;

/// The queue of write transactions; clones share it.
#[derive(Clone, Debug)]
pub struct GroupCommit {
    queue: mpsc::UnboundedSender<Box<dyn Job>>,
}

trait Job: Send {
    /// Runs the work; false when it failed (its error is kept for `finish`).
    fn run<'c>(&'c mut self, conn: &'c mut SqliteConnection) -> BoxFuture<'c, bool>;
    /// Its error, when it failed because the database could not take the write (full, I/O).
    fn storage_error(&self) -> Option<&StoreError>;
    /// Answers the caller once the batch's COMMIT is known.
    fn finish(self: Box<Self>, commit: &Result<(), StoreError>);
}

struct Write<T, F> {
    work: Option<F>,
    outcome: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for Write<T, F>
where
    T: Send,
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>> + Send,
{
    fn run<'c>(&'c mut self, conn: &'c mut SqliteConnection) -> BoxFuture<'c, bool> {
        Box::pin(async move {
            let Some(work) = self.work.take() else {
                return false;
            };
            let result = match AssertUnwindSafe(work(conn)).catch_unwind().await {
                Ok(result) => result,
                Err(_) => Err(StoreError::Panicked),
            };
            let ok = result.is_ok();
            self.outcome = Some(result);
            ok
        })
    }

    fn storage_error(&self) -> Option<&StoreError> {
        match &self.outcome {
            Some(Err(e)) if e.is_unavailable() => Some(e),
            _ => None,
        }
    }

    fn finish(self: Box<Self>, commit: &Result<(), StoreError>) {
        let result = match (commit, self.outcome) {
            (Ok(()), Some(outcome)) => outcome,
            // Not run: the batch failed before reaching it.
            (Ok(()), None) => Err(StoreError::BatchFailed("write was not run".into())),
            (Err(e), _) => Err(shared(e)),
        };
        let _ = self.reply.send(result);
    }
}

/// Ends the current write's savepoint. When it is gone, SQLite has rolled the whole
/// transaction back on its own, which it does only when it cannot go on writing (a full disk,
/// an I/O error, no memory; https://www.sqlite.org/lang_transaction.html, "Response To Errors
/// Within A Transaction"), also when the write itself reported a different error: nothing of
/// the batch was stored, and the database cannot take writes — unavailable, not a bug.
async fn end_savepoint(conn: &mut SqliteConnection, sql: &'static str) -> Result<(), StoreError> {
    match sqlx::query(sql).execute(&mut *conn).await {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(db)) if db.message().contains("no such savepoint") => Err(
            StoreError::Unavailable(std::sync::Arc::new(sqlx::Error::Database(db))),
        ),
        Err(e) => Err(e.into()),
    }
}

/// Each writer's own copy of an error shared by a whole batch, keeping "the database cannot
/// take writes" (a full disk, an I/O error, unreachable) apart from bugs.
fn shared(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(cause) => StoreError::Unavailable(cause.clone()),
        StoreError::Closed => StoreError::Closed,
        other => StoreError::BatchFailed(other.to_string()),
    }
}

impl GroupCommit {
    /// Starts the committing task on `writer` (the single write connection).
    pub fn start(writer: SqlitePool, health: WriteHealth) -> GroupCommit {
        let (queue, jobs) = mpsc::unbounded_channel();
        tokio::spawn(commit_loop(writer, jobs, health));
        GroupCommit { queue }
    }

    /// Runs `work` inside the next batch and returns its result once the batch committed.
    pub async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Write {
            work: Some(work),
            outcome: None,
            reply,
        });
        self.queue.send(job).map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

async fn commit_loop(
    writer: SqlitePool,
    mut jobs: mpsc::UnboundedReceiver<Box<dyn Job>>,
    health: WriteHealth,
) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let commit = apply(&writer, &mut batch).await;
        match &commit {
            Err(e) => {
                tracing::warn!(error = %e, transactions = batch.len(), "group commit failed");
                if e.is_unavailable() {
                    health.record_failure(e);
                }
            }
            Ok(()) => health.record_ok(),
        }
        for job in batch.drain(..) {
            job.finish(&commit);
        }
    }
}

async fn apply(writer: &SqlitePool, batch: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
    let mut conn = writer.acquire().await?;
    let applied = async {
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        for job in batch.iter_mut() {
            sqlx::query("SAVEPOINT minipay_write")
                .execute(&mut *conn)
                .await?;
            if job.run(&mut conn).await {
                end_savepoint(&mut conn, "RELEASE minipay_write").await?;
            } else {
                // A full disk or an I/O error can make SQLite roll the whole transaction back
                // (https://www.sqlite.org/lang_transaction.html, "Response To Errors Within A
                // Transaction"): the batch fails as one, with that error.
                if let Some(e) = job.storage_error() {
                    return Err(shared(e));
                }
                end_savepoint(&mut conn, "ROLLBACK TO minipay_write").await?;
                end_savepoint(&mut conn, "RELEASE minipay_write").await?;
            }
        }
        sqlx::query("COMMIT").execute(&mut *conn).await?;
        Ok::<(), StoreError>(())
    }
    .await;
    if applied.is_err() {
        // SQLite may have rolled back already (SQLITE_FULL, SQLITE_IOERR do), or may still hold
        // the transaction open; either way this connection is not trusted again.
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        conn.close_on_drop();
    }
    applied
}
