//! Receiving a payment notify once the provider's verification is done: the payment matched
//! to its order and recorded with its status-update job *before* the provider hears SUCCESS
//! (it stops re-sending then); everything else answered FAIL (or, for a verified
//! non-payment, SUCCESS) and handed back to be recorded, summarised, with its verdict. Text
//! from the body reaches the logs escaped (`?`), never verbatim.

use std::net::IpAddr;

use minipay_jobs::{CheckedNotify, NotifyAck, NotifyCheck, NotifyVerdict, Payment, Refusal};

use crate::services::Services;
use crate::store::{RecordedNotify, VerifiedNotify};

/// Verified bodies are stored up to this many bytes (WeChat's are far smaller).
const RAW_KEPT: usize = 8 * 1024;

/// Who sent a notify, and when.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// Unix ms.
    pub at: i64,
    pub client: IpAddr,
}

/// What receiving a notify came to: the answer owed to the provider, and, for a notify that
/// is not a payment to apply, what to keep of it (the caller records it off the request path).
#[derive(Debug)]
pub struct Received {
    pub ack: NotifyAck,
    pub refused: Option<Refused>,
}

/// A notify refused, or verified but not paid.
#[derive(Debug)]
pub struct Refused {
    pub verdict: NotifyVerdict,
    pub detail: String,
    pub out_trade_no: Option<String>,
}

/// Matches a verified notify to its order and records it, or refuses it.
pub async fn receive_notify(
    services: &Services,
    checked: CheckedNotify,
    arrival: Arrival,
    raw: &[u8],
) -> Received {
    let CheckedNotify {
        out_trade_no,
        check,
    } = checked;
    match check {
        NotifyCheck::Paid(payment) => match against_order(services, &payment).await {
            Ok(()) => record(services, payment, arrival.at, raw).await,
            Err(refusal) => refuse(out_trade_no, refusal, arrival.client),
        },
        NotifyCheck::NotPaid { result } => {
            // Signed by WeChat, but not a successful payment: nothing to apply, stop re-sends.
            tracing::warn!(result_code = ?result, "verified notify without a successful payment");
            count(NotifyVerdict::NotPaid);
            Received {
                ack: NotifyAck::Success,
                refused: Some(Refused {
                    verdict: NotifyVerdict::NotPaid,
                    detail: format!("result_code {result}"),
                    out_trade_no,
                }),
            }
        }
        NotifyCheck::Refused(refusal) => refuse(out_trade_no, refusal, arrival.client),
    }
}

/// The order must exist and cost what was paid.
async fn against_order(services: &Services, payment: &Payment) -> Result<(), Refusal> {
    let order = services
        .store
        .order(&payment.out_trade_no)
        .await
        .map_err(|e| Refusal::new(NotifyVerdict::StoreError, e.to_string()))?
        .ok_or_else(|| Refusal::new(NotifyVerdict::UnknownOrder, "no such out_trade_no"))?;
    // Compare total_fee, not cash_fee: coupons lower the cash part (docs/wechat-pay-v2.md §6.2).
    if payment.total_fee != order.total_fee {
        return Err(Refusal::new(
            NotifyVerdict::AmountMismatch,
            format!(
                "total_fee {} but the order is {} fen",
                payment.total_fee, order.total_fee
            ),
        ));
    }
    Ok(())
}

/// Records before answering: once WeChat hears SUCCESS it stops re-sending.
async fn record(services: &Services, payment: Payment, received_at: i64, raw: &[u8]) -> Received {
    let notify = VerifiedNotify {
        received_at,
        payment,
        raw: lossy(raw),
    };
    let ack = match services.store.record_verified_notify(&notify).await {
        Ok(RecordedNotify::New(id)) => {
            tracing::info!(notify_id = id, "payment notify recorded");
            count(NotifyVerdict::Accepted);
            NotifyAck::Success
        }
        Ok(RecordedNotify::Duplicate) => {
            tracing::debug!("payment notify re-sent; already recorded");
            count(NotifyVerdict::Duplicate);
            NotifyAck::Success
        }
        Err(e) => {
            tracing::error!(error = %e, "could not record a verified notify; WeChat will re-send");
            count(NotifyVerdict::StoreError);
            NotifyAck::Fail(NotifyVerdict::StoreError.fail_reason())
        }
    };
    Received { ack, refused: None }
}

fn refuse(out_trade_no: Option<String>, refusal: Refusal, client: IpAddr) -> Received {
    // The detail can quote the body (an entity name, an element name): Debug-escaped, so a
    // crafted body cannot start a line of its own or carry terminal escapes into the log.
    tracing::warn!(
        out_trade_no = out_trade_no.as_deref().unwrap_or("-"),
        verdict = %refusal.verdict,
        detail = ?refusal.detail,
        client = %client,
        "notify refused"
    );
    count(refusal.verdict);
    Received {
        ack: NotifyAck::Fail(refusal.verdict.fail_reason()),
        refused: Some(Refused {
            verdict: refusal.verdict,
            detail: refusal.detail,
            out_trade_no,
        }),
    }
}

fn count(verdict: NotifyVerdict) {
    metrics::counter!("minipay_notifies_total", "verdict" => verdict.as_str()).increment(1);
}

fn lossy(raw: &[u8]) -> String {
    String::from_utf8_lossy(&raw[..raw.len().min(RAW_KEPT)]).into_owned()
}
