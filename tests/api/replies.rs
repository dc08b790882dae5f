//! Every reply in the contract's shape, whatever the request: malformed query strings and
//! paths answer the JSON error shape, text from the request is echoed back short, and what a
//! cache must not keep (tokens, pay_params) says `Cache-Control: no-store`.

use minipay::app::Role;
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp};

async fn json_error(response: reqwest::Response) -> (StatusCode, String, Value) {
    let status = response.status();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, content_type, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_queries_and_paths_answer_the_json_error_shape() {
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, Role::Serve, |_| {}).await else {
        return;
    };
    let token = app.login("ivy#1").await;
    let order = app.create_order(&token, "sms-100", 1).await;
    let number = order["out_trade_no"].as_str().unwrap();
    for (path, code) in [
        (format!("/v1/orders/{number}?wait=1&wait=2"), "INVALID_WAIT"),
        ("/v1/orders/%FF".to_owned(), "INVALID_PATH"),
        ("/v1/orders/%FF?wait=1".to_owned(), "INVALID_PATH"),
    ] {
        let response = app
            .http
            .get(format!("{}{path}", app.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let (status, content_type, body) = json_error(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(content_type, "application/json", "{path}");
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
        assert!(body["error"]["message"].is_string(), "{path}: {body}");
    }
    let response = app
        .http
        .get(format!("{}/v1/admin/orders/%FF", app.base))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let (status, content_type, body) = json_error(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(content_type, "application/json");
    assert_eq!(body["error"]["code"], "INVALID_PATH");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_sku_is_echoed_back_short() {
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, Role::Serve, |_| {}).await else {
        return;
    };
    let token = app.login("jon#1").await;
    let sku = "x".repeat(10_000);
    let (status, body) = app
        .post_json(
            "/v1/orders",
            Some(&token),
            json!({ "sku": sku, "quantity": 1 }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "UNKNOWN_SKU");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(&"x".repeat(64)), "{message}");
    assert!(!message.contains(&"x".repeat(65)), "{message}");
    assert!(message.chars().count() < 120, "{message}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_pay_params_are_not_stored_by_caches() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let response = app
        .http
        .post(format!("{}/v1/sessions", app.base))
        .json(&json!({ "code": "kim#1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    let token = response.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let order = app.create_order(&token, "sms-100", 1).await;
    let number = order["out_trade_no"].as_str().unwrap();
    let ready = app.wait_for_status(&token, number, "ready").await;
    assert!(ready["pay_params"].is_object(), "{ready}");
    let response = app
        .http
        .get(format!("{}/v1/orders/{number}", app.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    app.stop().await;
}
