//! `POST /v1/wechat/notify`: WeChat's payment result. Verified, recorded with its status-update
//! job, and only then answered SUCCESS; anything unverifiable is answered FAIL and changes
//! nothing. Refused notifies are recorded too, summarised and off the request path
//! (`refused_notifies`). Text from the body reaches the logs escaped (`?`), never verbatim.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::payer_ip::payer_ip;
use super::refused_notifies::RefusedNotify;
use crate::app::Services;
use crate::store::{NewNotify, RecordedNotify};
use crate::wechat::Fields;
use crate::wechat::reply::{Payment, check_signed_by};
use crate::wechat::xml::{self, DEFAULT_BODY_LIMIT, to_xml};

/// The exact acknowledgement WeChat expects (docs/wechat-pay-v2.md §6.3).
pub const SUCCESS_REPLY: &str = "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>";

/// Verified bodies are stored up to this many bytes (WeChat's are far smaller).
const RAW_KEPT: usize = 8 * 1024;

fn reply(body: String) -> Response {
    ([(CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response()
}

fn fail(reason: &str) -> Response {
    reply(to_xml([("return_code", "FAIL"), ("return_msg", reason)]))
}

/// Why a notify was refused: the verdict stored with it and the FAIL reason WeChat sees.
struct Refusal {
    verdict: &'static str,
    detail: String,
}

fn refuse(verdict: &'static str, detail: impl Into<String>) -> Refusal {
    Refusal {
        verdict,
        detail: detail.into(),
    }
}

/// Who sent a notify, and when.
#[derive(Clone, Copy)]
struct Received {
    at: i64,
    client: IpAddr,
}

pub async fn receive(
    State(services): State<Arc<Services>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let received = Received {
        at: services.clock.unix_ms(),
        client: payer_ip(peer, &headers, &services.config.trusted_proxies),
    };
    let raw = match to_bytes(body, DEFAULT_BODY_LIMIT).await {
        Ok(raw) => raw,
        Err(_) => {
            let refusal = refuse("too_large", format!("body over {DEFAULT_BODY_LIMIT} bytes"));
            return refused(&services, received, b"", None, refusal);
        }
    };
    let fields = match xml::parse(&raw, DEFAULT_BODY_LIMIT) {
        Ok(fields) => fields,
        Err(e) => {
            return refused(
                &services,
                received,
                &raw,
                None,
                refuse(e.kind(), e.to_string()),
            );
        }
    };
    let out_trade_no = fields.non_empty("out_trade_no").map(str::to_owned);
    let span = tracing::error_span!(
        "notify",
        out_trade_no = out_trade_no.as_deref().unwrap_or("-")
    );
    handle(&services, received, &raw, &fields, out_trade_no)
        .instrument(span)
        .await
}

async fn handle(
    services: &Services,
    received: Received,
    raw: &[u8],
    fields: &Fields,
    out_trade_no: Option<String>,
) -> Response {
    match verify(services, fields).await {
        Ok(Verified::Payment(payment)) => {
            let notify = NewNotify {
                received_at: received.at,
                verdict: "accepted".into(),
                detail: String::new(),
                out_trade_no,
                payment: Some(payment),
                raw: lossy(raw),
            };
            // Record before answering: once WeChat hears SUCCESS it stops re-sending.
            match services.store.record_verified_notify(&notify).await {
                Ok(RecordedNotify::New(id)) => {
                    tracing::info!(notify_id = id, "payment notify recorded");
                    count("accepted");
                    reply(SUCCESS_REPLY.to_owned())
                }
                Ok(RecordedNotify::Duplicate) => {
                    tracing::debug!("payment notify re-sent; already recorded");
                    count("duplicate");
                    reply(SUCCESS_REPLY.to_owned())
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not record a verified notify; WeChat will re-send");
                    count("store_error");
                    fail("temporarily unavailable")
                }
            }
        }
        Ok(Verified::NotAPayment(result)) => {
            // Signed by WeChat, but not a successful payment: nothing to apply, stop re-sends.
            tracing::warn!(result_code = ?result, "verified notify without a successful payment");
            services.refused.record(RefusedNotify::new(
                received.at,
                received.client,
                "not_paid",
                &format!("result_code {result}"),
                out_trade_no.as_deref(),
                raw,
            ));
            count("not_paid");
            reply(SUCCESS_REPLY.to_owned())
        }
        Err(refusal) => refused(services, received, raw, out_trade_no, refusal),
    }
}

enum Verified {
    Payment(Payment),
    NotAPayment(String),
}

async fn verify(services: &Services, fields: &Fields) -> Result<Verified, Refusal> {
    if fields.get("return_code") != Some("SUCCESS") {
        return Err(refuse("return_fail", "return_code is not SUCCESS"));
    }
    check_signed_by(fields, services.pay.merchant()).map_err(|e| match e {
        crate::wechat::reply::Untrusted::Appid | crate::wechat::reply::Untrusted::MchId => {
            refuse("foreign_merchant", e.to_string())
        }
        _ => refuse("bad_signature", e.to_string()),
    })?;
    let result = fields.get("result_code").unwrap_or_default();
    if result != "SUCCESS" {
        return Ok(Verified::NotAPayment(result.to_owned()));
    }
    let payment = Payment::from_fields(fields).map_err(|e| refuse("incomplete", e.to_string()))?;
    if let Some(currency) = fields.non_empty("fee_type")
        && currency != "CNY"
    {
        return Err(refuse("wrong_currency", format!("fee_type {currency}")));
    }
    let order = services
        .store
        .order(&payment.out_trade_no)
        .await
        .map_err(|e| refuse("store_error", e.to_string()))?
        .ok_or_else(|| refuse("unknown_order", "no such out_trade_no"))?;
    // Compare total_fee, not cash_fee: coupons lower the cash part (docs/wechat-pay-v2.md §6.2).
    if payment.total_fee != order.total_fee {
        return Err(refuse(
            "amount_mismatch",
            format!(
                "total_fee {} but the order is {} fen",
                payment.total_fee, order.total_fee
            ),
        ));
    }
    Ok(Verified::Payment(payment))
}

fn refused(
    services: &Services,
    received: Received,
    raw: &[u8],
    out_trade_no: Option<String>,
    refusal: Refusal,
) -> Response {
    // The detail can quote the body (an entity name, an element name): Debug-escaped, so a
    // crafted body cannot start a line of its own or carry terminal escapes into the log.
    tracing::warn!(
        out_trade_no = out_trade_no.as_deref().unwrap_or("-"),
        verdict = refusal.verdict,
        detail = ?refusal.detail,
        client = %received.client,
        "notify refused"
    );
    count(refusal.verdict);
    let reason = match refusal.verdict {
        "store_error" => "temporarily unavailable".to_owned(),
        verdict => verdict.to_owned(),
    };
    services.refused.record(RefusedNotify::new(
        received.at,
        received.client,
        refusal.verdict,
        &refusal.detail,
        out_trade_no.as_deref(),
        raw,
    ));
    fail(&reason)
}

fn count(verdict: &str) {
    metrics::counter!("minipay_notifies_total", "verdict" => verdict.to_owned()).increment(1);
}

fn lossy(raw: &[u8]) -> String {
    String::from_utf8_lossy(&raw[..raw.len().min(RAW_KEPT)]).into_owned()
}
