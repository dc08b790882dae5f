//! The binary as operators run it: refused configurations, the SQLite single-worker rule,
//! graceful shutdown under load, and scale-out on PostgreSQL with a worker killed mid-run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, Backend, Database};
use crate::process::{Proc, free_port, wait_until_up};

fn base_env(database_url: &str, port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("MINIPAY_DATABASE_URL", database_url.to_owned()),
        ("MINIPAY_LISTEN", format!("127.0.0.1:{port}")),
        ("MINIPAY_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
        ("MINIPAY_LOG", "warn".to_owned()),
        ("MINIPAY_SHUTDOWN_TIMEOUT_SECS", "5".to_owned()),
        ("MINIPAY_HEARTBEAT_SECS", "2".to_owned()),
        // Load from one address and a few users, far past any person's pace: limits off.
        ("MINIPAY_LIMIT_LOGINS_PER_IP", "0".to_owned()),
        ("MINIPAY_LIMIT_ORDERS_PER_USER", "0".to_owned()),
        ("MINIPAY_LIMIT_UNPAID_PER_USER", "0".to_owned()),
        ("MINIPAY_LIMIT_READS_PER_USER", "0".to_owned()),
    ]
}

#[test]
fn startup_refuses_bad_configuration_naming_the_setting() {
    let logs = tempfile::tempdir().unwrap();
    let creds = [
        ("MINIPAY_APPID", "wx0123456789abcdef".to_owned()),
        ("MINIPAY_APP_SECRET", "secret".to_owned()),
        ("MINIPAY_MCH_ID", "1900000109".to_owned()),
        (
            "MINIPAY_NOTIFY_URL",
            "https://pay.example.com/v1/wechat/notify".to_owned(),
        ),
    ];
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (creds[..2].to_vec(), "half-set"),
        (
            [&creds[..], &[("MINIPAY_API_KEY", "too-short".to_owned())]].concat(),
            "MINIPAY_API_KEY",
        ),
        (
            [
                &creds[..3],
                &[
                    (
                        "MINIPAY_API_KEY",
                        "192006250b4c09247ec02edce69f6a2d".to_owned(),
                    ),
                    ("MINIPAY_NOTIFY_URL", "http://pay.example.com/n".to_owned()),
                ],
            ]
            .concat(),
            "MINIPAY_NOTIFY_URL",
        ),
        (
            vec![("MINIPAY_CATALOG", "/nonexistent/catalog.toml".to_owned())],
            "MINIPAY_CATALOG",
        ),
    ];
    for (i, (env, setting)) in cases.into_iter().enumerate() {
        let mut proc = Proc::start(&format!("bad-{i}"), &["serve"], &env, logs.path());
        let status = proc
            .wait_for_exit(Duration::from_secs(10))
            .expect("exits at once");
        assert_eq!(status.code(), Some(78), "{}", proc.output());
        let output = proc.output();
        assert!(output.contains(setting), "{setting}: {output}");
        assert!(
            !output.contains("192006250b4c09247ec02edce69f6a2d"),
            "the key must not be printed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_runs_workers_in_one_process_only() {
    let db = Database::create(Backend::Sqlite).await.unwrap();
    let logs = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut first = Proc::start("first", &["all"], &base_env(&db.url, port), logs.path());
    wait_until_up(&format!("http://127.0.0.1:{port}/healthz"), &mut first).await;
    let mut second = Proc::start(
        "second",
        &["all"],
        &base_env(&db.url, free_port()),
        logs.path(),
    );
    let status = second
        .wait_for_exit(Duration::from_secs(20))
        .expect("the second process stops");
    assert!(!status.success());
    let output = second.output();
    assert!(
        output.contains("another minipay process already runs workers"),
        "{output}"
    );
    assert!(
        output.contains("PostgreSQL"),
        "it says how to scale out: {output}"
    );
    first.signal("TERM");
    assert_eq!(
        first
            .wait_for_exit(Duration::from_secs(10))
            .and_then(|s| s.code()),
        Some(0)
    );
}

/// Outcome of one client request during the shutdown test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Outcome {
    /// Any HTTP answer, including 503 "shutting down".
    Answered,
    /// Connection refused: the listener is closed.
    Refused,
    /// Reset or cut mid-request.
    Broken,
}

