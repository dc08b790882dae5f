//! The accept loop of a listener: HTTP/1 connections with a header-read timeout (which is also
//! the idle keep-alive limit), a header size cap, and a cap on open connections. At the cap, the
//! oldest connection that is not serving a request (one that never sent one first) is closed to
//! make room, so a flood of idle connections cannot lock everyone else out; when every
//! connection is serving a request, a new one gets a short `503` and is closed at once. Either
//! way a flood cannot use up the process's file descriptors. Accept errors (out of file
//! descriptors) pause the loop briefly instead of spinning.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
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
/// Closed connections the line may hold beyond the open ones before it is swept.
const SWEEP_SLACK: usize = 64;
/// Connections looked at per eviction (the busy ones go to the back of the line).
const EVICTION_SCAN: usize = 64;

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
    let line = Arc::new(Line::default());
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
        // Under the cap a connection takes a free permit; at the cap it takes the permit of the
        // idle connection it evicts, so it is served at once and never waits in a line.
        let permit = match open.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => match line.evict_one() {
                Some(permit) => {
                    metrics::counter!("minipay_http_connections_evicted_total").increment(1);
                    if quiet.may_log() {
                        tracing::warn!(
                            max_connections = cap,
                            "connection cap reached; closing idle connections to make room"
                        );
                    }
                    permit
                }
                None => {
                    metrics::counter!("minipay_http_connections_refused_total").increment(1);
                    if quiet.may_log() {
                        tracing::warn!(
                            max_connections = cap,
                            "connection cap reached and every connection is serving a request; refusing connections"
                        );
                    }
                    refuse(stream);
                    continue;
                }
            },
        };
        let conn = Arc::new(Conn::holding(permit));
        line.join(&conn, cap as usize - open.available_permits());
        spawn_connection(&builder, stream, peer, router.clone(), conn, &close);
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
    conn: Arc<Conn>,
    close: &CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let serving = conn.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut request = detached(request);
        request.extensions_mut().insert(ConnectInfo(peer));
        let busy = Busy::start(&serving);
        let response = tower::ServiceExt::oneshot(router.clone(), request);
        async move {
            let response = response.await;
            drop(busy);
            response
        }
    });
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let close = close.clone();
    tokio::spawn(async move {
        let mut connection = std::pin::pin!(connection);
        let ended = tokio::select! {
            ended = connection.as_mut() => ended,
            () = conn.evicted.cancelled() => {
                tracing::debug!(%peer, "idle connection closed to make room");
                return;
            }
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

/// `request` with its URI and header values copied out of the connection's read buffer. hyper
/// parses them as slices of that buffer, so while a request lives (a long-poll: up to 30 s) its
/// buffer cannot be reused and the connection reads into a second one; copied, the request
/// holds a few hundred bytes instead of two 8 KiB buffers (BENCHMARKS.md, "Memory").
fn detached<B>(request: hyper::Request<B>) -> hyper::Request<B> {
    let (mut parts, body) = request.into_parts();
    if let Ok(uri) = hyper::Uri::try_from(parts.uri.to_string()) {
        parts.uri = uri;
    }
    for value in parts.headers.values_mut() {
        if let Ok(copy) = hyper::header::HeaderValue::from_bytes(value.as_bytes()) {
            let sensitive = value.is_sensitive();
            *value = copy;
            value.set_sensitive(sensitive);
        }
    }
    hyper::Request::from_parts(parts, body)
}

/// One open connection, as eviction sees it. It gives its permit back when its task ends and
/// drops it, unless an eviction handed the permit on first.
struct Conn {
    /// Its place under the cap.
    permit: Mutex<Option<OwnedSemaphorePermit>>,
    /// Requests being served now.
    busy: AtomicUsize,
    /// Whether it ever sent a request.
    served: AtomicBool,
    /// Cancelled to close it.
    evicted: CancellationToken,
}

impl Conn {
    fn holding(permit: OwnedSemaphorePermit) -> Conn {
        Conn {
            permit: Mutex::new(Some(permit)),
            busy: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            evicted: CancellationToken::new(),
        }
    }
}

/// Marks a connection busy while one of its requests is served.
struct Busy(Arc<Conn>);

impl Busy {
    fn start(conn: &Arc<Conn>) -> Busy {
        conn.served.store(true, Ordering::Relaxed);
        conn.busy.fetch_add(1, Ordering::AcqRel);
        Busy(conn.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections, oldest first (closed ones are dropped as they are met).
#[derive(Default)]
struct Line(Mutex<VecDeque<Weak<Conn>>>);

impl Line {
    /// Adds a new connection; `open` are open now. Closed ones are swept out once they are
    /// half the line, so after a flood the line (and what its entries hold) shrinks back.
    fn join(&self, conn: &Arc<Conn>, open: usize) {
        let Ok(mut line) = self.0.lock() else { return };
        if line.len() >= open.saturating_mul(2) + SWEEP_SLACK {
            line.retain(|c| c.strong_count() > 0);
            if line.capacity() > 4 * (line.len() + SWEEP_SLACK) {
                line.shrink_to_fit();
            }
        }
        line.push_back(Arc::downgrade(conn));
    }

    /// Closes the oldest idle connection, preferring one that never sent a request, and hands
    /// over its permit; none if the first connections looked at are all serving requests.
    fn evict_one(&self) -> Option<OwnedSemaphorePermit> {
        let Ok(mut line) = self.0.lock() else {
            return None;
        };
        let mut seen = Vec::new();
        let mut fallback: Option<Arc<Conn>> = None;
        let mut chosen = None;
        while seen.len() < EVICTION_SCAN {
            let Some(weak) = line.pop_front() else { break };
            let Some(conn) = weak.upgrade() else { continue };
            if conn.busy.load(Ordering::Acquire) == 0 {
                if !conn.served.load(Ordering::Relaxed) {
                    chosen = Some(conn);
                    break;
                }
                if fallback.is_none() {
                    fallback = Some(conn.clone());
                    continue;
                }
            }
            seen.push(weak);
        }
        if chosen.is_none() {
            chosen = fallback.take();
        }
        if let Some(fallback) = fallback {
            seen.push(Arc::downgrade(&fallback));
        }
        // The others keep their place at the front, in their order.
        for weak in seen.into_iter().rev() {
            line.push_front(weak);
        }
        let conn = chosen?;
        conn.evicted.cancel();
        conn.permit.lock().ok()?.take()
    }
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
    use axum::body::Bytes;
    use hyper::header::HeaderValue;

    #[test]
    fn a_detached_request_keeps_its_uri_and_headers_but_not_the_read_buffer() {
        // As hyper parses it: the URI and the header values are slices of the read buffer.
        let buffer = Bytes::from(b"/v1/orders/abc?wait=30 Bearer secret".to_vec());
        let mut request = hyper::Request::new(());
        *request.uri_mut() = hyper::Uri::from_maybe_shared(buffer.slice(0..22)).unwrap();
        let mut token = HeaderValue::from_maybe_shared(buffer.slice(23..)).unwrap();
        token.set_sensitive(true);
        request.headers_mut().insert("authorization", token);

        let request = super::detached(request);

        assert_eq!(request.uri(), "/v1/orders/abc?wait=30");
        let token = &request.headers()["authorization"];
        assert_eq!(token, "Bearer secret");
        assert!(
            token.is_sensitive(),
            "a secret header stays out of Debug output"
        );
        assert!(
            buffer.is_unique(),
            "the request still holds the read buffer"
        );
    }

    #[test]
    fn the_over_cap_answer_is_well_formed() {
        let text = std::str::from_utf8(super::OVER_CAP).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        assert_eq!(json["error"]["code"], "OVERLOADED");
    }
}
