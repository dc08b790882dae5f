//! Merchant events under load (`minipay-bench events`): events delivered per second to a local
//! receiver, and the isolation check — submit → ready and notify ingest with a receiver that
//! hangs on every delivery against the same run with no webhook, then the RSS of a process
//! holding `backlog` events for a dead endpoint.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;

use crate::db::{Backend, BenchDb};
use crate::scenarios::{self, Service};

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const CLIENTS: usize = 64;

/// A receiver on loopback counting deliveries; `hang` never answers.
async fn receiver(hang: bool) -> anyhow::Result<(String, Arc<AtomicUsize>)> {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let router = Router::new().route(
        "/hooks",
        post(move || {
            let seen = seen.clone();
            async move {
                seen.fetch_add(1, Ordering::Relaxed);
                if hang {
                    std::future::pending::<()>().await;
                }
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hooks", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((url, count))
}

fn settings(webhook: Option<&str>, timeout_secs: u64) -> Vec<(&'static str, String)> {
    let mut s = vec![
        ("MINIPAY_WORKER_CONCURRENCY", "1024".to_owned()),
        ("MINIPAY_LOG", "error".to_owned()),
    ];
    if let Some(url) = webhook {
        s.push(("MINIPAY_WEBHOOK_URL", url.to_owned()));
        s.push(("MINIPAY_WEBHOOK_SECRET", SECRET.to_owned()));
        s.push(("MINIPAY_WEBHOOK_TIMEOUT_SECS", timeout_secs.to_string()));
    }
    s
}

/// Submit → ready and closed-loop notify rates of `orders` orders; the service is returned
/// running.
async fn payments(
    db: &BenchDb,
    dir: &Path,
    webhook: Option<&str>,
    orders: usize,
) -> anyhow::Result<(Service, f64, f64)> {
    let svc = Service::start(db, dir, &settings(webhook, 600), CLIENTS).await?;
    let (ready, trips) = scenarios::submit_to_ready(&svc, orders, CLIENTS).await;
    let notify = scenarios::notify_closed(&svc, Arc::new(trips), CLIENTS).await;
    Ok((svc, ready.rate(), notify.rate()))
}

pub async fn run(backends: &[Backend], orders: usize, backlog: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    println!(
        "| backend | events delivered/s | submit→ready/s no webhook | with hanging webhook | notify/s no webhook | with hanging webhook | RSS with {backlog} events for a dead endpoint |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &backend in backends {
        let name = backend.name();
        eprintln!("[{name}] events: delivered per second");
        let (url, delivered) = receiver(false).await?;
        let db = BenchDb::create(backend).await?;
        let started = Instant::now();
        let (svc, _, _) = payments(&db, dir.path(), Some(&url), orders).await?;
        while delivered.load(Ordering::Relaxed) < orders {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(600),
                "only {} of {orders} events delivered",
                delivered.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // From the first order to the last delivery: the events' end-to-end rate.
        let rate = orders as f64 / started.elapsed().as_secs_f64();
        svc.stop().await?;
        db.drop_now().await;

        eprintln!("[{name}] events: payments with no webhook");
        let db = BenchDb::create(backend).await?;
        let (svc, ready_plain, notify_plain) = payments(&db, dir.path(), None, orders).await?;
        svc.stop().await?;
        db.drop_now().await;

        eprintln!("[{name}] events: payments while every delivery hangs");
        let (hanging, _) = receiver(true).await?;
        let db = BenchDb::create(backend).await?;
        let (svc, ready_hang, notify_hang) =
            payments(&db, dir.path(), Some(&hanging), orders).await?;
        svc.stop().await?;
        db.drop_now().await;

        eprintln!("[{name}] events: {backlog} events for a dead endpoint");
        let dead = "http://127.0.0.1:9/hooks";
        let db = BenchDb::create(backend).await?;
        let (svc, _, _) = payments(&db, dir.path(), Some(dead), backlog).await?;
        let rss = svc.peak_rss_mib();
        svc.stop().await?;
        db.drop_now().await;

        println!(
            "| {name} | {rate:.0} | {ready_plain:.0} | {ready_hang:.0} | {notify_plain:.0} | {notify_hang:.0} | {rss:.0} MiB peak |"
        );
    }
    Ok(())
}
