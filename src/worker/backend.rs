//! How each queue's worker is driven, the same way on both backends: a wake-up stream plus a
//! safety poll, re-armed after every fire (docs/apalis.md §3); claimed rows left `Queued`
//! rather than marked `Running`; a short heartbeat so that a killed worker's jobs come back
//! within seconds.

use std::task::{Context, Poll};
use std::time::Duration;

use apalis::prelude::*;
use apalis_postgres::{PgPool, PostgresStorage};
use apalis_sqlite::{SqlitePool, SqliteStorage};

use super::pg_wake::PgJobWakeups;
use crate::store::InsertSignal;

/// Re-polls the wrapped strategy until it is pending, so that no wake-up is lost when a tick
/// fires during the poll that ends an empty fetch (apalis 1.0.0 loses those; docs/apalis.md §3).
pub struct Rearm<P>(pub P);

/// A strategy still ready after this many polls in a row is stuck ready (an ended stream
/// reads as ready forever): answer "fetch" and let the worker come back, never spin here.
const REARM_MAX_POLLS: usize = 64;

impl<P: PollStrategy> PollStrategy for Rearm<P> {
    fn poll_drive(&mut self, cx: &mut Context<'_>, snapshot: &PollSnapshot) -> Poll<Option<()>> {
        let mut fired = false;
        for _ in 0..REARM_MAX_POLLS {
            match self.0.poll_drive(cx, snapshot) {
                Poll::Ready(Some(())) => fired = true,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => {
                    return if fired {
                        Poll::Ready(Some(()))
                    } else {
                        Poll::Pending
                    };
                }
            }
        }
        Poll::Ready(Some(()))
    }

    fn on_poll(&mut self, snapshot: &PollSnapshot) {
        self.0.on_poll(snapshot)
    }
}

/// How often an idle worker looks for jobs its wake-up stream did not announce (jobs queued
/// by another process on SQLite, a NOTIFY lost while reconnecting, delayed `run_at`).
const SAFETY_POLL: Duration = Duration::from_millis(500);

/// Whether a job's row is marked `Running` when it starts. Off: each mark is one more write
/// that the worker's fetch loop waits for, and it buys nothing here — a claimed row is already
/// `Queued` with the worker's name, which is all that crash recovery (re-queueing the rows of
/// a worker whose heartbeat stopped) and acknowledgement look at.
pub const LOCK_TASKS: bool = false;

/// A SQLite queue woken by this process's commits of jobs into it, with a safety poll.
pub fn sqlite_backend<T: Send + Sync + 'static>(
    pool: SqlitePool,
    signal: InsertSignal,
    config: apalis_sqlite::Config,
) -> impl Fn() -> PollWith<SqliteStorage<T>, Rearm<Strategy>> + Send + Sync + 'static {
    move || {
        let wake = Strategy::new()
            .stream(signal.subscribe_to(config.queue.as_ref()))
            .interval(SAFETY_POLL);
        SqliteStorage::<T>::new(&pool)
            .with_config(config.clone())
            .poll_with_strategy(Rearm(wake))
    }
}

/// A PostgreSQL queue woken by inserts into it (the process's one LISTEN connection), with a
/// safety poll.
pub fn postgres_backend<T: Send + Sync + 'static>(
    pool: PgPool,
    wakeups: PgJobWakeups,
    config: apalis_postgres::Config,
) -> impl Fn() -> PollWith<PostgresStorage<T>, Rearm<Strategy>> + Send + Sync + 'static {
    move || {
        let wake = Strategy::new()
            .stream(wakeups.subscribe(config.queue.as_ref()))
            .interval(SAFETY_POLL);
        PostgresStorage::<T>::new(&pool)
            .with_config(config.clone())
            .poll_with_strategy(Rearm(wake))
    }
}

/// A queue's apalis configuration: batch size, and a heartbeat after which three missed
/// beats hand a killed worker's jobs back (6 s by default instead of apalis' 300 s on
/// PostgreSQL).
pub fn sqlite_queue(
    queue: &'static str,
    batch: usize,
    heartbeat: Duration,
) -> apalis_sqlite::Config {
    apalis_sqlite::Config::default()
        .queue(queue)
        .batch_size(batch)
        .heartbeat_interval(heartbeat)
        .missed_heartbeats(3)
        .lock_tasks(LOCK_TASKS)
}

/// The PostgreSQL twin of [`sqlite_queue`].
pub fn postgres_queue(
    queue: &'static str,
    batch: usize,
    heartbeat: Duration,
) -> apalis_postgres::Config {
    apalis_postgres::Config::default()
        .queue(queue)
        .batch_size(batch)
        .heartbeat_interval(heartbeat)
        .missed_heartbeats(3)
        .lock_tasks(LOCK_TASKS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn poll_once(strategy: &mut impl PollStrategy) -> Poll<Option<()>> {
        let waker = futures::task::noop_waker();
        strategy.poll_drive(&mut Context::from_waker(&waker), &PollSnapshot::default())
    }

    #[test]
    fn rearm_returns_even_when_a_strategy_is_stuck_ready() {
        // An ended stream is ready on every poll; before the bound this looped forever.
        let mut strategy = Rearm(Strategy::new().stream(futures::stream::empty::<()>()));
        assert_eq!(poll_once(&mut strategy), Poll::Ready(Some(())));
    }

    #[test]
    fn rearm_reports_one_fetch_for_a_burst_of_wake_ups_and_then_waits() {
        let mut strategy = Rearm(
            Strategy::new()
                .stream(futures::stream::iter([(), (), ()]).chain(futures::stream::pending())),
        );
        assert_eq!(poll_once(&mut strategy), Poll::Ready(Some(())));
        assert_eq!(poll_once(&mut strategy), Poll::Pending);
    }
}
