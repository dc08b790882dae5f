//! The merchant events outbox: an event row written inside the transaction that makes the
//! change it reports (so no paid order exists without its `order.paid`, and a change that rolls
//! back leaves no event), with its first `deliver_event` job queued in the same transaction
//! when a webhook endpoint is configured. Without one, events are recorded and not sent.
//!
//! Refund events (`refund.succeeded`, `refund.failed`, `refund.abnormal`, and `order.refunded`
//! when the succeeded refunds reach `total_fee`) are recorded the same way by the refund
//! transitions, inside their transactions (`store::refunds::events`); an order's `data`
//! carries `refunded_fee` once a refund succeeded.
//!
//! Each change records at most one event: rows carry a unique `dedupe_key` (`order.paid:MP…`,
//! `payment.anomaly:paid_twice:4200…`), and a second insert for the same change is a no-op that
//! queues nothing.

use chrono::{DateTime, SecondsFormat, Utc};
use minipay_jobs::{EventId, EventType, OrderStatus, Payment};
use serde::Serialize;

use super::OrderRow;
use super::StoreError;

/// Where recorded events are sent: the endpoint their delivery jobs POST to, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outbox {
    /// `None`: events are recorded, not sent.
    pub endpoint: Option<String>,
}

impl Outbox {
    pub fn new(endpoint: Option<String>) -> Self {
        Outbox { endpoint }
    }
}

/// An event about to be recorded.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: EventId,
    pub kind: EventType,
    /// Unix ms: when the change happened.
    pub created_at: i64,
    /// The envelope's `data`, as JSON text.
    pub data: String,
    pub out_trade_no: Option<String>,
    pub out_refund_no: Option<String>,
    /// One event per change (see the module's documentation).
    pub dedupe_key: String,
}

pub(crate) const INSERT_EVENT_ROW: &str = "INSERT INTO events \
     (id, type, created_at, data, out_trade_no, out_refund_no, dedupe_key, state, next_attempt_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8) ON CONFLICT (dedupe_key) DO NOTHING";

/// Records `$event` (a [`NewEvent`]) on `$tx` and, when `$outbox` (an [`Outbox`]) has an
/// endpoint, queues its first delivery in the same transaction. Evaluates to whether the event
/// was new. A macro because the body is type-checked once per backend, like `write_tx!`'s.
macro_rules! insert_event {
    ($tx:expr, $outbox:expr, $event:expr) => {{
        let event: $crate::store::outbox::NewEvent = $event;
        let outbox: &$crate::store::outbox::Outbox = $outbox;
        let due = outbox.endpoint.as_ref().map(|_| event.created_at);
        let inserted = sqlx::query($crate::store::outbox::INSERT_EVENT_ROW)
            .bind(event.id.as_str())
            .bind(event.kind.as_str())
            .bind(event.created_at)
            .bind(&event.data)
            .bind(&event.out_trade_no)
            .bind(&event.out_refund_no)
            .bind(&event.dedupe_key)
            .bind(due)
            .execute(&mut *$tx)
            .await?
            .rows_affected()
            == 1;
        if inserted && let Some(endpoint) = &outbox.endpoint {
            let job = ::minipay_jobs::DeliverEvent {
                event_id: event.id.clone(),
                endpoint: endpoint.clone(),
                attempt: 1,
            };
            $crate::store::dialect::Dialect::enqueue(&mut *$tx, &job).await?;
        }
        inserted
    }};
}
pub(crate) use insert_event;

/// Records event `$kind` about order `$out_trade_no` as the order stands now in `$tx`, with
/// `$anomaly` (an `Option<Anomaly>`) for `payment.anomaly`. Evaluates to whether it was new.
macro_rules! record_order_event {
    ($tx:expr, $outbox:expr, $kind:expr, $out_trade_no:expr, $anomaly:expr, $now_ms:expr) => {{
        let row: Option<$crate::store::OrderRow> =
            sqlx::query_as("SELECT * FROM orders WHERE out_trade_no = $1")
                .bind($out_trade_no)
                .fetch_optional(&mut *$tx)
                .await?;
        match row {
            Some(row) => {
                let event = $crate::store::outbox::order_event($kind, &row, $anomaly, $now_ms)?;
                $crate::store::outbox::insert_event!($tx, $outbox, event)
            }
            None => false,
        }
    }};
}
pub(crate) use record_order_event;

