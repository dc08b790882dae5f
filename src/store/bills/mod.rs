//! Bill runs: one row per Beijing day in `bill_runs` (migration 0008), requested by the
//! schedule (once across all processes: the insert is the claim), by an operator or by the
//! CLI; claimed when due with a guarded update that queues the day's `reconcile_bill` job;
//! rescheduled or failed by that job; finished by storing the report ([`report`]).

mod local;
pub use local::BillDay;
mod report;

use minipay_jobs::ReconcileBill;
use serde::Serialize;

use super::dialect::Dialect;
use super::{Store, StoreError, on_pool, on_reader, write_tx};

pub use report::{HealedRow, MismatchRow, StoredReport};

/// Where a day's run stands: the contract's statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BillRunStatus {
    /// Waiting for its next attempt, or running.
    Pending,
    /// Reconciled against WeChat's statement.
    Done,
    /// WeChat has no bill for the day (`No Bill Exist`); local payments of the day, if any,
    /// are `missing_wechat`.
    NoBill,
    /// WeChat refused for good, or the retries ran out: an operator looks at `last_error`.
    Failed,
}

impl BillRunStatus {
    pub const ALL: [BillRunStatus; 4] = [
        BillRunStatus::Pending,
        BillRunStatus::Done,
        BillRunStatus::NoBill,
        BillRunStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BillRunStatus::Pending => "pending",
            BillRunStatus::Done => "done",
            BillRunStatus::NoBill => "no_bill",
            BillRunStatus::Failed => "failed",
        }
    }
}

impl TryFrom<String> for BillRunStatus {
    type Error = String;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == name)
            .ok_or(name)
    }
}

/// One `bill_runs` row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BillRunRow {
    pub bill_date: String,
    #[sqlx(try_from = "String")]
    pub status: BillRunStatus,
    pub requested_by: String,
    pub requested_at: i64,
    pub attempts: i64,
    pub claims: i64,
    pub next_attempt_at: Option<i64>,
    pub give_up_at: i64,
    pub last_error: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub statement_rows: Option<i64>,
    pub wechat_payments: i64,
    pub wechat_payment_fee: i64,
    pub wechat_refunds: i64,
    pub wechat_refund_fee: i64,
    pub local_payments: i64,
    pub local_payment_fee: i64,
    pub local_refunds: i64,
    pub local_refund_fee: i64,
    pub mismatches: i64,
    pub healed: i64,
}

/// Who asked for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestedBy {
    Schedule,
    Admin,
    Cli,
}

impl RequestedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestedBy::Schedule => "schedule",
            RequestedBy::Admin => "admin",
            RequestedBy::Cli => "cli",
        }
    }
}

const INSERT_RUN: &str = "INSERT INTO bill_runs (bill_date, status, requested_by, requested_at, \
     next_attempt_at, give_up_at) VALUES ($1, 'pending', $2, $3, $3, $4)";

/// An operator's (or the CLI's) request: a finished day starts over (its report stays until
/// the new one replaces it); a pending day is left alone.
const REQUEST_RUN: &str = "INSERT INTO bill_runs (bill_date, status, requested_by, requested_at, \
     next_attempt_at, give_up_at) VALUES ($1, 'pending', $2, $3, $5, $4) \
     ON CONFLICT (bill_date) DO UPDATE SET status = 'pending', requested_by = excluded.requested_by, \
     requested_at = excluded.requested_at, next_attempt_at = excluded.next_attempt_at, \
     give_up_at = excluded.give_up_at, attempts = 0, last_error = NULL \
     WHERE bill_runs.status <> 'pending'";

const DUE_RUNS: &str = "SELECT bill_date, claims FROM bill_runs \
     WHERE status = 'pending' AND next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT $2";

/// One attempt claimed: the run is leased until its job reschedules or finishes it.
const CLAIM_RUN: &str = "UPDATE bill_runs SET claims = claims + 1, attempts = attempts + 1, \
     next_attempt_at = $3, started_at = COALESCE(started_at, $4) \
     WHERE bill_date = $1 AND status = 'pending' AND claims = $2";

