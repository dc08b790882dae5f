//! The apalis workers: one per queue, with the wiring apalis 1.0 needs to be prompt and safe
//! (docs/apalis.md): a wake-up stream plus an interval, re-armed after every fire; bounded
//! concurrency; worker names unique per process start; a short heartbeat so a killed worker's
//! jobs are picked up again within seconds; deadlines and panic guards inside the handlers.

mod apply_payment;
mod guard;
mod payments;
mod pg_wake;
mod prepay;
mod query_order;
pub mod reconciler;

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use apalis::prelude::*;
use apalis_postgres::{PgPool, PostgresStorage};
use apalis_sqlite::{SqlitePool, SqliteStorage};
use minipay_jobs::{ApplyPayment, PrepayOrder, QueryOrder};
use tokio_util::sync::CancellationToken;

use crate::app::Services;
use crate::store::{InsertSignal, SqlitePools, Store};

pub use payments::apply as apply_payment;
pub use pg_wake::PgJobWakeups;

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

/// This process's worker name prefix: unique per process start, because apalis 1.0 strands
/// the jobs of a crashed worker when a new process reuses its name (docs/apalis.md §2.5).
pub fn node_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "minipay".into());
    format!(
        "{host}-{}-{}",
        std::process::id(),
        crate::wechat::sign::random_alphanumeric(4).to_lowercase()
    )
}

/// Registers one worker per queue on `monitor`; `$make` builds the queue's backend (the
/// factory runs again on every restart).
macro_rules! register {
    ($monitor:expr, $services:expr, $node:expr, $queue:expr, $handler:expr, $make:expr) => {{
        let services = $services.clone();
        let node = $node.to_owned();
        let make = $make;
        $monitor.register(move |run| {
            WorkerBuilder::new(format!("{node}-{}-{run}", $queue).as_str())
                .backend(make())
                .concurrency(services.config.worker_concurrency)
                .data(services.clone())
                .build($handler)
        })
    }};
}

/// A SQLite queue woken by inserts through this process's pool, with a safety poll.
pub fn sqlite_backend<T: Send + Sync + 'static>(
    pool: SqlitePool,
    signal: InsertSignal,
    config: apalis_sqlite::Config,
) -> impl Fn() -> PollWith<SqliteStorage<T>, Rearm<Strategy>> + Send + Sync + 'static {
    move || {
        let wake = Strategy::new()
            .stream(signal.subscribe())
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

/// Runs every queue's worker until `stop` fires; in-flight jobs then get up to the configured
/// shutdown deadline to finish.
pub async fn run(
    services: Arc<Services>,
    signal: InsertSignal,
    node: String,
    stop: CancellationToken,
) -> Result<(), MonitorError> {
    let config = &services.config;
    let (heartbeat, batch) = (config.heartbeat, config.worker_batch_size);
    let mut monitor = Monitor::new()
        .should_restart(|worker, error| {
            tracing::error!(worker = worker.name(), %error, "worker stopped; restarting");
            true
        })
        .shutdown_timeout(config.shutdown_timeout);
    // A killed worker's jobs go back to the queue after heartbeat × 3 (6 s by default) instead
    // of apalis' 300 s on PostgreSQL.
    match services.store.clone() {
        Store::Sqlite(SqlitePools { writer: pool, .. }) => {
            let queue = move |name: &'static str| {
                apalis_sqlite::Config::default()
                    .queue(name)
                    .batch_size(batch)
                    .heartbeat_interval(heartbeat)
                    .missed_heartbeats(3)
                    .lock_tasks(LOCK_TASKS)
            };
            monitor = register!(
                monitor,
                services,
                node,
                PrepayOrder::QUEUE,
                prepay::run,
                sqlite_backend::<PrepayOrder>(
                    pool.clone(),
                    signal.clone(),
                    queue(PrepayOrder::QUEUE)
                )
            );
            monitor = register!(
                monitor,
                services,
                node,
                ApplyPayment::QUEUE,
                apply_payment::run,
                sqlite_backend::<ApplyPayment>(
                    pool.clone(),
                    signal.clone(),
                    queue(ApplyPayment::QUEUE)
                )
            );
            monitor = register!(
                monitor,
                services,
                node,
                QueryOrder::QUEUE,
                query_order::run,
                sqlite_backend::<QueryOrder>(
                    pool.clone(),
                    signal.clone(),
                    queue(QueryOrder::QUEUE)
                )
            );
        }
        Store::Postgres(pool) => {
            let wakeups = PgJobWakeups::start(
                pool.clone(),
                &[PrepayOrder::QUEUE, ApplyPayment::QUEUE, QueryOrder::QUEUE],
                stop.clone(),
            );
            let queue = move |name: &'static str| {
                apalis_postgres::Config::default()
                    .queue(name)
                    .batch_size(batch)
                    .heartbeat_interval(heartbeat)
                    .missed_heartbeats(3)
                    .lock_tasks(LOCK_TASKS)
            };
            monitor = register!(
                monitor,
                services,
                node,
                PrepayOrder::QUEUE,
                prepay::run,
                postgres_backend::<PrepayOrder>(
                    pool.clone(),
                    wakeups.clone(),
                    queue(PrepayOrder::QUEUE)
                )
            );
            monitor = register!(
                monitor,
                services,
                node,
                ApplyPayment::QUEUE,
                apply_payment::run,
                postgres_backend::<ApplyPayment>(
                    pool.clone(),
                    wakeups.clone(),
                    queue(ApplyPayment::QUEUE)
                )
            );
            monitor = register!(
                monitor,
                services,
                node,
                QueryOrder::QUEUE,
                query_order::run,
                postgres_backend::<QueryOrder>(
                    pool.clone(),
                    wakeups.clone(),
                    queue(QueryOrder::QUEUE)
                )
            );
        }
    }
    monitor
        .run_with_signal(async move {
            stop.cancelled().await;
            Ok(())
        })
        .await
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
