//! Storage that cannot take writes — a full disk on SQLite, a lost connection or a read-only
//! server on PostgreSQL — answers 503 `STORAGE_UNAVAILABLE` with `Retry-After`, acknowledges
//! nothing it did not commit, shows in `/readyz`, and heals by itself when the cause goes.

use std::time::Duration;

use minipay::store::Store;
use minipay::wechat::v2::notify::SUCCESS_REPLY;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection;

use crate::helpers::{Backend, TestApp, eventually, on_both_backends};

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

/// `POST /v1/orders` with the status, body and `Retry-After`.
async fn post_order(app: &TestApp, token: &str) -> (StatusCode, Value, Option<String>) {
    let response = app
        .http
        .post(format!("{}/v1/orders", app.base))
        .bearer_auth(token)
        .json(&json!({ "sku": "sms-100", "quantity": 1 }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.json().await.unwrap_or(Value::Null);
    crate::schema::check("POST", "/v1/orders", status.as_u16(), &body);
    (status, body, retry_after)
}

/// The PostgreSQL database's name and an admin connection to the server.
async fn pg_admin(app: &TestApp) -> (String, sqlx::PgConnection) {
    let (base, name) = app.db.url.rsplit_once('/').unwrap();
    let admin = sqlx::PgConnection::connect(&format!("{base}/postgres"))
        .await
        .unwrap();
    (name.to_owned(), admin)
}

/// Ends every server connection of the app's database (as a server restart does).
async fn pg_terminate_all(admin: &mut sqlx::PgConnection, name: &str) {
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()")
        .bind(name)
        .execute(&mut *admin)
        .await
        .unwrap();
}

/// SQLite: fills the capped database (1 MB) to the last page. PostgreSQL: the database turns
/// read-only (as after a fail-over to a standby) and every connection is cut.
async fn break_storage(app: &TestApp) {
    match app.store() {
        Store::Sqlite(pools) => {
            sqlx::query("CREATE TABLE filler (b BLOB NOT NULL)")
                .execute(&pools.writer)
                .await
                .unwrap();
            for size in [65_536, 4_096, 512, 64, 8] {
                loop {
                    let insert = sqlx::query("INSERT INTO filler (b) VALUES (zeroblob($1))")
                        .bind(size)
                        .execute(&pools.writer)
                        .await;
                    match insert {
                        Ok(_) => continue,
                        Err(e) => {
                            assert!(e.to_string().contains("full"), "{e}");
                            break;
                        }
                    }
                }
            }
        }
        Store::Postgres(_) => {
            let (name, mut admin) = pg_admin(app).await;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "ALTER DATABASE {name} SET default_transaction_read_only = on"
            )))
            .execute(&mut admin)
            .await
            .unwrap();
            pg_terminate_all(&mut admin, &name).await;
        }
    }
}

/// Gives the space back (SQLite) or makes the database writable again (PostgreSQL).
async fn repair_storage(app: &TestApp) {
    match app.store() {
        Store::Sqlite(pools) => {
            sqlx::query("DELETE FROM filler")
                .execute(&pools.writer)
                .await
                .unwrap();
        }
        Store::Postgres(_) => {
            let (name, mut admin) = pg_admin(app).await;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "ALTER DATABASE {name} RESET default_transaction_read_only"
            )))
            .execute(&mut admin)
            .await
            .unwrap();
            pg_terminate_all(&mut admin, &name).await;
        }
    }
}

async fn readyz(app: &TestApp) -> (StatusCode, Value) {
    app.get_json("/readyz", None).await
}

