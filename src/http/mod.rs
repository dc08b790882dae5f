//! The HTTP API: the whole URL map is here; one file per resource; the state only HTTP needs
//! ([`HttpState`]). Handlers call the domain layer for business operations and the store for
//! reads.

mod admin;
mod auth;
pub mod error;
mod health;
mod notify;
pub mod openapi;
mod orders;
mod payer_ip;
mod queues;
mod refused_notifies;
mod session_cache;
mod sessions;
mod state;
mod views;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::http::header::{CONNECTION, RETRY_AFTER};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use error::ApiError;

pub use auth::token_hash;
pub use refused_notifies::{FreeSpaceFloor, RefusedNotifies};
pub use session_cache::SessionCache;
pub use state::HttpState;

/// JSON bodies of this API are small; anything larger is refused before parsing.
const JSON_BODY_LIMIT: usize = 16 * 1024;

/// The whole API; `simulator` (simulator mode) is mounted at `/simulator`.
pub fn router(state: Arc<HttpState>, simulator: Option<Router>) -> Router {
    let api = Router::new()
        .route("/v1/sessions", post(sessions::create))
        .route("/v1/orders", post(orders::create))
        .route("/v1/orders/{out_trade_no}", get(orders::show))
        .route("/v1/admin/orders", post(admin::create_order))
        .route("/v1/admin/orders/{out_trade_no}", get(admin::order_history))
        .route("/v1/admin/queues", get(queues::list_queues))
        .route("/v1/admin/queues/{queue}/jobs", get(queues::list_jobs))
        .route("/v1/admin/jobs/{id}/retry", post(queues::retry_job))
        .route("/v1/admin/openapi.json", get(openapi::full_document))
        .route("/admin", get(queues::page))
        .route("/admin/jobs/{id}/retry", post(queues::page_retry))
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        // The notify reads its own body, with its own limit, and answers in XML.
        .route(
            "/v1/wechat/notify",
            post(notify::receive).layer(DefaultBodyLimit::disable()),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::public_document))
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed });
    let api = match simulator {
        Some(sim) => api.nest_service("/simulator", sim),
        None => api,
    };
    api.layer(middleware::from_fn_with_state(state.clone(), shutting_down))
        .layer(middleware::from_fn(observe))
        .with_state(state)
}

/// Once shutdown starts, new requests get 503 and every response says `Connection: close`,
/// so clients stop reusing connections before the listener closes. Health checks still
/// answer (`/readyz` says not ready).
async fn shutting_down(
    State(state): State<Arc<HttpState>>,
    request: Request,
    next: Next,
) -> Response {
    if !state.services.stopping.is_cancelled() {
        return next.run(request).await;
    }
    let path = request.uri().path();
    let mut response = if path == "/healthz" || path == "/readyz" {
        next.run(request).await
    } else {
        let mut refused = ApiError::ShuttingDown.into_response();
        refused
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        refused
    };
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Counts and times every request by route and status.
async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().to_string();
    let response = next.run(request).await;
    metrics::histogram!(
        "minipay_http_request_duration_seconds",
        "method" => method,
        "route" => route,
        "status" => response.status().as_u16().to_string(),
    )
    .record(started.elapsed().as_secs_f64());
    response
}
