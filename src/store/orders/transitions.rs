//! Status changes. Each is one guarded update whose `WHERE status IN (…)` is derived from the
//! core crate's state machine (`Lifecycle::sources`, i.e. `can_become`), so the transitions
//! the SQL allows are exactly the ones the core crate names; a job delivered twice finds the
//! guard closed and changes nothing. The guard builders take any [`Lifecycle`]: a refund's
//! statuses use them the same way.

use minipay_jobs::{EventType, Lifecycle, OrderEvent, OrderStatus, Payment, Prepaid};

use super::super::dialect::Dialect;
use super::super::outbox::{Anomaly, Outbox, insert_event, order_event, record_order_event};
use super::super::{Store, StoreError, write_tx};
use super::paid::{MARK_PAID, bind_mark_paid};
use super::{INSERT_EVENT, OrderRow, is, status_sql};

/// `status = 'paid'`, the change itself.
pub(crate) fn set<S: Lifecycle>(to: S) -> String {
    format!("status = '{}'", to.as_str())
}

/// `status IN ('pending', 'ready')`: every status that may become `to`.
pub(crate) fn from<S: Lifecycle>(to: S) -> String {
    let names: Vec<String> = S::sources(to)
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    if names.is_empty() {
        // Nothing may become `to`: the update can never match.
        return "1 = 0".to_owned();
    }
    format!("status IN ({})", names.join(", "))
}

status_sql!(
    /// `pending → ready`.
    MARK_READY = "UPDATE orders SET {}, prepay_id = $2, pay_params = $3, \
     prepay_attempts = prepay_attempts + 1, ready_at = $4, updated_at = $4, next_check_at = $5 \
     WHERE out_trade_no = $1 AND {}",
    set(OrderStatus::Ready),
    from(OrderStatus::Ready)
);

status_sql!(
    /// The same on PostgreSQL, with the NOTIFY in the same statement, so it is sent exactly
    /// when the change commits.
    MARK_READY_NOTIFY = "WITH changed AS ({} RETURNING out_trade_no) \
     SELECT pg_notify('{}', out_trade_no) FROM changed",
    MARK_READY.as_str(),
    super::super::ORDER_CHANNEL
);

status_sql!(
    /// `→ failed`.
    MARK_FAILED = "UPDATE orders SET {}, error_code = $2, error_message = $3, updated_at = $4 \
     WHERE out_trade_no = $1 AND {}",
    set(OrderStatus::Failed),
    from(OrderStatus::Failed)
);

status_sql!(
    /// `→ closed`.
    MARK_CLOSED = "UPDATE orders SET {}, next_check_at = NULL, updated_at = $2 \
     WHERE out_trade_no = $1 AND {}",
    set(OrderStatus::Closed),
    from(OrderStatus::Closed)
);

status_sql!(
    /// A prepay attempt counts while the order waits for its prepay.
    COUNT_ATTEMPT = "UPDATE orders SET prepay_attempts = prepay_attempts + 1, updated_at = $2 \
     WHERE out_trade_no = $1 AND {} RETURNING prepay_attempts",
    is(OrderStatus::Pending)
);

/// What applying a payment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The order became `paid`; `ready_at` for the ready→paid latency.
    Paid {
        ready_at: Option<i64>,
    },
    /// Already `paid` with this transaction: a duplicate.
    AlreadyPaid,
    /// Already `paid` by another transaction: the user paid twice.
    PaidTwice {
        existing: String,
    },
    /// The order is `failed` or `closed`: WeChat took money for an order we gave up on.
    NotPayable(OrderStatus),
    /// The amount differs from the order's.
    AmountMismatch {
        expected: i64,
    },
    UnknownOrder,
}

impl Applied {
    /// The `payment.anomaly` this outcome is (money WeChat took that could not be applied as
    /// usual), or `None` for a payment applied, a duplicate, or an unknown order.
    pub fn anomaly(&self, payment: &Payment) -> Option<Anomaly> {
        let (kind, message) = match self {
            Applied::NotPayable(status) => (
                match status {
                    OrderStatus::Closed => "paid_after_close",
                    _ => "paid_after_failure",
                },
                format!(
                    "WeChat took payment {} for a {status} order: refund or reopen it",
                    payment.transaction_id
                ),
            ),
            Applied::PaidTwice { existing } => (
                "paid_twice",
                format!(
                    "second payment {} after {existing}: refund one",
                    payment.transaction_id
                ),
            ),
            Applied::AmountMismatch { expected } => (
                "amount_mismatch",
                format!(
                    "payment of {} fen for an order of {expected} fen",
                    payment.total_fee
                ),
            ),
            Applied::Paid { .. } | Applied::AlreadyPaid | Applied::UnknownOrder => return None,
        };
        Some(Anomaly::new(kind, payment, message))
    }
}

