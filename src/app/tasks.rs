//! The long-running parts of a process, started and drained: the HTTP server, the embedded
//! simulator, the workers and the reconciler.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::SimulatorPart;
use crate::http::HttpState;
use crate::services::Services;
use crate::store::InsertSignal;

/// A running server.
pub(super) type Served = JoinHandle<std::io::Result<()>>;
/// The running workers and reconciler.
pub(super) type Workers = (
    JoinHandle<Result<(), apalis::prelude::MonitorError>>,
    JoinHandle<()>,
);

pub(super) fn serve_http(
    listener: TcpListener,
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
    state.limits.spawn_sweeper(services.stopping.clone());
    let router = crate::http::router(state, simulator);
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { close.cancelled().await })
        .await
    })
}

pub(super) fn serve_simulator(part: SimulatorPart, stop: &CancellationToken) -> Served {
    let (router, stop) = (part.simulator.router(), stop.clone());
    tokio::spawn(async move {
        axum::serve(part.listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    })
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
