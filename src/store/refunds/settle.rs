//! A refund's status changes, each one guarded update whose `WHERE status IN (…)` comes from
//! the core crate's `RefundStatus::can_become`, with what it means for the order in the same
//! transaction: a success adds to `refunded_fee` (and makes the order `refunded` when the
//! refunds reach its total) exactly once; a failure gives its reservation back. Also the
//! bookkeeping of attempts, holds, the next check, and console refunds learnt from a notify.

use minipay_jobs::{EventType, OrderEvent, OrderStatus, RefundStatus};

use super::super::dialect::Dialect;
use super::super::orders::{INSERT_EVENT, from, set, status_sql};
use super::super::outbox::{Outbox, record_order_event};
use super::super::{Store, StoreError, write_tx};
use super::events::record_refund_events;

/// A change of a refund's status.
#[derive(Debug, Clone)]
pub struct RefundChange {
    pub out_refund_no: String,
    /// `processing`, `succeeded`, `failed` or `abnormal`.
    pub to: RefundStatus,
    /// WeChat's refund id, when this news carries it.
    pub refund_id: Option<String>,
    /// The error a `failed` or `abnormal` refund shows: (code, message).
    pub error: Option<(String, String)>,
    /// `processing`: when to ask WeChat about it if no notify comes.
    pub next_check_at: Option<i64>,
    /// Where the news came from, for the order's history.
    pub source: String,
    pub now_ms: i64,
}

/// What a status change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// False when the guard was closed (a duplicate, or a refund already past this status).
    pub changed: bool,
    pub out_trade_no: String,
    pub refund_fee: i64,
    /// The order became `refunded` in this change.
    pub order_refunded: bool,
}

status_sql!(
    TO_PROCESSING = "UPDATE refunds SET {}, refund_id = COALESCE($2, refund_id), \
     error_code = NULL, error_message = NULL, held_since = NULL, \
     accepted_at = COALESCE(accepted_at, $3), next_check_at = $4, updated_at = $3 \
     WHERE out_refund_no = $1 AND {} RETURNING out_trade_no, refund_fee",
    set(RefundStatus::Processing),
    from(RefundStatus::Processing)
);

status_sql!(
    TO_SUCCEEDED = "UPDATE refunds SET {}, refund_id = COALESCE($2, refund_id), \
     error_code = NULL, error_message = NULL, held_since = NULL, succeeded_at = $3, \
     accepted_at = COALESCE(accepted_at, $3), next_check_at = NULL, updated_at = $3 \
     WHERE out_refund_no = $1 AND {} RETURNING out_trade_no, refund_fee",
    set(RefundStatus::Succeeded),
    from(RefundStatus::Succeeded)
);

status_sql!(
    TO_FAILED = "UPDATE refunds SET {}, refund_id = COALESCE($2, refund_id), \
     error_code = $5, error_message = $6, next_check_at = NULL, updated_at = $3 \
     WHERE out_refund_no = $1 AND {} RETURNING out_trade_no, refund_fee",
    set(RefundStatus::Failed),
    from(RefundStatus::Failed)
);

status_sql!(
    TO_ABNORMAL = "UPDATE refunds SET {}, refund_id = COALESCE($2, refund_id), \
     error_code = $5, error_message = $6, next_check_at = NULL, updated_at = $3 \
     WHERE out_refund_no = $1 AND {} RETURNING out_trade_no, refund_fee",
    set(RefundStatus::Abnormal),
    from(RefundStatus::Abnormal)
);

status_sql!(
    /// `paid → refunded` once the refunds that succeeded reach the total.
    MARK_REFUNDED = "UPDATE orders SET {}, updated_at = $2 \
     WHERE out_trade_no = $1 AND {} AND refunded_fee >= total_fee",
    set(OrderStatus::Refunded),
    from(OrderStatus::Refunded)
);

/// `paid → refunded` once the refunds reach the total (`$1` the order, `$2` now).
pub(super) fn mark_refunded_sql() -> &'static str {
    MARK_REFUNDED.as_str()
}

/// The SQL of the change into `to`. Every one is bound with the same six parameters: the
/// refund, its refund_id, now, the next check (processing), the error code and message.
fn change_sql(to: RefundStatus) -> &'static str {
    match to {
        RefundStatus::Processing => TO_PROCESSING.as_str(),
        RefundStatus::Succeeded => TO_SUCCEEDED.as_str(),
        RefundStatus::Failed => TO_FAILED.as_str(),
        RefundStatus::Abnormal => TO_ABNORMAL.as_str(),
        // Only an insert makes a pending refund.
        RefundStatus::Pending => "SELECT out_trade_no, refund_fee FROM refunds WHERE 1 = 0",
    }
}

