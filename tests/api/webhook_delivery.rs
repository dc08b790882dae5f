//! One signed delivery against real HTTP receivers on loopback: what a merchant's endpoint
//! sees, and what each kind of bad endpoint (failing, hanging, redirecting, flooding) costs us.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use minipay::events::delivery::{RESPONSE_EXCERPT_BYTES, USER_AGENT};
use minipay::events::{Deliverer, Envelope, WebhookSecrets, new_event_id};
use minipay_jobs::{AttemptOutcome, EventType};
use serde_json::json;
use tokio::sync::mpsc;

use crate::helpers::{dead_url, serve};

const CURRENT: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const PREVIOUS: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn envelope() -> Envelope {
    Envelope {
        id: new_event_id(),
        kind: EventType::OrderPaid,
        // the store keeps milliseconds, as the envelope does
        created_at: chrono::DateTime::from_timestamp_millis(chrono::Utc::now().timestamp_millis())
            .unwrap(),
        data: json!({"out_trade_no": "MP20261127000001", "status": "paid", "total_fee": 88}),
    }
}

fn deliverer(timeout: Duration) -> Deliverer {
    Deliverer::new(WebhookSecrets::from_setting(CURRENT).unwrap(), timeout).unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// What a receiver got: headers and the raw body.
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

#[tokio::test]
async fn a_2xx_is_a_delivery_each_rotated_secret_verifies() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let receiver = Router::new().route(
        "/hooks",
        post(move |headers: HeaderMap, body: Bytes| async move {
            tx.send(Received { headers, body }).unwrap();
            (StatusCode::OK, "thanks")
        }),
    );
    let url = format!("{}/hooks", serve(receiver).await);
    let both = WebhookSecrets::from_setting(&format!("{CURRENT} {PREVIOUS}")).unwrap();
    let deliverer = Deliverer::new(both, Duration::from_secs(10)).unwrap();
    let event = envelope();
    let timestamp = now();

    let attempt = deliverer.attempt(&url, &event, timestamp).await;

    assert_eq!(attempt.outcome, AttemptOutcome::Delivered { status: 200 });
    assert_eq!(attempt.response_excerpt, "thanks");
    let got = rx.recv().await.unwrap();
    let header = |name: &str| got.headers.get(name).unwrap().to_str().unwrap().to_owned();
    assert_eq!(header("content-type"), "application/json");
    assert_eq!(header("user-agent"), USER_AGENT);
    assert_eq!(header("webhook-id"), event.id.as_str());
    assert_eq!(header("webhook-timestamp"), timestamp.to_string());
    assert_eq!(
        serde_json::from_slice::<Envelope>(&got.body).unwrap(),
        event
    );
    let signatures = header("webhook-signature");
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    // The merchant's side: each secret alone verifies the delivery as received.
    for secret in [CURRENT, PREVIOUS] {
        let receiver = WebhookSecrets::from_setting(secret).unwrap();
        let verdict = receiver.verify(
            &header("webhook-id"),
            &header("webhook-timestamp"),
            &got.body,
            &signatures,
            now(),
        );
        assert_eq!(verdict, Ok(()), "{secret}");
    }
}

#[tokio::test]
async fn a_500_is_a_failure_with_its_status_and_excerpt() {
    let receiver = Router::new().route(
        "/",
        post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "database down") }),
    );
    let url = serve(receiver).await;
    let attempt = deliverer(Duration::from_secs(10))
        .attempt(&url, &envelope(), now())
        .await;
    assert_eq!(attempt.outcome, AttemptOutcome::Refused { status: 500 });
    assert_eq!(attempt.outcome.error().as_deref(), Some("HTTP 500"));
    assert_eq!(attempt.response_excerpt, "database down");
}

#[tokio::test]
async fn a_hanging_receiver_is_a_timeout_within_the_bound() {
    let receiver = Router::new().route(
        "/",
        post(|| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK
        }),
    );
    let url = serve(receiver).await;
    let timeout = Duration::from_millis(500);
    let attempt = deliverer(timeout).attempt(&url, &envelope(), now()).await;
    assert_eq!(
        attempt.outcome,
        AttemptOutcome::NoAnswer {
            error: "no answer within 500ms".into()
        }
    );
    assert!(attempt.duration >= timeout, "{:?}", attempt.duration);
    assert!(
        attempt.duration < Duration::from_secs(5),
        "{:?}",
        attempt.duration
    );
}

