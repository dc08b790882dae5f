//! A JSON body announced larger than the endpoint takes is refused before the handler runs:
//! `413` with `Connection: close`, after reading (and dropping) what the client still sends.
//! Closing a connection with unread bytes in it makes the kernel reset it, and the reset can
//! destroy the `413` before the client reads it; reading the body first lets the client finish
//! sending and then read the answer. Bodies past [`DRAIN_CAP`] or [`DRAIN_TIME`] are cut off.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::http::header::{CONNECTION, CONTENT_LENGTH};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use super::error::ApiError;

/// Bytes of a refused body read before the connection is closed anyway.
const DRAIN_CAP: usize = 1024 * 1024;
/// How long a refused body is read before the connection is closed anyway.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// The middleware for endpoints whose bodies are at most `limit` bytes.
pub async fn refuse_oversized(limit: usize, request: Request, next: Next) -> Response {
    let announced = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_none_or(|n| n <= limit as u64) {
        return next.run(request).await;
    }
    drain(request.into_body()).await;
    let mut response = ApiError::PayloadTooLarge.into_response();
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

async fn drain(body: Body) {
    let mut stream = body.into_data_stream();
    let mut read = 0usize;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(chunk)) = stream.next().await {
            read += chunk.len();
            if read > DRAIN_CAP {
                break;
            }
        }
    })
    .await;
}
