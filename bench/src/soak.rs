//! The fault soak: orders and payments flow for a while through 1 `serve` and 2 `work`
//! processes on PostgreSQL, while the simulator injects 5xx, hangs and SYSTEMERROR, PostgreSQL
//! restarts once and a worker is killed with SIGKILL. At the end every order must agree with
//! the simulator's own record, no acknowledged notify may be lost, and none applied twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::db::{Backend, BenchDb};
use crate::procs::{
    NO_RATE_LIMITS, Proc, free_port, minipay_binary, set_sim_faults, start_simulator, wait_until_up,
};

/// What the load generator did, counted as it went.
#[derive(Default)]
struct Counters {
    created: AtomicUsize,
    create_retries: AtomicUsize,
    paid_delivered: AtomicUsize,
    paid_dropped: AtomicUsize,
    left_unpaid: AtomicUsize,
    failed_seen: AtomicUsize,
    /// Cleared half-way: orders left unpaid after that would expire after the load stops, and
    /// their closes (no sooner than expiry, re-checked each minute) would outlast the soak.
    may_leave_unpaid: AtomicBool,
}

/// MINIPAY_ORDER_TTL_SECS of the soak's processes (WeChat allows no less than 5 minutes).
const ORDER_TTL: Duration = Duration::from_secs(360);

