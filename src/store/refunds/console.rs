//! Refunds made by hand in WeChat's merchant console, learnt from their notify and confirmed
//! by refundquery: recorded as external, succeeded refunds, so that `refunded_fee` stays true.

use minipay_jobs::{OrderEvent, OrderStatus, RefundStatus};

use super::super::dialect::Dialect;
use super::super::orders::{INSERT_EVENT, is, status_sql};
use super::super::outbox::Outbox;
use super::super::{Store, StoreError, write_tx};
use super::Settled;
use super::events::record_refund_events;
use super::settle::mark_refunded_sql;

status_sql!(
    /// A console refund: made by hand, already succeeded; it counts like ours.
    COUNT_CONSOLE = "UPDATE orders SET refund_reserved = refund_reserved + $2, \
     refund_count = refund_count + 1, refunded_fee = refunded_fee + $2, updated_at = $3 \
     WHERE out_trade_no = $1 AND {} AND refund_reserved + $2 <= total_fee",
    is(OrderStatus::Paid)
);

/// A refund made by hand in WeChat's merchant console, confirmed by refundquery.
#[derive(Debug, Clone)]
pub struct ConsoleRefund {
    pub out_refund_no: String,
    pub out_trade_no: String,
    pub total_fee: i64,
    pub refund_fee: i64,
    pub refund_id: String,
    pub now_ms: i64,
}

impl Store {
    /// Records a refund made in WeChat's merchant console (confirmed by refundquery) as an
    /// external, succeeded refund of the order, counted in `refunded_fee`. False when it was
    /// already recorded; an error when the order cannot take it (not paid, or above the total).
    pub async fn record_console_refund(
        &self,
        refund: &ConsoleRefund,
        outbox: &Outbox,
    ) -> Result<Settled, StoreError> {
        let r = refund.clone();
        let outbox = outbox.clone();
        write_tx!(self, tx => {
            let inserted = sqlx::query(
                "INSERT INTO refunds (out_refund_no, out_trade_no, total_fee, refund_fee, reason, \
                 params, source, status, refund_id, created_at, updated_at, accepted_at, succeeded_at) \
                 VALUES ($1, $2, $3, $4, '', '', 'console', $5, $6, $7, $7, $7, $7) ON CONFLICT DO NOTHING",
            )
            .bind(&r.out_refund_no)
            .bind(&r.out_trade_no)
            .bind(r.total_fee)
            .bind(r.refund_fee)
            .bind(RefundStatus::Succeeded.as_str())
            .bind(&r.refund_id)
            .bind(r.now_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            let unchanged = Settled {
                changed: false,
                out_trade_no: r.out_trade_no.clone(),
                refund_fee: r.refund_fee,
                order_refunded: false,
            };
            if !inserted {
                return Ok(unchanged);
            }
            let counted = sqlx::query(COUNT_CONSOLE.as_str())
                .bind(&r.out_trade_no)
                .bind(r.refund_fee)
                .bind(r.now_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if !counted {
                return Err(StoreError::Conflict("the order cannot take this console refund"));
            }
            let order_refunded = sqlx::query(mark_refunded_sql())
                .bind(&r.out_trade_no)
                .bind(r.now_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            event!(tx, &r.out_trade_no, r.now_ms, OrderEvent::Refund, format!(
                "console refund {} of {} fen succeeded (refund_id {}), recorded as external",
                r.out_refund_no, r.refund_fee, r.refund_id
            ));
            if order_refunded {
                event!(tx, &r.out_trade_no, r.now_ms, OrderEvent::Refunded, "refunds reached the total".to_owned());
            }
            record_refund_events!(tx, &outbox, RefundStatus::Succeeded, &r.out_refund_no, &r.out_trade_no, order_refunded, r.now_ms);
            tx.announce(&r.out_trade_no).await?;
            Ok(Settled { changed: true, out_trade_no: r.out_trade_no.clone(), refund_fee: r.refund_fee, order_refunded })
        })
    }
}
