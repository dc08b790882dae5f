//! minipay under load: the built binary in simulator mode against a separate simulator process
//! (so the service's RSS is its own), driven over loopback HTTP.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use futures::FutureExt;
use minipay::wechat::simulator::SimConfig;
use minipay::wechat::v2::sign::{SignType, sign};
use minipay::wechat::v2::{Fields, xml};
use serde_json::{Value, json};

use crate::db::BenchDb;
use crate::load::{Run, Samples, closed_loop, open_loop};
use crate::procs::{
    NO_RATE_LIMITS, Proc, free_port, minipay_binary, set_sim_faults, start_simulator, wait_until_up,
};

/// A running minipay (`all`) and its simulator.
pub struct Service {
    pub api: String,
    pub sim: String,
    pub client: reqwest::Client,
    pub tokens: Arc<Vec<String>>,
    service: Proc,
    simulator: Proc,
}

pub fn client() -> reqwest::Client {
    minipay::wechat::http_client(Duration::from_secs(2), Duration::from_secs(60))
}

impl Service {
    pub async fn start(
        db: &BenchDb,
        dir: &Path,
        settings: &[(&str, String)],
        sessions: usize,
    ) -> anyhow::Result<Service> {
        let binary = minipay_binary()?;
        let client = client();
        let (simulator, sim) = start_simulator(&binary, &client, dir).await?;
        let port = free_port()?;
        let api = format!("http://127.0.0.1:{port}");
        let mut env: Vec<(&str, String)> = vec![
            ("MINIPAY_DATABASE_URL", db.url.clone()),
            ("MINIPAY_LISTEN", format!("127.0.0.1:{port}")),
            ("MINIPAY_PAY_BASE_URL", sim.clone()),
            ("MINIPAY_AUTH_BASE_URL", sim.clone()),
            ("MINIPAY_RECONCILE_DELAY_SECS", "3600".into()),
        ];
        env.extend(NO_RATE_LIMITS.iter().map(|(k, v)| (*k, (*v).to_owned())));
        env.extend(settings.iter().cloned());
        let mut service = Proc::start(&binary, "minipay", &["all"], &env, dir)?;
        wait_until_up(&client, &format!("{api}/readyz"), &mut service).await?;
        let mut tokens = Vec::with_capacity(sessions);
        for i in 0..sessions {
            let reply: Value = client
                .post(format!("{api}/v1/sessions"))
                .json(&json!({ "code": format!("bench{i}#{}", minipay::wechat::v2::sign::random_alphanumeric(6)) }))
                .send()
                .await?
                .json()
                .await?;
            tokens.push(reply["token"].as_str().context("login")?.to_owned());
        }
        Ok(Service {
            api,
            sim,
            client,
            tokens: Arc::new(tokens),
            service,
            simulator,
        })
    }

    pub async fn sim_latency(&self, ms: u64) -> anyhow::Result<()> {
        set_sim_faults(&self.client, &self.sim, json!({ "latency_ms": ms })).await
    }

    /// CPU seconds used so far by the service, the simulator, this load generator, and the
    /// whole machine (every core).
    pub fn cpu(&self) -> [f64; 4] {
        [
            self.service.cpu_secs(),
            self.simulator.cpu_secs(),
            crate::procs::cpu_secs(std::process::id()),
            crate::procs::machine_busy_secs(),
        ]
    }

    pub fn peak_rss_mib(&self) -> f64 {
        self.service.peak_rss_kib().unwrap_or(0) as f64 / 1024.0
    }

    /// The service's resident memory now, in MiB.
    pub fn rss_mib(&self) -> f64 {
        self.service.rss_kib().unwrap_or(0) as f64 / 1024.0
    }

    /// The service's soft limit of open files.
    pub fn service_fd_limit(&self) -> String {
        self.service.open_file_limit()
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.service.stop(Duration::from_secs(40))?;
        self.simulator.stop(Duration::from_secs(10))?;
        Ok(())
    }

