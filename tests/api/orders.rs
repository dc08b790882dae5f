//! Order creation and reading: priced from the catalog whatever the body says, idempotent,
//! private to its user (across their sessions), and every bad request refused with a precise code and no row written.

use minipay::app::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, TestApp, on_both_backends};

async fn order_count(app: &TestApp) -> i64 {
    app.scalar("SELECT COUNT(*) FROM orders").await
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

on_both_backends! {
    async fn the_catalog_sets_the_price(backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        let token = app.login("grace#1").await;
        // A client that tries to set the amount is refused; nothing is written.
        let (status, body) = app
            .post_json("/v1/orders", Some(&token), json!({ "sku": "coffee-latte", "quantity": 3, "total_fee": 1 }))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(code(&body), "INVALID_BODY");
        assert!(body["error"]["message"].as_str().unwrap().contains("total_fee"));
        assert_eq!(order_count(&app).await, 0);

        let created = app.create_order(&token, "coffee-latte", 3).await;
        assert_eq!(created["total_fee"], 5400);
        let otn = created["out_trade_no"].as_str().unwrap();
        assert!(otn.len() <= 32 && otn.starts_with("MP"));
        app.wait_for_status(&token, otn, "ready").await;
        let call = &app.sim().order(otn).unwrap().calls[0];
        assert_eq!(call.business["total_fee"], "5400");
        assert_eq!(call.business["body"], "拿铁咖啡 大杯");
        assert_eq!(call.business["spbill_create_ip"], "127.0.0.1");
        assert_eq!(call.business["trade_type"], "JSAPI");
        app.stop().await;
    }
}

on_both_backends! {
    async fn bad_requests_get_precise_errors_and_write_nothing(backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        let token = app.login("heidi#1").await;
        let orders = format!("{}/v1/orders", app.base);

        let (status, body) = app.post_json("/v1/orders", Some(&token), json!({ "sku": "no-such-thing", "quantity": 1 })).await;
        assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "UNKNOWN_SKU"));
        for quantity in [0, -1, 10_000] {
            let (status, body) = app.post_json("/v1/orders", Some(&token), json!({ "sku": "sms-100", "quantity": quantity })).await;
            assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "INVALID_QUANTITY"), "{quantity}");
        }
        let (status, body) = app.post_json("/v1/orders", Some(&token), json!({ "sku": "sms-100", "quantity": "2" })).await;
        assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "INVALID_BODY"));
        let (status, body) = app.post_json("/v1/orders", Some(&token), json!({ "sku": "sms-100" })).await;
        assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "INVALID_BODY"));

        let raw = |body: &'static str, content_type: &'static str| {
            TestApp::checked("POST", "/v1/orders", app.http.post(&orders).bearer_auth(&token).header("content-type", content_type).body(body))
        };
        let (status, body) = raw("{\"sku\": \"sms-100\", ", "application/json").await;
        assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "MALFORMED_JSON"));
        let (status, body) = raw("sku=sms-100", "application/x-www-form-urlencoded").await;
        assert_eq!((status, code(&body)), (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE"));
        let huge = format!("{{\"sku\": \"{}\", \"quantity\": 1}}", "x".repeat(64 * 1024));
        let request = app.http.post(&orders).bearer_auth(&token).header("content-type", "application/json").body(huge);
        let (status, body) = TestApp::checked("POST", "/v1/orders", request).await;
        assert_eq!((status, code(&body)), (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"));

        // no token, a made-up token
        let (status, body) = app.post_json("/v1/orders", None, json!({ "sku": "sms-100", "quantity": 1 })).await;
        assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "SESSION_REQUIRED"));
        let (status, body) = app.post_json("/v1/orders", Some("made-up"), json!({ "sku": "sms-100", "quantity": 1 })).await;
        assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "SESSION_REQUIRED"));

        // login failures
        let (status, body) = app.post_json("/v1/sessions", None, json!({ "code": "invalid-123" })).await;
        assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "WECHAT_LOGIN_FAILED"));
        let (status, body) = app.post_json("/v1/sessions", None, json!({ "code": "" })).await;
        assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "INVALID_BODY"));
        let (status, body) = app.post_json("/v1/sessions", None, json!({ "code": "busy-1" })).await;
        assert_eq!((status, code(&body)), (StatusCode::SERVICE_UNAVAILABLE, "WECHAT_UNAVAILABLE"));

        let (status, body) = app.get_json("/v1/nowhere", None).await;
        assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "NOT_FOUND"));
        let response = app.http.delete(&orders).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);

        assert_eq!(order_count(&app).await, 0);
        assert_eq!(app.scalar("SELECT COUNT(*) FROM sessions").await, 1);
        app.stop().await;
    }
}

