//! The bookkeeping of an open refund: its attempts, the order's one-minute slot, holds
//! (`NOTENOUGH`), and when the reconciler next queues its job.

use minipay_jobs::{OrderEvent, RefundStatus};

use super::super::orders::{INSERT_EVENT, is, status_sql};
use super::super::{Store, StoreError, write_tx};

status_sql!(
    /// A send or a wait of a refund still waiting for WeChat to take it.
    COUNT_ATTEMPT = "UPDATE refunds SET attempts = attempts + 1, sent_at = COALESCE(sent_at, $2), \
     updated_at = $2 WHERE out_refund_no = $1 AND {} RETURNING attempts, out_trade_no",
    is(RefundStatus::Pending)
);

status_sql!(
    HOLD = "UPDATE refunds SET error_code = $2, error_message = $3, \
     held_since = COALESCE(held_since, $4), next_check_at = $5, updated_at = $4 \
     WHERE out_refund_no = $1 AND {} RETURNING held_since, out_trade_no",
    is(RefundStatus::Pending)
);

status_sql!(
    PARK = "UPDATE refunds SET next_check_at = $2, updated_at = $3, queries = queries + $4 \
     WHERE out_refund_no = $1 AND status IN ('{}', '{}') RETURNING out_trade_no",
    RefundStatus::Pending.as_str(),
    RefundStatus::Processing.as_str()
);

impl Store {
    /// Counts a request about to be sent for a `pending` refund and notes it in the order's
    /// history; returns the attempts so far, or `None` when the refund is no longer pending.
    pub async fn record_refund_attempt(
        &self,
        out_refund_no: &str,
        label: &str,
        detail: &str,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let (out_refund_no, label, detail) = (
            out_refund_no.to_owned(),
            label.to_owned(),
            detail.to_owned(),
        );
        write_tx!(self, tx => {
            let counted: Option<(i64, String)> = sqlx::query_as(COUNT_ATTEMPT.as_str())
                .bind(&out_refund_no)
                .bind(now_ms)
                .fetch_optional(&mut *tx)
                .await?;
            let Some((attempts, out_trade_no)) = counted else {
                return Ok(None);
            };
            event!(tx, &out_trade_no, now_ms, OrderEvent::Refund,
                format!("refund {out_refund_no} attempt {attempts}: {label}: {detail}"));
            Ok(Some(attempts))
        })
    }

    /// Claims the order's refund slot: WeChat wants a minute between two refund requests of
    /// one order. A `first` request of a refund takes the slot only if the last request of
    /// the order was sent `spacing_ms` ago or more; a re-send always takes it. `None` when
    /// taken, else the Unix ms from which the slot is free.
    pub async fn claim_refund_slot(
        &self,
        out_trade_no: &str,
        now_ms: i64,
        spacing_ms: i64,
        first: bool,
    ) -> Result<Option<i64>, StoreError> {
        let out_trade_no = out_trade_no.to_owned();
        let free_before = if first { now_ms - spacing_ms } else { i64::MAX };
        write_tx!(self, tx => {
            let taken = sqlx::query(
                "UPDATE orders SET refund_sent_at = $2 WHERE out_trade_no = $1 \
                 AND (refund_sent_at IS NULL OR refund_sent_at <= $3)",
            )
            .bind(&out_trade_no)
            .bind(now_ms)
            .bind(free_before)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if taken {
                return Ok(None);
            }
            let last: Option<Option<i64>> =
                sqlx::query_scalar("SELECT refund_sent_at FROM orders WHERE out_trade_no = $1")
                    .bind(&out_trade_no)
                    .fetch_optional(&mut *tx)
                    .await?;
            Ok(Some(last.flatten().unwrap_or(now_ms) + spacing_ms))
        })
    }

    /// Holds a `pending` refund (`NOTENOUGH`): its error shown, its next attempt at
    /// `next_attempt_at`. Returns when the hold began, or `None` if no longer pending.
    pub async fn hold_refund(
        &self,
        out_refund_no: &str,
        code: &str,
        message: &str,
        next_attempt_at: i64,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let (out_refund_no, code, message) = (
            out_refund_no.to_owned(),
            code.to_owned(),
            message.to_owned(),
        );
        write_tx!(self, tx => {
            let held: Option<(Option<i64>, String)> = sqlx::query_as(HOLD.as_str())
                .bind(&out_refund_no)
                .bind(&code)
                .bind(&message)
                .bind(now_ms)
                .bind(next_attempt_at)
                .fetch_optional(&mut *tx)
                .await?;
            let Some((since, out_trade_no)) = held else {
                return Ok(None);
            };
            event!(tx, &out_trade_no, now_ms, OrderEvent::Refund,
                format!("refund {out_refund_no} held: {code} {message}; next attempt at {next_attempt_at}"));
            Ok(Some(since.unwrap_or(now_ms)))
        })
    }

    /// Sets when the reconciler next queues an open refund's job, noting why (`queried`: a
    /// refundquery was made); false if the refund is no longer open.
    pub async fn park_refund(
        &self,
        out_refund_no: &str,
        next_check_at: i64,
        detail: &str,
        queried: bool,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let (out_refund_no, detail) = (out_refund_no.to_owned(), detail.to_owned());
        write_tx!(self, tx => {
            let parked: Option<String> = sqlx::query_scalar(PARK.as_str())
                .bind(&out_refund_no)
                .bind(next_check_at)
                .bind(now_ms)
                .bind(i64::from(queried))
                .fetch_optional(&mut *tx)
                .await?;
            let Some(out_trade_no) = parked else {
                return Ok(false);
            };
            if !detail.is_empty() {
                event!(tx, &out_trade_no, now_ms, OrderEvent::Refund,
                    format!("refund {out_refund_no}: {detail}"));
            }
            Ok(true)
        })
    }
}