    /// The prepay pickup summary's p50, p95 and p99 in ms (last minute).
    pub async fn pickup_ms(&self) -> anyhow::Result<(f64, f64, f64)> {
        let text = self
            .client
            .get(format!("{}/metrics", self.api))
            .send()
            .await?
            .text()
            .await?;
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))?;
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == "minipay_job_pickup_seconds")
            .context("no pickup summary")?;
        let prometheus_parse::Value::Summary(quantiles) = &sample.value else {
            bail!("pickup is not a summary");
        };
        let q = |want: f64| {
            quantiles
                .iter()
                .find(|c| (c.quantile - want).abs() < 1e-9)
                .map(|c| c.count * 1000.0)
                .unwrap_or(f64::NAN)
        };
        Ok((q(0.5), q(0.95), q(0.99)))
    }
}

/// One order's trip: out_trade_no, total_fee, and when the ready answer arrived (Unix ms).
#[derive(Debug, Clone)]
pub struct Trip {
    pub out_trade_no: String,
    pub total_fee: i64,
    pub received_ms: i64,
}

/// `orders` orders from `concurrency` clients, each: submit, then long-poll until `ready`.
pub async fn submit_to_ready(svc: &Service, orders: usize, concurrency: usize) -> (Run, Vec<Trip>) {
    let trips = Arc::new(Mutex::new(Vec::with_capacity(orders)));
    let run = closed_loop(
        concurrency,
        Some(orders),
        None,
        order_trip(svc, trips.clone()),
    )
    .await;
    let trips = trips.lock().map(|t| t.clone()).unwrap_or_default();
    (run, trips)
}

/// Orders started at a fixed `rate` for `duration` (light load: nothing queues).
pub async fn submit_to_ready_at(svc: &Service, rate: f64, duration: Duration) -> (Run, Vec<Trip>) {
    let trips = Arc::new(Mutex::new(Vec::new()));
    let run = open_loop(rate, duration, order_trip(svc, trips.clone())).await;
    let trips = trips.lock().map(|t| t.clone()).unwrap_or_default();
    (run, trips)
}

/// One order's trip: submit, then long-poll until `ready`; the trip is recorded in `sink`.
fn order_trip(
    svc: &Service,
    sink: Arc<Mutex<Vec<Trip>>>,
) -> impl Fn(usize) -> futures::future::BoxFuture<'static, anyhow::Result<()>> + Send + Sync + 'static
{
    let (client, api, tokens) = (svc.client.clone(), svc.api.clone(), svc.tokens.clone());
    move |i| {
        let (client, api, tokens, sink) =
            (client.clone(), api.clone(), tokens.clone(), sink.clone());
        async move {
            let token = &tokens[i % tokens.len()];
            let otn = create_order(&client, &api, token).await?;
            loop {
                let order: Value = client
                    .get(format!("{api}/v1/orders/{otn}?wait=30"))
                    .bearer_auth(token)
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                match order["status"].as_str() {
                    Some("ready") => {
                        let trip = Trip {
                            out_trade_no: otn,
                            total_fee: order["total_fee"].as_i64().unwrap_or(0),
                            received_ms: chrono::Utc::now().timestamp_millis(),
                        };
                        sink.lock()
                            .map_err(|_| anyhow::anyhow!("poisoned"))?
                            .push(trip);
                        return Ok(());
                    }
                    Some("pending") => continue,
                    other => bail!("order ended {other:?}"),
                }
            }
        }
        .boxed()
    }
}

/// Long-poll wake-up: from the moment the worker marked each order ready (`ready_at`) to the
/// moment its waiting client had the answer.
pub async fn wake_latencies(db: &BenchDb, trips: &[Trip]) -> anyhow::Result<Samples> {
    let rows: Vec<(String, i64)> =
        match minipay::store::Store::connect(&db.url, 2, &minipay::store::InsertSignal::new())
            .await?
        {
            minipay::store::Store::Sqlite(p) => {
                sqlx::query_as(
                    "SELECT out_trade_no, ready_at FROM orders WHERE ready_at IS NOT NULL",
                )
                .fetch_all(&p.reader)
                .await?
            }
            minipay::store::Store::Postgres(p) => {
                sqlx::query_as(
                    "SELECT out_trade_no, ready_at FROM orders WHERE ready_at IS NOT NULL",
                )
                .fetch_all(&p)
                .await?
            }
        };
    let ready_at: HashMap<String, i64> = rows.into_iter().collect();
    Ok(Samples::new(
        trips
            .iter()
            .filter_map(|t| {
                ready_at
                    .get(&t.out_trade_no)
                    .map(|r| (t.received_ms - r).max(0))
            })
            .map(|ms| Duration::from_millis(ms as u64))
            .collect(),
    ))
}