/// The order's standing when a payment could not be applied.
#[derive(sqlx::FromRow)]
struct Standing {
    #[sqlx(try_from = "String")]
    status: OrderStatus,
    transaction_id: Option<String>,
    total_fee: i64,
}

impl Standing {
    fn refuses(self, payment: &Payment) -> Applied {
        if self.total_fee != payment.total_fee {
            return Applied::AmountMismatch {
                expected: self.total_fee,
            };
        }
        match self.status {
            status
                if status.was_paid()
                    && self.transaction_id.as_deref() == Some(payment.transaction_id.as_str()) =>
            {
                Applied::AlreadyPaid
            }
            status if status.was_paid() => Applied::PaidTwice {
                existing: self.transaction_id.unwrap_or_default(),
            },
            other => Applied::NotPayable(other),
        }
    }
}

impl Store {
    /// `pending → ready` with the prepay_id and signed pay params; false if not pending.
    pub async fn mark_ready(
        &self,
        out_trade_no: &str,
        prepaid: &Prepaid,
        now_ms: i64,
        first_check_at_ms: i64,
    ) -> Result<bool, StoreError> {
        let pay_params =
            serde_json::to_string(&prepaid.pay_params).map_err(|source| StoreError::Encode {
                what: "pay params",
                source,
            })?;
        // One statement, no explicit transaction: this runs once per order, and the history
        // shows "ready" from `ready_at` rather than from an event row.
        let changed = match self {
            Store::Sqlite(pools) => sqlx::query(MARK_READY.as_str())
                .bind(out_trade_no)
                .bind(&prepaid.prepay_id)
                .bind(&pay_params)
                .bind(now_ms)
                .bind(first_check_at_ms)
                .execute(&pools.writer)
                .await?
                .rows_affected(),
            Store::Postgres(pool) => sqlx::query(MARK_READY_NOTIFY.as_str())
                .bind(out_trade_no)
                .bind(&prepaid.prepay_id)
                .bind(&pay_params)
                .bind(now_ms)
                .bind(first_check_at_ms)
                .fetch_all(pool)
                .await?
                .len() as u64,
        };
        Ok(changed == 1)
    }

    /// Records a prepay attempt that did not succeed; returns the attempts so far, or `None`
    /// when the order is no longer pending.
    pub async fn record_prepay_attempt(
        &self,
        out_trade_no: &str,
        outcome: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let out_trade_no = out_trade_no.to_owned();
        let outcome = outcome.to_owned();
        let reason = reason.to_owned();
        write_tx!(self, tx => {
            let attempts: Option<i64> = sqlx::query_scalar(COUNT_ATTEMPT.as_str())
                .bind(&out_trade_no)
                .bind(now_ms)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(n) = attempts {
                sqlx::query(INSERT_EVENT)
                    .bind(&out_trade_no)
                    .bind(now_ms)
                    .bind(OrderEvent::PrepayAttempt.as_str())
                    .bind(format!("attempt {n}: {outcome}: {reason}"))
                    .execute(&mut *tx)
                    .await?;
            }
            Ok(attempts)
        })
    }

    /// `→ failed` with WeChat's (or our) error; false if the order may not fail now.
    pub async fn mark_failed(
        &self,
        out_trade_no: &str,
        code: &str,
        message: &str,
        outbox: &Outbox,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let outbox = outbox.clone();
        let out_trade_no = out_trade_no.to_owned();
        let code = code.to_owned();
        let message = message.to_owned();
        write_tx!(self, tx => {
            let changed = sqlx::query(MARK_FAILED.as_str())
                .bind(&out_trade_no)
                .bind(&code)
                .bind(&message)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if changed {
                sqlx::query(INSERT_EVENT)
                    .bind(&out_trade_no)
                    .bind(now_ms)
                    .bind(OrderEvent::Failed.as_str())
                    .bind(format!("{code}: {message}"))
                    .execute(&mut *tx)
                    .await?;
                record_order_event!(tx, &outbox, EventType::OrderFailed, &out_trade_no, None, now_ms);
                tx.announce(&out_trade_no).await?;
            }
            Ok(changed)
        })
    }

