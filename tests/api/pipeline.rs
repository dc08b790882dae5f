//! The mission end to end over real loopback HTTP against the in-process simulator: login →
//! order → long-poll → ready → pay → notify → paid; transient faults; permanent refusals;
//! ORDERPAID; a crash between the order insert and the job run.

use minipay::app::Role;
use minipay::wechat::simulator::Forced;
use minipay::wechat::v2::SignType;
use minipay::wechat::v2::pay_params::verify_pay_params;
use minipay_jobs::PayParams;
use serde_json::Value;

use crate::helpers::{Backend, TestApp, on_both_backends};

async fn happy_path(app: &TestApp, code: &str) {
    let token = app.login(code).await;
    let created = app.create_order(&token, "sms-100", 2).await;
    assert_eq!(created["status"], "pending");
    assert_eq!(created["total_fee"], 176);
    let otn = created["out_trade_no"].as_str().unwrap().to_owned();

    let ready = app.order(&token, &otn, Some(10)).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    // The pay params verify on their own, with the merchant's key, as WeChat's client does.
    let params: PayParams = serde_json::from_value(ready["pay_params"].clone()).unwrap();
    let merchant = app.merchant();
    assert!(verify_pay_params(&params, &merchant.appid, &merchant.key));
    assert_eq!(params.sign_type, merchant.sign_type.as_str());
    assert_eq!(params.time_stamp.len(), 10);
    let sim_order = app.sim().order(&otn).unwrap();
    assert_eq!(params.package, format!("prepay_id={}", sim_order.prepay_id));
    assert_eq!(sim_order.total_fee, 176);

    let paid = app.pay(&otn, true);
    let order = app.wait_for_status(&token, &otn, "paid").await;
    assert_eq!(order["transaction_id"], paid.transaction_id.as_str());
    assert!(order.get("pay_params").is_none());
    // The simulator heard SUCCESS once and stopped re-sending.
    crate::helpers::eventually("notify acknowledged", || async {
        app.sim()
            .order(&otn)
            .unwrap()
            .deliveries
            .iter()
            .any(|d| d.acknowledged)
    })
    .await;
    let deliveries = app.sim().order(&otn).unwrap().deliveries;
    assert_eq!(deliveries.iter().filter(|d| d.acknowledged).count(), 1);
    assert_eq!(
        deliveries.last().unwrap().reply,
        minipay::wechat::v2::notify::SUCCESS_REPLY
    );
}

on_both_backends! {
    async fn login_order_ready_pay_paid(backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        happy_path(&app, "alice#1").await;
        app.stop().await;
    }
}

on_both_backends! {
    async fn the_same_flow_with_hmac_sha256(backend) {
        let Some(app) = TestApp::spawn_with(backend, Role::All, |s| s.wechat.sign_type = "HMAC-SHA256".into()).await else { return };
        assert_eq!(app.merchant().sign_type, SignType::HmacSha256);
        happy_path(&app, "hmac#1").await;
        app.stop().await;
    }
}

fn otn(order: &Value) -> String {
    order["out_trade_no"].as_str().unwrap().to_owned()
}

on_both_backends! {
    async fn transient_failures_are_retried_with_identical_parameters(backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        app.force_next(Forced::Http500, 2);
        app.force_next(Forced::Hang, 1);
        app.force_next(Forced::SystemError, 1);
        app.force_next(Forced::BadSignature, 1);
        let token = app.login("bob#1").await;
        let order = otn(&app.create_order(&token, "coffee-latte", 1).await);
        let ready = app.wait_for_status(&token, &order, "ready").await;
        assert!(ready["pay_params"]["paySign"].is_string());

        let calls = app.sim().order(&order).unwrap().calls;
        let outcomes: Vec<&str> = calls.iter().map(|c| c.outcome.as_str()).collect();
        assert_eq!(outcomes, ["HTTP_500", "HTTP_500", "HANG after SUCCESS", "SYSTEMERROR", "SUCCESS", "SUCCESS"]);
        for call in &calls {
            assert_eq!(call.business, calls[0].business, "every attempt carries the same business parameters");
        }
        let history = app.history(&order).await;
        assert_eq!(history["prepay_attempts"], 6);
        let attempts = history["history"].as_array().unwrap().iter().filter(|e| e["kind"] == "prepay_attempt").count();
        assert_eq!(attempts, 5);
        app.stop().await;
    }
}

