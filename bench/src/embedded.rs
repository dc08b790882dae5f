//! `minipay all` in simulator mode with its embedded simulator (its TLS side and merchant
//! certificate, so refunds work), an admin token and one logged-in user; and the steps the
//! refund and counting benchmarks drive through it: orders until `ready`, payments, refunds.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use crate::db::BenchDb;
use crate::load::{Run, closed_loop};
use crate::procs::{NO_RATE_LIMITS, Proc, free_port, minipay_binary, wait_until_up};
use crate::scenarios::{client, create_order};

pub const ADMIN_TOKEN: &str = "bench-admin-token-0123456789abcdef";
/// Clients driving each step.
const CLIENTS: usize = 64;

pub struct Embedded {
    pub api: String,
    pub http: reqwest::Client,
    pub token: String,
    pub service: Proc,
}

impl Embedded {
    /// Starts the service on `db` with `settings` over the bench's defaults; the simulator
    /// keeps an accepted refund `PROCESSING` for `refund_result_ms`.
    pub async fn start(
        db: &BenchDb,
        dir: &Path,
        name: &str,
        settings: &[(&str, String)],
        refund_result_ms: u64,
    ) -> anyhow::Result<Embedded> {
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
        env.extend(settings.iter().cloned());
        let mut service = Proc::start(&minipay_binary()?, name, &["all"], &env, dir)?;
        let http = client();
        wait_until_up(&http, &format!("{api}/readyz"), &mut service).await?;
        crate::procs::set_sim_faults(
            &http,
            &format!("{api}/simulator"),
            json!({ "refund_result_ms": refund_result_ms }),
        )
        .await?;
        let login: Value = http
            .post(format!("{api}/v1/sessions"))
            .json(&json!({ "code": format!("{name}#1") }))
            .send()
            .await?
            .json()
            .await?;
        let token = login["token"].as_str().context("login")?.to_owned();
        Ok(Embedded {
            api,
            http,
            token,
            service,
        })
    }

    /// `n` orders, each created and long-polled until `ready` as the mini-program does; their
    /// numbers.
    pub async fn ready_orders(&self, n: usize) -> anyhow::Result<Vec<String>> {
        let numbers = Arc::new(Mutex::new(Vec::with_capacity(n)));
        let (h, a, t, sink) = (
            self.http.clone(),
            self.api.clone(),
            self.token.clone(),
            numbers.clone(),
        );
        let run = closed_loop(CLIENTS, Some(n), None, move |_| {
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
                sink.lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .push(otn);
                Ok(())
            }
        })
        .await;
        anyhow::ensure!(run.errors == 0, "{} orders failed", run.errors);
        Ok(numbers.lock().map(|n| n.clone()).unwrap_or_default())
    }

    /// WeChat (the embedded simulator) is paid for each order and posts its notify.
    pub async fn pay_each(&self, numbers: &Arc<Vec<String>>) -> anyhow::Result<()> {
        let (h, a, list) = (self.http.clone(), self.api.clone(), numbers.clone());
        let run = closed_loop(CLIENTS, Some(numbers.len()), None, move |i| {
            let (http, api, list) = (h.clone(), a.clone(), list.clone());
            async move {
                http.post(format!("{api}/simulator/sim/pay"))
                    .json(&json!({ "out_trade_no": list[i], "deliver": true }))
                    .send()
                    .await?
                    .error_for_status()?;
                Ok(())
            }
        })
        .await;
        anyhow::ensure!(run.errors == 0, "{} payments failed", run.errors);
        Ok(())
    }

    /// One full refund of each order (88 fen, the demo product), requested by the merchant
    /// through the admin API; every request must be accepted (202).
    pub async fn refund_each(&self, numbers: &Arc<Vec<String>>) -> anyhow::Result<Run> {
        let (h, a, list) = (self.http.clone(), self.api.clone(), numbers.clone());
        let run = closed_loop(CLIENTS, Some(numbers.len()), None, move |i| {
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
        anyhow::ensure!(run.errors == 0, "{} refund requests failed", run.errors);
        Ok(run)
    }
}

/// Polls `count_sql` (one `COUNT(*)`, prefixed with `mark`) on `url` until it reaches `want`,
/// on one connection (five minutes at most).
pub async fn wait_for(url: &str, mark: &str, count_sql: &str, want: i64) -> anyhow::Result<()> {
    use sqlx::Connection;
    let sql = format!("{mark} {count_sql}");
    let deadline = Instant::now() + Duration::from_secs(300);
    let query = || sqlx::AssertSqlSafe(sql.clone());
    let mut sqlite = None;
    let mut pg = None;
    if url.starts_with("sqlite") {
        sqlite = Some(sqlx::SqliteConnection::connect(url).await?);
    } else {
        pg = Some(sqlx::PgConnection::connect(url).await?);
    }
    loop {
        let have: i64 = match (sqlite.as_mut(), pg.as_mut()) {
            (Some(conn), _) => sqlx::query_scalar(query()).fetch_one(conn).await?,
            (None, Some(conn)) => sqlx::query_scalar(query()).fetch_one(conn).await?,
            (None, None) => unreachable!("one of the two is open"),
        };
        if have >= want {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{have} of {want}: {count_sql}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
