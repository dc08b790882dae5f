//! `POST /v1/wechat/notify`: WeChat's payment result. Verified, recorded with its status-update
//! job, and only then answered SUCCESS; anything unverifiable is answered FAIL and changes
//! nothing. Refused notifies are recorded too — in batches, off the request path, so a flood
//! of forgeries costs no database write per request.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::app::Services;
use crate::store::{NewNotify, RecordedNotify, Store};
use crate::wechat::Fields;
use crate::wechat::reply::{Payment, check_signed_by};
use crate::wechat::xml::{self, DEFAULT_BODY_LIMIT, to_xml};

/// The exact acknowledgement WeChat expects (docs/wechat-pay-v2.md §6.3).
pub const SUCCESS_REPLY: &str = "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>";

/// Raw bodies are stored up to this many bytes (an oversized forgery is not kept whole).
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

pub async fn receive(State(services): State<Arc<Services>>, body: Body) -> Response {
    let received_at = services.clock.unix_ms();
    let raw = match to_bytes(body, DEFAULT_BODY_LIMIT).await {
        Ok(raw) => raw,
        Err(_) => {
            let refusal = refuse("too_large", format!("body over {DEFAULT_BODY_LIMIT} bytes"));
            return refused(&services, received_at, b"", None, refusal);
        }
    };
    let fields = match xml::parse(&raw, DEFAULT_BODY_LIMIT) {
        Ok(fields) => fields,
        Err(e) => {
            return refused(
                &services,
                received_at,
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
    handle(&services, received_at, &raw, &fields, out_trade_no)
        .instrument(span)
        .await
}

async fn handle(
    services: &Services,
    received_at: i64,
    raw: &[u8],
    fields: &Fields,
    out_trade_no: Option<String>,
) -> Response {
    match verify(services, fields).await {
        Ok(Verified::Payment(payment)) => {
            let notify = NewNotify {
                received_at,
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
            tracing::warn!(result_code = %result, "verified notify without a successful payment");
            services.refused.record(NewNotify {
                received_at,
                verdict: "not_paid".into(),
                detail: format!("result_code {result}"),
                out_trade_no,
                payment: None,
                raw: lossy(raw),
            });
            count("not_paid");
            reply(SUCCESS_REPLY.to_owned())
        }
        Err(refusal) => refused(services, received_at, raw, out_trade_no, refusal),
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
    received_at: i64,
    raw: &[u8],
    out_trade_no: Option<String>,
    refusal: Refusal,
) -> Response {
    tracing::warn!(
        out_trade_no = out_trade_no.as_deref().unwrap_or("-"),
        verdict = refusal.verdict,
        detail = %refusal.detail,
        "notify refused"
    );
    count(refusal.verdict);
    let reason = match refusal.verdict {
        "store_error" => "temporarily unavailable".to_owned(),
        verdict => verdict.to_owned(),
    };
    services.refused.record(NewNotify {
        received_at,
        verdict: refusal.verdict.into(),
        detail: refusal.detail,
        out_trade_no,
        payment: None,
        raw: lossy(raw),
    });
    fail(&reason)
}

fn count(verdict: &str) {
    metrics::counter!("minipay_notifies_total", "verdict" => verdict.to_owned()).increment(1);
}

fn lossy(raw: &[u8]) -> String {
    String::from_utf8_lossy(&raw[..raw.len().min(RAW_KEPT)]).into_owned()
}

/// Records refused notifies in the background, many per transaction. Bounded: when a flood
/// outruns the database, the overflow is counted (`minipay_notifies_unrecorded_total`) and
/// logged, never queued without limit.
#[derive(Clone)]
pub struct RefusedNotifies {
    tx: mpsc::Sender<NewNotify>,
}

const BACKLOG: usize = 10_000;
const BATCH: usize = 500;

impl RefusedNotifies {
    /// Starts the writer. When `stop` fires it stops taking notifies, writes what is queued,
    /// and ends.
    pub fn start(
        store: Store,
        stop: CancellationToken,
    ) -> (RefusedNotifies, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<NewNotify>(BACKLOG);
        let writer = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            loop {
                let received = tokio::select! {
                    n = rx.recv_many(&mut batch, BATCH) => n,
                    () = stop.cancelled() => {
                        rx.close();
                        rx.recv_many(&mut batch, BATCH).await
                    }
                };
                if received == 0 {
                    return;
                }
                write(&store, &batch).await;
                batch.clear();
            }
        });
        (RefusedNotifies { tx }, writer)
    }

    pub fn record(&self, notify: NewNotify) {
        if self.tx.try_send(notify).is_err() {
            metrics::counter!("minipay_notifies_unrecorded_total").increment(1);
        }
    }
}

async fn write(store: &Store, batch: &[NewNotify]) {
    for attempt in 1..=5u64 {
        match store.record_refused_notifies(batch).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, count = batch.len(), attempt, "could not record refused notifies");
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
        }
    }
    metrics::counter!("minipay_notifies_unrecorded_total").increment(batch.len() as u64);
}
