//! What the HTTP handlers hold: the shared [`Services`], plus the state only HTTP needs — the
//! login API, the session_key sealer, the session cache, the refused-notify writer, the metrics
//! renderer, the rate limits, and this process's worker name for `/readyz`.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use super::health::MetricsText;
use super::limits::RateLimits;
use super::refused_notifies::RefusedNotifies;
use super::session_cache::SessionCache;
use super::snapshot::Snapshot;
use crate::sealed::Sealer;
use crate::services::Services;
use crate::wechat::LoginClient;

/// The state of every handler (shared as `Arc<HttpState>`).
pub struct HttpState {
    pub services: Arc<Services>,
    /// `jscode2session`, for `POST /v1/sessions`.
    pub login: LoginClient,
    /// Seals each session's `session_key` before it is stored.
    pub sealer: Sealer,
    /// Sessions already looked up.
    pub sessions: SessionCache,
    /// Refused notifies, written in batches off the request path.
    pub refused: RefusedNotifies,
    pub metrics: PrometheusHandle,
    /// The last `/metrics` answer, served again for a moment.
    pub metrics_text: MetricsText,
    /// The gauges and readiness `/metrics` and `/readyz` answer from.
    pub snapshot: Snapshot,
    /// Logins, orders and reads per client or user; wrong admin tokens per client.
    pub limits: Arc<RateLimits>,
    /// This process's worker name prefix, when it runs workers (for `/readyz`).
    pub worker_node: Option<String>,
    /// Turns to read an order for `GET /v1/orders/{n}`, as many as the database pool has
    /// connections: when a thousand long-polls wake at once, those waiting for a connection
    /// hold a turn's few bytes instead of a started query's kilobytes (BENCHMARKS.md, "Memory").
    pub order_reads: tokio::sync::Semaphore,
}
