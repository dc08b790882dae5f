//! `/healthz` (the process answers), `/readyz` (database reachable, migrations applied,
//! writes committing, workers heartbeating in a worker role) and `/metrics` (Prometheus text),
//! both answered from memory.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::HttpState;
use super::views::{Checks, Health, Readiness};

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness, from memory: the last readiness probe (database reachable, migrations applied,
/// workers heartbeating in worker roles), writes committing; not ready while shutting down.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready; the checks say why", body = Readiness),
    ))]
pub async fn readyz(State(state): State<Arc<HttpState>>) -> Response {
    let services = &state.services;
    let checked = state
        .snapshot
        .checked_or_probe(services, state.worker_node.as_deref())
        .await;
    // The last write's outcome and the write probe (store::WriteHealth).
    let writes = services.write_health.is_ok();
    let ready = checked.ok() && writes && !services.stopping.is_cancelled();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        status: if ready { "ready" } else { "not_ready" },
        checks: Checks {
            database: checked.database,
            migrations: checked.migrations,
            writes,
            workers: checked.workers,
        },
        checked_ms_ago: checked.age.map(|a| a.as_millis() as u64),
    };
    (status, Json(body)).into_response()
}

/// Prometheus metrics (text format; the metrics are listed in the README).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String,
        content_type = "text/plain")))]
pub async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    state.snapshot.refresh_if_never(&state.services).await;
    let now = Instant::now();
    let fresh_for = state.services.config.http.metrics_cache;
    let text = state.metrics_text.get_or_render(now, fresh_for, || {
        let mut text = state.metrics.render();
        text.push_str(&state.snapshot.render(now, state.services.waiters.watched()));
        text
    });
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        text.to_string(),
    )
        .into_response()
}

/// The last `/metrics` answer, served again for `MINIPAY_METRICS_CACHE_MS`: a flood of scrapes
/// costs a copy each, not a render of every counter and histogram (Prometheus scrapes every
/// 15 s or so). One render at a time: concurrent scrapes wait for it.
#[derive(Default)]
pub struct MetricsText(Mutex<Option<(Instant, Arc<str>)>>);

impl MetricsText {
    fn get_or_render(
        &self,
        now: Instant,
        fresh_for: Duration,
        render: impl FnOnce() -> String,
    ) -> Arc<str> {
        let Ok(mut last) = self.0.lock() else {
            return render().into();
        };
        if let Some((at, text)) = last.as_ref()
            && now.saturating_duration_since(*at) < fresh_for
        {
            return text.clone();
        }
        let text: Arc<str> = render().into();
        *last = Some((now, text.clone()));
        text
    }
}
