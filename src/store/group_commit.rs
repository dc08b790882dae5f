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
//!
//! Once a batch that put jobs on queues has committed, the workers of those queues (and only
//! those) are woken through the [`InsertSignal`].

use std::cell::RefCell;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;

use futures::FutureExt;
use sqlx::{SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::StoreError;
use super::insert_signal::InsertSignal;
use super::write_health::WriteHealth;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Most transactions folded into one commit.
const MAX_BATCH: usize = 256;

tokio::task_local! {
    /// The queues the batch being applied has put jobs on, in the committing task.
    static ENQUEUED: RefCell<Vec<String>>;
}

/// Notes, from inside a write, that it put a job on `queue`: the queue's workers are woken once
/// the batch has committed (not if this write is rolled back). Outside a group commit (a tool
/// writing on the pool directly) it does nothing; the workers' safety poll finds those jobs.
pub(super) fn note_enqueued(queue: &str) {
    let _ = ENQUEUED.try_with(|queues| {
        let mut queues = queues.borrow_mut();
        if !queues.iter().any(|q| q == queue) {
            queues.push(queue.to_owned());
        }
    });
}

/// How many queues are noted so far; [`forget_enqueued_after`] drops those noted since.
fn enqueued_so_far() -> usize {
    ENQUEUED.try_with(|q| q.borrow().len()).unwrap_or(0)
}

fn forget_enqueued_after(count: usize) {
    let _ = ENQUEUED.try_with(|q| q.borrow_mut().truncate(count));
}

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
    /// Starts the committing task on `writer` (the single write connection); `signal` hears
    /// of the queues each committed batch put jobs on.
    pub fn start(writer: SqlitePool, health: WriteHealth, signal: InsertSignal) -> GroupCommit {
        let (queue, jobs) = mpsc::unbounded_channel();
        let committing = commit_loop(writer, jobs, health, signal);
        tokio::spawn(ENQUEUED.scope(RefCell::default(), committing));
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
    signal: InsertSignal,
) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let commit = apply(&writer, &mut batch).await;
        let enqueued = ENQUEUED
            .try_with(|q| std::mem::take(&mut *q.borrow_mut()))
            .unwrap_or_default();
        match &commit {
            Err(e) => {
                tracing::warn!(error = %e, transactions = batch.len(), "group commit failed");
                if e.is_unavailable() {
                    health.record_failure(e);
                }
            }
            Ok(()) => {
                health.record_ok();
                for queue in &enqueued {
                    signal.fire_queue(queue);
                }
            }
        }
        for job in batch.drain(..) {
            job.finish(&commit);
        }
    }
}