impl Store {
    /// Moves a refund to `change.to` if its status allows it, with the order's counters,
    /// history and merchant events in the same transaction.
    pub async fn change_refund(
        &self,
        change: &RefundChange,
        outbox: &Outbox,
    ) -> Result<Settled, StoreError> {
        let change = change.clone();
        let outbox = outbox.clone();
        write_tx!(self, tx => {
            let (code, message) = change.error.clone().unwrap_or_default();
            let updated: Option<(String, i64)> = sqlx::query_as(change_sql(change.to))
                .bind(&change.out_refund_no)
                .bind(&change.refund_id)
                .bind(change.now_ms)
                .bind(if change.to == RefundStatus::Processing {
                    change.next_check_at
                } else {
                    None
                })
                .bind(&code)
                .bind(&message)
                .fetch_optional(&mut *tx)
                .await?;
            let Some((out_trade_no, refund_fee)) = updated else {
                return Ok(Settled {
                    changed: false,
                    out_trade_no: String::new(),
                    refund_fee: 0,
                    order_refunded: false,
                });
            };
            let mut order_refunded = false;
            match change.to {
                RefundStatus::Succeeded => {
                    sqlx::query(
                        "UPDATE orders SET refunded_fee = refunded_fee + $2, updated_at = $3 \
                         WHERE out_trade_no = $1",
                    )
                    .bind(&out_trade_no)
                    .bind(refund_fee)
                    .bind(change.now_ms)
                    .execute(&mut *tx)
                    .await?;
                    order_refunded = sqlx::query(MARK_REFUNDED.as_str())
                        .bind(&out_trade_no)
                        .bind(change.now_ms)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                        == 1;
                }
                RefundStatus::Failed => {
                    sqlx::query(
                        "UPDATE orders SET refund_reserved = refund_reserved - $2, updated_at = $3 \
                         WHERE out_trade_no = $1",
                    )
                    .bind(&out_trade_no)
                    .bind(refund_fee)
                    .bind(change.now_ms)
                    .execute(&mut *tx)
                    .await?;
                }
                _ => {}
            }
            let mut detail = format!(
                "refund {} of {refund_fee} fen {} via {}",
                change.out_refund_no, change.to, change.source
            );
            if let Some(refund_id) = &change.refund_id {
                detail.push_str(&format!(" (refund_id {refund_id})"));
            }
            if !code.is_empty() {
                detail.push_str(&format!(": {code} {message}"));
            }
            event!(tx, &out_trade_no, change.now_ms, OrderEvent::Refund, detail);
            if order_refunded {
                event!(tx, &out_trade_no, change.now_ms, OrderEvent::Refunded, "refunds reached the total".to_owned());
            }
            record_refund_events!(tx, &outbox, change.to, &change.out_refund_no, &out_trade_no, order_refunded, change.now_ms);
            tx.announce(&out_trade_no).await?;
            Ok(Settled { changed: true, out_trade_no, refund_fee, order_refunded })
        })
    }

    /// `paid → refunded` when the refunds that succeeded reach the order's total; false
    /// otherwise. (Refund successes do this themselves, in their transaction.)
    pub async fn mark_refunded(
        &self,
        out_trade_no: &str,
        outbox: &Outbox,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let out_trade_no = out_trade_no.to_owned();
        let outbox = outbox.clone();
        write_tx!(self, tx => {
            let changed = sqlx::query(MARK_REFUNDED.as_str())
                .bind(&out_trade_no)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if changed {
                event!(tx, &out_trade_no, now_ms, OrderEvent::Refunded, "refunds reached the total".to_owned());
                record_order_event!(tx, &outbox, EventType::OrderRefunded, &out_trade_no, None, now_ms);
                tx.announce(&out_trade_no).await?;
            }
            Ok(changed)
        })
    }
}

#[cfg(test)]
mod tests {
    use minipay_jobs::Lifecycle;

    use super::*;

    #[test]
    fn refund_guards_follow_the_core_crate() {
        assert!(TO_SUCCEEDED.contains("status IN ('pending', 'processing', 'abnormal')"));
        assert!(TO_PROCESSING.contains("status IN ('pending')"));
        assert!(TO_FAILED.contains("status IN ('pending', 'processing')"));
        assert!(MARK_REFUNDED.contains("status IN ('paid') AND refunded_fee >= total_fee"));
        assert_eq!(RefundStatus::sources(RefundStatus::Pending).count(), 0);
    }
}
