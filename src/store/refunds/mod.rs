//! Refunds: creation with their job (the order's refund counters guard the total, the count
//! and the order's status in one conditional update), reads, and the reconciler's claims of
//! refunds whose next step is due. Status changes are in [`settle`].
//!
//! The guard is race-safe on both backends: on PostgreSQL the conditional `UPDATE orders`
//! takes the order's row lock and re-checks its `WHERE` on the newest row, so two concurrent
//! requests never both reserve the last fen; on SQLite every write runs on the one writer.

/// Adds a line to an order's history inside a `write_tx!` body.
macro_rules! event {
    ($tx:expr, $out_trade_no:expr, $at:expr, $kind:expr, $detail:expr) => {
        sqlx::query(INSERT_EVENT)
            .bind($out_trade_no)
            .bind($at)
            .bind($kind.as_str())
            .bind($detail)
            .execute(&mut *$tx)
            .await?
    };
}

mod bookkeeping;
mod console;
pub(crate) mod events;
mod settle;

use minipay_jobs::{OrderEvent, OrderStatus, RefundOrder, RefundStatus};

pub use console::ConsoleRefund;
pub use settle::{RefundChange, Settled};

use super::dialect::Dialect;
use super::orders::{INSERT_EVENT, is, status_sql};
use super::{Store, StoreError, on_reader, write_tx};

/// WeChat takes at most this many refunds per order.
pub const MAX_REFUNDS_PER_ORDER: i64 = 50;

/// A refund row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefundRow {
    pub out_refund_no: String,
    pub out_trade_no: String,
    pub total_fee: i64,
    pub refund_fee: i64,
    pub reason: String,
    /// The frozen refund request, as the gateway wrote it (JSON); empty for console refunds.
    pub params: String,
    pub idempotency_key: Option<String>,
    /// `api` or `console` (made by hand in WeChat's merchant console).
    pub source: String,
    #[sqlx(try_from = "String")]
    pub status: RefundStatus,
    pub refund_id: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub attempts: i64,
    pub runs: i64,
    pub queries: i64,
    pub next_check_at: Option<i64>,
    pub held_since: Option<i64>,
    pub sent_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub accepted_at: Option<i64>,
    pub succeeded_at: Option<i64>,
}

/// A refund to create.
#[derive(Debug, Clone)]
pub struct NewRefund {
    pub out_refund_no: String,
    pub out_trade_no: String,
    /// The order's amount as read when the parameters were frozen; the guard re-checks it.
    pub total_fee: i64,
    pub refund_fee: i64,
    pub reason: String,
    pub params: String,
    pub idempotency_key: Option<String>,
    pub created_at: i64,
    /// Orders paid before this (Unix ms) are past WeChat's refund window.
    pub paid_after: i64,
    /// Until when the first job holds the refund (the reconciler re-queues it after).
    pub lease_until: i64,
}

/// Why a refund was not created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundRefusal {
    UnknownOrder,
    NotPaid(OrderStatus),
    /// This refund plus every refund not failed would be above the order's total.
    Exceeds {
        total_fee: i64,
        reserved: i64,
    },
    LimitReached,
    WindowClosed,
}

/// What `create_refund` did.
#[derive(Debug)]
pub enum CreateRefund {
    Created(RefundRow),
    /// The idempotency key names this refund of the order.
    Existing(RefundRow),
    Refused(RefundRefusal),
}

status_sql!(
    /// Reserves the refund's amount and a place among the order's 50, if the order is paid,
    /// within the refund window, and the amount fits.
    RESERVE = "UPDATE orders SET refund_reserved = refund_reserved + $2, \
     refund_count = refund_count + 1, updated_at = $3 \
     WHERE out_trade_no = $1 AND {} AND refund_reserved + $2 <= total_fee \
     AND refund_count < {} AND paid_at >= $4 AND total_fee = $5",
    is(OrderStatus::Paid),
    MAX_REFUNDS_PER_ORDER
);

/// Gives a reservation back (the refund could not be inserted after all).
const UNRESERVE: &str = "UPDATE orders SET refund_reserved = refund_reserved - $2, \
     refund_count = refund_count - 1 WHERE out_trade_no = $1";

