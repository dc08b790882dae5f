//! `POST /v1/wechat/refund-notify`: WeChat's refund result (XML in, XML out). The body is
//! read with the notify limit; the domain opens, matches and applies it before the answer.
//! A refund notify posted to the payment notify URL comes here too (`notify.rs`).

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use minipay_jobs::NotifyAck;

use super::HttpState;
use crate::domain;
use crate::services::Services;
use crate::wechat::NotifyReply;

/// WeChat's refund result notify (XML; `req_info` encrypted with the API key).
#[utoipa::path(post, path = "/v1/wechat/refund-notify", operation_id = "receive_refund_notify", tag = "wechat",
    request_body(content = String, content_type = "text/xml"),
    responses((status = 200, content_type = "text/xml", body = String,
        description = "<xml><return_code>SUCCESS</return_code>...</xml>, or FAIL with a reason (WeChat retries)")))]
pub async fn receive(State(state): State<Arc<HttpState>>, body: Body) -> Response {
    let services = &state.services;
    let limit = services.gateway.notify_body_limit();
    match to_bytes(body, limit).await {
        Ok(raw) => handle(services, &raw).await,
        Err(_) => {
            tracing::warn!(limit, "refund notify refused: body too large");
            metrics::counter!("minipay_refund_notifies_total", "verdict" => "too_large")
                .increment(1);
            answer(services.gateway.notify_reply(&NotifyAck::Fail("too large")))
        }
    }
}

/// Applies a refund notify body, whichever URL it came to, and answers it.
pub async fn handle(services: &Services, raw: &[u8]) -> Response {
    let ack = domain::receive_refund_notify(services, raw).await;
    answer(services.gateway.notify_reply(&ack))
}

/// A notify's answer (payment or refund) as an HTTP response.
pub(super) fn answer(reply: NotifyReply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    (status, [(CONTENT_TYPE, reply.content_type)], reply.body).into_response()
}
