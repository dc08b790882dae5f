//! A run's outcome: rescheduled, failed, or its report stored — the totals, every mismatch,
//! and the orders healed (an order query queued for each payment WeChat lists that minipay
//! holds as `pending` or `ready`) — in one transaction that replaces the day's previous
//! report. Every write is guarded by the run's claim: a job of an older attempt changes nothing.

use minipay_jobs::bill::{BillReport, Mismatch};
use minipay_jobs::{OrderEvent, QueryOrder};

use super::super::dialect::Dialect;
use super::super::orders::INSERT_EVENT;
use super::super::{Store, StoreError, on_reader, write_tx};
use super::BillRunStatus;

/// A report to store for a claimed attempt.
#[derive(Debug, Clone)]
pub struct StoredReport {
    pub bill_date: String,
    pub claim: u32,
    /// `Done` or `NoBill`.
    pub status: BillRunStatus,
    pub report: BillReport,
    /// Statement lines read (`None` when WeChat had no bill).
    pub statement_rows: Option<i64>,
}

/// One stored mismatch.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MismatchRow {
    pub kind: String,
    pub out_trade_no: String,
    pub out_refund_no: Option<String>,
    pub wechat: String,
    pub local: String,
    pub healable: bool,
}

/// An order the run healed, with where it stands now.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HealedRow {
    pub out_trade_no: String,
    pub status_before: String,
    pub queued_at: i64,
    pub status_now: Option<String>,
}

/// Only the attempt that holds the claim may finish the run.
const CLAIMED: &str = "bill_date = $1 AND claims = $2 AND status = 'pending'";

/// Mismatch rows per INSERT (7 values each, far below either backend's bind limit).
const INSERT_BATCH: usize = 500;

/// The order query that heals a payment: for `pending` and `ready` orders only, counted as a
/// reconciliation check so that its job key is the order's next. A `ready` order is leased
/// for the query like a check the sweep claims.
const HEAL_CLAIM: &str = "UPDATE orders SET reconcile_checks = reconcile_checks + 1, \
     next_check_at = CASE WHEN status = 'ready' THEN $2 ELSE next_check_at END \
     WHERE out_trade_no = $1 AND status IN ('pending', 'ready') \
     RETURNING reconcile_checks, status";

