//! `/healthz` (the process answers), `/readyz` (database reachable, migrations applied,
//! writes committing, workers heartbeating in a worker role) and `/metrics` (Prometheus text).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::HttpState;
use super::views::{Checks, Health, Readiness};
use crate::metrics::Gauges;
use crate::worker::QUEUES;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: database reachable, migrations applied, writes committing, workers heartbeating
/// (worker roles); not ready while shutting down.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready; the checks say why", body = Readiness),
    ))]
pub async fn readyz(State(state): State<Arc<HttpState>>) -> Response {
    let services = &state.services;
    let database = services.store.ping().await.is_ok();
    let migrations = database && services.store.migrations_applied().await.unwrap_or(false);
    // From memory: the last write's outcome and the write probe (store::WriteHealth).
    let writes = services.write_health.is_ok();
    let mut ready = database && migrations && writes && !services.stopping.is_cancelled();
    let mut workers = None;
    if let Some(node) = &state.worker_node {
        let within = (services.config.workers.heartbeat.as_secs() as i64 * 3).max(5);
        let alive = services
            .store
            .workers_alive(node, chrono::Utc::now().timestamp(), within)
            .await
            .unwrap_or(false);
        workers = Some(alive);
        ready &= alive;
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        status: if ready { "ready" } else { "not_ready" },
        checks: Checks {
            database,
            migrations,
            writes,
            workers,
        },
    };
    (status, Json(body)).into_response()
}

/// Prometheus metrics (text format; the metrics are listed in the README).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String,
        content_type = "text/plain")))]
pub async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    let services = &state.services;
    Gauges {
        store: &services.store,
        waiters: &services.waiters,
        queues: QUEUES,
        now_ms: services.clock.unix_ms(),
        reconcile_delay: services.config.workers.reconcile_delay,
    }
    .refresh()
    .await;
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
