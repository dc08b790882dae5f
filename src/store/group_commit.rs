//! SQLite group commit. Write transactions queue here; a single task applies whatever has
//! queued in one database transaction — one COMMIT, one fsync for all — each in its own
//! SAVEPOINT, so a failing one is rolled back alone. Callers get their result only after the
//! COMMIT, so "stored" still means on disk (`synchronous=FULL`).
//!
//! SQLite takes one writer at a time, and with `synchronous=FULL` each commit costs an fsync;
//! batching is what lets many concurrent requests share them. (PostgreSQL runs writers in
//! parallel and groups WAL flushes itself; it does not use this.)

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;

use futures::FutureExt;
use sqlx::{SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::StoreError;

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
    /// Answers the caller once the batch's COMMIT is known.
    fn finish(self: Box<Self>, commit: &Result<(), sqlx::Error>);
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

    fn finish(self: Box<Self>, commit: &Result<(), sqlx::Error>) {
        let result = match (commit, self.outcome) {
            (Ok(()), Some(outcome)) => outcome,
            // Not run: the batch failed before reaching it.
            (Ok(()), None) => Err(StoreError::BatchFailed("write was not run".into())),
            (Err(e), _) => Err(shared(e)),
        };
        let _ = self.reply.send(result);
    }
}

/// Each writer's own copy of an error shared by a whole batch, keeping "database
/// unreachable" apart.
fn shared(e: &sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Io(io) => StoreError::Unavailable(sqlx::Error::Io(std::io::Error::new(
            io.kind(),
            io.to_string(),
        ))),
        sqlx::Error::PoolTimedOut => StoreError::Unavailable(sqlx::Error::PoolTimedOut),
        sqlx::Error::PoolClosed => StoreError::Unavailable(sqlx::Error::PoolClosed),
        other => StoreError::BatchFailed(other.to_string()),
    }
}

impl GroupCommit {
    /// Starts the committing task on `writer` (the single write connection).
    pub fn start(writer: SqlitePool) -> GroupCommit {
        let (queue, jobs) = mpsc::unbounded_channel();
        tokio::spawn(commit_loop(writer, jobs));
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

async fn commit_loop(writer: SqlitePool, mut jobs: mpsc::UnboundedReceiver<Box<dyn Job>>) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let commit = apply(&writer, &mut batch).await;
        if let Err(e) = &commit {
            tracing::warn!(error = %e, transactions = batch.len(), "group commit failed");
        }
        for job in batch.drain(..) {
            job.finish(&commit);
        }
    }
}

async fn apply(writer: &SqlitePool, batch: &mut [Box<dyn Job>]) -> Result<(), sqlx::Error> {
    let mut conn = writer.acquire().await?;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    let applied = async {
        for job in batch.iter_mut() {
            sqlx::query("SAVEPOINT minipay_write")
                .execute(&mut *conn)
                .await?;
            if job.run(&mut conn).await {
                sqlx::query("RELEASE minipay_write")
                    .execute(&mut *conn)
                    .await?;
            } else {
                sqlx::query("ROLLBACK TO minipay_write")
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("RELEASE minipay_write")
                    .execute(&mut *conn)
                    .await?;
            }
        }
        sqlx::query("COMMIT").execute(&mut *conn).await?;
        Ok::<(), sqlx::Error>(())
    }
    .await;
    if applied.is_err() {
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    }
    applied
}
