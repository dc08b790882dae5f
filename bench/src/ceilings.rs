//! What minipay is judged against, measured in the same run: an axum hello-world under the same
//! load, the database's raw commit rate at minipay's durability and pool size, and apalis
//! draining no-op jobs with minipay's wiring.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use apalis::prelude::*;
use axum::Router;
use axum::routing::post;
use minipay::store::{InsertSignal, Store};
use serde::{Deserialize, Serialize};

use crate::load::closed_loop;

/// `POST /` reads the body and answers "hello": the least an HTTP handler can do.
pub fn hello_router() -> Router {
    Router::new().route(
        "/",
        post(|body: axum::body::Bytes| async move {
            std::hint::black_box(body.len());
            "hello"
        }),
    )
}

/// Single-row `INSERT`s, one transaction each, from `connections` connections for `duration`.
pub async fn raw_commit_rate(
    url: &str,
    connections: u32,
    duration: Duration,
) -> anyhow::Result<f64> {
    let store = Store::connect(url, connections, &InsertSignal::new()).await?;
    let ddl = match &store {
        Store::Sqlite(_) => {
            "CREATE TABLE IF NOT EXISTS bench_commits (id INTEGER PRIMARY KEY, v TEXT NOT NULL)"
        }
        Store::Postgres(_) => {
            "CREATE TABLE IF NOT EXISTS bench_commits (id BIGSERIAL PRIMARY KEY, v TEXT NOT NULL)"
        }
    };
    match &store {
        Store::Sqlite(p) => {
            sqlx::query(ddl).execute(&p.writer).await?;
        }
        Store::Postgres(p) => {
            sqlx::query(ddl).execute(p).await?;
        }
    }
    let store = Arc::new(store);
    let run = closed_loop(connections as usize, None, Some(duration), move |i| {
        let store = store.clone();
        async move {
            match &*store {
                Store::Sqlite(p) => {
                    let mut tx = p.writer.begin().await?;
                    sqlx::query("INSERT INTO bench_commits (v) VALUES ($1)")
                        .bind(i.to_string())
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                }
                Store::Postgres(p) => {
                    let mut tx = p.begin().await?;
                    sqlx::query("INSERT INTO bench_commits (v) VALUES ($1)")
                        .bind(i.to_string())
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                }
            }
            Ok(())
        }
    })
    .await;
    Ok(run.rate())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Noop(u64);

const NOOP_QUEUE: &str = "bench_noop";

async fn noop(_job: Noop, done: Data<Arc<AtomicUsize>>) -> Result<(), BoxDynError> {
    done.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// apalis draining `jobs` no-op jobs with minipay's settings (batch size, concurrency, heartbeat,
/// the re-armed wake-up strategy); jobs per second from worker start to the last handler.
pub async fn apalis_drain(
    url: &str,
    jobs: usize,
    pool_size: u32,
    batch: usize,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let signal = InsertSignal::new();
    let store = Store::connect(url, pool_size, &signal).await?;
    store.migrate().await?;
    for chunk in (0..jobs as u64).collect::<Vec<_>>().chunks(1000) {
        let tasks: Vec<_> = chunk
            .iter()
            .map(|i| {
                TaskBuilder::new(serde_json::to_vec(&Noop(*i)).unwrap_or_default())
                    .max_attempts(3)
                    .build()
            })
            .collect();
        match &store {
            Store::Sqlite(p) => {
                let mut tx = p.writer.begin().await?;
                apalis_sqlite::queries::push_tasks(&mut *tx, NOOP_QUEUE, &tasks).await?;
                tx.commit().await?;
            }
            Store::Postgres(p) => {
                let mut tx = p.begin().await?;
                apalis_postgres::queries::push_tasks(&mut *tx, NOOP_QUEUE, tasks).await?;
                tx.commit().await?;
            }
        }
    }
    let done = Arc::new(AtomicUsize::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let heartbeat = Duration::from_secs(2);
    let name = format!("bench-drain-{}", std::process::id());
    let monitor = match store.clone() {
        Store::Sqlite(pool) => {
            let config = apalis_sqlite::Config::default()
                .queue(NOOP_QUEUE)
                .batch_size(batch)
                .heartbeat_interval(heartbeat)
                .missed_heartbeats(3)
                .lock_tasks(minipay::worker::LOCK_TASKS);
            let make = minipay::worker::sqlite_backend::<Noop>(pool.writer, signal.clone(), config);
            let done = done.clone();
            Monitor::new().register(move |run| {
                WorkerBuilder::new(format!("{name}-{run}").as_str())
                    .backend(make())
                    .concurrency(concurrency)
                    .data(done.clone())
                    .build(noop)
            })
        }
        Store::Postgres(pool) => {
            let config = apalis_postgres::Config::default()
                .queue(NOOP_QUEUE)
                .batch_size(batch)
                .heartbeat_interval(heartbeat)
                .missed_heartbeats(3)
                .lock_tasks(minipay::worker::LOCK_TASKS);
            let wakeups =
                minipay::worker::PgJobWakeups::start(pool.clone(), &[NOOP_QUEUE], stop.clone());
            let make = minipay::worker::postgres_backend::<Noop>(pool, wakeups, config);
            let done = done.clone();
            Monitor::new().register(move |run| {
                WorkerBuilder::new(format!("{name}-{run}").as_str())
                    .backend(make())
                    .concurrency(concurrency)
                    .data(done.clone())
                    .build(noop)
            })
        }
    };
    let started = Instant::now();
    let stopper = stop.clone();
    let running = tokio::spawn(monitor.run_with_signal(async move {
        stopper.cancelled().await;
        Ok(())
    }));
    let deadline = started + Duration::from_secs(300);
    while done.load(Ordering::Relaxed) < jobs && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    stop.cancel();
    let _ = running.await;
    store.close().await;
    Ok(done.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64())
}
