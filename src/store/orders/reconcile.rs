//! Reconciliation bookkeeping: which `ready` orders are due for an order query (claimed with a
//! guarded update, so several worker processes never queue the same check), when each is
//! checked next, and `pending` orders whose prepay job was lost or died.

use minipay_jobs::{Job, OrderEvent, OrderStatus, PrepayOrder, QueryOrder};

use super::super::dialect::Dialect;
use super::super::{Store, StoreError, on_reader, write_tx};
use super::{INSERT_EVENT, is, status_sql};

status_sql!(
    /// A decision's next check, for orders still waiting for their payment.
    SCHEDULE_CHECK = "UPDATE orders SET next_check_at = $2 WHERE out_trade_no = $1 AND {}",
    is(OrderStatus::Ready)
);

status_sql!(
    /// Ready orders whose check is due, oldest due first (the partial index `orders_due_checks`).
    DUE_CHECKS = "SELECT out_trade_no, reconcile_checks FROM orders \
     WHERE {} AND next_check_at <= $1 ORDER BY next_check_at LIMIT $2",
    is(OrderStatus::Ready)
);

status_sql!(
    /// One check claimed: the count moves on, and the order is leased until the job reschedules it.
    CLAIM_CHECK = "UPDATE orders SET reconcile_checks = reconcile_checks + 1, next_check_at = $3 \
     WHERE out_trade_no = $1 AND {} AND reconcile_checks = $2",
    is(OrderStatus::Ready)
);

status_sql!(
    /// One lost prepay job claimed: the generation moves on, naming the new job's key.
    CLAIM_REQUEUE = "UPDATE orders SET prepay_generation = prepay_generation + 1, updated_at = $3 \
     WHERE out_trade_no = $1 AND {} AND prepay_generation = $2",
    is(OrderStatus::Pending)
);

/// Pending orders older than `$1` with no live prepay job under their current generation's
/// key (see `PrepayOrder::idempotency_key`), in `jobs`, apalis' table on this backend.
fn stuck_pending(jobs: &str) -> String {
    format!(
        "SELECT o.out_trade_no, o.prepay_generation FROM orders o \
         WHERE o.{pending} AND o.created_at < $1 AND NOT EXISTS ( \
           SELECT 1 FROM {jobs} j WHERE j.job_type = '{queue}' \
           AND j.idempotency_key = CASE WHEN o.prepay_generation = 0 THEN 'prepay:' || o.out_trade_no \
               ELSE 'prepay:' || o.out_trade_no || ':' || CAST(o.prepay_generation AS TEXT) END \
           AND (j.status IN ('Pending', 'Queued', 'Running') \
                OR (j.status = 'Failed' AND j.attempts < j.max_attempts))) \
         ORDER BY o.created_at LIMIT $2",
        pending = is(OrderStatus::Pending),
        queue = PrepayOrder::QUEUE,
    )
}

status_sql!(STUCK_PENDING_SQLITE = "{}", stuck_pending("Jobs"));
status_sql!(STUCK_PENDING_POSTGRES = "{}", stuck_pending("apalis.jobs"));

impl Store {
    /// Notes a reconciliation decision and when to check next (ready orders only).
    pub async fn schedule_check(
        &self,
        out_trade_no: &str,
        next_check_at_ms: i64,
        decision: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let out_trade_no = out_trade_no.to_owned();
        let decision = decision.to_owned();
        write_tx!(self, tx => {
            sqlx::query(SCHEDULE_CHECK.as_str())
                .bind(&out_trade_no)
                .bind(next_check_at_ms)
                .execute(&mut *tx)
                .await?;
            sqlx::query(INSERT_EVENT)
                .bind(&out_trade_no)
                .bind(now_ms)
                .bind(OrderEvent::Reconcile.as_str())
                .bind(&decision)
                .execute(&mut *tx)
                .await?;
            Ok(())
        })
    }

    /// Queues an order query for each `ready` order whose check is due, claiming each check
    /// with a guarded update so that several worker processes never queue the same one. The
    /// claim leases the order for `lease_ms`; the query job sets the real next check.
    pub async fn claim_due_checks(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<QueryOrder>, StoreError> {
        let due: Vec<(String, i64)> = on_reader!(self, pool => {
            sqlx::query_as(DUE_CHECKS.as_str())
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
            for (out_trade_no, checks) in due {
                let won = sqlx::query(CLAIM_CHECK.as_str())
                    .bind(&out_trade_no)
                    .bind(checks)
                    .bind(now_ms + lease_ms)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
                if won {
                    let job = QueryOrder { out_trade_no, check: u32::try_from(checks).unwrap_or(u32::MAX) };
                    tx.enqueue(&job).await?;
                    claimed.push(job);
                }
            }
            Ok(claimed)
        })
    }

    /// Re-queues the prepay job of `pending` orders older than `created_before_ms` whose job
    /// is gone or dead (killed, or failed with no runs left). Returns their numbers.
    pub async fn requeue_stuck_pending(
        &self,
        created_before_ms: i64,
        limit: i64,
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let find = match self {
            Store::Sqlite(_) => STUCK_PENDING_SQLITE.as_str(),
            Store::Postgres(_) => STUCK_PENDING_POSTGRES.as_str(),
        };
        let stuck: Vec<(String, i64)> = on_reader!(self, pool => {
            sqlx::query_as(find)
                .bind(created_before_ms)
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        if stuck.is_empty() {
            return Ok(Vec::new());
        }
        write_tx!(self, tx => {
            let mut requeued = Vec::new();
            for (out_trade_no, generation) in stuck {
                let won = sqlx::query(CLAIM_REQUEUE.as_str())
                    .bind(&out_trade_no)
                    .bind(generation)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
                if won {
                    let next = u32::try_from(generation + 1).unwrap_or(u32::MAX);
                    let job = PrepayOrder { out_trade_no: out_trade_no.clone(), generation: next, created: None };
                    tx.enqueue(&job).await?;
                    sqlx::query(INSERT_EVENT)
                        .bind(&out_trade_no)
                        .bind(now_ms)
                        .bind(OrderEvent::Requeued.as_str())
                        .bind(format!("prepay job was missing or dead; queued generation {next}"))
                        .execute(&mut *tx)
                        .await?;
                    requeued.push(out_trade_no);
                }
            }
            Ok(requeued)
        })
    }
}