fn classify(result: &Result<reqwest::Response, reqwest::Error>) -> Outcome {
    match result {
        Ok(_) => Outcome::Answered,
        Err(e) if e.is_connect() => Outcome::Refused,
        Err(_) => Outcome::Broken,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_load_drains_and_exits_zero() {
    let db = Database::create(Backend::Sqlite).await.unwrap();
    let logs = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut env = base_env(&db.url, port);
    env.push(("MINIPAY_WECHAT_TIMEOUT_MS", "3000".into()));
    let mut proc = Proc::start("all", &["all"], &env, logs.path());
    wait_until_up(&format!("{base}/healthz"), &mut proc).await;
    let client = crate::helpers::http();
    // Every WeChat call takes 300 ms, so prepay jobs are in flight when the signal comes.
    client
        .post(format!("{base}/simulator/sim/faults"))
        .json(&json!({ "latency_ms": 300 }))
        .send()
        .await
        .unwrap();

    let token: String = {
        let reply: Value = client
            .post(format!("{base}/v1/sessions"))
            .json(&json!({ "code": "term#1" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        reply["token"].as_str().unwrap().to_owned()
    };
    let created = Arc::new(Mutex::new(Vec::<String>::new()));
    let outcomes = Arc::new(Mutex::new(HashMap::<Outcome, usize>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        let (created, outcomes, stop) = (created.clone(), outcomes.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let result = client
                    .post(format!("{base}/v1/orders"))
                    .bearer_auth(&token)
                    .json(&json!({ "sku": "sms-100", "quantity": 1 }))
                    .send()
                    .await;
                let outcome = classify(&result);
                if outcome == Outcome::Broken
                    && let Err(e) = &result
                {
                    eprintln!("broken request: {e:?}");
                }
                *outcomes.lock().unwrap().entry(outcome).or_default() += 1;
                match result {
                    Ok(response) if response.status() == 202 => {
                        let body = response.json::<Value>().await.unwrap();
                        created
                            .lock()
                            .unwrap()
                            .push(body["out_trade_no"].as_str().unwrap().to_owned());
                    }
                    // Told that this instance is going away: a client (or a load balancer
                    // watching /readyz) goes elsewhere.
                    Ok(response) if response.status() == 503 => {
                        let body = response.json::<Value>().await.unwrap();
                        assert_eq!(body["error"]["code"], "SHUTTING_DOWN");
                        break;
                    }
                    Ok(response) => panic!("unexpected answer {}", response.status()),
                    Err(_) => {}
                }
                if outcome == Outcome::Refused {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let signalled = Instant::now();
    proc.signal("TERM");
    let status = proc
        .wait_for_exit(Duration::from_secs(15))
        .expect("exits within the deadline");
    let took = signalled.elapsed();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(status.code(), Some(0), "{}", proc.output());
    // The deadline is 5 s (MINIPAY_SHUTDOWN_TIMEOUT_SECS); in-flight work takes ~300 ms.
    assert!(
        took < Duration::from_secs(5),
        "shutdown took {took:?}:\n{}",
        proc.output()
    );
    let outcomes = outcomes.lock().unwrap().clone();
    assert_eq!(
        outcomes.get(&Outcome::Broken).copied().unwrap_or(0),
        0,
        "requests cut mid-way: {outcomes:?}"
    );
    let created = created.lock().unwrap().clone();
    assert!(created.len() > 10, "load ran: {outcomes:?}");
    eprintln!(
        "shutdown in {took:?}; {} orders created; outcomes {outcomes:?}",
        created.len()
    );

    // No job lost: a new process finishes every accepted order.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut again = Proc::start("again", &["all"], &base_env(&db.url, port), logs.path());
    wait_until_up(&format!("{base}/healthz"), &mut again).await;
    for otn in &created {
        let order: Value = client
            .get(format!("{base}/v1/orders/{otn}?wait=20"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(order["status"], "ready", "{order}\n{}", again.output());
    }
    again.signal("TERM");
    assert_eq!(
        again
            .wait_for_exit(Duration::from_secs(10))
            .and_then(|s| s.code()),
        Some(0)
    );
}

/// 1 `serve` + 3 `work` processes on one PostgreSQL, 2,000 orders against a simulator that
/// fails now and then, one worker killed with SIGKILL mid-run and replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_on_postgres_survives_a_killed_worker() {
    const ORDERS: usize = 2_000;
    let Some(db) = Database::create(Backend::Postgres).await else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let client = crate::helpers::http();

    let sim_port = free_port();
    let sim_url = format!("http://127.0.0.1:{sim_port}");
    let mut sim = Proc::start(
        "simulator",
        &["simulator", "--listen", &format!("127.0.0.1:{sim_port}")],
        &[],
        logs.path(),
    );
    wait_until_up(&format!("{sim_url}/sim/stats"), &mut sim).await;
    client
        .post(format!("{sim_url}/sim/faults"))
        .json(&json!({ "latency_ms": 20, "http_500_share": 0.02, "systemerror_share": 0.01, "hang_share": 0.005, "hang_ms": 3000 }))
        .send()
        .await
        .unwrap();

    let env = |port: u16| {
        let mut env = base_env(&db.url, port);
        env.extend([
            ("MINIPAY_PAY_BASE_URL", sim_url.clone()),
            ("MINIPAY_AUTH_BASE_URL", sim_url.clone()),
            ("MINIPAY_DB_POOL_SIZE", "8".to_owned()),
            ("MINIPAY_WORKER_CONCURRENCY", "16".to_owned()),
            ("MINIPAY_WECHAT_TIMEOUT_MS", "1000".to_owned()),
            ("MINIPAY_PREPAY_BACKOFF_MS", "20".to_owned()),
            ("MINIPAY_PREPAY_BACKOFF_MAX_MS", "200".to_owned()),
        ]);
        env
    };
    let api_port = free_port();
    let api = format!("http://127.0.0.1:{api_port}");
    let mut serve = Proc::start("serve", &["serve"], &env(api_port), logs.path());
    wait_until_up(&format!("{api}/readyz"), &mut serve).await;
    let mut workers: Vec<Proc> = (1..=3)
        .map(|i| Proc::start(&format!("work-{i}"), &["work"], &env(0), logs.path()))
        .collect();

    let mut tokens = Vec::new();
    for i in 0..20 {
        let reply: Value = client
            .post(format!("{api}/v1/sessions"))
            .json(&json!({ "code": format!("scale{i}#1") }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        tokens.push(reply["token"].as_str().unwrap().to_owned());
    }
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut submitters = Vec::new();
    for _ in 0..16 {
        let (client, api, tokens, next) =
            (client.clone(), api.clone(), tokens.clone(), next.clone());
        submitters.push(tokio::spawn(async move {
            let mut made = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= ORDERS {
                    return made;
                }
                let response = client
                    .post(format!("{api}/v1/orders"))
                    .bearer_auth(&tokens[n % tokens.len()])
                    .json(&json!({ "sku": "sms-100", "quantity": 1 + (n % 3) }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 202);
                let body: Value = response.json().await.unwrap();
                made.push(body["out_trade_no"].as_str().unwrap().to_owned());
            }
        }));
    }

    let store = minipay::store::Store::connect(&db.url, 2, &minipay::store::InsertSignal::new())
        .await
        .unwrap();
    let pool = match &store {
        minipay::store::Store::Postgres(pool) => pool.clone(),
        minipay::store::Store::Sqlite(_) => unreachable!(),
    };
    let ready = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM orders WHERE status = 'ready'")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    // Kill one worker mid-run, with jobs in its hands, and start a replacement.
    let deadline = Instant::now() + Duration::from_secs(120);
    while ready().await < (ORDERS / 3) as i64 {
        assert!(Instant::now() < deadline, "too slow before the kill");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let killed = Instant::now();
    workers[0].signal("KILL");
    workers[0]
        .wait_for_exit(Duration::from_secs(5))
        .expect("killed");
    workers.push(Proc::start("work-4", &["work"], &env(0), logs.path()));

    let mut created = Vec::new();
    for s in submitters {
        created.extend(s.await.unwrap());
    }
    assert_eq!(created.len(), ORDERS);
    while ready().await < ORDERS as i64 {
        assert!(
            Instant::now() < deadline,
            "only {} of {ORDERS} orders ready\n{}",
            ready().await,
            workers
                .iter()
                .map(|w| w.output())
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "all {ORDERS} orders ready {:?} after the kill",
        killed.elapsed()
    );

    // No job is left failed or dead (acks land within a heartbeat).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let unfinished: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM apalis.jobs WHERE status IN ('Failed', 'Killed') OR (job_type = 'prepay_order' AND status <> 'Done')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(unfinished, 0, "jobs left failed, dead or unfinished");

    // Every attempt of an order carried the same business parameters, and none came after
    // the order was ready.
    let calls: Vec<Value> = client
        .get(format!("{sim_url}/sim/calls"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ready_at: HashMap<String, i64> =
        sqlx::query_as::<_, (String, i64)>("SELECT out_trade_no, ready_at FROM orders")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let mut first_params: HashMap<String, Value> = HashMap::new();
    let mut prepay_calls = 0;
    for call in calls.iter().filter(|c| c["api"] == "unifiedorder") {
        prepay_calls += 1;
        let otn = call["out_trade_no"].as_str().unwrap().to_owned();
        let params = first_params
            .entry(otn.clone())
            .or_insert_with(|| call["business"].clone());
        assert_eq!(
            &call["business"], params,
            "{otn}: parameters changed between attempts"
        );
        assert!(
            call["at_ms"].as_i64().unwrap() <= ready_at[&otn],
            "{otn}: a prepay call after the order was ready"
        );
    }
    assert_eq!(first_params.len(), ORDERS);
    eprintln!("{prepay_calls} unifiedorder calls for {ORDERS} orders (faults injected)");

    serve.signal("TERM");
    for w in &workers[1..] {
        w.signal("TERM");
    }
    assert_eq!(
        serve
            .wait_for_exit(Duration::from_secs(10))
            .and_then(|s| s.code()),
        Some(0)
    );
    for w in workers.iter_mut().skip(1) {
        assert_eq!(
            w.wait_for_exit(Duration::from_secs(10))
                .and_then(|s| s.code()),
            Some(0),
            "{}",
            w.output()
        );
    }
    store.close().await;
    db.drop_now().await;
}
