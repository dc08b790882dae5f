//! `MINIPAY_ADMIN_LISTEN`: the operator endpoints (`/metrics`, `/admin`, the admin API) leave
//! the public address for their own; without it everything stays on `MINIPAY_LISTEN`.

use std::time::Duration;

use minipay::app::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, Backend, Database, TestApp, eventually};
use crate::process::{Proc, free_port, wait_until_up};

/// The status and contract error code (if any) of `GET base+path`.
async fn get(app: &TestApp, base: &str, path: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut request = app.http.get(format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let body = match response.headers().get("content-type") {
        Some(t) if t.to_str().unwrap().starts_with("application/json") => {
            response.json().await.unwrap()
        }
        _ => Value::String(response.text().await.unwrap()),
    };
    (status, body)
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_endpoints_move_to_the_admin_address() {
    let app = TestApp::spawn_with(Backend::Sqlite, Role::All, |s| {
        s.http.admin_listen = "127.0.0.1:0".into();
    })
    .await
    .unwrap();
    let public = app.base.clone();
    let admin = app.admin_base.clone().expect("an admin address");
    assert_ne!(public, admin);

    // The public address: no trace of the operator endpoints, even with the token.
    for path in [
        "/metrics",
        "/admin",
        "/v1/admin/queues",
        "/v1/admin/queues/prepay_order/jobs",
    ] {
        let (status, body) = get(&app, &public, path, Some(ADMIN_TOKEN)).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::NOT_FOUND, "NOT_FOUND"),
            "{path}: {body}"
        );
    }
    let refused = app
        .http
        .post(format!("{public}/v1/admin/orders"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "openid": "o1", "description": "x", "total_fee": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);
    let page = app
        .http
        .get(format!("{public}/admin"))
        .basic_auth("ops", Some(ADMIN_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    assert!(page.headers().get("www-authenticate").is_none());

    // The public API works as before, health checks on both addresses.
    let token = app.login("wanda#1").await;
    let otn = app.create_order(&token, "sms-100", 1).await["out_trade_no"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_for_status(&token, &otn, "ready").await;
    for base in [&public, &admin] {
        assert_eq!(get(&app, base, "/healthz", None).await.0, StatusCode::OK);
        eventually("ready", || async {
            get(&app, base, "/readyz", None).await.0 == StatusCode::OK
        })
        .await;
    }

    // The admin address: metrics, the admin API (with its token) and the console.
    let (status, metrics) = get(&app, &admin, "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("minipay_orders_created_total")
    );
    let (status, queues) = get(&app, &admin, "/v1/admin/queues", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{queues}");
    assert_eq!(
        queues["queues"].as_array().unwrap().len(),
        minipay::worker::QUEUES.len()
    );
    let (status, body) = get(&app, &admin, "/v1/admin/queues", None).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "ADMIN_TOKEN_REQUIRED")
    );
    let (status, history) = get(
        &app,
        &admin,
        &format!("/v1/admin/orders/{otn}"),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(
        (status, history["status"].as_str()),
        (StatusCode::OK, Some("ready")),
        "{history}"
    );
    let page = app
        .http
        .get(format!("{admin}/admin"))
        .basic_auth("ops", Some(ADMIN_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    // The mini-program's endpoints are not on the admin address.
    let (status, body) = get(&app, &admin, &format!("/v1/orders/{otn}"), Some(&token)).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "NOT_FOUND"),
        "{body}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_admin_address_everything_stays_on_the_public_one() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    assert!(app.admin_base.is_none());
    let base = app.base.clone();
    assert_eq!(get(&app, &base, "/metrics", None).await.0, StatusCode::OK);
    let (status, queues) = get(&app, &base, "/v1/admin/queues", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{queues}");
    app.stop().await;
}

/// The binary serves both addresses and stops both at SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_serves_and_closes_both_addresses() {
    let db = Database::create(Backend::Sqlite).await.unwrap();
    let logs = tempfile::tempdir().unwrap();
    let (port, admin_port) = (free_port(), free_port());
    let env = vec![
        ("MINIPAY_DATABASE_URL", db.url.clone()),
        ("MINIPAY_LISTEN", format!("127.0.0.1:{port}")),
        ("MINIPAY_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}")),
        ("MINIPAY_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
        ("MINIPAY_SHUTDOWN_TIMEOUT_SECS", "5".to_owned()),
    ];
    let mut proc = Proc::start("minipay", &["all"], &env, logs.path());
    let (public, admin) = (
        format!("http://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{admin_port}"),
    );
    wait_until_up(&format!("{public}/readyz"), &mut proc).await;
    wait_until_up(&format!("{admin}/metrics"), &mut proc).await;
    let http = crate::helpers::http();
    let status = |url: String| {
        let http = http.clone();
        async move { http.get(url).send().await.map(|r| r.status()) }
    };
    assert_eq!(
        status(format!("{public}/metrics")).await.unwrap(),
        StatusCode::NOT_FOUND
    );

    proc.signal("TERM");
    let exit = proc.wait_for_exit(Duration::from_secs(20));
    assert!(exit.is_some_and(|s| s.success()), "{}", proc.output());
    assert!(
        status(format!("{admin}/metrics")).await.is_err(),
        "the admin address is closed"
    );
    assert!(
        status(format!("{public}/healthz")).await.is_err(),
        "the public address is closed"
    );
}
