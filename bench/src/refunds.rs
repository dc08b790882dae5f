//! Refund throughput (`minipay-bench refunds`): `orders` paid orders, then one full refund of
//! each requested through the admin API by 64 clients. Reported per backend: refund requests
//! accepted per second (the refund and its job stored) with their p50/p99, and refunds
//! settled per second from the first request to the last `succeeded` (each one a
//! `refund_order` job calling the embedded simulator over mutual TLS, then its notify; the
//! simulator settles a refund `REFUND_RESULT_MS` after accepting it, as WeChat takes seconds).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use crate::db::{Backend, BenchDb};
use crate::load::closed_loop;
use crate::procs::{NO_RATE_LIMITS, Proc, free_port, minipay_binary, wait_until_up};
use crate::scenarios::{client, create_order};

const ADMIN_TOKEN: &str = "bench-admin-token-0123456789abcdef";
const CLIENTS: usize = 64;
/// How long the simulator keeps an accepted refund `PROCESSING`.
const REFUND_RESULT_MS: u64 = 500;

/// Rows of the database counted by `sql` (one `COUNT(*)`).
async fn count(url: &str, sql: &'static str) -> anyhow::Result<i64> {
    Ok(if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(url).await?;
        let n = sqlx::query_scalar(sql).fetch_one(&pool).await?;
        pool.close().await;
        n
    } else {
        let pool = sqlx::PgPool::connect(url).await?;
        let n = sqlx::query_scalar(sql).fetch_one(&pool).await?;
        pool.close().await;
        n
    })
}

/// Waits until `sql` counts `want` rows (ten minutes at most).
async fn wait_for(url: &str, sql: &'static str, want: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let have = count(url, sql).await?;
        if have >= want {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{have} of {want}: {sql}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn run(backends: &[Backend], orders: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let binary = minipay_binary()?;
    println!(
        "| backend | refunds | requests accepted/s | request p50 | request p99 | settled/s (request → succeeded) | CPU s service |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &backend in backends {
        let name = backend.name();
        let db = BenchDb::create(backend).await?;
        let port = free_port()?;
        let api = format!("http://127.0.0.1:{port}");
        let mut env: Vec<(&str, String)> = vec![
            ("MINIPAY_DATABASE_URL", db.url.clone()),
            ("MINIPAY_LISTEN", format!("127.0.0.1:{port}")),
            ("MINIPAY_ADMIN_TOKEN", ADMIN_TOKEN.into()),
            ("MINIPAY_WORKER_CONCURRENCY", "1024".into()),
            ("MINIPAY_RECONCILE_DELAY_SECS", "3600".into()),
            ("MINIPAY_LOG", "error".into()),
        ];
        env.extend(NO_RATE_LIMITS.iter().map(|(k, v)| (*k, (*v).to_owned())));
        // Simulator mode: the embedded simulator, with its TLS side and merchant certificate.
        let mut service = Proc::start(&binary, "minipay-refunds", &["all"], &env, dir.path())?;
        let http = client();
        wait_until_up(&http, &format!("{api}/readyz"), &mut service).await?;
        crate::procs::set_sim_faults(
            &http,
            &format!("{api}/simulator"),
            json!({ "refund_result_ms": REFUND_RESULT_MS }),
        )
        .await?;

        eprintln!("[{name}] refunds: {orders} paid orders");
        let login: Value = http
            .post(format!("{api}/v1/sessions"))
            .json(&json!({ "code": "bench-refunds#1" }))
            .send()
            .await?
            .json()
            .await?;
        let token = login["token"].as_str().context("login")?.to_owned();
        let numbers = Arc::new(std::sync::Mutex::new(Vec::with_capacity(orders)));
        let (h, a, t, sink) = (http.clone(), api.clone(), token.clone(), numbers.clone());
        closed_loop(CLIENTS, Some(orders), None, move |_| {
            let (http, api, token, sink) = (h.clone(), a.clone(), t.clone(), sink.clone());
            async move {
                let otn = create_order(&http, &api, &token).await?;
                loop {
                    let order: Value = http
                        .get(format!("{api}/v1/orders/{otn}?wait=30"))
                        .bearer_auth(&token)
                        .send()
                        .await?
                        .json()
                        .await?;
                    if order["status"] == "ready" {
                        break;
                    }
                }
                http.post(format!("{api}/simulator/sim/pay"))
                    .json(&json!({ "out_trade_no": otn, "deliver": true }))
                    .send()
                    .await?
                    .error_for_status()?;
                sink.lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .push(otn);
                Ok(())
            }
        })
        .await;
        let paid = orders as i64;
        wait_for(
            &db.url,
            "SELECT COUNT(*) FROM orders WHERE status = 'paid'",
            paid,
        )
        .await?;

        eprintln!("[{name}] refunds: one full refund of each");
        let numbers = Arc::new(numbers.lock().map(|n| n.clone()).unwrap_or_default());
        let cpu_before = service.cpu_secs();
        let started = Instant::now();
        let (h, a, list) = (http.clone(), api.clone(), numbers.clone());
        let requests = closed_loop(CLIENTS, Some(numbers.len()), None, move |i| {
            let (http, api, list) = (h.clone(), a.clone(), list.clone());
            async move {
                let answer = http
                    .post(format!("{api}/v1/admin/orders/{}/refunds", list[i]))
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&json!({ "refund_fee": 88, "reason": "bench" }))
                    .send()
                    .await?;
                anyhow::ensure!(answer.status() == 202, "refund: {}", answer.status());
                Ok(())
            }
        })
        .await;
        anyhow::ensure!(
            requests.errors == 0,
            "{} refund requests failed",
            requests.errors
        );
        wait_for(
            &db.url,
            "SELECT COUNT(*) FROM refunds WHERE status = 'succeeded'",
            paid,
        )
        .await?;
        let settled = paid as f64 / started.elapsed().as_secs_f64();
        let cpu = service.cpu_secs() - cpu_before;
        println!(
            "| {name} | {paid} | {:.0} | {:.1} ms | {:.1} ms | {settled:.0} | {cpu:.1} |",
            requests.rate(),
            requests.latencies.ms(0.5),
            requests.latencies.ms(0.99),
        );
        service.stop(Duration::from_secs(10))?;
        db.drop_now().await;
    }
    Ok(())
}