on_both_backends! {
    async fn storage_that_cannot_write_answers_503_and_heals_by_itself(backend) {
        let Some(app) = TestApp::spawn_with(backend, minipay::app::Role::All, |s| s.database.sqlite_max_size_mb = 1).await else { return };
        let token = app.login("una#1").await;
        let ready = app.create_order(&token, "sms-100", 1).await["out_trade_no"].as_str().unwrap().to_owned();
        app.wait_for_status(&token, &ready, "ready").await;
        let notify = app.pay(&ready, false).notify_xml;
        eventually("ready", || async { readyz(&app).await.0 == StatusCode::OK }).await;

        break_storage(&app).await;
        // Orders that still fit in allocated pages are committed; the first that does not is
        // a 503 with Retry-After, and so is every one after it (the writer is not left inside
        // a transaction that fails everything with another error, or commits nothing).
        let mut accepted = Vec::new();
        let (status, body, retry_after) = loop {
            let (status, body, retry_after) = post_order(&app, &token).await;
            if status != StatusCode::ACCEPTED {
                break (status, body, retry_after);
            }
            accepted.push(body["out_trade_no"].as_str().unwrap().to_owned());
            assert!(accepted.len() < 200, "the database never filled up");
        };
        assert_eq!((status, code(&body)), (StatusCode::SERVICE_UNAVAILABLE, "STORAGE_UNAVAILABLE"), "{body}");
        assert_eq!(retry_after.as_deref(), Some("5"));
        for _ in 0..3 {
            let (status, body, _) = post_order(&app, &token).await;
            assert_eq!((status, code(&body)), (StatusCode::SERVICE_UNAVAILABLE, "STORAGE_UNAVAILABLE"), "{body}");
        }
        // A login is answered 201 only when its session is stored: fill the sessions' pages too.
        let mut tokens = Vec::new();
        let (status, body) = loop {
            let (status, body) = app.post_json("/v1/sessions", None, json!({ "code": format!("una#login{}", tokens.len()) })).await;
            if status != StatusCode::CREATED {
                break (status, body);
            }
            tokens.push(body["token"].as_str().unwrap().to_owned());
            assert!(tokens.len() < 200, "sessions never filled up");
        };
        assert_eq!((status, code(&body)), (StatusCode::SERVICE_UNAVAILABLE, "STORAGE_UNAVAILABLE"), "{body}");
        // A verified notify is answered SUCCESS only once stored; otherwise WeChat hears FAIL
        // and sends it again later. (On SQLite it may still fit in a page with room left.)
        let (_, reply) = app.post_notify(notify.clone()).await;
        if backend == Backend::Postgres || reply != SUCCESS_REPLY {
            assert!(reply.contains("<return_code><![CDATA[FAIL]]>"), "{reply}");
        }
        eventually("/readyz reports failing writes", || async {
            let (status, body) = readyz(&app).await;
            status == StatusCode::SERVICE_UNAVAILABLE && body["checks"]["writes"] == false
        })
        .await;

        repair_storage(&app).await;
        eventually("/readyz ready again", || async { readyz(&app).await.0 == StatusCode::OK }).await;
        let (status, body, _) = post_order(&app, &token).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        // Every token handed out was committed, during the failure too.
        tokens.push(app.login("una#after").await);
        for token in &tokens {
            let (status, body) = app.get_json("/v1/orders/MPNOSUCHORDER0000", Some(token)).await;
            assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "ORDER_NOT_FOUND"), "{body}");
        }
        for otn in &accepted {
            assert_eq!(app.order(&token, otn, None).await["out_trade_no"], otn.as_str());
        }
        assert_eq!(app.post_notify(notify).await.1, SUCCESS_REPLY);
        app.wait_for_status(&token, &ready, "paid").await;
        // A prepay job that ran into the full disk may have used its runs (apalis re-runs at
        // once); the reconciler queues the next generation for its order (tests/api/reconcile.rs),
        // so dead jobs are expected here and not checked.
        app.stop_unchecked().await;
    }
}

/// PostgreSQL: a connection cut while a request's transaction is open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_mid_transaction_answers_503_on_postgres() {
    let Some(app) = TestApp::spawn(Backend::Postgres).await else {
        return;
    };
    let token = app.login("vera#1").await;
    let (name, mut admin) = pg_admin(&app).await;
    let mut blocker = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
    sqlx::query("LOCK TABLE orders IN EXCLUSIVE MODE")
        .execute(&mut blocker)
        .await
        .unwrap();
    // The order's INSERT waits for the lock inside its transaction; its connection is cut there.
    let pending = tokio::spawn({
        let (http, base, token) = (app.http.clone(), app.base.clone(), token.clone());
        async move {
            let response = http
                .post(format!("{base}/v1/orders"))
                .bearer_auth(token)
                .json(&json!({ "sku": "sms-100", "quantity": 1 }))
                .send()
                .await
                .unwrap();
            let (status, body) = (response.status(), response.json::<Value>().await.unwrap());
            crate::schema::check("POST", "/v1/orders", status.as_u16(), &body);
            (status, body)
        }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let waiting: i32 = loop {
        let pid: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO orders%'",
        )
        .bind(&name)
        .fetch_optional(&mut admin)
        .await
        .unwrap();
        if let Some(pid) = pid {
            break pid;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the order never waited for the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(waiting)
        .execute(&mut admin)
        .await
        .unwrap();
    let (status, body) = pending.await.unwrap();
    assert_eq!(
        (status, code(&body)),
        (StatusCode::SERVICE_UNAVAILABLE, "STORAGE_UNAVAILABLE"),
        "{body}"
    );
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM orders").await,
        0,
        "nothing half-written"
    );
    app.create_order(&token, "sms-100", 1).await;
    app.stop().await;
}