async fn apply(writer: &SqlitePool, batch: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut conn = writer.acquire().await?;
    let applied = async {
        // Each step is one round trip to the connection's thread: the statements that end one
        // write and start the next travel together, so a batch of n writes costs n + 1 trips
        // of bookkeeping instead of 2n + 2 (each trip wakes that thread and then this task).
        let mut step = BEGIN;
        let last = batch.len() - 1;
        for (i, job) in batch.iter_mut().enumerate() {
            run_step(&mut conn, step).await?;
            let noted = enqueued_so_far();
            let ok = job.run(&mut conn).await;
            if !ok {
                forget_enqueued_after(noted);
                // A full disk or an I/O error can make SQLite roll the whole transaction back
                // (https://www.sqlite.org/lang_transaction.html, "Response To Errors Within A
                // Transaction"): the batch fails as one, with that error.
                if let Some(e) = job.storage_error() {
                    return Err(shared(e));
                }
            }
            step = after_write(ok, i == last);
        }
        run_step(&mut conn, step).await
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

/// Opens the batch and the first write's savepoint.
const BEGIN: &str = "BEGIN IMMEDIATE; SAVEPOINT minipay_write";

/// What follows a write: keep it (`ok`) or undo it, then open the next write's savepoint or,
/// after the `last`, commit the batch.
fn after_write(ok: bool, last: bool) -> &'static str {
    match (ok, last) {
        (true, false) => "RELEASE minipay_write; SAVEPOINT minipay_write",
        (false, false) => {
            "ROLLBACK TO minipay_write; RELEASE minipay_write; SAVEPOINT minipay_write"
        }
        (true, true) => "RELEASE minipay_write; COMMIT",
        (false, true) => "ROLLBACK TO minipay_write; RELEASE minipay_write; COMMIT",
    }
}

/// Runs a step. When the savepoint it ends is gone, SQLite has rolled the whole transaction
/// back on its own, which it does only when it cannot go on writing (a full disk, an I/O
/// error, no memory; https://www.sqlite.org/lang_transaction.html, "Response To Errors Within
/// A Transaction"), also when the write itself reported a different error: nothing of the
/// batch was stored, and the database cannot take writes — unavailable, not a bug.
async fn run_step(conn: &mut SqliteConnection, sql: &'static str) -> Result<(), StoreError> {
    match sqlx::query(sql).execute(&mut *conn).await {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(db)) if db.message().contains("no such savepoint") => Err(
            StoreError::Unavailable(std::sync::Arc::new(sqlx::Error::Database(db))),
        ),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use futures::{FutureExt, StreamExt};
    use minipay_jobs::{Job, PrepayOrder, QueryOrder};

    use super::super::dialect::Dialect;
    use super::super::{InsertSignal, JobWake, Store, StoreError, write_tx};

    fn woken(wake: &mut JobWake) -> bool {
        wake.next().now_or_never().flatten().is_some()
    }

    fn query(check: u32) -> QueryOrder {
        QueryOrder {
            out_trade_no: "MP1".into(),
            check,
        }
    }

    /// A committed job wakes its own queue's worker, not the others' (each wake is a fetch on
    /// the one writer); a write rolled back wakes no one.
    #[tokio::test]
    async fn a_committed_job_wakes_only_its_queues_worker() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let signal = InsertSignal::new();
        let store = Store::connect(&url, 2, &signal).await.expect("connect");
        store.migrate().await.expect("migrate");
        let mut queried = signal.subscribe_to(QueryOrder::QUEUE);
        let mut prepay = signal.subscribe_to(PrepayOrder::QUEUE);

        let written: Result<(), StoreError> = write_tx!(&store, tx => tx.enqueue(&query(1)).await);
        written.expect("committed");
        assert!(
            woken(&mut queried),
            "the job's queue is woken after the commit"
        );
        assert!(!woken(&mut prepay), "another queue's worker is left alone");

        let failed: Result<(), StoreError> = write_tx!(&store, tx => {
            tx.enqueue(&query(2)).await?;
            Err(StoreError::Conflict("rolled back"))
        });
        assert!(failed.is_err());
        assert!(!woken(&mut queried), "a rolled-back job wakes no one");
    }

    /// Writes folded into one batch stand or fall alone: the failed one leaves nothing, the
    /// ones around it are stored, and each caller hears its own outcome.
    #[tokio::test]
    async fn a_failed_write_in_a_batch_leaves_only_itself_out() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url, 2, &InsertSignal::new())
            .await
            .expect("connect");
        let created: Result<(), StoreError> = write_tx!(&store, tx => {
            sqlx::query("CREATE TABLE t (x INTEGER)").execute(&mut *tx).await?;
            Ok(())
        });
        created.expect("table");

        let insert = |x: i64, fail: bool| {
            let store = store.clone();
            async move {
                let written: Result<(), StoreError> = write_tx!(&store, tx => {
                    sqlx::query("INSERT INTO t (x) VALUES ($1)").bind(x).execute(&mut *tx).await?;
                    if fail {
                        return Err(StoreError::Conflict("refused"));
                    }
                    Ok(())
                });
                written.is_ok()
            }
        };
        // On this test's one thread all five are queued before the committing task runs, so
        // they share a batch: failures first, between, and last.
        let outcomes = futures::future::join_all([
            insert(1, true),
            insert(2, false),
            insert(3, true),
            insert(4, false),
            insert(5, true),
        ])
        .await;
        assert_eq!(outcomes, [false, true, false, true, false]);
        let Store::Sqlite(pools) = &store else {
            unreachable!()
        };
        let stored: Vec<i64> = sqlx::query_scalar("SELECT x FROM t ORDER BY x")
            .fetch_all(&pools.writer)
            .await
            .expect("read");
        assert_eq!(stored, [2, 4], "only the writes that succeeded are stored");
    }
}
