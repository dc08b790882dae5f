//! The OpenAPI document as served: the public one at `/openapi.json` without the admin
//! endpoints, the full one behind the admin token; both the document the code generates.

use minipay::app::Role;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{ADMIN_TOKEN, Backend, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_documents_are_the_generated_ones() {
    let app = TestApp::spawn_with(Backend::Sqlite, Role::Serve, |_| {})
        .await
        .unwrap();

    let (status, public) = app.get_json("/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(public["openapi"], "3.1.0");
    let paths = public["paths"].as_object().unwrap();
    assert!(paths.contains_key("/v1/orders/{out_trade_no}"));
    assert!(paths.contains_key("/v1/sessions"));
    assert!(
        paths.keys().all(|p| !p.starts_with("/v1/admin/")),
        "the public document lists admin endpoints: {:?}",
        paths.keys()
    );
    assert_eq!(
        public,
        serde_json::to_value(minipay::http::openapi::public()).unwrap()
    );

    let (status, refused) = app.get_json("/v1/admin/openapi.json", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused["error"]["code"], "ADMIN_TOKEN_REQUIRED");
    let (status, full) = app
        .get_json("/v1/admin/openapi.json", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(status, StatusCode::OK);
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        full, committed,
        "docs/openapi.json is stale: run make openapi"
    );
    assert!(full["paths"]["/v1/admin/orders"]["post"].is_object());
    app.stop().await;
}
