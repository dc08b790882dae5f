//! The JSON bodies the API answers with, as typed structs (docs/http-api.md). A field that
//! only some statuses have is absent, not null, for the others.

use minipay_jobs::{OrderStatus, PayParams, RefundStatus};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::store::{
    AttemptRow, EventRecord, EventRow, NotifyRow, OrderRow, QueueStats, RefundRow, RefusedGroup,
};

/// What order creation answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Created {
    pub out_trade_no: String,
    pub status: OrderStatus,
    pub total_fee: i64,
}

impl From<&OrderRow> for Created {
    fn from(order: &OrderRow) -> Self {
        Created {
            out_trade_no: order.out_trade_no.clone(),
            status: order.status,
            total_fee: order.total_fee,
        }
    }
}

/// A failed order's error: WeChat's code and message (or ours).
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderError {
    pub code: String,
    pub message: String,
}

/// The order as the mini-program sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderView {
    pub out_trade_no: String,
    pub status: OrderStatus,
    pub total_fee: i64,
    pub description: String,
    /// Unix seconds: the end of the payment window.
    pub expires_at: i64,
    /// `ready` only: what `wx.requestPayment` takes.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub pay_params: Option<PayParams>,
    /// `paid` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub transaction_id: Option<String>,
    /// `failed` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub error: Option<OrderError>,
    /// The refunds that succeeded, in fen, once above 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refunded_fee: Option<i64>,
}

impl From<&OrderRow> for OrderView {
    fn from(order: &OrderRow) -> Self {
        let mut view = OrderView {
            out_trade_no: order.out_trade_no.clone(),
            status: order.status,
            total_fee: order.total_fee,
            description: order.description.clone(),
            expires_at: order.expires_at / 1000,
            pay_params: None,
            transaction_id: None,
            error: None,
            refunded_fee: (order.refunded_fee > 0).then_some(order.refunded_fee),
        };
        match order.status {
            OrderStatus::Ready => {
                view.pay_params = order
                    .pay_params
                    .as_deref()
                    .and_then(|p| serde_json::from_str(p).ok());
            }
            OrderStatus::Paid | OrderStatus::Refunded => {
                view.transaction_id = Some(order.transaction_id.clone().unwrap_or_default());
            }
            OrderStatus::Failed => {
                view.error = Some(OrderError {
                    code: order.error_code.clone().unwrap_or_default(),
                    message: order.error_message.clone().unwrap_or_default(),
                });
            }
            OrderStatus::Pending | OrderStatus::Closed => {}
        }
        view
    }
}

/// The order with everything that happened to it, for the operator.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderHistory {
    #[serde(flatten)]
    pub order: OrderView,
    pub openid: String,
    pub sku: Option<String>,
    pub quantity: Option<i64>,
    pub payer_ip: String,
    pub prepay_id: Option<String>,
    pub prepay_attempts: i64,
    pub reconcile_checks: i64,
    /// The frozen prepay request, as the gateway wrote it (its shape is the protocol's).
    pub params: Value,
    /// RFC 3339, as every time in the admin views.
    pub created_at: String,
    pub ready_at: Option<String>,
    pub paid_at: Option<String>,
    pub time_end: Option<String>,
    pub cash_fee: Option<i64>,
    pub history: Vec<EventRow>,
    /// Every verified notify.
    pub notifies: Vec<NotifyRow>,
    /// The refused notifies naming the order, summarised.
    pub refused_notifies: Vec<RefusedGroup>,
    /// The merchant events about the order, oldest first.
    pub events: Vec<EventView>,
    /// Every delivery attempt of those events (time, status or error, duration), oldest first.
    pub event_attempts: Vec<AttemptRow>,
    /// The order's refunds, oldest first.
    pub refunds: Vec<RefundView>,
}

impl OrderHistory {
    pub fn new(
        order: &OrderRow,
        history: Vec<EventRow>,
        notifies: Vec<NotifyRow>,
        refused_notifies: Vec<RefusedGroup>,
        (events, event_attempts): (Vec<EventView>, Vec<AttemptRow>),
        refunds: &[RefundRow],
    ) -> Self {
        OrderHistory {
            order: OrderView::from(order),
            openid: order.openid.clone(),
            sku: order.sku.clone(),
            quantity: order.quantity,
            payer_ip: order.payer_ip.clone(),
            prepay_id: order.prepay_id.clone(),
            prepay_attempts: order.prepay_attempts,
            reconcile_checks: order.reconcile_checks,
            params: serde_json::from_str(&order.params).unwrap_or(Value::Null),
            created_at: rfc3339(order.created_at),
            ready_at: order.ready_at.map(rfc3339),
            paid_at: order.paid_at.map(rfc3339),
            time_end: order.time_end.clone(),
            cash_fee: order.cash_fee,
            history,
            notifies,
            refused_notifies,
            events,
            event_attempts,
            refunds: refunds.iter().map(RefundView::from).collect(),
        }
    }
}

