//! The accept loop of a listener: HTTP/1 connections with a header-read timeout (which is also
//! the idle keep-alive limit), a header size cap, and a cap on open connections. Over the cap a
//! connection gets a short `503` and is closed at once, so an idle or slow flood cannot use up
//! the process's file descriptors. Accept errors (out of file descriptors) pause the loop
//! briefly instead of spinning.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::Edge;

/// hyper refuses a read buffer smaller than this.
const MIN_BUF: usize = 8 * 1024;
/// How long the loop pauses after a failed accept (typically: no file descriptor left).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Refusals and accept errors are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// What a connection over the cap is told before it is closed.
const OVER_CAP: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 83\r\n\r\n\
{\"error\":{\"code\":\"OVERLOADED\",\"message\":\"too many connections; retry in a moment\"}}";

/// Serves `router` on `listener` until `close`, then stops accepting, lets open connections
/// finish their request in flight (idle ones close at once) and returns when all are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Edge,
    close: CancellationToken,
) -> std::io::Result<()> {
    let cap = u32::try_from(limits.max_connections)
        .unwrap_or(u32::MAX)
        .min(Semaphore::MAX_PERMITS as u32);
    let open = Arc::new(Semaphore::new(cap as usize));
    let builder = builder(&limits);
    let mut quiet = Quiet::default();
    loop {
        let (stream, peer) = tokio::select! {
            () = close.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    if quiet.may_log() {
                        tracing::warn!(error = %e, "cannot accept connections (file descriptors used up?); pausing");
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            metrics::counter!("minipay_http_connections_refused_total").increment(1);
            if quiet.may_log() {
                tracing::warn!(
                    max_connections = cap,
                    "connection cap reached; refusing connections"
                );
            }
            refuse(stream);
            continue;
        };
        spawn_connection(&builder, stream, peer, router.clone(), permit, &close);
    }
    drop(listener);
    // Every connection holds a permit until it closes.
    let _all_closed = open.acquire_many(cap).await;
    Ok(())
}

fn builder(limits: &Edge) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(MIN_BUF));
    builder
}

fn spawn_connection(
    builder: &http1::Builder,
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    permit: OwnedSemaphorePermit,
    close: &CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        tower::ServiceExt::oneshot(router.clone(), request)
    });
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let close = close.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let mut connection = std::pin::pin!(connection);
        let ended = tokio::select! {
            ended = connection.as_mut() => ended,
            () = close.cancelled() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = ended {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    });
}

/// Tells a connection over the cap to come back later, without waiting on it.
fn refuse(stream: TcpStream) {
    let _ = stream.try_write(OVER_CAP);
}

/// Rate limit of the loop's own warnings.
#[derive(Default)]
struct Quiet {
    last: Option<Instant>,
}

impl Quiet {
    fn may_log(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < LOG_EVERY)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_over_cap_answer_is_well_formed() {
        let text = std::str::from_utf8(super::OVER_CAP).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        assert_eq!(json["error"]["code"], "OVERLOADED");
    }
}