on_both_backends! {
    async fn permanent_refusals_fail_the_order_with_wechats_code(backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        let token = app.login("carol#1").await;
        for (err_code, des) in [("NOAUTH", "商户无此接口权限"), ("ORDERCLOSED", "订单已关闭")] {
            app.force_next(Forced::ErrCode { err_code: err_code.into(), err_code_des: des.into() }, 1);
            let order = otn(&app.create_order(&token, "sms-100", 1).await);
            let failed = app.wait_for_status(&token, &order, "failed").await;
            assert_eq!(failed["error"]["code"], err_code);
            assert_eq!(failed["error"]["message"], des);
            assert!(failed.get("pay_params").is_none());
            assert_eq!(app.sim().order(&order).map(|o| o.calls.len()).unwrap_or(0), 0, "no order at WeChat");
        }
        app.stop().await;
    }
}

on_both_backends! {
    async fn retries_are_bounded_and_end_in_failed_with_the_last_error(backend) {
        let Some(app) = TestApp::spawn_with(backend, Role::All, |s| s.workers.prepay_max_attempts = 3).await else { return };
        app.force_next(Forced::SystemError, 10);
        let token = app.login("dave#1").await;
        let order = otn(&app.create_order(&token, "sms-100", 1).await);
        let failed = app.wait_for_status(&token, &order, "failed").await;
        assert_eq!(failed["error"]["code"], "SYSTEMERROR");
        assert!(failed["error"]["message"].as_str().unwrap().contains("gave up after 3 attempts"), "{failed}");
        assert_eq!(app.history(&order).await["prepay_attempts"], 3);
        app.stop().await;
    }
}

on_both_backends! {
    async fn orderpaid_is_good_news_confirmed_by_order_query(backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        app.force_next(Forced::PaidElsewhere, 1);
        let token = app.login("erin#1").await;
        let order = otn(&app.create_order(&token, "vip-month", 1).await);
        let paid = app.wait_for_status(&token, &order, "paid").await;
        let sim = app.sim().order(&order).unwrap();
        assert_eq!(paid["transaction_id"].as_str(), sim.transaction_id.as_deref());
        let history = app.history(&order).await;
        let events: Vec<String> = history["history"].as_array().unwrap().iter()
            .map(|e| format!("{}: {}", e["kind"].as_str().unwrap(), e["detail"].as_str().unwrap()))
            .collect();
        assert!(events.iter().any(|e| e.starts_with("paid:") && e.contains("orderquery after ORDERPAID")), "{events:?}");
        assert!(!events.iter().any(|e| e.starts_with("failed")), "{events:?}");
        assert!(sim.calls.iter().any(|c| c.api == "orderquery"));
        app.stop().await;
    }
}

on_both_backends! {
    async fn an_order_survives_a_crash_before_its_job_ran(backend) {
        // API only: the order and its job are stored, no worker exists to run the job.
        let Some(app) = TestApp::spawn_with(backend, Role::Serve, |_| {}).await else { return };
        let token = app.login("frank#1").await;
        let order = otn(&app.create_order(&token, "sms-100", 3).await);
        assert_eq!(app.order(&token, &order, None).await["status"], "pending");
        assert_eq!(orders_without_job(&app).await, 0, "every order row has its prepay job");
        assert_eq!(app.scalar(PREPAY_JOBS).await, 1);

        // The process dies; a new one with workers picks the job up.
        let app = app.restart(Role::All).await;
        let ready = app.wait_for_status(&token, &order, "ready").await;
        assert_eq!(ready["total_fee"], 264);
        assert_eq!(orders_without_job(&app).await, 0);
        app.stop().await;
    }
}

const PREPAY_JOBS: &str = "SELECT COUNT(*) FROM orders";

async fn orders_without_job(app: &TestApp) -> i64 {
    match app.store() {
        minipay::store::Store::Sqlite(_) => app.scalar(
            "SELECT COUNT(*) FROM orders o WHERE NOT EXISTS \
             (SELECT 1 FROM Jobs j WHERE j.job_type = 'prepay_order' AND j.idempotency_key = 'prepay:' || o.out_trade_no)",
        ).await,
        minipay::store::Store::Postgres(_) => app.scalar(
            "SELECT COUNT(*) FROM orders o WHERE NOT EXISTS \
             (SELECT 1 FROM apalis.jobs j WHERE j.job_type = 'prepay_order' AND j.idempotency_key = 'prepay:' || o.out_trade_no)",
        ).await,
    }
}

