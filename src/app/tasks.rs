//! The long-running parts of a process, started and drained: the HTTP server, the embedded
//! simulator, the workers and the reconciler.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::SimulatorPart;
use crate::config::Edge;
use crate::http::{HttpState, listener};
use crate::services::Services;
use crate::store::InsertSignal;

/// A running server.
pub(super) type Served = JoinHandle<std::io::Result<()>>;
/// The running workers and reconciler.
pub(super) type Workers = (
    JoinHandle<Result<(), apalis::prelude::MonitorError>>,
    JoinHandle<()>,
);

/// Serves the API on `listener` and, with `MINIPAY_ADMIN_LISTEN`, the operator endpoints on
/// `admin` (otherwise on `listener` too); both close when `close` fires.
pub(super) fn serve_http(
    listener: TcpListener,
    admin: Option<TcpListener>,
    state: Arc<HttpState>,
    simulator: Option<axum::Router>,
    close: CancellationToken,
) -> Served {
    let services = &state.services;
    services
        .waiters
        .spawn_listener(&services.store, services.stopping.clone());
    services
        .write_health
        .spawn_probe(services.store.clone(), services.stopping.clone());
    crate::metrics::spawn_event_gauges(
        services.store.clone(),
        services.clock.clone(),
        services.stopping.clone(),
    );
    state.limits.spawn_sweeper(services.stopping.clone());
    state.snapshot.spawn(
        services.clone(),
        state.worker_node.clone(),
        services.stopping.clone(),
    );
    let limits = services.config.edge;
    let (public, operator) = match admin {
        None => (crate::http::router(state, simulator), None),
        Some(admin) => (
            crate::http::public_router(state.clone(), simulator),
            Some(tokio::spawn(listener::serve(
                admin,
                crate::http::operator_router(state),
                limits,
                close.clone(),
            ))),
        ),
    };
    let public = tokio::spawn(listener::serve(listener, public, limits, close));
    tokio::spawn(async move {
        let operator = match operator {
            Some(server) => server
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e))),
            None => Ok(()),
        };
        public
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))?;
        operator
    })
}

/// The embedded simulator's own loopback listener, with the default limits.
pub(super) fn serve_simulator(part: SimulatorPart, stop: &CancellationToken) -> Served {
    let router = part.simulator.router();
    let (simulator, tls_listener, tls_stop) = (part.simulator, part.tls_listener, stop.clone());
    tokio::spawn(async move {
        tokio::select! {
            served = simulator.serve_tls(tls_listener) => served,
            () = tls_stop.cancelled() => Ok(()),
        }
    });
    tokio::spawn(listener::serve(
        part.listener,
        router,
        Edge::default(),
        stop.clone(),
    ))
}

/// The workers and the reconciler, until the services' stop signal.
pub(super) fn start_workers(
    services: &Arc<Services>,
    signal: InsertSignal,
    node: String,
) -> Workers {
    tracing::info!(%node, "starting workers");
    let stop = services.stopping.clone();
    let workers = tokio::spawn(crate::worker::run(
        services.clone(),
        signal,
        node,
        stop.clone(),
    ));
    let reconciler = tokio::spawn(crate::worker::reconciler::run(services.clone(), stop));
    (workers, reconciler)
}

/// Waits for in-flight requests and jobs, up to the deadline.
pub(super) async fn drain(server: Option<Served>, workers: Option<Workers>, deadline: Duration) {
    let drained = async {
        if let Some(server) = server {
            report_end("HTTP server", server.await);
        }
        if let Some((workers, reconciler)) = workers {
            report_end("workers", workers.await);
            let _ = reconciler.await;
        }
    };
    if tokio::time::timeout(deadline + Duration::from_secs(1), drained)
        .await
        .is_err()
    {
        tracing::warn!("shutdown deadline passed with work still in flight");
    }
}

/// Logs how a part of the service ended, if not cleanly.
fn report_end<E: std::fmt::Display>(
    part: &str,
    ended: Result<Result<(), E>, tokio::task::JoinError>,
) {
    match ended {
        Ok(Ok(())) => tracing::debug!(part, "drained"),
        Ok(Err(e)) => tracing::error!(part, error = %e, "stopped with an error"),
        Err(e) => tracing::error!(part, error = %e, "task failed"),
    }
}
