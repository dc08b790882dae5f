//! Health, readiness and Prometheus metrics: `/metrics` parses as Prometheus text and the
//! payment metrics move as orders flow.

use prometheus_parse::{Scrape, Value};
use reqwest::StatusCode;

use crate::helpers::{TestApp, eventually, on_both_backends};

/// The metrics recorder (counters, histograms) is process-wide; one scraping test at a time.
static ONE_SCRAPER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn metrics_text(app: &TestApp) -> String {
    let response = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

async fn scrape(app: &TestApp) -> Scrape {
    let text = metrics_text(app).await;
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

/// The value of `name` with these labels: a counter or gauge, or a histogram's count.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let matches =
        |s: &&prometheus_parse::Sample| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v));
    let mut total = 0.0;
    for sample in scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(matches)
    {
        total += match &sample.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
            Value::Summary(_) => 0.0,
        };
    }
    total
}

on_both_backends! {
    async fn metrics_move_as_orders_flow(backend) {
        let _alone = ONE_SCRAPER_AT_A_TIME.lock().await;
        let Some(app) = TestApp::spawn(backend).await else { return };
        let (status, health) = app.get_json("/healthz", None).await;
        assert_eq!((status, health["status"].as_str()), (StatusCode::OK, Some("ok")));
        crate::helpers::eventually("ready", || async {
            app.get_json("/readyz", None).await.0 == StatusCode::OK
        })
        .await;
        let (_, ready) = app.get_json("/readyz", None).await;
        assert_eq!(ready["checks"]["database"], true);
        assert_eq!(ready["checks"]["migrations"], true);
        assert_eq!(ready["checks"]["workers"], true);

        let before = scrape(&app).await;
        assert_eq!(value(&before, "minipay_orders", &[("status", "paid")]), 0.0);
        for queue in ["prepay_order", "apply_payment", "query_order"] {
            assert!(before.samples.iter().any(|s| s.metric == "minipay_queue_depth" && s.labels.get("queue") == Some(queue)), "{queue}");
        }

        let token = app.login("xena#1").await;
        let otn = app.create_order(&token, "sms-100", 1).await["out_trade_no"].as_str().unwrap().to_owned();
        app.wait_for_status(&token, &otn, "ready").await;
        // The gauges are read in the background (every 200 ms in tests).
        crate::helpers::eventually("the gauges show the ready order", || async {
            value(&scrape(&app).await, "minipay_orders", &[("status", "ready")]) == 1.0
        })
        .await;
        let genuine = app.pay(&otn, false).notify_xml;
        let forged = genuine.replace("<total_fee>88</total_fee>", "<total_fee>8</total_fee>");
        app.post_notify(forged).await;
        app.post_notify(genuine).await;
        app.wait_for_status(&token, &otn, "paid").await;
        crate::helpers::eventually("the gauges show the paid order", || async {
            value(&scrape(&app).await, "minipay_orders", &[("status", "paid")]) == 1.0
        })
        .await;
        let after = scrape(&app).await;

        assert_eq!(value(&after, "minipay_orders", &[("status", "paid")]), 1.0);
        assert_eq!(value(&after, "minipay_orders", &[("status", "ready")]), 0.0);
        let grew = |name: &str, labels: &[(&str, &str)]| {
            let (b, a) = (value(&before, name, labels), value(&after, name, labels));
            assert!(a >= b + 1.0, "{name} {labels:?} did not move: {b} -> {a}");
        };
        grew("minipay_orders_created_total", &[]);
        grew("minipay_prepay_attempts_total", &[("outcome", "SUCCESS")]);
        grew("minipay_notifies_total", &[("verdict", "accepted")]);
        grew("minipay_notifies_total", &[("verdict", "bad_signature")]);
        grew("minipay_job_duration_seconds_count", &[("queue", "prepay_order")]);
        grew("minipay_job_duration_seconds_count", &[("queue", "apply_payment")]);
        grew("minipay_ready_to_paid_seconds_count", &[]);
        grew("minipay_http_request_duration_seconds_count", &[("route", "/v1/orders")]);
        assert_eq!(value(&after, "minipay_database_up", &[]), 1.0);
        assert!(after.docs.contains_key("minipay_orders"), "metrics carry HELP text");
        app.stop().await;
    }
}

on_both_backends! {
    async fn a_scrape_reads_memory_not_the_database(backend) {
        // Gauges read once at start, then not for an hour: what a scrape shows is what the
        // background refresh read, however many scrapes come.
        let Some(app) = TestApp::spawn_with(backend, minipay::app::Role::Serve, |s| {
            s.http.metrics_refresh_ms = 3_600_000;
        })
        .await else { return };
        eventually("ready", || async { app.get_json("/readyz", None).await.0 == StatusCode::OK }).await;
        let first = scrape(&app).await;
        assert_eq!(value(&first, "minipay_database_up", &[]), 1.0);
        assert_eq!(value(&first, "minipay_orders", &[("status", "pending")]), 0.0);

        let token = app.login("yoko#1").await;
        app.create_order(&token, "sms-100", 1).await; // no workers: it stays pending
        assert_eq!(app.scalar("SELECT COUNT(*) FROM orders").await, 1);
        for _ in 0..20 {
            let scraped = scrape(&app).await;
            assert_eq!(value(&scraped, "minipay_orders", &[("status", "pending")]), 0.0, "a scrape read the database");
        }

        // The database goes away: /metrics still answers from memory; /readyz, from its
        // background probe, turns not ready.
        app.store().close().await;
        let scraped = scrape(&app).await;
        assert!(scraped.samples.iter().any(|s| s.metric == "minipay_queue_depth"));
        eventually("/readyz reports the database unreachable", || async {
            let (status, body) = app.get_json("/readyz", None).await;
            status == StatusCode::SERVICE_UNAVAILABLE && body["checks"]["database"] == false
        })
        .await;
        app.stop_unchecked().await;
    }
}

/// A scrape flood costs a copy: within `MINIPAY_METRICS_CACHE_MS` every scrape gets the same
/// rendered text, even as counters move; after it, the next scrape renders again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_within_the_cache_window_get_the_same_text() {
    let _one = ONE_SCRAPER_AT_A_TIME.lock().await;
    let app = TestApp::spawn_with(
        crate::helpers::Backend::Sqlite,
        minipay::app::Role::Serve,
        |s| {
            s.http.metrics_cache_ms = 1_500;
        },
    )
    .await
    .unwrap();
    let text = || metrics_text(&app);
    let first = text().await;
    let created = |t: &str| {
        t.lines()
            .filter(|l| l.starts_with("minipay_orders_created_total"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let token = app.login("cache#1").await;
    app.create_order(&token, "sms-100", 1).await;
    for _ in 0..50 {
        assert_eq!(text().await, first, "a scrape in the window rendered again");
    }
    tokio::time::sleep(std::time::Duration::from_millis(1_600)).await;
    let later = text().await;
    assert_ne!(later, first, "after the window the scrape renders again");
    assert_ne!(
        created(&later),
        created(&first),
        "and shows the order: {:?}",
        created(&later)
    );
    app.stop().await;
}