on_both_backends! {
    async fn sessions_keep_the_session_key_on_the_server(backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        let (status, body) = app.post_json("/v1/sessions", None, json!({ "code": "ivan#1" })).await;
        assert_eq!(status, StatusCode::CREATED);
        let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["expires_in", "token"]);
        assert_eq!(body["expires_in"], 86400);
        let token = body["token"].as_str().unwrap();
        // The database holds the token's hash, not the token.
        let stored: String = match app.store() {
            minipay::store::Store::Sqlite(p) => sqlx::query_scalar("SELECT token_hash FROM sessions").fetch_one(&p.writer).await.unwrap(),
            minipay::store::Store::Postgres(p) => sqlx::query_scalar("SELECT token_hash FROM sessions").fetch_one(p).await.unwrap(),
        };
        assert_eq!(stored, minipay::http::token_hash(token));
        assert_ne!(stored, token);
        // The session_key is sealed at rest: it opens only with the key derived from the
        // merchant API key, for this session's openid, and the stored text does not contain it.
        let (id, openid): (i64, String) = match app.store() {
            minipay::store::Store::Sqlite(p) => sqlx::query_as("SELECT id, openid FROM sessions").fetch_one(&p.writer).await.unwrap(),
            minipay::store::Store::Postgres(p) => sqlx::query_as("SELECT id, openid FROM sessions").fetch_one(p).await.unwrap(),
        };
        let sealed = app.store().sealed_session_key(id).await.unwrap().unwrap();
        let sealer = minipay::sealed::Sealer::new(&app.merchant().key).unwrap();
        let session_key = sealer.open(&sealed, &openid).unwrap();
        let session_key = secrecy::ExposeSecret::expose_secret(&session_key).to_owned();
        assert_eq!(session_key.len(), 24, "the simulator's session_key: base64 of 16 bytes");
        assert!(!sealed.contains(&session_key), "{sealed}");
        let stranger = minipay::sealed::Sealer::new(&minipay::wechat::v2::ApiKey::new("0123456789abcdef0123456789abcdef")).unwrap();
        assert!(stranger.open(&sealed, &openid).is_err());
        // A used code cannot log in again.
        let (status, _) = app.post_json("/v1/sessions", None, json!({ "code": "ivan#1" })).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        app.stop().await;
    }
}

on_both_backends! {
    async fn an_idempotency_key_returns_the_same_order(backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        let token = app.login("judy#1").await;
        let post = |key: &'static str, sku: &'static str, token: String| {
            let app = &app;
            async move {
                let request = app.http.post(format!("{}/v1/orders", app.base))
                    .bearer_auth(token)
                    .header("idempotency-key", key)
                    .json(&json!({ "sku": sku, "quantity": 1 }));
                TestApp::checked("POST", "/v1/orders", request).await
            }
        };
        // Five concurrent retries of the same tap: one order.
        let replies = futures::future::join_all((0..5).map(|_| post("tap-1", "sms-100", token.clone()))).await;
        let first = &replies[0].1["out_trade_no"];
        for (status, body) in &replies {
            assert_eq!(*status, StatusCode::ACCEPTED, "{body}");
            assert_eq!(&body["out_trade_no"], first);
        }
        assert_eq!(order_count(&app).await, 1);

        let (status, body) = post("tap-1", "vip-month", token.clone()).await;
        assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "IDEMPOTENCY_KEY_REUSED"));

        // The same user after a new wx.login: the same key is the same order, not a second one.
        let again = app.login("judy#2").await;
        let (status, body) = post("tap-1", "sms-100", again.clone()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(&body["out_trade_no"], first, "keys are per user, across sessions");
        let (status, body) = post("tap-1", "vip-month", again).await;
        assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "IDEMPOTENCY_KEY_REUSED"));
        assert_eq!(order_count(&app).await, 1);

        let other = app.login("kim#1").await;
        let (status, body) = post("tap-1", "sms-100", other).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_ne!(&body["out_trade_no"], first, "another user's key is their own");
        assert_eq!(order_count(&app).await, 2);
        app.stop().await;
    }
}

