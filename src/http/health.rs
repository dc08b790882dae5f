//! `/healthz` (the process answers), `/readyz` (database reachable, migrations applied,
//! writes committing, workers heartbeating in a worker role) and `/metrics` (Prometheus text).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::app::Services;

pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(services): State<Arc<Services>>) -> Response {
    let mut checks = serde_json::Map::new();
    let database = services.store.ping().await.is_ok();
    checks.insert("database".into(), json!(database));
    let migrations = database && services.store.migrations_applied().await.unwrap_or(false);
    checks.insert("migrations".into(), json!(migrations));
    // From memory: the last write's outcome and the write probe (store::WriteHealth).
    let writes = services.write_health.is_ok();
    checks.insert("writes".into(), json!(writes));
    let mut ready = database && migrations && writes && !services.stopping.is_cancelled();
    if let Some(node) = &services.worker_node {
        let within = (services.config.heartbeat.as_secs() as i64 * 3).max(5);
        let alive = services
            .store
            .workers_alive(node, chrono::Utc::now().timestamp(), within)
            .await
            .unwrap_or(false);
        checks.insert("workers".into(), json!(alive));
        ready &= alive;
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({ "status": if ready { "ready" } else { "not_ready" }, "checks": checks });
    (status, Json(body)).into_response()
}

pub async fn metrics(State(services): State<Arc<Services>>) -> Response {
    crate::metrics::refresh_gauges(&services).await;
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        services.metrics.render(),
    )
        .into_response()
}