/// A merchant event, for the operator (`GET /v1/admin/events`).
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// RFC 3339, as in the envelope.
    pub created_at: String,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    pub attempts: i64,
    /// The last attempt's failure, while the event is not delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_trade_no: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_refund_no: Option<String>,
    /// RFC 3339: when the queued attempt is due (pending events being sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
}

impl From<EventRecord> for EventView {
    fn from(e: EventRecord) -> Self {
        let delivered = e.state == "delivered";
        EventView {
            id: e.id,
            kind: e.kind,
            created_at: rfc3339(e.created_at),
            last_error: e.last_error.filter(|_| !delivered),
            next_attempt_at: e
                .next_attempt_at
                .filter(|_| e.state == "pending")
                .map(rfc3339),
            last_attempt_at: e.last_attempt_at.map(rfc3339),
            delivered_at: e.delivered_at.map(rfc3339),
            state: e.state,
            attempts: e.attempts,
            out_trade_no: e.out_trade_no,
            out_refund_no: e.out_refund_no,
        }
    }
}

/// What refund creation answers (the same body again for a replayed Idempotency-Key).
#[derive(Debug, Serialize, ToSchema)]
pub struct RefundCreated {
    pub out_refund_no: String,
    pub out_trade_no: String,
    pub refund_fee: i64,
    pub status: RefundStatus,
}

impl From<&RefundRow> for RefundCreated {
    fn from(refund: &RefundRow) -> Self {
        RefundCreated {
            out_refund_no: refund.out_refund_no.clone(),
            out_trade_no: refund.out_trade_no.clone(),
            refund_fee: refund.refund_fee,
            // Created pending: a replay answers what the first request was answered.
            status: RefundStatus::Pending,
        }
    }
}

/// `GET /v1/admin/events`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Events {
    pub events: Vec<EventView>,
}

/// `POST /v1/admin/events/{id}/redeliver`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Redelivered {
    pub id: String,
    pub state: &'static str,
}

/// One refund.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefundView {
    pub out_refund_no: String,
    pub out_trade_no: String,
    pub refund_fee: i64,
    pub status: RefundStatus,
    /// Once WeChat accepted it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
    /// RFC 3339, only when succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub succeeded_at: Option<String>,
    /// When failed or abnormal, or while held (`NOTENOUGH`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<OrderError>,
    /// `true` for a refund made in WeChat's merchant console (recorded from its notify).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
    pub reason: String,
    /// Refund requests sent to WeChat so far.
    pub attempts: i64,
    /// RFC 3339.
    pub created_at: String,
}

/// Unix milliseconds as RFC 3339 in UTC, to the millisecond (the contract's time format).
pub fn rfc3339(unix_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(unix_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl From<&RefundRow> for RefundView {
    fn from(refund: &RefundRow) -> Self {
        let shows_error = matches!(
            refund.status,
            RefundStatus::Failed | RefundStatus::Abnormal | RefundStatus::Pending
        );
        let error = match (&refund.error_code, shows_error) {
            (Some(code), true) => Some(OrderError {
                code: code.clone(),
                message: refund.error_message.clone().unwrap_or_default(),
            }),
            _ => None,
        };
        RefundView {
            out_refund_no: refund.out_refund_no.clone(),
            out_trade_no: refund.out_trade_no.clone(),
            refund_fee: refund.refund_fee,
            status: refund.status,
            refund_id: refund.refund_id.clone(),
            succeeded_at: match refund.status {
                RefundStatus::Succeeded => refund.succeeded_at.map(rfc3339),
                _ => None,
            },
            error,
            external: refund.source == "console",
            reason: refund.reason.clone(),
            attempts: refund.attempts,
            created_at: rfc3339(refund.created_at),
        }
    }
}

/// `GET /v1/admin/orders/{out_trade_no}/refunds`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefundList {
    pub refunds: Vec<RefundView>,
}

/// `GET /v1/admin/queues`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Queues {
    pub queues: Vec<QueueStats>,
}

/// `GET /v1/admin/queues/{queue}/jobs`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Jobs {
    pub queue: String,
    pub jobs: Vec<crate::store::JobRow>,
}

/// `POST /v1/admin/jobs/{id}/retry`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Retried {
    pub id: String,
    /// apalis' status of the re-queued row.
    pub status: &'static str,
}

/// `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// `GET /readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    pub checks: Checks,
    /// How long ago the database checks ran (they run in the background, every second).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checked_ms_ago: Option<u64>,
}

/// What `/readyz` checked.
#[derive(Debug, Serialize, ToSchema)]
pub struct Checks {
    pub database: bool,
    pub migrations: bool,
    /// Writes commit (the last write's outcome and the write probe).
    pub writes: bool,
    /// Worker roles only: this process's workers are heartbeating.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub workers: Option<bool>,
}

/// The error body of every JSON endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

/// The code and message of an error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail<'a> {
    /// SNAKE_CASE, stable: clients branch on it (docs/http-api.md, "Error codes").
    #[schema(example = "ORDER_NOT_FOUND", pattern = "^[A-Z][A-Z0-9_]*$")]
    pub code: &'a str,
    /// For people; may change between versions.
    pub message: String,
}