impl Store {
    /// The schedule's run of `bill_date`: inserted once across all processes (the primary
    /// key is the claim). False when the day already has a run, whoever asked for it.
    pub async fn schedule_bill_run(
        &self,
        bill_date: &str,
        now_ms: i64,
        give_up_at_ms: i64,
    ) -> Result<bool, StoreError> {
        let sql = format!("{INSERT_RUN} ON CONFLICT (bill_date) DO NOTHING");
        let inserted = on_pool!(self, pool => {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(bill_date)
                .bind(RequestedBy::Schedule.as_str())
                .bind(now_ms)
                .bind(give_up_at_ms)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(inserted == 1)
    }

    /// Asks for `bill_date` to be reconciled (again): a worker sweeping at or after `due_ms`
    /// takes it (the CLI, which runs it itself, sets it a lease ahead so that no worker races
    /// it). Returns the run as it now stands.
    pub async fn request_bill_run(
        &self,
        bill_date: &str,
        by: RequestedBy,
        now_ms: i64,
        due_ms: i64,
        give_up_at_ms: i64,
    ) -> Result<BillRunRow, StoreError> {
        on_pool!(self, pool => {
            sqlx::query(REQUEST_RUN)
                .bind(bill_date)
                .bind(by.as_str())
                .bind(now_ms)
                .bind(give_up_at_ms)
                .bind(due_ms)
                .execute(pool)
                .await?;
        });
        self.bill_run_written(bill_date)
            .await?
            .ok_or(StoreError::Database(sqlx::Error::RowNotFound))
    }

    /// Queues a `reconcile_bill` job for each pending run whose attempt is due, claiming each
    /// with a guarded update so that several worker processes never queue the same attempt.
    /// The claim leases the run for `lease_ms`; the job sets the real next attempt.
    pub async fn claim_due_bill_runs(
        &self,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Vec<ReconcileBill>, StoreError> {
        let due: Vec<(String, i64)> = on_reader!(self, pool => {
            sqlx::query_as(DUE_RUNS).bind(now_ms).bind(10_i64).fetch_all(pool).await?
        });
        if due.is_empty() {
            return Ok(Vec::new());
        }
        write_tx!(self, tx => {
            let mut claimed = Vec::new();
            for (bill_date, claims) in due {
                let won = sqlx::query(CLAIM_RUN)
                    .bind(&bill_date)
                    .bind(claims)
                    .bind(now_ms + lease_ms)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
                if won {
                    let claim = u32::try_from(claims + 1).unwrap_or(u32::MAX);
                    let job = ReconcileBill { bill_date, claim };
                    tx.enqueue(&job).await?;
                    claimed.push(job);
                }
            }
            Ok(claimed)
        })
    }

    /// Claims the current attempt of a pending run without queueing a job, for a caller that
    /// runs it itself (the CLI). `None` if the run is not pending or another claim won.
    pub async fn claim_bill_run(
        &self,
        bill_date: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<u32>, StoreError> {
        let Some(run) = self.bill_run_written(bill_date).await? else {
            return Ok(None);
        };
        if run.status != BillRunStatus::Pending {
            return Ok(None);
        }
        let won = on_pool!(self, pool => {
            sqlx::query(CLAIM_RUN)
                .bind(bill_date)
                .bind(run.claims)
                .bind(now_ms + lease_ms)
                .bind(now_ms)
                .execute(pool)
                .await?
                .rows_affected()
        }) == 1;
        Ok(won.then(|| u32::try_from(run.claims + 1).unwrap_or(u32::MAX)))
    }

    /// One day's run.
    pub async fn bill_run(&self, bill_date: &str) -> Result<Option<BillRunRow>, StoreError> {
        let row = on_reader!(self, pool => {
            sqlx::query_as("SELECT * FROM bill_runs WHERE bill_date = $1")
                .bind(bill_date)
                .fetch_optional(pool)
                .await?
        });
        Ok(row)
    }

    /// One day's run, read where writes go (right after a write, on SQLite's writer).
    async fn bill_run_written(&self, bill_date: &str) -> Result<Option<BillRunRow>, StoreError> {
        let row = on_pool!(self, pool => {
            sqlx::query_as("SELECT * FROM bill_runs WHERE bill_date = $1")
                .bind(bill_date)
                .fetch_optional(pool)
                .await?
        });
        Ok(row)
    }

    /// The most recent days' runs, newest day first.
    pub async fn bill_runs(&self, limit: i64) -> Result<Vec<BillRunRow>, StoreError> {
        let rows = on_reader!(self, pool => {
            sqlx::query_as("SELECT * FROM bill_runs ORDER BY bill_date DESC LIMIT $1")
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        Ok(rows)
    }

    /// The last day reconciled (`done` or `no_bill`), for the metrics.
    pub async fn last_reconciled_bill(&self) -> Result<Option<BillRunRow>, StoreError> {
        let row = on_reader!(self, pool => {
            sqlx::query_as(
                "SELECT * FROM bill_runs WHERE status IN ('done', 'no_bill') \
                 ORDER BY bill_date DESC LIMIT 1",
            )
            .fetch_optional(pool)
            .await?
        });
        Ok(row)
    }
}