impl Store {
    /// The attempt did not get a statement: the next one is due at `next_attempt_at_ms`.
    /// False if the claim moved on.
    pub async fn retry_bill_run(
        &self,
        bill_date: &str,
        claim: u32,
        next_attempt_at_ms: i64,
        error: &str,
    ) -> Result<bool, StoreError> {
        let sql =
            format!("UPDATE bill_runs SET next_attempt_at = $3, last_error = $4 WHERE {CLAIMED}");
        let (bill_date, error) = (bill_date.to_owned(), error.to_owned());
        write_tx!(self, tx => {
            let changed = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&bill_date)
                .bind(i64::from(claim))
                .bind(next_attempt_at_ms)
                .bind(&error)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            Ok(changed == 1)
        })
    }

    /// The run is over without a report: WeChat refused for good, or the retries ran out.
    /// The previous report, if any, stays. False if the claim moved on.
    pub async fn fail_bill_run(
        &self,
        bill_date: &str,
        claim: u32,
        error: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE bill_runs SET status = 'failed', next_attempt_at = NULL, last_error = $3, \
             finished_at = $4 WHERE {CLAIMED}"
        );
        let (bill_date, error) = (bill_date.to_owned(), error.to_owned());
        write_tx!(self, tx => {
            let changed = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&bill_date)
                .bind(i64::from(claim))
                .bind(&error)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            Ok(changed == 1)
        })
    }

    /// Stores the day's report in place of the previous one and heals what it can, in one
    /// transaction. Returns the orders healed, or `None` if the claim moved on (nothing
    /// written).
    pub async fn store_bill_report(
        &self,
        stored: StoredReport,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let sql = format!(
            "UPDATE bill_runs SET status = $3, next_attempt_at = NULL, last_error = NULL, \
             finished_at = $4, statement_rows = $5, \
             wechat_payments = $6, wechat_payment_fee = $7, wechat_refunds = $8, wechat_refund_fee = $9, \
             local_payments = $10, local_payment_fee = $11, local_refunds = $12, local_refund_fee = $13, \
             mismatches = $14 WHERE {CLAIMED}"
        );
        let heal: Vec<(String, String)> = stored
            .report
            .mismatches
            .iter()
            .filter(|m| m.healable)
            .map(|m| {
                (
                    m.out_trade_no.clone(),
                    format!("{}: {}", m.kind.as_str(), m.wechat),
                )
            })
            .collect();
        write_tx!(self, tx => {
            let (wechat, local) = (stored.report.wechat, stored.report.local);
            let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            let won = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&stored.bill_date)
                .bind(i64::from(stored.claim))
                .bind(stored.status.as_str())
                .bind(now_ms)
                .bind(stored.statement_rows)
                .bind(count(wechat.payments))
                .bind(wechat.payment_fee)
                .bind(count(wechat.refunds))
                .bind(wechat.refund_fee)
                .bind(count(local.payments))
                .bind(local.payment_fee)
                .bind(count(local.refunds))
                .bind(local.refund_fee)
                .bind(count(stored.report.mismatches.len() as u64))
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if !won {
                return Ok(None);
            }
            for table in ["bill_mismatches", "bill_healed"] {
                sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE bill_date = $1")))
                    .bind(&stored.bill_date)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.insert_mismatches(&stored.bill_date, &stored.report.mismatches).await?;
            let healed = tx.heal(&stored.bill_date, &heal, now_ms, now_ms + lease_ms).await?;
            sqlx::query("UPDATE bill_runs SET healed = $2 WHERE bill_date = $1")
                .bind(&stored.bill_date)
                .bind(healed.len() as i64)
                .execute(&mut *tx)
                .await?;
            Ok(Some(healed))
        })
    }

    /// A day's stored mismatches, in report order.
    pub async fn bill_mismatches(&self, bill_date: &str) -> Result<Vec<MismatchRow>, StoreError> {
        let rows = on_reader!(self, pool => {
            sqlx::query_as(
                "SELECT kind, out_trade_no, out_refund_no, wechat, local, healable \
                 FROM bill_mismatches WHERE bill_date = $1 ORDER BY id",
            )
            .bind(bill_date)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// The orders a day's run healed, with their status now.
    pub async fn bill_healed(&self, bill_date: &str) -> Result<Vec<HealedRow>, StoreError> {
        let rows = on_reader!(self, pool => {
            sqlx::query_as(
                "SELECT h.out_trade_no, h.status_before, h.queued_at, o.status AS status_now \
                 FROM bill_healed h LEFT JOIN orders o ON o.out_trade_no = h.out_trade_no \
                 WHERE h.bill_date = $1 ORDER BY h.out_trade_no",
            )
            .bind(bill_date)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Mismatches of a day by kind (kinds without any are absent).
    pub async fn bill_mismatch_counts(
        &self,
        bill_date: &str,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = on_reader!(self, pool => {
            sqlx::query_as(
                "SELECT kind, COUNT(*) FROM bill_mismatches WHERE bill_date = $1 GROUP BY kind",
            )
            .bind(bill_date)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }
}

/// The report's rows, written inside the report's transaction on either backend.
trait ReportTx {
    /// Inserts the day's mismatches in batches.
    async fn insert_mismatches(
        &mut self,
        bill_date: &str,
        mismatches: &[Mismatch],
    ) -> Result<(), StoreError>;

    /// Queues an order query for each `(out_trade_no, what WeChat listed)` still `pending` or
    /// `ready`, notes it in the order's history and the day's `bill_healed`; returns those.
    async fn heal(
        &mut self,
        bill_date: &str,
        heal: &[(String, String)],
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Vec<String>, StoreError>;
}

/// The same text for both connections (each type-checks it against its own backend).
macro_rules! report_tx {
    ($conn:ty) => {
        impl ReportTx for $conn {
            async fn insert_mismatches(
                &mut self,
                bill_date: &str,
                mismatches: &[Mismatch],
            ) -> Result<(), StoreError> {
                for batch in mismatches.chunks(INSERT_BATCH) {
                    let mut insert = sqlx::QueryBuilder::new(
                        "INSERT INTO bill_mismatches \
                         (bill_date, kind, out_trade_no, out_refund_no, wechat, local, healable) ",
                    );
                    insert.push_values(batch, |mut row, m| {
                        row.push_bind(bill_date)
                            .push_bind(m.kind.as_str())
                            .push_bind(&m.out_trade_no)
                            .push_bind(&m.out_refund_no)
                            .push_bind(&m.wechat)
                            .push_bind(&m.local)
                            .push_bind(m.healable);
                    });
                    insert.build().execute(&mut *self).await?;
                }
                Ok(())
            }

            async fn heal(
                &mut self,
                bill_date: &str,
                heal: &[(String, String)],
                now_ms: i64,
                lease_until_ms: i64,
            ) -> Result<Vec<String>, StoreError> {
                let mut healed = Vec::new();
                for (out_trade_no, seen) in heal {
                    let claimed: Option<(i64, String)> = sqlx::query_as(HEAL_CLAIM)
                        .bind(out_trade_no)
                        .bind(lease_until_ms)
                        .fetch_optional(&mut *self)
                        .await?;
                    let Some((checks, before)) = claimed else {
                        continue;
                    };
                    let check = u32::try_from(checks - 1).unwrap_or(u32::MAX);
                    let job = QueryOrder {
                        out_trade_no: out_trade_no.clone(),
                        check,
                    };
                    self.enqueue(&job).await?;
                    sqlx::query(
                        "INSERT INTO bill_healed (bill_date, out_trade_no, status_before, queued_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    )
                    .bind(bill_date)
                    .bind(out_trade_no)
                    .bind(&before)
                    .bind(now_ms)
                    .execute(&mut *self)
                    .await?;
                    sqlx::query(INSERT_EVENT)
                        .bind(out_trade_no)
                        .bind(now_ms)
                        .bind(OrderEvent::Reconcile.as_str())
                        .bind(format!(
                            "bill {bill_date}: WeChat's statement lists it ({seen}) while it is \
                             {before}; order query queued"
                        ))
                        .execute(&mut *self)
                        .await?;
                    healed.push(out_trade_no.clone());
                }
                Ok(healed)
            }
        }
    };
}
report_tx!(sqlx::SqliteConnection);
report_tx!(sqlx::PgConnection);

#[cfg(test)]
mod tests {
    use super::*;
    use minipay_jobs::OrderStatus;

    /// The statuses an order query may heal (`OrderStatus::payable`), as the SQL spells them.
    #[test]
    fn the_heal_guard_names_the_payable_statuses() {
        let payable: Vec<&str> = OrderStatus::payable().iter().map(|s| s.as_str()).collect();
        assert_eq!(payable, ["pending", "ready"]);
        assert!(HEAL_CLAIM.contains("status IN ('pending', 'ready')"));
    }
}
