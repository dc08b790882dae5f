//! Rate limits as the contract fixes them: logins per client IP (before WeChat is called),
//! orders and order reads per user, the unpaid-order cap (in the inserting transaction), wrong
//! admin tokens per client IP; `429` with `Retry-After`; `0` turns each off; every refusal
//! counted in `minipay_rate_limited_total{limit}`.
//!
//! A bucket refills while a test runs (e.g. one login per second at 60 per minute), so where a
//! test spends a budget it allows the tokens that came back meanwhile — computed from the time
//! it took, never waiting for time to pass.

use std::time::{Duration, Instant};

use minipay::app::Role;
use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, Backend, Database, TestApp, on_both_backends};
use crate::process::{Proc, free_port, wait_until_up};

/// The metrics recorder is process-wide: the tests that count refusals take turns.
static ONE_COUNTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `minipay_rate_limited_total{limit}` as `/metrics` shows it (0 before the first refusal).
async fn limited_total(app: &TestApp, limit: &str) -> f64 {
    let text = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let needle = format!("minipay_rate_limited_total{{limit=\"{limit}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// A request's status, `Retry-After` and JSON body.
struct Reply {
    status: StatusCode,
    retry_after: Option<u64>,
    body: Value,
}

async fn send(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let body = response.json().await.unwrap_or(Value::Null);
    Reply {
        status,
        retry_after,
        body,
    }
}

fn assert_limited(reply: &Reply, code: &str) {
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        reply.body
    );
    assert_eq!(reply.body["error"]["code"], code, "{}", reply.body);
    assert!(
        reply.retry_after.is_some_and(|s| s >= 1),
        "Retry-After of at least 1 s"
    );
}

/// `POST /v1/sessions` as the client at `ip` (behind the trusted proxy 127.0.0.1).
async fn login_from(app: &TestApp, ip: &str, code: &str) -> Reply {
    send(
        app.http
            .post(format!("{}/v1/sessions", app.base))
            .header("x-forwarded-for", format!("{ip}, 10.1.1.1"))
            .json(&json!({ "code": code })),
    )
    .await
}

fn jscode2session_calls(app: &TestApp) -> usize {
    app.sim()
        .calls()
        .iter()
        .filter(|c| c.api == "jscode2session")
        .count()
}

/// Tokens a bucket of `per_period` refilled in `elapsed`, plus one for a refill in flight.
fn refilled(elapsed: Duration, per_period: u32, period: Duration) -> u32 {
    let tokens = elapsed.as_nanos() * u128::from(per_period) / period.as_nanos();
    u32::try_from(tokens).unwrap_or(u32::MAX).saturating_add(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_61st_login_in_a_minute_from_one_ip_is_refused_before_wechat_is_called() {
    let _turn = ONE_COUNTER_AT_A_TIME.lock().await;
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, Role::All, |s| {
        s.limits.limit_logins_per_ip = 60;
        s.http.trusted_proxies = "127.0.0.1".into();
    })
    .await
    else {
        return;
    };
    let counted = limited_total(&app, "logins_per_ip").await;
    let started = Instant::now();
    for i in 0..60 {
        let reply = login_from(&app, "203.0.113.7", &format!("flood{i}#1")).await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "login {i}: {}",
            reply.body
        );
    }
    // The 61st, or as many more as the bucket refilled meanwhile (one a second).
    let mut extra = 0;
    let refused = loop {
        let calls = jscode2session_calls(&app);
        let reply = login_from(&app, "203.0.113.7", &format!("flood-more{extra}#1")).await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(jscode2session_calls(&app), calls, "WeChat was called");
            break reply;
        }
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        extra += 1;
        assert!(
            extra <= refilled(started.elapsed(), 60, Duration::from_secs(60)),
            "{extra} logins past the budget of 60"
        );
    };
    assert_limited(&refused, "RATE_LIMITED");
    assert!(
        refused.retry_after.unwrap() <= 1,
        "one login refills each second"
    );
    let calls = jscode2session_calls(&app);
    for _ in 0..5 {
        let reply = login_from(&app, "203.0.113.7", "never-sent#1").await;
        assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(
        jscode2session_calls(&app),
        calls,
        "no WeChat call for refused logins"
    );
    // Another client IP (forwarded by the trusted proxy) has its own budget.
    let other = login_from(&app, "198.51.100.20", "neighbour#1").await;
    assert_eq!(other.status, StatusCode::CREATED, "{}", other.body);
    assert_eq!(
        limited_total(&app, "logins_per_ip").await - counted,
        6.0,
        "each refusal counted"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_forwarded_for_does_not_pick_the_bucket() {
    let _turn = ONE_COUNTER_AT_A_TIME.lock().await;
    // No trusted proxy: the peer (127.0.0.1) is the client, whatever the header says.
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, Role::All, |s| {
        s.limits.limit_logins_per_ip = 2;
    })
    .await
    else {
        return;
    };
    let started = Instant::now();
    let mut created = 0;
    for i in 0..10 {
        let reply = login_from(&app, &format!("203.0.113.{i}"), &format!("spoof{i}#1")).await;
        match reply.status {
            StatusCode::CREATED => created += 1,
            _ => assert_limited(&reply, "RATE_LIMITED"),
        }
    }
    // Two per minute refill one every 30 s.
    assert!(
        created <= 2 + refilled(started.elapsed(), 2, Duration::from_secs(60)),
        "{created} logins from one peer with forged X-Forwarded-For"
    );
    app.stop().await;
}

/// An order placed by `token` with an optional Idempotency-Key.
async fn order(app: &TestApp, token: &str, key: Option<&str>) -> Reply {
    let mut request = app
        .http
        .post(format!("{}/v1/orders", app.base))
        .bearer_auth(token)
        .json(&json!({ "sku": "sms-100", "quantity": 1 }));
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    send(request).await
}

/// The openid behind a session (from the admin view of one of its orders).
async fn openid_of(app: &TestApp, out_trade_no: &str) -> String {
    app.history(out_trade_no).await["openid"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn admin_order(app: &TestApp, openid: &str) -> Reply {
    send(
        app.http
            .post(format!("{}/v1/admin/orders", app.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "openid": openid, "description": "backend order", "total_fee": 50 })),
    )
    .await
}

on_both_backends! {
    async fn orders_per_user_are_limited_but_replays_and_other_users_are_not(backend) {
        let _turn = ONE_COUNTER_AT_A_TIME.lock().await;
        let Some(app) = TestApp::spawn_with(backend, Role::All, |s| {
            s.limits.limit_orders_per_user = 3;
        })
        .await
        else {
            return;
        };
        let counted = limited_total(&app, "orders_per_user").await;
        let ann = app.login("ann#1").await;
        let started = Instant::now();
        let first = order(&app, &ann, Some("ann-key-1")).await;
        assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
        let mut placed = 1;
        let refused = loop {
            let reply = order(&app, &ann, None).await;
            if reply.status != StatusCode::ACCEPTED {
                break reply;
            }
            placed += 1;
            // Three per minute refill one every 20 s.
            assert!(placed <= 3 + refilled(started.elapsed(), 3, Duration::from_secs(60)));
        };
        assert!(placed >= 3, "the budget of 3 is available");
        assert_limited(&refused, "RATE_LIMITED");
        // From another session of the same user: the same user, the same budget.
        let ann_again = app.login("ann#2").await;
        assert_limited(&order(&app, &ann_again, None).await, "RATE_LIMITED");
        // A replay creates nothing: answered with the order it names.
        let replay = order(&app, &ann_again, Some("ann-key-1")).await;
        assert_eq!(replay.status, StatusCode::ACCEPTED, "{}", replay.body);
        assert_eq!(replay.body["out_trade_no"], first.body["out_trade_no"]);
        // Another user is not touched.
        let bob = app.login("bob#1").await;
        assert_eq!(order(&app, &bob, None).await.status, StatusCode::ACCEPTED);
        // The merchant's backend is not limited, even for the same user.
        let ann_openid = openid_of(&app, first.body["out_trade_no"].as_str().unwrap()).await;
        assert_eq!(admin_order(&app, &ann_openid).await.status, StatusCode::ACCEPTED);
        assert_eq!(limited_total(&app, "orders_per_user").await - counted, 2.0);
        app.stop().await;
    }
}

on_both_backends! {
    async fn the_unpaid_cap_refuses_a_new_order_until_one_is_paid(backend) {
        let _turn = ONE_COUNTER_AT_A_TIME.lock().await;
        let Some(app) = TestApp::spawn_with(backend, Role::All, |s| {
            s.limits.limit_unpaid_per_user = 2;
        })
        .await
        else {
            return;
        };
        let counted = limited_total(&app, "unpaid_per_user").await;
        let cat = app.login("cat#1").await;
        let first = order(&app, &cat, Some("cat-1")).await;
        assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
        assert_eq!(order(&app, &cat, None).await.status, StatusCode::ACCEPTED);
        let refused = order(&app, &cat, None).await;
        assert_limited(&refused, "TOO_MANY_UNPAID_ORDERS");
        // The first unpaid order expires in about 30 minutes (MINIPAY_ORDER_TTL_SECS).
        assert!(refused.retry_after.unwrap() <= 1800, "{:?}", refused.retry_after);
        // A replay is answered; another user is not touched; the merchant's backend is not capped.
        let replay = order(&app, &cat, Some("cat-1")).await;
        assert_eq!(replay.status, StatusCode::ACCEPTED, "{}", replay.body);
        assert_eq!(replay.body["out_trade_no"], first.body["out_trade_no"]);
        let dan = app.login("dan#1").await;
        assert_eq!(order(&app, &dan, None).await.status, StatusCode::ACCEPTED);
        let number = first.body["out_trade_no"].as_str().unwrap().to_owned();
        let openid = openid_of(&app, &number).await;
        assert_eq!(admin_order(&app, &openid).await.status, StatusCode::ACCEPTED);
        assert_eq!(app.scalar("SELECT COUNT(*) FROM orders").await, 4, "nothing half-written");
        // Paying one makes room for one.
        app.wait_for_status(&cat, &number, "ready").await;
        app.pay(&number, true);
        app.wait_for_status(&cat, &number, "paid").await;
        assert_eq!(order(&app, &cat, None).await.status, StatusCode::ACCEPTED);
        assert_limited(&order(&app, &cat, None).await, "TOO_MANY_UNPAID_ORDERS");
        assert_eq!(limited_total(&app, "unpaid_per_user").await - counted, 2.0);
        app.stop().await;
    }
}

on_both_backends! {
    async fn orders_placed_at_once_cannot_pass_the_unpaid_cap_together(backend) {
        let Some(app) = TestApp::spawn_with(backend, Role::Serve, |s| {
            s.limits.limit_unpaid_per_user = 3;
        })
        .await
        else {
            return;
        };
        let eve = app.login("eve#1").await;
        let attempts = (0..12).map(|_| order(&app, &eve, None));
        let replies = futures::future::join_all(attempts).await;
        let placed = replies.iter().filter(|r| r.status == StatusCode::ACCEPTED).count();
        for reply in replies.iter().filter(|r| r.status != StatusCode::ACCEPTED) {
            assert_limited(reply, "TOO_MANY_UNPAID_ORDERS");
        }
        assert_eq!(placed, 3, "exactly the cap is placed");
        assert_eq!(app.scalar("SELECT COUNT(*) FROM orders").await, 3);
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_reads_per_user_are_limited_per_user() {
    let _turn = ONE_COUNTER_AT_A_TIME.lock().await;
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, Role::Serve, |s| {
        s.limits.limit_reads_per_user = 5;
    })
    .await
    else {
        return;
    };
    let counted = limited_total(&app, "reads_per_user").await;
    let fay = app.login("fay#1").await;
    let gus = app.login("gus#1").await;
    let fays = app.create_order(&fay, "sms-100", 1).await;
    let guss = app.create_order(&gus, "sms-100", 1).await;
    let path = |o: &Value| format!("/v1/orders/{}", o["out_trade_no"].as_str().unwrap());
    let started = Instant::now();
    let mut reads = 0;
    let refused = loop {
        let reply = send(
            app.http
                .get(format!("{}{}", app.base, path(&fays)))
                .bearer_auth(&fay),
        )
        .await;
        if reply.status != StatusCode::OK {
            break reply;
        }
        reads += 1;
        assert!(reads <= 5 + refilled(started.elapsed(), 5, Duration::from_secs(1)));
    };
    assert!(reads >= 5, "the budget of 5 is available");
    assert_limited(&refused, "RATE_LIMITED");
    // Another user reads on.
    let (status, _) = app.get_json(&path(&guss), Some(&gus)).await;
    assert_eq!(status, StatusCode::OK);
    // The merchant's backend (admin token) is not a user.
    let (status, _) = app.get_json(&path(&fays), Some(ADMIN_TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(limited_total(&app, "reads_per_user").await - counted >= 1.0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_turns_each_limit_off() {
    // helpers::test_settings sets every limit to 0, as an operator would.
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, Role::Serve, |s| {
        s.http.trusted_proxies = "127.0.0.1".into();
    })
    .await
    else {
        return;
    };
    for i in 0..70 {
        let reply = login_from(&app, "203.0.113.50", &format!("many{i}#1")).await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "login {i}: {}",
            reply.body
        );
    }
    let hal = app.login("hal#1").await;
    let mut last = Value::Null;
    for i in 0..35 {
        let reply = order(&app, &hal, None).await;
        assert_eq!(
            reply.status,
            StatusCode::ACCEPTED,
            "order {i}: {}",
            reply.body
        );
        last = reply.body;
    }
    let path = format!("/v1/orders/{}", last["out_trade_no"].as_str().unwrap());
    for i in 0..40 {
        let (status, body) = app.get_json(&path, Some(&hal)).await;
        assert_eq!(status, StatusCode::OK, "read {i}: {body}");
    }
    for _ in 0..15 {
        let (status, _) = app
            .get_json("/v1/admin/queues", Some("wrong-token-0123456789"))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = app.get_json("/v1/admin/queues", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

/// The admin endpoints as the client at `ip` (behind the trusted proxy), with `token`.
async fn admin_from(base: &str, ip: &str, token: &str) -> Reply {
    send(
        crate::helpers::http()
            .get(format!("{base}/v1/admin/queues"))
            .header("x-forwarded-for", ip)
            .bearer_auth(token),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_admin_tokens_are_logged_and_lock_the_client_out() {
    let Some(db) = Database::create(Backend::Sqlite).await else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let port = free_port();
    let env = vec![
        ("MINIPAY_DATABASE_URL", db.url.clone()),
        ("MINIPAY_LISTEN", format!("127.0.0.1:{port}")),
        ("MINIPAY_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
        ("MINIPAY_TRUSTED_PROXIES", "127.0.0.1".to_owned()),
        ("MINIPAY_LOG", "info".to_owned()),
        ("MINIPAY_SHUTDOWN_TIMEOUT_SECS", "5".to_owned()),
    ];
    let mut proc = Proc::start("minipay", &["all"], &env, logs.path());
    let base = format!("http://127.0.0.1:{port}");
    wait_until_up(&format!("{base}/readyz"), &mut proc).await;
    let guess = "guess-0123456789-secret";
    let started = Instant::now();
    let mut wrong = 0;
    // The default budget: 10 wrong tokens a minute (one back every 6 s).
    let refused = loop {
        let reply = admin_from(&base, "203.0.113.66", guess).await;
        if reply.status != StatusCode::UNAUTHORIZED {
            break reply;
        }
        wrong += 1;
        assert!(wrong <= 10 + refilled(started.elapsed(), 10, Duration::from_secs(60)));
    };
    assert!(wrong >= 10, "the budget of 10 is available");
    assert_limited(&refused, "RATE_LIMITED");
    // Locked out: the right token too, until the budget refills.
    let right = admin_from(&base, "203.0.113.66", ADMIN_TOKEN).await;
    assert_limited(&right, "RATE_LIMITED");
    // Another client is not.
    let other = admin_from(&base, "198.51.100.66", ADMIN_TOKEN).await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.body);
    proc.signal("TERM");
    assert!(
        proc.wait_for_exit(Duration::from_secs(20))
            .is_some_and(|s| s.success())
    );
    let log = proc.output();
    let warned = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("wrong admin token"))
        .collect::<Vec<_>>();
    assert_eq!(
        warned.len(),
        wrong as usize + 1,
        "one line per wrong token:\n{log}"
    );
    assert!(
        warned.iter().all(|l| l.contains("203.0.113.66")),
        "{warned:?}"
    );
    assert!(!log.contains(guess), "the presented token is never logged");
    db.drop_now().await;
}

/// `GET /v1/orders/{id}` as the client at `ip` (behind the trusted proxy) with `token`.
async fn read_from(app: &TestApp, ip: &str, number: &str, token: &str) -> Reply {
    send(
        app.http
            .get(format!("{}/v1/orders/{number}", app.base))
            .header("x-forwarded-for", ip)
            .bearer_auth(token),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_the_admin_token_through_an_order_read_spends_the_same_budget() {
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, Role::Serve, |s| {
        s.limits.limit_admin_failures_per_ip = 3;
        s.http.trusted_proxies = "127.0.0.1".into();
    })
    .await
    else {
        return;
    };
    let token = app.login("lou#1").await;
    let order = app.create_order(&token, "sms-100", 1).await;
    let number = order["out_trade_no"].as_str().unwrap();
    // Neither a session nor the admin token: 401 as for an expired session, every time.
    for i in 0..10 {
        let reply = read_from(
            &app,
            "203.0.113.99",
            number,
            &format!("guess-{i}-0123456789"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
        assert_eq!(reply.body["error"]["code"], "SESSION_REQUIRED");
    }
    // That client is locked out: the right admin token is not even compared...
    let admin = read_from(&app, "203.0.113.99", number, ADMIN_TOKEN).await;
    assert_eq!(admin.status, StatusCode::UNAUTHORIZED, "{}", admin.body);
    let admin_api = send(
        app.http
            .get(format!("{}/v1/admin/orders/{number}", app.base))
            .header("x-forwarded-for", "203.0.113.99")
            .bearer_auth(ADMIN_TOKEN),
    )
    .await;
    assert_limited(&admin_api, "RATE_LIMITED");
    // ...while its users' sessions work, and other clients are not touched.
    let own = read_from(&app, "203.0.113.99", number, &token).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    let elsewhere = read_from(&app, "198.51.100.99", number, ADMIN_TOKEN).await;
    assert_eq!(elsewhere.status, StatusCode::OK, "{}", elsewhere.body);
    app.stop().await;
}