status_sql!(
    /// Every refund starts `pending`.
    INSERT_REFUND = "INSERT INTO refunds (out_refund_no, out_trade_no, total_fee, refund_fee, \
     reason, params, idempotency_key, source, status, next_check_at, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, 'api', '{}', $8, $9, $9) ON CONFLICT DO NOTHING",
    RefundStatus::Pending.as_str()
);

status_sql!(
    /// Open refunds whose next step is due (the partial index `refunds_due`).
    DUE_REFUNDS = "SELECT out_refund_no, out_trade_no, runs FROM refunds \
     WHERE status IN ('{}', '{}') AND next_check_at <= $1 ORDER BY next_check_at LIMIT $2",
    RefundStatus::Pending.as_str(),
    RefundStatus::Processing.as_str()
);

status_sql!(
    /// One due refund claimed: the run count moves on (naming the job's key) and the refund
    /// is leased until its job sets the real next check.
    CLAIM_REFUND = "UPDATE refunds SET runs = runs + 1, next_check_at = $3 \
     WHERE out_refund_no = $1 AND runs = $2 AND status IN ('{}', '{}')",
    RefundStatus::Pending.as_str(),
    RefundStatus::Processing.as_str()
);

/// The order's standing, to say why a reservation was refused.
#[derive(sqlx::FromRow)]
struct Standing {
    #[sqlx(try_from = "String")]
    status: OrderStatus,
    total_fee: i64,
    refund_reserved: i64,
    refund_count: i64,
    paid_at: Option<i64>,
}

impl Standing {
    fn refusal(&self, new: &NewRefund) -> RefundRefusal {
        match self.status {
            OrderStatus::Paid | OrderStatus::Refunded => {}
            other => return RefundRefusal::NotPaid(other),
        }
        if self.status == OrderStatus::Refunded
            || self.refund_reserved + new.refund_fee > self.total_fee
            || self.total_fee != new.total_fee
        {
            return RefundRefusal::Exceeds {
                total_fee: self.total_fee,
                reserved: self.refund_reserved,
            };
        }
        if self.refund_count >= MAX_REFUNDS_PER_ORDER {
            return RefundRefusal::LimitReached;
        }
        if self.paid_at.is_none_or(|at| at < new.paid_after) {
            return RefundRefusal::WindowClosed;
        }
        RefundRefusal::Exceeds {
            total_fee: self.total_fee,
            reserved: self.refund_reserved,
        }
    }
}

/// The refunds of one order, oldest first.
pub(super) const REFUNDS_OF_ORDER: &str =
    "SELECT * FROM refunds WHERE out_trade_no = $1 ORDER BY created_at, out_refund_no";

const BY_KEY: &str = "SELECT * FROM refunds WHERE out_trade_no = $1 AND idempotency_key = $2";

