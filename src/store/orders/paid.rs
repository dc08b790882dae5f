//! A payment applied on PostgreSQL in one statement after one read: the order is read, its
//! `order.paid` event is written from it as it will stand, and a single statement of
//! data-modifying CTEs makes the guarded update and everything that follows from it (the
//! history line, the event and its first delivery, the notify marked applied, the NOTIFY to
//! long-polls) — one statement, so one transaction: 2 statements instead of BEGIN, 6 and
//! COMMIT. The effects are the same as SQLite's path in `transitions` (the store's tests run
//! both); when the guard is closed nothing is written and that path explains why.

use minipay_jobs::{DeliverEvent, EventType, OrderEvent, OrderStatus, Payment};
use sqlx::PgPool;

use super::super::dialect::PgJob;
use super::super::outbox::{Outbox, order_event};
use super::super::{ORDER_CHANNEL, StoreError};
use super::{OrderRow, from, set, status_sql};

status_sql!(
    /// `→ paid`, only for the order's own amount; returns the order as it now stands (which
    /// its `order.paid` event describes, so SQLite's path does not read it again on the single
    /// writer; the statement below takes `ready_at` and the number from it).
    pub(super) MARK_PAID = "UPDATE orders SET {}, transaction_id = $2, time_end = $3, cash_fee = $4, \
     paid_at = $5, updated_at = $5, next_check_at = NULL \
     WHERE out_trade_no = $1 AND {} AND total_fee = $6 RETURNING *",
    set(OrderStatus::Paid),
    from(OrderStatus::Paid)
);

/// [`MARK_PAID`]'s parameters, `$1` to `$6`, bound to `query`.
macro_rules! bind_mark_paid {
    ($query:expr, $payment:expr, $now_ms:expr) => {
        $query
            .bind(&$payment.out_trade_no)
            .bind(&$payment.transaction_id)
            .bind(&$payment.time_end)
            .bind($payment.cash_fee)
            .bind($now_ms)
            .bind($payment.total_fee)
    };
}
pub(super) use bind_mark_paid;

/// The whole payment: `$1`–`$6` are [`MARK_PAID`]'s, `$7`–`$8` the history line, `$9`–`$13`
/// the event row, `$14` the notify applied (NULL: none); with a webhook, `$15`–`$19` the
/// delivery job. Returns `ready_at` when the order became `paid`, no row when it may not.
fn paid_statement(deliver: bool) -> String {
    let update = MARK_PAID.as_str();
    let queued = if deliver {
        format!(", queued AS ({})", PgJob::insert_from("recorded", 15))
    } else {
        String::new()
    };
    format!(
        "WITH changed AS ({update}), \
         history AS (INSERT INTO order_events (out_trade_no, at, kind, detail) \
         SELECT out_trade_no, $5, $7, $8 FROM changed), \
         recorded AS (INSERT INTO events (id, type, created_at, data, out_trade_no, \
         out_refund_no, dedupe_key, state, next_attempt_at) \
         SELECT $9, $10, $5, $11, out_trade_no, NULL, $12, 'pending', $13 FROM changed \
         ON CONFLICT (dedupe_key) DO NOTHING RETURNING id), \
         applied AS (UPDATE notifies SET applied_at = $5 \
         WHERE id = $14 AND EXISTS (SELECT 1 FROM changed)){queued}, \
         notified AS (SELECT pg_notify('{ORDER_CHANNEL}', out_trade_no) FROM changed) \
         SELECT changed.ready_at FROM changed CROSS JOIN notified"
    )
}

static PAID: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| paid_statement(false));
static PAID_DELIVERED: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| paid_statement(true));

/// Applies `payment` if the order may become `paid` with it: `Some(ready_at)`. `None`
/// (nothing written) when it may not, and the caller's general path explains why.
pub(super) async fn apply_on_postgres(
    pool: &PgPool,
    payment: &Payment,
    source: &str,
    notify_id: Option<i64>,
    outbox: &Outbox,
    now_ms: i64,
) -> Result<Option<Option<i64>>, StoreError> {
    let row: Option<OrderRow> = sqlx::query_as(super::ORDER)
        .bind(&payment.out_trade_no)
        .fetch_optional(pool)
        .await?;
    let Some(mut row) = row.filter(|row| {
        row.status.can_become(OrderStatus::Paid) && row.total_fee == payment.total_fee
    }) else {
        return Ok(None);
    };
    // The order as the update leaves it: what its event describes.
    row.status = OrderStatus::Paid;
    row.transaction_id = Some(payment.transaction_id.clone());
    row.time_end = Some(payment.time_end.clone());
    row.cash_fee = Some(payment.cash_fee);
    row.paid_at = Some(now_ms);
    row.updated_at = now_ms;
    let event = order_event(EventType::OrderPaid, &row, None, now_ms)?;
    let sql = match outbox.endpoint {
        Some(_) => PAID_DELIVERED.as_str(),
        None => PAID.as_str(),
    };
    let query = bind_mark_paid!(sqlx::query_scalar(sql), payment, now_ms)
        .bind(OrderEvent::Paid.as_str())
        .bind(format!(
            "transaction {} via {source}",
            payment.transaction_id
        ))
        .bind(event.id.as_str())
        .bind(event.kind.as_str())
        .bind(&event.data)
        .bind(&event.dedupe_key)
        .bind(outbox.endpoint.as_ref().map(|_| event.created_at))
        .bind(notify_id);
    let query = match &outbox.endpoint {
        Some(endpoint) => {
            let job = PgJob::new(&DeliverEvent {
                event_id: event.id.clone(),
                endpoint: endpoint.clone(),
                attempt: 1,
            })?;
            job.bind(query)
        }
        None => query,
    };
    Ok(query.fetch_optional(pool).await?)
}