on_both_backends! {
    async fn orders_are_private_to_their_user_across_sessions(backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        let owner = app.login("leo#1").await;
        let stranger = app.login("mallory#1").await;
        let otn = app.create_order(&owner, "sms-100", 1).await["out_trade_no"].as_str().unwrap().to_owned();
        let path = format!("/v1/orders/{otn}");

        let (status, body) = app.get_json(&path, Some(&stranger)).await;
        assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "ORDER_NOT_FOUND"));
        let (status, body) = app.get_json(&format!("{path}?wait=1"), Some(&stranger)).await;
        assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "ORDER_NOT_FOUND"));
        // The owner logs in again (a new wx.login, a new token): the order is still theirs.
        let relogged = app.login("leo#2").await;
        assert_ne!(relogged, owner);
        let order = app.order(&relogged, &otn, Some(5)).await;
        assert_eq!(order["out_trade_no"], otn.as_str());
        assert_eq!(order["total_fee"], 88);
        let (status, body) = app.get_json("/v1/orders/MPNOSUCHORDER0000", Some(&stranger)).await;
        assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "ORDER_NOT_FOUND"));
        let (status, body) = app.get_json(&path, None).await;
        assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "SESSION_REQUIRED"));
        let (status, body) = app.get_json(&format!("{path}?wait=31"), Some(&owner)).await;
        assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "INVALID_WAIT"));
        let (status, _) = app.get_json(&path, Some(&owner)).await;
        assert_eq!(status, StatusCode::OK);
        // the merchant's backend reads any order
        let (status, _) = app.get_json(&path, Some(ADMIN_TOKEN)).await;
        assert_eq!(status, StatusCode::OK);
        app.stop().await;
    }
}

on_both_backends! {
    async fn a_long_poll_returns_when_the_order_changes(backend) {
        // No workers yet: the order stays pending until one starts.
        let Some(app) = TestApp::spawn_with(backend, Role::Serve, |_| {}).await else { return };
        let token = app.login("nina#1").await;
        let otn = app.create_order(&token, "sms-100", 1).await["out_trade_no"].as_str().unwrap().to_owned();
        let started = std::time::Instant::now();
        let order = app.order(&token, &otn, Some(1)).await;
        assert_eq!(order["status"], "pending");
        assert!(started.elapsed() >= std::time::Duration::from_millis(900), "waited the full second");

        let app = app.restart(Role::All).await;
        let started = std::time::Instant::now();
        let order = app.order(&token, &otn, Some(30)).await;
        assert_eq!(order["status"], "ready");
        assert!(started.elapsed() < std::time::Duration::from_secs(25), "woke before the wait ran out");
        app.stop().await;
    }
}

on_both_backends! {
    async fn the_merchant_backend_creates_orders_with_the_admin_token(backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        let body = json!({ "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "description": "年度会员", "total_fee": 9900, "attach": "crm-42", "out_trade_no": "CRM2026000042" });
        let (status, reply) = app.post_json("/v1/admin/orders", None, body.clone()).await;
        assert_eq!((status, code(&reply)), (StatusCode::UNAUTHORIZED, "ADMIN_TOKEN_REQUIRED"));
        let (status, reply) = app.post_json("/v1/admin/orders", Some("wrong-token-wrong-token"), body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{reply}");

        let (status, reply) = app.post_json("/v1/admin/orders", Some(ADMIN_TOKEN), body.clone()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
        assert_eq!(reply["out_trade_no"], "CRM2026000042");
        assert_eq!(reply["total_fee"], 9900);
        // a replay is the same order; the same number for another order is a conflict
        let (status, _) = app.post_json("/v1/admin/orders", Some(ADMIN_TOKEN), body.clone()).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let mut changed = body.clone();
        changed["total_fee"] = json!(1);
        let (status, reply) = app.post_json("/v1/admin/orders", Some(ADMIN_TOKEN), changed).await;
        assert_eq!((status, code(&reply)), (StatusCode::CONFLICT, "OUT_TRADE_NO_TAKEN"));
        for (field, value) in [("total_fee", json!(0)), ("description", json!("咖啡🎉")), ("out_trade_no", json!("bad no")), ("openid", json!(""))] {
            let mut bad = body.clone();
            bad[field] = value;
            bad["out_trade_no"] = if field == "out_trade_no" { bad["out_trade_no"].clone() } else { json!("CRM2026000043") };
            let (status, reply) = app.post_json("/v1/admin/orders", Some(ADMIN_TOKEN), bad).await;
            assert_eq!((status, code(&reply)), (StatusCode::UNPROCESSABLE_ENTITY, "INVALID_PARAMETER"), "{field}");
        }
        assert_eq!(order_count(&app).await, 1);

        let ready = app.wait_for_status(ADMIN_TOKEN, "CRM2026000042", "ready").await;
        assert!(ready["pay_params"]["paySign"].is_string());
        let call = &app.sim().order("CRM2026000042").unwrap().calls[0];
        assert_eq!(call.business["attach"], "crm-42");
        assert_eq!(call.business["openid"], "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o");
        app.stop().await;
    }
}