/// A notify as WeChat sends it for this order, signed with the demo key.
pub fn notify_body(trip: &Trip, serial: usize, forged: bool) -> String {
    let demo = SimConfig::demo();
    let total = trip.total_fee.to_string();
    let txn = format!("4200{:024}", serial);
    let mut fields: Fields = [
        ("return_code", "SUCCESS"),
        ("result_code", "SUCCESS"),
        ("appid", demo.appid.as_str()),
        ("mch_id", demo.mch_id.as_str()),
        ("nonce_str", "5d2b6c2a8db53831f7eda20af46e531c"),
        ("openid", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"),
        ("is_subscribe", "N"),
        ("trade_type", "JSAPI"),
        ("bank_type", "OTHERS"),
        ("total_fee", total.as_str()),
        ("fee_type", "CNY"),
        ("cash_fee", total.as_str()),
        ("transaction_id", txn.as_str()),
        ("out_trade_no", trip.out_trade_no.as_str()),
        ("time_end", "20261127120000"),
        ("sign_type", "MD5"),
    ]
    .into_iter()
    .collect();
    let signature = sign(fields.iter(), &demo.key, SignType::Md5);
    fields.set(
        "sign",
        if forged {
            format!("{}0", &signature[..31])
        } else {
            signature
        },
    );
    xml::to_xml(fields.iter())
}

async fn post_notify(
    client: &reqwest::Client,
    api: &str,
    body: String,
    expect_success: bool,
) -> anyhow::Result<()> {
    let reply = client
        .post(format!("{api}/v1/wechat/notify"))
        .body(body)
        .send()
        .await?
        .text()
        .await?;
    let ok = reply.contains("SUCCESS");
    if ok != expect_success {
        bail!("unexpected notify reply: {reply}");
    }
    Ok(())
}

/// Verified notifies for distinct orders, as fast as `concurrency` clients go.
pub async fn notify_closed(svc: &Service, trips: Arc<Vec<Trip>>, concurrency: usize) -> Run {
    let (client, api) = (svc.client.clone(), svc.api.clone());
    let count = trips.len();
    closed_loop(concurrency, Some(count), None, move |i| {
        let (client, api, trips) = (client.clone(), api.clone(), trips.clone());
        async move { post_notify(&client, &api, notify_body(&trips[i], i, false), true).await }
    })
    .await
}

/// Verified notifies for distinct orders at a fixed rate.
pub async fn notify_open(
    svc: &Service,
    trips: Arc<Vec<Trip>>,
    rate: f64,
    serial_base: usize,
) -> Run {
    let (client, api) = (svc.client.clone(), svc.api.clone());
    let duration = Duration::from_secs_f64(trips.len() as f64 / rate);
    open_loop(rate, duration, move |i| {
        let (client, api, trips) = (client.clone(), api.clone(), trips.clone());
        async move {
            post_notify(
                &client,
                &api,
                notify_body(&trips[i], serial_base + i, false),
                true,
            )
            .await
        }
    })
    .await
}

/// The same POST body, as fast as `concurrency` clients go, for `duration`; `accept` checks
/// each reply (forged notifies must be refused, the hello-world must say hello).
pub async fn hammer(
    url: String,
    client: reqwest::Client,
    body: String,
    concurrency: usize,
    duration: Duration,
    accept: fn(&str) -> bool,
) -> Run {
    let body = Arc::new(body);
    closed_loop(concurrency, None, Some(duration), move |_| {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        async move {
            let reply = client
                .post(url.as_str())
                .body(body.as_str().to_owned())
                .send()
                .await?
                .text()
                .await?;
            if !accept(&reply) {
                bail!("unexpected reply {reply}");
            }
            Ok(())
        }
    })
    .await
}

/// One order of the demo catalog's cheapest product, as a mini-program places it; its number.
pub async fn create_order(
    client: &reqwest::Client,
    api: &str,
    token: &str,
) -> anyhow::Result<String> {
    let created: Value = client
        .post(format!("{api}/v1/orders"))
        .bearer_auth(token)
        .json(&json!({ "sku": "sms-100", "quantity": 1 }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(created["out_trade_no"]
        .as_str()
        .context("out_trade_no")?
        .to_owned())
}
