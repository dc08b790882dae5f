//! The HTTP API: the whole URL map is here; one file per resource; the state only HTTP needs
//! ([`HttpState`]). Handlers call the domain layer for business operations and the store for
//! reads.

mod admin;
mod auth;
mod bills;
mod console;
mod csrf;
pub mod error;
mod events;
mod health;
mod limits;
pub mod listener;
mod notify;
pub mod openapi;
mod orders;
mod oversized;
mod payer_ip;
mod queues;
mod refund_notify;
mod refunds;
mod refused_notifies;
mod session_cache;
mod sessions;
mod shed;
mod snapshot;
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
pub use limits::RateLimits;
pub use refused_notifies::{FreeSpaceFloor, RefusedNotifies};
pub use session_cache::SessionCache;
pub use snapshot::Snapshot;
pub use state::HttpState;

/// JSON bodies of this API are small; anything larger is refused before parsing.
const JSON_BODY_LIMIT: usize = 16 * 1024;

/// The whole API on one listener (no `MINIPAY_ADMIN_LISTEN`); `simulator` (simulator mode) is
/// mounted at `/simulator`.
pub fn router(state: Arc<HttpState>, simulator: Option<Router>) -> Router {
    finish(public_routes(simulator).merge(operator_routes()), state)
}

/// What the public listener serves when the operator endpoints have their own: the
/// mini-program's and WeChat's endpoints and the health checks. The operator endpoints are
/// unknown here (404 `NOT_FOUND`).
pub fn public_router(state: Arc<HttpState>, simulator: Option<Router>) -> Router {
    finish(public_routes(simulator), state)
}

/// What `MINIPAY_ADMIN_LISTEN` serves: `/metrics`, the operator console (`/admin`), the admin
/// API, and the health checks.
pub fn operator_router(state: Arc<HttpState>) -> Router {
    finish(operator_routes().merge(health_routes()), state)
}

type Routes = Router<Arc<HttpState>>;

fn public_routes(simulator: Option<Router>) -> Routes {
    let api = Router::new()
        .route("/v1/sessions", post(sessions::create))
        .route("/v1/orders", post(orders::create))
        .route("/v1/orders/{out_trade_no}", get(orders::show))
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(middleware::from_fn(|request, next| {
            oversized::refuse_oversized(JSON_BODY_LIMIT, request, next)
        }))
        // The notify reads its own body, with its own limit, and answers in XML.
        .route(
            "/v1/wechat/notify",
            post(notify::receive).layer(DefaultBodyLimit::disable()),
        )
        .route("/openapi.json", get(openapi::public_document))
        .route(
            "/v1/wechat/refund-notify",
            post(refund_notify::receive).layer(DefaultBodyLimit::disable()),
        )
        .merge(health_routes());
    match simulator {
        Some(sim) => api.nest_service("/simulator", sim),
        None => api,
    }
}

fn health_routes() -> Routes {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
}

fn operator_routes() -> Routes {
    Router::new()
        .route("/v1/admin/orders", post(admin::create_order))
        .route("/v1/admin/orders/{out_trade_no}", get(admin::order_history))
        .route(
            "/v1/admin/orders/{out_trade_no}/refunds",
            post(refunds::create).get(refunds::list),
        )
        .route("/v1/admin/refunds/{out_refund_no}", get(refunds::show))
        .route("/v1/admin/bills", get(bills::list))
        .route("/v1/admin/bills/{date}", get(bills::show))
        .route("/v1/admin/bills/{date}/reconcile", post(bills::reconcile))
        .route("/v1/admin/queues", get(queues::list_queues))
        .route("/v1/admin/queues/{queue}/jobs", get(queues::list_jobs))
        .route("/v1/admin/jobs/{id}/retry", post(queues::retry_job))
        .route("/v1/admin/events", get(events::list))
        .route("/v1/admin/events/{id}/redeliver", post(events::redeliver))
        .route("/v1/admin/openapi.json", get(openapi::full_document))
        .merge(console::routes())
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(middleware::from_fn(|request, next| {
            oversized::refuse_oversized(JSON_BODY_LIMIT, request, next)
        }))
        .route("/metrics", get(health::metrics))
}

/// The contract's answers for unknown paths and methods, shutdown, load shedding (each
/// listener's router sheds on its own: a flood of the public port leaves the operator's room)
/// and the request metrics.
fn finish(routes: Routes, state: Arc<HttpState>) -> Router {
    let in_flight = shed::InFlight::new(state.services.config.edge.max_in_flight);
    routes
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(
            Edge {
                state: state.clone(),
                in_flight,
            },
            edge,
        ))
        .with_state(state)
}

/// What [`edge`] needs: the process's state (is it shutting down?) and this router's budget of
/// requests in flight.
#[derive(Clone)]
struct Edge {
    state: Arc<HttpState>,
    in_flight: shed::InFlight,
}

/// Every request, outermost first: its metric, load shedding, then the answers of a process
/// that is shutting down. One middleware rather than three: each middleware's future is a
/// separate allocation held for the whole request — a long-poll's 30 s included — and a
/// thousand of them add up (BENCHMARKS.md, "Memory, 2026-12-01").
async fn edge(State(edge): State<Edge>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().to_string();
    let response = match shed::admit(&edge.in_flight, &request) {
        Ok(_permit) => shutting_down(&edge.state, request, next).await,
        Err(shed) => shed.into_response(),
    };
    metrics::histogram!(
        "minipay_http_request_duration_seconds",
        "method" => method,
        "route" => route,
        "status" => response.status().as_u16().to_string(),
    )
    .record(started.elapsed().as_secs_f64());
    response
}

/// Once shutdown starts, new requests get 503 and every response says `Connection: close`,
/// so clients stop reusing connections before the listener closes. Health checks still
/// answer (`/readyz` says not ready).
async fn shutting_down(state: &HttpState, request: Request, next: Next) -> Response {
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