#[tokio::test]
async fn a_redirect_is_a_failure_and_its_target_is_never_hit() {
    let target_hits = Arc::new(AtomicUsize::new(0));
    let hits = target_hits.clone();
    let receiver = Router::new()
        .route(
            "/moved/{code}",
            post(
                |axum::extract::Path(code): axum::extract::Path<u16>| async move {
                    let status = StatusCode::from_u16(code).unwrap();
                    (status, [(header::LOCATION, "/target")], "moved")
                },
            ),
        )
        .route(
            "/target",
            any(move || async move {
                hits.fetch_add(1, Ordering::SeqCst);
                StatusCode::OK
            }),
        );
    let base = serve(receiver).await;
    let deliverer = deliverer(Duration::from_secs(10));
    for code in [301, 302, 307, 308] {
        let attempt = deliverer
            .attempt(&format!("{base}/moved/{code}"), &envelope(), now())
            .await;
        assert_eq!(attempt.outcome, AttemptOutcome::Refused { status: code });
    }
    assert_eq!(target_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_huge_answer_is_read_only_up_to_the_cap() {
    let produced = Arc::new(AtomicUsize::new(0));
    let counter = produced.clone();
    let receiver = Router::new().route(
        "/",
        post(move || async move {
            // An endless body: reading it whole would never finish (and never fit).
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let stream = futures::stream::repeat_with(move || {
                counter.fetch_add(chunk.len(), Ordering::SeqCst);
                Ok::<_, std::io::Error>(chunk.clone())
            });
            Response::new(Body::from_stream(stream)).into_response()
        }),
    );
    let url = serve(receiver).await;
    let attempt = deliverer(Duration::from_secs(20))
        .attempt(&url, &envelope(), now())
        .await;
    assert_eq!(attempt.outcome, AttemptOutcome::Delivered { status: 200 });
    assert_eq!(attempt.response_excerpt, "x".repeat(RESPONSE_EXCERPT_BYTES));
    assert!(
        attempt.duration < Duration::from_secs(5),
        "{:?}",
        attempt.duration
    );
    // The connection was closed, not drained: the sender soon stops, after at most what the
    // socket buffers held.
    let mut last = produced.load(Ordering::SeqCst);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = produced.load(Ordering::SeqCst);
        if now == last {
            break;
        }
        last = now;
    }
    assert!(last < 32 * 1024 * 1024, "the receiver sent {last} bytes");
}

#[tokio::test]
async fn a_2xx_whose_body_stalls_is_still_a_delivery_within_the_bound() {
    let receiver = Router::new().route(
        "/",
        post(|| async {
            let first =
                futures::stream::once(async { Ok::<_, std::io::Error>(Bytes::from("accepted")) });
            let stall = futures::stream::pending::<Result<Bytes, std::io::Error>>();
            Response::new(Body::from_stream(futures::StreamExt::chain(first, stall)))
        }),
    );
    let url = serve(receiver).await;
    let attempt = deliverer(Duration::from_millis(500))
        .attempt(&url, &envelope(), now())
        .await;
    assert_eq!(attempt.outcome, AttemptOutcome::Delivered { status: 200 });
    assert_eq!(attempt.response_excerpt, "accepted");
    assert!(
        attempt.duration < Duration::from_secs(5),
        "{:?}",
        attempt.duration
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_no_answer_without_the_url() {
    let url = format!("{}/hooks?token=s3cr3t", dead_url().await);
    let attempt = deliverer(Duration::from_secs(10))
        .attempt(&url, &envelope(), now())
        .await;
    let AttemptOutcome::NoAnswer { error } = &attempt.outcome else {
        panic!("{:?}", attempt.outcome);
    };
    assert!(error.starts_with("could not connect"), "{error}");
    assert!(!error.contains("s3cr3t"), "{error}");
    assert_eq!(attempt.response_excerpt, "");
}