    /// Applies a verified payment: `→ paid`, at most once per order. When it came from a
    /// notify, the notify row is marked applied in the same transaction.
    pub async fn apply_payment(
        &self,
        payment: &Payment,
        source: &str,
        notify_id: Option<i64>,
        outbox: &Outbox,
        now_ms: i64,
    ) -> Result<Applied, StoreError> {
        if let Store::Postgres(pool) = self
            && let Some(ready_at) =
                super::paid::apply_on_postgres(pool, payment, source, notify_id, outbox, now_ms)
                    .await?
        {
            return Ok(Applied::Paid { ready_at });
        }
        let outbox = outbox.clone();
        let payment = payment.clone();
        let source = source.to_owned();
        write_tx!(self, tx => {
            let updated: Option<OrderRow> =
                bind_mark_paid!(sqlx::query_as(MARK_PAID.as_str()), payment, now_ms)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(row) = updated {
                sqlx::query(INSERT_EVENT)
                    .bind(&payment.out_trade_no)
                    .bind(now_ms)
                    .bind(OrderEvent::Paid.as_str())
                    .bind(format!("transaction {} via {source}", payment.transaction_id))
                    .execute(&mut *tx)
                    .await?;
                insert_event!(tx, &outbox, order_event(EventType::OrderPaid, &row, None, now_ms)?);
                if let Some(id) = notify_id {
                    sqlx::query("UPDATE notifies SET applied_at = $2 WHERE id = $1")
                        .bind(id)
                        .bind(now_ms)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.announce(&payment.out_trade_no).await?;
                return Ok(Applied::Paid { ready_at: row.ready_at });
            }
            let standing: Option<Standing> = sqlx::query_as(
                "SELECT status, transaction_id, total_fee FROM orders WHERE out_trade_no = $1",
            )
            .bind(&payment.out_trade_no)
            .fetch_optional(&mut *tx)
            .await?;
            let applied = standing.map_or(Applied::UnknownOrder, |s| s.refuses(&payment));
            if !matches!(applied, Applied::AlreadyPaid | Applied::UnknownOrder) {
                sqlx::query(INSERT_EVENT)
                    .bind(&payment.out_trade_no)
                    .bind(now_ms)
                    .bind(OrderEvent::Alert.as_str())
                    .bind(format!("payment {} via {source} not applied: {applied:?}", payment.transaction_id))
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some(anomaly) = applied.anomaly(&payment) {
                record_order_event!(tx, &outbox, EventType::PaymentAnomaly, &payment.out_trade_no, Some(anomaly), now_ms);
            }
            Ok(applied)
        })
    }

    /// `→ closed` after WeChat closed it; false if the order may not close now.
    pub async fn mark_closed(
        &self,
        out_trade_no: &str,
        detail: &str,
        outbox: &Outbox,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let outbox = outbox.clone();
        let out_trade_no = out_trade_no.to_owned();
        let detail = detail.to_owned();
        write_tx!(self, tx => {
            let changed = sqlx::query(MARK_CLOSED.as_str())
                .bind(&out_trade_no)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if changed {
                sqlx::query(INSERT_EVENT)
                    .bind(&out_trade_no)
                    .bind(now_ms)
                    .bind(OrderEvent::Closed.as_str())
                    .bind(&detail)
                    .execute(&mut *tx)
                    .await?;
                record_order_event!(tx, &outbox, EventType::OrderClosed, &out_trade_no, None, now_ms);
                tx.announce(&out_trade_no).await?;
            }
            Ok(changed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_name_exactly_the_statuses_that_can_become_the_target() {
        assert_eq!(from(OrderStatus::Paid), "status IN ('pending', 'ready')");
        assert_eq!(from(OrderStatus::Ready), "status IN ('pending')");
        assert_eq!(from(OrderStatus::Closed), "status IN ('ready')");
        assert_eq!(from(OrderStatus::Pending), "1 = 0");
        assert!(MARK_PAID.contains("WHERE out_trade_no = $1 AND status IN ('pending', 'ready')"));
        assert!(MARK_READY_NOTIFY.contains("pg_notify('minipay_order'"));
    }
}