impl Store {
    /// Creates a `pending` refund with its `refund_order` job in one transaction, if the order
    /// is paid and the amount fits within what is not yet refunded or being refunded.
    pub async fn create_refund(&self, new: &NewRefund) -> Result<CreateRefund, StoreError> {
        let new = new.clone();
        let job = RefundOrder {
            out_refund_no: new.out_refund_no.clone(),
            out_trade_no: new.out_trade_no.clone(),
            run: 0,
        };
        // A key already used is found by the caller; one used concurrently makes the insert
        // conflict below.
        write_tx!(self, tx => {
            let reserved = sqlx::query(RESERVE.as_str())
                .bind(&new.out_trade_no)
                .bind(new.refund_fee)
                .bind(new.created_at)
                .bind(new.paid_after)
                .bind(new.total_fee)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if !reserved {
                let standing: Option<Standing> = sqlx::query_as(
                    "SELECT status, total_fee, refund_reserved, refund_count, paid_at \
                     FROM orders WHERE out_trade_no = $1",
                )
                .bind(&new.out_trade_no)
                .fetch_optional(&mut *tx)
                .await?;
                let refusal = standing.map_or(RefundRefusal::UnknownOrder, |s| s.refusal(&new));
                return Ok(CreateRefund::Refused(refusal));
            }
            let inserted = sqlx::query(INSERT_REFUND.as_str())
                .bind(&new.out_refund_no)
                .bind(&new.out_trade_no)
                .bind(new.total_fee)
                .bind(new.refund_fee)
                .bind(&new.reason)
                .bind(&new.params)
                .bind(&new.idempotency_key)
                .bind(new.lease_until)
                .bind(new.created_at)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if !inserted {
                // The same idempotency key, committed by a concurrent request meanwhile.
                sqlx::query(UNRESERVE)
                    .bind(&new.out_trade_no)
                    .bind(new.refund_fee)
                    .execute(&mut *tx)
                    .await?;
                let existing: Option<RefundRow> = sqlx::query_as(BY_KEY)
                    .bind(&new.out_trade_no)
                    .bind(new.idempotency_key.as_deref().unwrap_or_default())
                    .fetch_optional(&mut *tx)
                    .await?;
                return existing
                    .map(CreateRefund::Existing)
                    .ok_or(StoreError::Conflict("out_refund_no already taken"));
            }
            sqlx::query(INSERT_EVENT)
                .bind(&new.out_trade_no)
                .bind(new.created_at)
                .bind(OrderEvent::Refund.as_str())
                .bind(format!("refund {} of {} fen requested", new.out_refund_no, new.refund_fee))
                .execute(&mut *tx)
                .await?;
            tx.enqueue(&job).await?;
            let row: RefundRow = sqlx::query_as("SELECT * FROM refunds WHERE out_refund_no = $1")
                .bind(&new.out_refund_no)
                .fetch_one(&mut *tx)
                .await?;
            Ok(CreateRefund::Created(row))
        })
    }

    pub async fn refund(&self, out_refund_no: &str) -> Result<Option<RefundRow>, StoreError> {
        let row = on_reader!(self, pool => {
            sqlx::query_as("SELECT * FROM refunds WHERE out_refund_no = $1")
                .bind(out_refund_no)
                .fetch_optional(pool)
                .await?
        });
        Ok(row)
    }

    /// The order's refunds, oldest first.
    pub async fn refunds_of(&self, out_trade_no: &str) -> Result<Vec<RefundRow>, StoreError> {
        let rows = on_reader!(self, pool => {
            sqlx::query_as(REFUNDS_OF_ORDER)
            .bind(out_trade_no)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Queues the job of each open refund whose next step is due (a send for `pending`, a
    /// refundquery for `processing`), claiming each with a guarded update so that several
    /// worker processes never queue the same run. The claim leases the refund for `lease_ms`.
    pub async fn claim_due_refunds(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<RefundOrder>, StoreError> {
        let due: Vec<(String, String, i64)> = on_reader!(self, pool => {
            sqlx::query_as(DUE_REFUNDS.as_str())
                .bind(now_ms)
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        if due.is_empty() {
            return Ok(Vec::new());
        }
        write_tx!(self, tx => {
            let mut claimed = Vec::new();
            for (out_refund_no, out_trade_no, runs) in due {
                let won = sqlx::query(CLAIM_REFUND.as_str())
                    .bind(&out_refund_no)
                    .bind(runs)
                    .bind(now_ms + lease_ms)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
                if won {
                    let run = u32::try_from(runs + 1).unwrap_or(u32::MAX);
                    let job = RefundOrder { out_refund_no, out_trade_no, run };
                    tx.enqueue(&job).await?;
                    claimed.push(job);
                }
            }
            Ok(claimed)
        })
    }

    /// Refunds by status, for the metrics; `held` counts pending refunds held by `NOTENOUGH`.
    pub async fn refund_status_counts(&self) -> Result<(Vec<(String, i64)>, i64), StoreError> {
        let (counts, held) = on_reader!(self, pool => {
            let counts: Vec<(String, i64)> =
                sqlx::query_as("SELECT status, COUNT(*) FROM refunds GROUP BY status")
                    .fetch_all(pool)
                    .await?;
            let held: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM refunds WHERE status = 'pending' AND held_since IS NOT NULL",
            )
            .fetch_one(pool)
            .await?;
            (counts, held)
        });
        Ok((counts, held))
    }
}
