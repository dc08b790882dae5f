//! Receiving a refund notify. AES-ECB gives secrecy, not integrity, so an opened notify is
//! only a claim: it is believed when it names a refund we know with the same order and
//! amounts, and then applied (the guarded status change is the durable record) before WeChat
//! hears SUCCESS; a re-sent one changes nothing and is answered SUCCESS. A refund made by
//! hand in WeChat's merchant console, for one of our orders, is confirmed by refundquery and
//! recorded as an external refund. Everything else is answered FAIL and changes nothing.

use minipay_jobs::{NotifyAck, RefundNotice, RefundQueryDecision, RefundResult, RefundStatus};
use tracing::Instrument;

use crate::services::Services;
use crate::store::{ConsoleRefund, RefundChange};

/// Opens, matches and applies a refund notify; the answer owed to WeChat.
pub async fn receive_refund_notify(services: &Services, raw: &[u8]) -> NotifyAck {
    let notice = match services.gateway.open_refund_notify(raw) {
        Ok(notice) => notice,
        Err((kind, detail)) => return refuse(kind, &detail),
    };
    let span = tracing::error_span!(
        "refund_notify",
        out_trade_no = ?notice.out_trade_no,
        out_refund_no = ?notice.out_refund_no
    );
    apply(services, notice).instrument(span).await
}

async fn apply(services: &Services, notice: RefundNotice) -> NotifyAck {
    let refund = match services.store.refund(&notice.out_refund_no).await {
        Ok(refund) => refund,
        Err(e) => return unavailable(&e.to_string()),
    };
    let Some(refund) = refund else {
        if notice.from_console {
            return console_refund(services, notice).await;
        }
        return refuse("unknown_refund", "no refund with this out_refund_no");
    };
    if refund.out_trade_no != notice.out_trade_no
        || refund.refund_fee != notice.refund_fee
        || refund.total_fee != notice.total_fee
    {
        return refuse(
            "mismatch",
            &format!(
                "notify says {} fen of {} ({} fen), the refund is {} fen of {} ({} fen)",
                notice.refund_fee,
                notice.out_trade_no,
                notice.total_fee,
                refund.refund_fee,
                refund.out_trade_no,
                refund.total_fee
            ),
        );
    }
    let change = RefundChange {
        out_refund_no: refund.out_refund_no.clone(),
        to: notice.result.status(),
        refund_id: Some(notice.refund_id.clone()),
        error: notice.result.failure().map(|f| (f.code, f.message)),
        next_check_at: None,
        source: "refund notify".into(),
        now_ms: services.clock.unix_ms(),
    };
    match crate::domain::settle_refund(services, change).await {
        Ok(true) => {
            count("accepted");
            NotifyAck::Success
        }
        Ok(false) => {
            count("duplicate");
            NotifyAck::Success
        }
        Err(e) => unavailable(&e.to_string()),
    }
}

/// A refund made in WeChat's merchant console: for one of our orders, confirmed with
/// refundquery, it is recorded as an external refund, so `refunded_fee` stays true.
async fn console_refund(services: &Services, notice: RefundNotice) -> NotifyAck {
    let order = match services.store.order(&notice.out_trade_no).await {
        Ok(Some(order)) => order,
        Ok(None) => {
            return refuse(
                "unknown_order",
                "console refund for an order we do not have",
            );
        }
        Err(e) => return unavailable(&e.to_string()),
    };
    if order.total_fee != notice.total_fee {
        return refuse(
            "mismatch",
            "console refund with another total_fee than the order's",
        );
    }
    if notice.result != RefundResult::Succeeded {
        // No money moved (closed), or it could not be paid back: nothing to count.
        tracing::warn!(result = ?notice.result, "console refund did not succeed; nothing recorded");
        count("console_not_succeeded");
        return NotifyAck::Success;
    }
    let query = services
        .gateway
        .query_refund(&notice.out_refund_no, RefundStatus::Processing)
        .await;
    let confirmed = matches!(
        query.decision,
        RefundQueryDecision::Result(RefundResult::Succeeded)
    ) && query.refund_fee == Some(notice.refund_fee);
    if !confirmed {
        tracing::warn!(decision = ?query.decision, reply = %query.label, "console refund not confirmed by refundquery; WeChat will re-send");
        count("console_unconfirmed");
        return NotifyAck::Fail("not confirmed yet");
    }
    let recorded = services
        .store
        .record_console_refund(
            &ConsoleRefund {
                out_refund_no: notice.out_refund_no.clone(),
                out_trade_no: notice.out_trade_no.clone(),
                total_fee: notice.total_fee,
                refund_fee: notice.refund_fee,
                refund_id: notice.refund_id.clone(),
                now_ms: services.clock.unix_ms(),
            },
            &services.outbox(),
        )
        .await;
    match recorded {
        Ok(settled) if settled.changed => {
            tracing::info!(
                refund_fee = notice.refund_fee,
                "console refund recorded as external"
            );
            metrics::counter!("minipay_refunded_fen_total").increment(notice.refund_fee as u64);
            count("console");
            services.waiters.wake(&notice.out_trade_no);
            NotifyAck::Success
        }
        Ok(_) => {
            count("duplicate");
            NotifyAck::Success
        }
        Err(e) => {
            tracing::error!(error = %e, "could not record a console refund; WeChat will re-send");
            count("store_error");
            NotifyAck::Fail("not recorded")
        }
    }
}

fn refuse(kind: &'static str, detail: &str) -> NotifyAck {
    tracing::warn!(verdict = kind, detail = ?detail, "refund notify refused");
    count(kind);
    NotifyAck::Fail(kind)
}

fn unavailable(detail: &str) -> NotifyAck {
    tracing::error!(error = ?detail, "could not record a refund notify; WeChat will re-send");
    count("store_error");
    NotifyAck::Fail("temporarily unavailable")
}

fn count(verdict: &'static str) {
    metrics::counter!("minipay_refund_notifies_total", "verdict" => verdict).increment(1);
}
