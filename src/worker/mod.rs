//! The apalis workers: one per queue of the job list (`jobs.rs`), with the wiring apalis 1.0
//! needs to be prompt and safe (docs/apalis.md, `backend.rs`); worker names unique per process
//! start; deadlines and panic guards inside the handlers (`guard.rs`). Handlers are thin: they
//! re-read their order, ask the gateway, and call the domain layer.

mod apply_payment;
mod backend;
mod bill_schedule;
mod deliver_event;
mod guard;
mod jobs;
mod pg_wake;
mod prepay_order;
mod query_order;
mod reconcile_bill;
pub mod reconciler;
mod refund_check;
mod refund_order;

use std::sync::Arc;

use apalis::prelude::*;
use tokio_util::sync::CancellationToken;

use crate::services::Services;
use crate::store::{InsertSignal, SqlitePools, Store};
use jobs::each_job;

pub use backend::{
    LOCK_TASKS, Rearm, postgres_backend, postgres_queue, sqlite_backend, sqlite_queue,
};
pub use jobs::QUEUES;
pub use pg_wake::PgJobWakeups;

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
        crate::wechat::v2::sign::random_alphanumeric(4).to_lowercase()
    )
}

/// How many jobs of `queue` run at once in this process: merchant event deliveries have their
/// own (small) bound, so that a hanging endpoint holds a few delivery slots and nothing else.
fn concurrency(config: &crate::config::Config, queue: &str) -> usize {
    if queue == minipay_jobs::DeliverEvent::QUEUE {
        config.events.concurrency
    } else {
        config.workers.concurrency
    }
}

/// Rows claimed per fetch: never more than can run, so that claimed deliveries do not wait
/// behind a hanging endpoint while another process could take them.
fn batch(config: &crate::config::Config, queue: &str) -> usize {
    config.workers.batch_size.min(concurrency(config, queue))
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
                .concurrency(concurrency(&services.config, $queue))
                .data(services.clone())
                .build($handler)
        })
    }};
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
    let heartbeat = config.workers.heartbeat;
    let mut monitor = Monitor::new()
        .should_restart(|worker, error| {
            tracing::error!(worker = worker.name(), %error, "worker stopped; restarting");
            true
        })
        .shutdown_timeout(config.process.shutdown_timeout);
    match services.store.clone() {
        Store::Sqlite(SqlitePools { writer: pool, .. }) => {
            macro_rules! on_sqlite {
                (() $($job:ty => $run:path,)*) => {$(
                    let queue = <$job as minipay_jobs::Job>::QUEUE;
                    let make = sqlite_backend::<$job>(
                        pool.clone(),
                        signal.clone(),
                        sqlite_queue(queue, batch(config, queue), heartbeat),
                    );
                    monitor = register!(monitor, services, node, queue, $run, make);
                )*};
            }
            each_job!(on_sqlite!());
        }
        Store::Postgres(pool) => {
            let wakeups = PgJobWakeups::start(pool.clone(), QUEUES, stop.clone());
            macro_rules! on_postgres {
                (() $($job:ty => $run:path,)*) => {$(
                    let queue = <$job as minipay_jobs::Job>::QUEUE;
                    let make = postgres_backend::<$job>(
                        pool.clone(),
                        wakeups.clone(),
                        postgres_queue(queue, batch(config, queue), heartbeat),
                    );
                    monitor = register!(monitor, services, node, queue, $run, make);
                )*};
            }
            each_job!(on_postgres!());
        }
    }
    monitor
        .run_with_signal(async move {
            stop.cancelled().await;
            Ok(())
        })
        .await
}