#[allow(dead_code)]
fn _backend_is_used(_: Backend) {}

/// On PostgreSQL, workers and long-polls in other processes hear of new jobs and changed
/// orders by NOTIFY (apalis' insert trigger, our `pg_notify` on status changes), which
/// PostgreSQL delivers at commit: each notification names a row that is already visible, and
/// each job is announced once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_notifications_name_committed_rows_once() {
    let Some(app) = TestApp::spawn(Backend::Postgres).await else {
        return;
    };
    let mut listener = sqlx::postgres::PgListener::connect(&app.db.url)
        .await
        .unwrap();
    listener
        .listen_all(["apalis::job::insert", minipay::store::ORDER_CHANNEL])
        .await
        .unwrap();
    let pool = sqlx::PgPool::connect(&app.db.url).await.unwrap();

    let token = app.login("nora#1").await;
    let created = app.create_order(&token, "sms-100", 1).await;
    let otn = created["out_trade_no"].as_str().unwrap().to_owned();

    let (mut prepay_jobs_heard, mut ready_heard) = (0, false);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    // Until the order is ready, then a little longer to catch a second announcement.
    let mut quiet_after = None;
    loop {
        let until = quiet_after.unwrap_or(deadline);
        let Ok(heard) = tokio::time::timeout_at(until, listener.recv()).await else {
            break;
        };
        let heard = heard.unwrap();
        if heard.channel() == "apalis::job::insert" {
            let event: Value = serde_json::from_str(heard.payload()).unwrap();
            if event["job_type"] != "prepay_order" {
                continue;
            }
            let visible: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM apalis.jobs WHERE id = $1 AND idempotency_key = $2",
            )
            .bind(event["id"].as_str().unwrap())
            .bind(format!("prepay:{otn}"))
            .fetch_one(&pool)
            .await
            .unwrap();
            assert_eq!(
                visible, 1,
                "announced job {event} is not (yet) in apalis.jobs"
            );
            prepay_jobs_heard += 1;
        } else if heard.payload() == otn {
            let status: String =
                sqlx::query_scalar("SELECT status FROM orders WHERE out_trade_no = $1")
                    .bind(&otn)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            assert_ne!(
                status, "pending",
                "announced a change that is not visible yet"
            );
            ready_heard = status == "ready";
            quiet_after = Some(tokio::time::Instant::now() + std::time::Duration::from_millis(300));
        }
    }
    assert!(ready_heard, "the order's change to ready was not announced");
    assert_eq!(
        prepay_jobs_heard, 1,
        "the prepay job was announced {prepay_jobs_heard} times"
    );
    assert_eq!(app.order(&token, &otn, None).await["status"], "ready");
}

/// On PostgreSQL one listener per process wakes only the queue a job went into: a new order
/// wakes the prepay workers, not the payment ones (every wake of an apalis worker is a fetch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_job_wakes_only_its_own_queues_workers() {
    use futures::StreamExt;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    let Some(app) = TestApp::spawn_with(Backend::Postgres, Role::Serve, |_| {}).await else {
        return;
    };
    let pool = sqlx::PgPool::connect(&app.db.url).await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let wakeups = minipay::worker::PgJobWakeups::start(
        pool,
        &["prepay_order", "apply_payment"],
        stop.clone(),
    );
    crate::helpers::eventually("listening", || async {
        wakeups.connections.load(Ordering::Relaxed) == 1
    })
    .await;
    let mut prepay = wakeups.subscribe("prepay_order");
    let mut payment = wakeups.subscribe("apply_payment");

    let token = app.login("olga#1").await;
    app.create_order(&token, "sms-100", 1).await;

    let woken = tokio::time::timeout(Duration::from_secs(5), prepay.next()).await;
    assert!(
        matches!(woken, Ok(Some(()))),
        "prepay workers not woken: {woken:?}"
    );
    let stray = tokio::time::timeout(Duration::from_millis(300), payment.next()).await;
    assert!(stray.is_err(), "payment workers woken by a prepay job");
    stop.cancel();
}
