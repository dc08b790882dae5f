//! The public edge under slow, silent, oversized and too many clients: connections that do not
//! send a request in time are closed, headers are capped, connections and requests in flight
//! are capped (at the connection cap an idle connection makes room; when none is idle, and over
//! the requests-in-flight cap, the rest are refused at once, `503` `OVERLOADED`), and an
//! oversized body is always answered `413` readably. Pure HTTP behaviour: SQLite only.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Backend, TestApp, eventually, http};

/// Generous bound for "closed by the server": far above the 1 s timeouts used here, far below
/// forever (the old server kept such connections open indefinitely).
const CLOSED_WITHIN: Duration = Duration::from_secs(15);

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the server closes the connection (EOF or reset); returns what came, or `None`
/// if it was still open after [`CLOSED_WITHIN`].
async fn read_until_closed(stream: &mut TcpStream) -> Option<String> {
    let mut seen = Vec::new();
    let closed = tokio::time::timeout(CLOSED_WITHIN, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    closed
        .is_ok()
        .then(|| String::from_utf8_lossy(&seen).into_owned())
}

/// Reads one response (headers and a `content-length` body) off a kept-alive connection.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before a whole response");
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
    }
}

async fn spawn(tweak: impl FnOnce(&mut minipay::config::Settings)) -> TestApp {
    TestApp::spawn_with(Backend::Sqlite, minipay::app::Role::All, tweak)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_slowloris_connection_is_closed_after_the_header_timeout() {
    let app = spawn(|s| s.edge.header_timeout_secs = 1).await;
    let mut slow = connect(&app).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: minipay\r\nX-Slow: a")
        .await
        .unwrap();
    let seen = read_until_closed(&mut slow).await;
    assert!(
        seen.is_some(),
        "a half-sent request kept its connection open"
    );
    // Everyone else is still served.
    let (status, _) = app.get_json("/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let app = spawn(|s| s.edge.header_timeout_secs = 1).await;
    let mut idle = connect(&app).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: minipay\r\n\r\n")
        .await
        .unwrap();
    let first = read_response(&mut idle).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(
        !first.to_ascii_lowercase().contains("connection: close"),
        "{first}"
    );
    // Then it sends nothing more.
    let seen = read_until_closed(&mut idle).await;
    assert_eq!(seen.as_deref(), Some(""), "the idle connection stayed open");
    app.stop().await;
}

#[tokio::test]
async fn headers_over_the_cap_get_431_and_endless_headers_are_cut_off() {
    let app = spawn(|s| s.edge.max_header_bytes = 4096).await;
    // A complete request whose headers are too large: 431.
    let mut big = connect(&app).await;
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: minipay\r\nX-Big: {}\r\n\r\n",
        "a".repeat(6000)
    );
    big.write_all(request.as_bytes()).await.unwrap();
    let seen = read_until_closed(&mut big).await.expect("still open");
    assert!(seen.starts_with("HTTP/1.1 431"), "{seen}");

    // Headers that never end (360 KB and counting, as in the attack): the server stops reading
    // at the cap and closes, instead of buffering them.
    let mut endless = connect(&app).await;
    let mut sent = 0;
    let chunk = format!(
        "GET /healthz HTTP/1.1\r\nHost: minipay\r\nX-Endless: {}",
        "b".repeat(8 * 1024)
    );
    while sent < 360 * 1024 {
        if endless.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
        sent += chunk.len();
    }
    let closed = read_until_closed(&mut endless).await;
    assert!(closed.is_some(), "endless headers kept the connection open");
    let (status, _) = app.get_json("/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

/// Whether the server still holds `stream` open (nothing to read for a moment).
async fn still_open(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf))
        .await
        .is_err()
}

#[tokio::test]
async fn at_the_cap_the_oldest_idle_connection_makes_room() {
    let app = spawn(|s| {
        s.edge.max_connections = 3;
        s.edge.header_timeout_secs = 60;
    })
    .await;
    // The oldest has been served once and is idle; two newer ones never sent anything.
    let mut served = connect(&app).await;
    served
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: minipay\r\n\r\n")
        .await
        .unwrap();
    assert!(read_response(&mut served).await.starts_with("HTTP/1.1 200"));
    let mut silent = connect(&app).await;
    let mut newest = connect(&app).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    // A new client is served: a connection that never sent a request made room for it.
    let client = http();
    let answer = client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert!(
        read_until_closed(&mut silent).await.is_some(),
        "the oldest silent connection was closed"
    );
    assert!(still_open(&mut newest).await, "only one was closed");
    assert!(
        still_open(&mut served).await,
        "one that sent a request goes after the silent ones"
    );
    let metrics = app.http.get(format!("{}/metrics", app.base)).send().await;
    // (the scrape itself needs room: another silent one is closed for it)
    assert!(
        metrics
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("minipay_http_connections_evicted_total")
    );
    app.stop().await;
}

#[tokio::test]
async fn when_every_connection_is_serving_new_ones_are_refused_until_one_is_free() {
    let app = spawn(|s| {
        s.edge.max_connections = 3;
        s.edge.header_timeout_secs = 60;
    })
    .await;
    // Three requests in flight, each a notify whose body is still coming.
    let mut busy = Vec::new();
    for _ in 0..3 {
        let mut c = connect(&app).await;
        c.write_all(b"POST /v1/wechat/notify HTTP/1.1\r\nHost: minipay\r\nContent-Type: text/xml\r\nContent-Length: 1000\r\n\r\n<xml>")
            .await
            .unwrap();
        busy.push(c);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A fourth is told to come back later and closed at once, without being served.
    let mut fourth = connect(&app).await;
    let _ = fourth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: minipay\r\n\r\n")
        .await;
    let seen = read_until_closed(&mut fourth)
        .await
        .expect("the fourth connection was kept");
    assert!(!seen.contains("200 OK"), "served over the cap: {seen}");
    if !seen.is_empty() {
        assert!(seen.starts_with("HTTP/1.1 503"), "{seen}");
        assert!(seen.contains("OVERLOADED"), "{seen}");
    }
    for c in &mut busy {
        assert!(
            still_open(c).await,
            "a request being served is never cut off for room"
        );
    }

    // Once they leave, everyone is served again.
    drop(busy);
    eventually("a new client is served after the others left", || async {
        let client = http();
        matches!(client.get(format!("{}/healthz", app.base)).send().await, Ok(r) if r.status() == StatusCode::OK)
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn requests_over_max_in_flight_are_shed_with_503_overloaded() {
    let app = spawn(|s| s.edge.max_in_flight = 1).await;
    // Ready first (the workers' first heartbeat), so `/readyz` below answers 200 unless shed.
    eventually("the service is ready", || async {
        app.get_json("/readyz", None).await.0 == StatusCode::OK
    })
    .await;
    // One request in flight that takes its time: a notify whose body is still coming.
    let mut slow = connect(&app).await;
    slow.write_all(b"POST /v1/wechat/notify HTTP/1.1\r\nHost: minipay\r\nContent-Type: text/xml\r\nContent-Length: 1000\r\n\r\n<xml>")
        .await
        .unwrap();
    let order = format!("{}/v1/orders/MPNOSUCHORDER", app.base);
    let shed = app.http.clone();
    eventually("a second request is shed", || {
        let (shed, order) = (shed.clone(), order.clone());
        async move {
            shed.get(&order).send().await.unwrap().status() == StatusCode::SERVICE_UNAVAILABLE
        }
    })
    .await;
    let response = app.http.get(&order).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "OVERLOADED", "{body}");
    // Health checks and long-polls are not shed (the long-poll gets its usual 401 here).
    let (status, body) = app.get_json("/healthz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.get_json("/readyz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.get_json("/v1/orders/MPNOSUCHORDER?wait=1", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("SESSION_REQUIRED"))
    );

    // The slow request ends: nothing is shed any more.
    drop(slow);
    eventually("requests are served again", || {
        let (shed, order) = (shed.clone(), order.clone());
        async move { shed.get(&order).send().await.unwrap().status() == StatusCode::UNAUTHORIZED }
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_too_large_body_on_a_keep_alive_connection_is_always_answered_413() {
    let app = spawn(|_| {}).await;
    let token = app.login("olga#1").await;
    let huge = format!(
        "{{\"sku\": \"{}\", \"quantity\": 1}}",
        "x".repeat(512 * 1024)
    );
    for round in 0..50 {
        // The client keeps its connection alive between requests, as a mini-program does.
        let response = app
            .http
            .post(format!("{}/v1/orders", app.base))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(huge.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("round {round}: no answer: {e:?}"));
        assert_eq!(
            response.status(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "round {round}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "PAYLOAD_TOO_LARGE", "round {round}");
        let (status, _) = app.get_json("/healthz", None).await;
        assert_eq!(status, StatusCode::OK, "round {round}");
    }
    app.stop().await;
}