/// A payment that could not be applied as usual, as `payment.anomaly` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Anomaly {
    /// `paid_after_close`, `paid_after_failure`, `paid_twice` or `amount_mismatch`.
    pub kind: &'static str,
    pub transaction_id: String,
    /// Fen WeChat reports as paid.
    pub total_fee: i64,
    /// What an operator should do.
    pub message: String,
}

impl Anomaly {
    pub fn new(kind: &'static str, payment: &Payment, message: String) -> Self {
        Anomaly {
            kind,
            transaction_id: payment.transaction_id.clone(),
            total_fee: payment.total_fee,
            message,
        }
    }
}

/// A failed order's (or refund's) error, as in the views.
#[derive(Debug, Serialize)]
pub(crate) struct ErrorData<'a> {
    pub code: &'a str,
    pub message: &'a str,
}

/// The order as an event's `data` shows it: the admin view's fields (with the buyer's
/// `openid`), without the history. Fields a status does not have are absent.
#[derive(Debug, Serialize)]
struct OrderData<'a> {
    out_trade_no: &'a str,
    status: OrderStatus,
    total_fee: i64,
    description: &'a str,
    openid: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    attach: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sku: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quantity: Option<i64>,
    created_at: String,
    /// Unix seconds: the end of the payment window.
    expires_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    transaction_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    time_end: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cash_fee: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    paid_at: Option<String>,
    /// Fen refunded, once a refund succeeded.
    #[serde(skip_serializing_if = "is_zero")]
    refunded_fee: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorData<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    anomaly: Option<Anomaly>,
}

fn is_zero(fen: &i64) -> bool {
    *fen == 0
}

/// RFC 3339 in UTC with milliseconds, as the envelope writes `created_at`.
pub fn rfc3339_ms(unix_ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(unix_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The event `kind` about `order` as it stands, recorded at `now_ms`.
pub fn order_event(
    kind: EventType,
    order: &OrderRow,
    anomaly: Option<Anomaly>,
    now_ms: i64,
) -> Result<NewEvent, StoreError> {
    let dedupe_key = match &anomaly {
        Some(a) => format!(
            "{kind}:{}:{}:{}",
            order.out_trade_no, a.kind, a.transaction_id
        ),
        None => format!("{kind}:{}", order.out_trade_no),
    };
    let data = OrderData {
        out_trade_no: &order.out_trade_no,
        status: order.status,
        total_fee: order.total_fee,
        description: &order.description,
        openid: &order.openid,
        attach: &order.attach,
        sku: order.sku.as_deref(),
        quantity: order.quantity,
        created_at: rfc3339_ms(order.created_at),
        expires_at: order.expires_at / 1000,
        transaction_id: order.transaction_id.as_deref(),
        time_end: order.time_end.as_deref(),
        cash_fee: order.cash_fee,
        paid_at: order.paid_at.map(rfc3339_ms),
        refunded_fee: order.refunded_fee,
        error: match (&order.error_code, &order.error_message) {
            (Some(code), message) if order.status == OrderStatus::Failed => Some(ErrorData {
                code,
                message: message.as_deref().unwrap_or_default(),
            }),
            _ => None,
        },
        anomaly,
    };
    Ok(NewEvent {
        id: crate::events::new_event_id(),
        kind,
        created_at: now_ms,
        data: encode(&data)?,
        out_trade_no: Some(order.out_trade_no.clone()),
        out_refund_no: None,
        dedupe_key,
    })
}

/// `data` as the event's JSON text.
pub(crate) fn encode(data: &impl Serialize) -> Result<String, StoreError> {
    serde_json::to_string(data).map_err(|source| StoreError::Encode {
        what: "event data",
        source,
    })
}