pub async fn run(duration: Duration) -> anyhow::Result<()> {
    let binary = minipay_binary()?;
    let dir = tempfile::tempdir()?;
    let db = BenchDb::create(Backend::Postgres)
        .await
        .context("the soak needs PostgreSQL")?;
    let client = crate::scenarios::client();
    eprintln!(
        "soak: {:.1} minutes on {}; logs in {}",
        duration.as_secs_f64() / 60.0,
        db.url,
        dir.path().display()
    );

    let (mut simulator, sim) = start_simulator(&binary, &client, dir.path()).await?;
    let storm = json!({
        "latency_ms": 20, "http_500_share": 0.05, "hang_share": 0.02, "hang_ms": 3000,
        "systemerror_share": 0.03, "notify_time_scale": 0.01
    });
    set_sim_faults(&client, &sim, storm).await?;

    let api_port = free_port()?;
    let api = format!("http://127.0.0.1:{api_port}");
    let env = |port: u16| -> Vec<(&'static str, String)> {
        let no_limits = NO_RATE_LIMITS.iter().map(|(k, v)| (*k, (*v).to_owned()));
        let mut env = vec![
            ("MINIPAY_DATABASE_URL", db.url.clone()),
            ("MINIPAY_LISTEN", format!("127.0.0.1:{port}")),
            ("MINIPAY_PAY_BASE_URL", sim.clone()),
            ("MINIPAY_AUTH_BASE_URL", sim.clone()),
            (
                "MINIPAY_NOTIFY_URL",
                format!("http://127.0.0.1:{api_port}/v1/wechat/notify"),
            ),
            ("MINIPAY_ADMIN_TOKEN", "soak-admin-token-0123456789".into()),
            ("MINIPAY_DB_POOL_SIZE", "8".into()),
            ("MINIPAY_WORKER_CONCURRENCY", "32".into()),
            ("MINIPAY_WECHAT_TIMEOUT_MS", "1000".into()),
            ("MINIPAY_PREPAY_BACKOFF_MS", "50".into()),
            ("MINIPAY_PREPAY_BACKOFF_MAX_MS", "1000".into()),
            ("MINIPAY_RECONCILE_DELAY_SECS", "5".into()),
            ("MINIPAY_RECONCILE_INTERVAL_MS", "1000".into()),
            ("MINIPAY_STUCK_PENDING_SECS", "30".into()),
            ("MINIPAY_ORDER_TTL_SECS", ORDER_TTL.as_secs().to_string()),
            ("MINIPAY_SHUTDOWN_TIMEOUT_SECS", "10".into()),
        ];
        env.extend(no_limits);
        env
    };
    let mut serve = Proc::start(&binary, "serve", &["serve"], &env(api_port), dir.path())?;
    wait_until_up(&client, &format!("{api}/readyz"), &mut serve).await?;
    let mut workers = vec![
        Proc::start(&binary, "work-1", &["work"], &env(0), dir.path())?,
        Proc::start(&binary, "work-2", &["work"], &env(0), dir.path())?,
    ];

    let counters = Arc::new(Counters {
        may_leave_unpaid: AtomicBool::new(true),
        ..Counters::default()
    });
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..8 {
        let (client, api, sim, counters, stop) = (
            client.clone(),
            api.clone(),
            sim.clone(),
            counters.clone(),
            stop.clone(),
        );
        clients.push(tokio::spawn(async move {
            shopper(c, client, api, sim, counters, stop).await
        }));
    }

    let started = Instant::now();
    let (mut restarted, mut killed) = (false, false);
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !restarted && started.elapsed() >= duration / 3 {
            restarted = true;
            eprintln!("soak: restarting PostgreSQL");
            crate::procs::restart_postgres()?;
        }
        if started.elapsed() >= duration / 2 {
            counters.may_leave_unpaid.store(false, Ordering::Relaxed);
        }
        if !killed && started.elapsed() >= duration / 2 {
            killed = true;
            eprintln!("soak: kill -9 work-1, starting work-3");
            workers[0].signal("KILL")?;
            workers.push(Proc::start(
                &binary,
                "work-3",
                &["work"],
                &env(0),
                dir.path(),
            )?);
        }
        if started.elapsed().as_secs().is_multiple_of(30) {
            eprintln!(
                "soak: {:>4} s, {} orders",
                started.elapsed().as_secs(),
                counters.created.load(Ordering::Relaxed)
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await??;
    }
    // The storm is over: WeChat answers again, and what was left in doubt must now converge
    // (a close retried each minute could otherwise keep meeting injected faults).
    set_sim_faults(&client, &sim, json!({ "notify_time_scale": 0.01 })).await?;
    eprintln!("soak: load stopped, faults cleared; waiting for the system to settle");
    // The last unpaid order expires ORDER_TTL after half-time; its close is confirmed at most a
    // minute after expiry.
    let closes_done = (duration / 2 + ORDER_TTL + Duration::from_secs(90)).saturating_sub(duration);
    let settle_for = closes_done.max(Duration::from_secs(180));
    let mut verdict = settle_and_check(&db, &client, &sim, &counters, settle_for).await;
    // The deadline is 10 s (MINIPAY_SHUTDOWN_TIMEOUT_SECS); every process must exit 0 within it.
    for p in std::iter::once(&mut serve)
        .chain(workers.iter_mut().skip(1))
        .chain(std::iter::once(&mut simulator))
    {
        if let Err(e) = p.stop(Duration::from_secs(15)) {
            verdict = verdict.and(Err(e));
        }
    }
    match &verdict {
        Ok(()) => db.drop_now().await,
        Err(_) => eprintln!(
            "soak: kept the logs in {} and the database {}",
            dir.keep().display(),
            db.url
        ),
    }
    verdict
}

/// One shopper: logs in, then orders, waits for the pay params and (mostly) pays, until told to
/// stop. Every request is retried through outages; order creation keeps its Idempotency-Key.
async fn shopper(
    id: usize,
    client: reqwest::Client,
    api: String,
    sim: String,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let token = loop {
        match client
            .post(format!("{api}/v1/sessions"))
            .json(&json!({ "code": format!("soak{id}#{}", rand_suffix()) }))
            .send()
            .await
        {
            Ok(r) if r.status() == 201 => {
                break r.json::<Value>().await?["token"]
                    .as_str()
                    .context("token")?
                    .to_owned();
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    };
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let key = format!("soak-{id}-{n}");
        let otn = loop {
            let sent = client
                .post(format!("{api}/v1/orders"))
                .bearer_auth(&token)
                .header("idempotency-key", &key)
                .json(&json!({ "sku": "sms-100", "quantity": 1 + n % 3 }))
                .send()
                .await;
            match sent {
                Ok(r) if r.status() == 202 => {
                    break r.json::<Value>().await?["out_trade_no"]
                        .as_str()
                        .context("otn")?
                        .to_owned();
                }
                Ok(r) if r.status().is_client_error() => {
                    bail!("order refused: {}", r.text().await.unwrap_or_default())
                }
                _ => {
                    counters.create_retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        };
        counters.created.fetch_add(1, Ordering::Relaxed);
        // Wait until the order leaves pending (long-poll, retried through outages).
        let status = loop {
            match client
                .get(format!("{api}/v1/orders/{otn}?wait=10"))
                .bearer_auth(&token)
                .send()
                .await
            {
                Ok(r) if r.status() == 200 => {
                    let order: Value = r.json().await?;
                    let status = order["status"].as_str().unwrap_or("").to_owned();
                    if status != "pending" {
                        break status;
                    }
                }
                _ => tokio::time::sleep(Duration::from_millis(300)).await,
            }
            if stop.load(Ordering::Relaxed) {
                break "pending".to_owned();
            }
        };
        if status == "failed" {
            counters.failed_seen.fetch_add(1, Ordering::Relaxed);
        }
        if status != "ready" {
            continue;
        }
        // 60 % pay with the notify delivered, 20 % pay with every notify lost, 20 % never pay
        // (in the first half; then they pay too).
        let never_pay = counters.may_leave_unpaid.load(Ordering::Relaxed);
        let (deliver, pay) = match n % 5 {
            0 if never_pay => (false, false),
            0 => (true, true),
            1 => (false, true),
            _ => (true, true),
        };
        if pay {
            let paid = client
                .post(format!("{sim}/sim/pay"))
                .json(&json!({ "out_trade_no": otn, "deliver": deliver }))
                .send()
                .await?;
            if paid.status().is_success() {
                let counter = if deliver {
                    &counters.paid_delivered
                } else {
                    &counters.paid_dropped
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            counters.left_unpaid.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// A `key, COUNT(*) … GROUP BY key` query as a map.
async fn counts(pool: &sqlx::PgPool, sql: &'static str) -> anyhow::Result<HashMap<String, i64>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(sql).fetch_all(pool).await?;
    Ok(rows.into_iter().collect())
}

fn rand_suffix() -> String {
    minipay::wechat::v2::sign::random_alphanumeric(8)
}

#[derive(sqlx::FromRow)]
struct OrderState {
    out_trade_no: String,
    status: String,
    transaction_id: Option<String>,
    prepay_id: Option<String>,
}

/// Waits until nothing is pending and every payment WeChat holds has reached us, then compares.
async fn settle_and_check(
    db: &BenchDb,
    client: &reqwest::Client,
    sim: &str,
    counters: &Counters,
    settle_for: Duration,
) -> anyhow::Result<()> {
    let pool = sqlx::PgPool::connect(&db.url).await?;
    let deadline = Instant::now() + settle_for;
    let (orders, sim_orders) = loop {
        let orders: Vec<OrderState> =
            sqlx::query_as("SELECT out_trade_no, status, transaction_id, prepay_id FROM orders")
                .fetch_all(&pool)
                .await?;
        let mut sim_orders = HashMap::new();
        for o in &orders {
            let response = client
                .get(format!("{sim}/sim/orders/{}", o.out_trade_no))
                .send()
                .await?;
            if response.status() == 200 {
                sim_orders.insert(o.out_trade_no.clone(), response.json::<Value>().await?);
            }
        }
        let pending = orders.iter().filter(|o| o.status == "pending").count();
        let unapplied = orders
            .iter()
            .filter(|o| {
                sim_orders
                    .get(&o.out_trade_no)
                    .is_some_and(|s| s["trade_state"] == "SUCCESS")
                    && o.status != "paid"
            })
            .count();
        // A close whose answer was lost (a hang) leaves ours `ready` until the next check,
        // at most a minute after expiry.
        let closing = orders
            .iter()
            .filter(|o| {
                o.status == "ready"
                    && sim_orders
                        .get(&o.out_trade_no)
                        .is_some_and(|s| s["trade_state"] == "CLOSED")
            })
            .count();
        if (pending == 0 && unapplied == 0 && closing == 0) || Instant::now() > deadline {
            eprintln!(
                "soak: settled with {pending} pending, {unapplied} payments not yet applied, \
                 {closing} closes not yet confirmed"
            );
            break (orders, sim_orders);
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    };

    let mut problems = Vec::new();
    let mut by_status: HashMap<String, usize> = HashMap::new();
    let (mut acknowledged, mut deliveries, mut lost) = (0usize, 0usize, 0usize);
    let accepted = counts(
        &pool,
        "SELECT transaction_id, COUNT(*) FROM notifies WHERE verdict = 'accepted' GROUP BY transaction_id",
    )
    .await?;
    let paid_events = counts(
        &pool,
        "SELECT out_trade_no, COUNT(*) FROM order_events WHERE kind = 'paid' GROUP BY out_trade_no",
    )
    .await?;
    let double_applied = paid_events.values().filter(|n| **n > 1).count();
    for o in &orders {
        *by_status.entry(o.status.clone()).or_default() += 1;
        let s = sim_orders.get(&o.out_trade_no);
        let state = s.and_then(|s| s["trade_state"].as_str()).unwrap_or("NONE");
        let sim_txn = s.and_then(|s| s["transaction_id"].as_str());
        let consistent = match o.status.as_str() {
            "paid" => state == "SUCCESS" && sim_txn == o.transaction_id.as_deref(),
            "ready" => {
                state == "NOTPAY"
                    && s.and_then(|s| s["prepay_id"].as_str()) == o.prepay_id.as_deref()
            }
            "closed" => state == "CLOSED",
            "failed" => state != "SUCCESS",
            _ => false,
        };
        if !consistent {
            problems.push(format!(
                "{}: ours {} / WeChat {state}",
                o.out_trade_no, o.status
            ));
        }
        if let Some(s) = s {
            for d in s["deliveries"].as_array().into_iter().flatten() {
                deliveries += 1;
                if d["acknowledged"] == true {
                    acknowledged += 1;
                    if !sim_txn.is_some_and(|t| accepted.contains_key(t)) || o.status != "paid" {
                        lost += 1;
                        problems.push(format!(
                            "{}: notify acknowledged but not recorded and applied",
                            o.out_trade_no
                        ));
                    }
                }
            }
        }
    }
    let via_query =
        orders.iter().filter(|o| o.status == "paid").count() - accepted.len().min(orders.len());
    let stats: Value = client
        .get(format!("{sim}/sim/stats"))
        .send()
        .await?
        .json()
        .await?;
    println!("soak results");
    println!(
        "  orders created by clients        {}",
        counters.created.load(Ordering::Relaxed)
    );
    println!(
        "  order-creation retries (outages) {}",
        counters.create_retries.load(Ordering::Relaxed)
    );
    println!("  orders in the database           {}", orders.len());
    let mut statuses: Vec<_> = by_status.into_iter().collect();
    statuses.sort();
    for (status, n) in statuses {
        println!("    {status:<8}                       {n}");
    }
    println!(
        "  paid, notify delivered           {}",
        counters.paid_delivered.load(Ordering::Relaxed)
    );
    println!(
        "  paid, every notify dropped       {}",
        counters.paid_dropped.load(Ordering::Relaxed)
    );
    println!(
        "  left unpaid                      {}",
        counters.left_unpaid.load(Ordering::Relaxed)
    );
    println!("  payments applied via order query {via_query}");
    println!("  notify deliveries (incl. re-sends) {deliveries}, acknowledged {acknowledged}");
    println!("  WeChat calls seen by the simulator {}", stats["calls"]);
    println!(
        "  closeorder within 5 minutes      {}",
        stats["close_violations"].as_array().map_or(0, Vec::len)
    );
    println!("  LOST (acknowledged, not applied) {lost}");
    println!("  DOUBLE-APPLIED                   {double_applied}");
    println!("  inconsistent with WeChat         {}", problems.len());
    for p in problems.iter().take(20) {
        println!("    {p}");
    }
    if lost > 0
        || double_applied > 0
        || !problems.is_empty()
        || stats["close_violations"]
            .as_array()
            .is_some_and(|v| !v.is_empty())
    {
        bail!(
            "the soak found {} problems",
            problems.len() + double_applied
        );
    }
    Ok(())
}
