//! `POST /v1/wechat/notify`: WeChat's payment result. Bytes and headers in; the gateway says
//! whether they are a verified payment or a refusal; the domain records it (a payment with
//! its status-update job, before the answer); the gateway writes the answer. Refused notifies
//! are recorded summarised and off the request path (`refused_notifies`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;
use minipay_jobs::{CheckedNotify, NotifyCheck, NotifyVerdict, PostedNotify, Refusal};
use tracing::Instrument;

use super::HttpState;
use super::payer_ip::payer_ip;
use super::refund_notify::answer;
use super::refused_notifies::RefusedNotify;
use crate::domain::{self, Arrival};

/// WeChat Pay's payment-result notify (XML, signed). `SUCCESS` only once the notify is verified
/// and durably recorded with its status-update job; otherwise `FAIL` and WeChat retries. A
/// refund notify posted here is recognised by its `req_info`.
#[utoipa::path(post, path = "/v1/wechat/notify", operation_id = "wechat_notify", tag = "wechat",
    request_body(content = String, content_type = "text/xml",
        description = "WeChat Pay v2 notify XML (docs/wechat-pay-v2.md)"),
    responses((status = 200, content_type = "text/xml", body = String,
        description = "<xml><return_code>SUCCESS or FAIL</return_code><return_msg>...</return_msg></xml>")))]
pub async fn receive(
    State(state): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let services = &state.services;
    let arrival = Arrival {
        at: services.clock.unix_ms(),
        client: payer_ip(peer, &headers, &services.config.http.trusted_proxies),
    };
    let limit = services.gateway.notify_body_limit();
    let (raw, checked) = match to_bytes(body, limit).await {
        Ok(raw) => match services.gateway.read_notify(&raw, &headers) {
            PostedNotify::Payment(checked) => (raw, checked),
            // Merchants often give WeChat one URL for payments and refunds.
            PostedNotify::Refund => return super::refund_notify::handle(services, &raw).await,
        },
        Err(_) => {
            let refusal = Refusal::new(NotifyVerdict::TooLarge, format!("body over {limit} bytes"));
            let checked = CheckedNotify {
                out_trade_no: None,
                check: NotifyCheck::Refused(refusal),
            };
            (Bytes::new(), checked)
        }
    };
    let span = tracing::error_span!(
        "notify",
        out_trade_no = checked.out_trade_no.as_deref().unwrap_or("-")
    );
    let received = domain::receive_notify(services, checked, arrival, &raw)
        .instrument(span)
        .await;
    if let Some(r) = received.refused {
        state.refused.record(RefusedNotify::new(
            arrival.at,
            arrival.client,
            r.verdict,
            &r.detail,
            r.out_trade_no.as_deref(),
            &raw,
        ));
    }
    answer(services.gateway.notify_reply(&received.ack))
}
