//! The merchant events a refund's settling records, in the transaction that settles it:
//! `refund.succeeded`, `refund.failed` or `refund.abnormal` about the refund, and
//! `order.refunded` about the order when the refunds that succeeded reach its total. Each at
//! most once (`dedupe_key` `"{type}:{out_refund_no}"`; see `store::outbox`).

use minipay_jobs::{EventType, RefundStatus};
use serde::Serialize;

use super::super::StoreError;
use super::super::outbox::{ErrorData, NewEvent, encode, rfc3339_ms};
use super::RefundRow;

/// The merchant event a refund reaching `status` records, if any.
pub(super) fn refund_event_type(status: RefundStatus) -> Option<EventType> {
    match status {
        RefundStatus::Succeeded => Some(EventType::RefundSucceeded),
        RefundStatus::Failed => Some(EventType::RefundFailed),
        RefundStatus::Abnormal => Some(EventType::RefundAbnormal),
        RefundStatus::Pending | RefundStatus::Processing => None,
    }
}

/// Records, on `$tx`, the event of refund `$out_refund_no` reaching `$to` (a `RefundStatus`)
/// and, when `$order_refunded`, `order.refunded` about `$out_trade_no`.
macro_rules! record_refund_events {
    ($tx:expr, $outbox:expr, $to:expr, $out_refund_no:expr, $out_trade_no:expr, $order_refunded:expr, $now_ms:expr) => {{
        if let Some(kind) = $crate::store::refunds::events::refund_event_type($to) {
            let row: Option<$crate::store::RefundRow> =
                sqlx::query_as("SELECT * FROM refunds WHERE out_refund_no = $1")
                    .bind($out_refund_no)
                    .fetch_optional(&mut *$tx)
                    .await?;
            if let Some(row) = row {
                let event = $crate::store::refunds::events::refund_event(kind, &row, $now_ms)?;
                $crate::store::outbox::insert_event!($tx, $outbox, event);
            }
        }
        if $order_refunded {
            $crate::store::outbox::record_order_event!(
                $tx,
                $outbox,
                ::minipay_jobs::EventType::OrderRefunded,
                $out_trade_no,
                None,
                $now_ms
            );
        }
    }};
}
pub(crate) use record_refund_events;

/// The refund as an event's `data` shows it: the admin view's fields that say what happened.
#[derive(Debug, Serialize)]
struct RefundData<'a> {
    out_refund_no: &'a str,
    out_trade_no: &'a str,
    refund_fee: i64,
    status: RefundStatus,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    refund_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    succeeded_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorData<'a>>,
    /// Made by hand in WeChat's merchant console.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    external: bool,
}

/// The event `kind` about `refund` as it stands, recorded at `now_ms`.
pub fn refund_event(
    kind: EventType,
    refund: &RefundRow,
    now_ms: i64,
) -> Result<NewEvent, StoreError> {
    let data = RefundData {
        out_refund_no: &refund.out_refund_no,
        out_trade_no: &refund.out_trade_no,
        refund_fee: refund.refund_fee,
        status: refund.status,
        reason: &refund.reason,
        refund_id: refund.refund_id.as_deref(),
        succeeded_at: match refund.status {
            RefundStatus::Succeeded => refund.succeeded_at.map(rfc3339_ms),
            _ => None,
        },
        error: match (&refund.error_code, refund.status) {
            (Some(code), RefundStatus::Failed | RefundStatus::Abnormal) => Some(ErrorData {
                code,
                message: refund.error_message.as_deref().unwrap_or_default(),
            }),
            _ => None,
        },
        external: refund.source == "console",
    };
    Ok(NewEvent {
        id: crate::events::new_event_id(),
        kind,
        created_at: now_ms,
        data: encode(&data)?,
        out_trade_no: Some(refund.out_trade_no.clone()),
        out_refund_no: Some(refund.out_refund_no.clone()),
        dedupe_key: format!("{kind}:{}", refund.out_refund_no),
    })
}
