//! Orders: creation with their prepay job, guarded status transitions, payments, reconciliation
//! bookkeeping and history.

use minipay_jobs::{OrderStatus, PrepayOrder, QueryOrder};

use super::dialect::{Dialect, job_task};
use super::{Store, on_pool, on_reader, write_tx};
use crate::wechat::reply::Payment;

/// An order row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrderRow {
    pub out_trade_no: String,
    pub session_id: Option<i64>,
    pub openid: String,
    pub sku: Option<String>,
    pub quantity: Option<i64>,
    pub total_fee: i64,
    pub description: String,
    pub attach: String,
    pub payer_ip: String,
    pub idempotency_key: Option<String>,
    pub params: String,
    pub status: String,
    pub prepay_id: Option<String>,
    pub pay_params: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub transaction_id: Option<String>,
    pub time_end: Option<String>,
    pub cash_fee: Option<i64>,
    pub prepay_attempts: i64,
    pub prepay_generation: i64,
    pub reconcile_checks: i64,
    pub next_check_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub ready_at: Option<i64>,
    pub paid_at: Option<i64>,
    pub expires_at: i64,
}

impl OrderRow {
    /// The status; a value outside the enum cannot be stored (CHECK constraint).
    pub fn status(&self) -> OrderStatus {
        OrderStatus::parse(&self.status).unwrap_or(OrderStatus::Failed)
    }
}

/// One line of an order's history.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct EventRow {
    pub at: i64,
    pub kind: String,
    pub detail: String,
}

/// An order to insert.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub out_trade_no: String,
    pub session_id: Option<i64>,
    pub openid: String,
    pub sku: Option<String>,
    pub quantity: Option<i64>,
    pub total_fee: i64,
    pub description: String,
    pub attach: String,
    pub payer_ip: String,
    pub idempotency_key: Option<String>,
    /// Frozen unifiedorder parameters, JSON.
    pub params: String,
    pub created_at: i64,
    pub expires_at: i64,
}

impl NewOrder {
    /// The row as `INSERT_ORDER` writes it (read back without a query).
    fn as_inserted(&self) -> OrderRow {
        OrderRow {
            out_trade_no: self.out_trade_no.clone(),
            session_id: self.session_id,
            openid: self.openid.clone(),
            sku: self.sku.clone(),
            quantity: self.quantity,
            total_fee: self.total_fee,
            description: self.description.clone(),
            attach: self.attach.clone(),
            payer_ip: self.payer_ip.clone(),
            idempotency_key: self.idempotency_key.clone(),
            params: self.params.clone(),
            status: OrderStatus::Pending.as_str().to_owned(),
            prepay_id: None,
            pay_params: None,
            error_code: None,
            error_message: None,
            transaction_id: None,
            time_end: None,
            cash_fee: None,
            prepay_attempts: 0,
            prepay_generation: 0,
            reconcile_checks: 0,
            next_check_at: None,
            created_at: self.created_at,
            updated_at: self.created_at,
            ready_at: None,
            paid_at: None,
            expires_at: self.expires_at,
        }
    }
}

/// What `create_order` did.
#[derive(Debug)]
pub enum CreateOutcome {
    /// Inserted with its prepay job.
    Created(OrderRow),
    /// The idempotency key (same user) or the merchant's out_trade_no names this order.
    Existing(OrderRow),
    /// The out_trade_no is taken by a different order.
    NumberTaken,
}

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

const INSERT_ORDER: &str = "INSERT INTO orders (out_trade_no, session_id, openid, sku, quantity, total_fee, \
     description, attach, payer_ip, idempotency_key, params, status, created_at, updated_at, expires_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending', $12, $12, $13) ON CONFLICT DO NOTHING";

const MARK_READY: &str = "UPDATE orders SET status = 'ready', prepay_id = $2, pay_params = $3, \
     prepay_attempts = prepay_attempts + 1, ready_at = $4, updated_at = $4, next_check_at = $5 \
     WHERE out_trade_no = $1 AND status = 'pending'";

const INSERT_EVENT: &str =
    "INSERT INTO order_events (out_trade_no, at, kind, detail) VALUES ($1, $2, $3, $4)";

/// Runs of a prepay job apalis may make: ours retries inside the handler, so apalis only
/// re-runs after an infrastructure error (database down, crash).
pub const PREPAY_JOB_RUNS: usize = 5;

impl Store {
    /// Inserts the order and queues its prepay job in one transaction.
    pub async fn create_order(&self, order: &NewOrder) -> Result<CreateOutcome, sqlx::Error> {
        let job = PrepayOrder {
            out_trade_no: order.out_trade_no.clone(),
        };
        let task = job_task(&job, job.idempotency_key(0), PREPAY_JOB_RUNS, None)
            .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        let order = order.clone();
        write_tx!(self, tx => {
            let inserted = sqlx::query(INSERT_ORDER)
                .bind(&order.out_trade_no)
                .bind(order.session_id)
                .bind(&order.openid)
                .bind(&order.sku)
                .bind(order.quantity)
                .bind(order.total_fee)
                .bind(&order.description)
                .bind(&order.attach)
                .bind(&order.payer_ip)
                .bind(&order.idempotency_key)
                .bind(&order.params)
                .bind(order.created_at)
                .bind(order.expires_at)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if inserted {
                tx.enqueue(PrepayOrder::QUEUE, task).await?;
                return Ok(CreateOutcome::Created(order.as_inserted()));
            }
            // An idempotency key is the user's, whichever of their sessions sends it.
            let existing: Option<OrderRow> = match &order.idempotency_key {
                Some(key) => {
                    sqlx::query_as("SELECT * FROM orders WHERE openid = $1 AND idempotency_key = $2")
                        .bind(&order.openid)
                        .bind(key)
                        .fetch_optional(&mut *tx)
                        .await?
                }
                None => None,
            };
            let existing = match existing {
                Some(row) => Some(row),
                None => {
                    sqlx::query_as("SELECT * FROM orders WHERE out_trade_no = $1")
                        .bind(&order.out_trade_no)
                        .fetch_optional(&mut *tx)
                        .await?
                        .filter(|_: &OrderRow| order.session_id.is_none())
                }
            };
            Ok(match existing {
                Some(row) => CreateOutcome::Existing(row),
                None => CreateOutcome::NumberTaken,
            })
        })
    }

    pub async fn order(&self, out_trade_no: &str) -> Result<Option<OrderRow>, sqlx::Error> {
        on_reader!(self, pool => {
            sqlx::query_as("SELECT * FROM orders WHERE out_trade_no = $1")
                .bind(out_trade_no)
                .fetch_optional(pool)
                .await
        })
    }

    /// `pending → ready` with the prepay_id and signed pay params; false if not pending.
    pub async fn mark_ready(
        &self,
        out_trade_no: &str,
        prepay_id: &str,
        pay_params_json: &str,
        now_ms: i64,
        first_check_at_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        // One statement, no explicit transaction: this runs once per order, and the history
        // shows "ready" from `ready_at` rather than from an event row.
        let changed = match self {
            Store::Sqlite(pools) => sqlx::query(MARK_READY)
                .bind(out_trade_no)
                .bind(prepay_id)
                .bind(pay_params_json)
                .bind(now_ms)
                .bind(first_check_at_ms)
                .execute(&pools.writer)
                .await?
                .rows_affected(),
            // The NOTIFY rides in the same statement, so it is sent exactly when the change
            // commits.
            Store::Postgres(pool) => sqlx::query(concat!(
                "WITH changed AS (",
                "UPDATE orders SET status = 'ready', prepay_id = $2, pay_params = $3, ",
                "prepay_attempts = prepay_attempts + 1, ready_at = $4, updated_at = $4, ",
                "next_check_at = $5 WHERE out_trade_no = $1 AND status = 'pending' ",
                "RETURNING out_trade_no) ",
                "SELECT pg_notify('minipay_order', out_trade_no) FROM changed"
            ))
            .bind(out_trade_no)
            .bind(prepay_id)
            .bind(pay_params_json)
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
    ) -> Result<Option<i64>, sqlx::Error> {
        let out_trade_no = out_trade_no.to_owned();
        let outcome = outcome.to_owned();
        let reason = reason.to_owned();
        write_tx!(self, tx => {
            let attempts: Option<i64> = sqlx::query_scalar(
                "UPDATE orders SET prepay_attempts = prepay_attempts + 1, updated_at = $2 \
                 WHERE out_trade_no = $1 AND status = 'pending' RETURNING prepay_attempts",
            )
            .bind(&out_trade_no)
            .bind(now_ms)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(n) = attempts {
                sqlx::query(INSERT_EVENT)
                    .bind(&out_trade_no)
                    .bind(now_ms)
                    .bind("prepay_attempt")
                    .bind(format!("attempt {n}: {outcome}: {reason}"))
                    .execute(&mut *tx)
                    .await?;
            }
            Ok(attempts)
        })
    }

    /// `pending → failed` with WeChat's (or our) error; false if not pending.
    pub async fn mark_failed(
        &self,
        out_trade_no: &str,
        code: &str,
        message: &str,
        now_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let out_trade_no = out_trade_no.to_owned();
        let code = code.to_owned();
        let message = message.to_owned();
        write_tx!(self, tx => {
            let changed = sqlx::query(
                "UPDATE orders SET status = 'failed', error_code = $2, error_message = $3, updated_at = $4 \
                 WHERE out_trade_no = $1 AND status = 'pending'",
            )
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
                    .bind("failed")
                    .bind(format!("{code}: {message}"))
                    .execute(&mut *tx)
                    .await?;
                tx.announce(&out_trade_no).await?;
            }
            Ok(changed)
        })
    }

    /// Applies a verified payment: `pending`/`ready` → `paid`, at most once per order. When
    /// it came from a notify, the notify row is marked applied in the same transaction.
    pub async fn apply_payment(
        &self,
        payment: &Payment,
        source: &str,
        notify_id: Option<i64>,
        now_ms: i64,
    ) -> Result<Applied, sqlx::Error> {
        let payment = payment.clone();
        let source = source.to_owned();
        write_tx!(self, tx => {
            let updated: Option<Option<i64>> = sqlx::query_scalar(
                "UPDATE orders SET status = 'paid', transaction_id = $2, time_end = $3, cash_fee = $4, \
                 paid_at = $5, updated_at = $5, next_check_at = NULL \
                 WHERE out_trade_no = $1 AND status IN ('pending', 'ready') AND total_fee = $6 \
                 RETURNING ready_at",
            )
            .bind(&payment.out_trade_no)
            .bind(&payment.transaction_id)
            .bind(&payment.time_end)
            .bind(payment.cash_fee)
            .bind(now_ms)
            .bind(payment.total_fee)
            .fetch_optional(&mut *tx)
            .await?;
            let applied = match updated {
                Some(ready_at) => {
                    sqlx::query(INSERT_EVENT)
                        .bind(&payment.out_trade_no)
                        .bind(now_ms)
                        .bind("paid")
                        .bind(format!("transaction {} via {source}", payment.transaction_id))
                        .execute(&mut *tx)
                        .await?;
                    if let Some(id) = notify_id {
                        sqlx::query("UPDATE notifies SET applied_at = $2 WHERE id = $1")
                            .bind(id)
                            .bind(now_ms)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.announce(&payment.out_trade_no).await?;
                    Applied::Paid { ready_at }
                }
                None => {
                    let row: Option<(String, Option<String>, i64)> = sqlx::query_as(
                        "SELECT status, transaction_id, total_fee FROM orders WHERE out_trade_no = $1",
                    )
                    .bind(&payment.out_trade_no)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let applied = match row {
                        None => Applied::UnknownOrder,
                        Some((_, _, total)) if total != payment.total_fee => {
                            Applied::AmountMismatch { expected: total }
                        }
                        Some((status, txn, _)) => match OrderStatus::parse(&status) {
                            Some(OrderStatus::Paid) if txn.as_deref() == Some(payment.transaction_id.as_str()) => {
                                Applied::AlreadyPaid
                            }
                            Some(OrderStatus::Paid) => Applied::PaidTwice { existing: txn.unwrap_or_default() },
                            other => Applied::NotPayable(other.unwrap_or(OrderStatus::Failed)),
                        },
                    };
                    if !matches!(applied, Applied::AlreadyPaid | Applied::UnknownOrder) {
                        sqlx::query(INSERT_EVENT)
                            .bind(&payment.out_trade_no)
                            .bind(now_ms)
                            .bind("alert")
                            .bind(format!("payment {} via {source} not applied: {applied:?}", payment.transaction_id))
                            .execute(&mut *tx)
                            .await?;
                    }
                    applied
                }
            };
            Ok(applied)
        })
    }

    /// `ready → closed` after WeChat closed it; false if not ready.
    pub async fn mark_closed(
        &self,
        out_trade_no: &str,
        detail: &str,
        now_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let out_trade_no = out_trade_no.to_owned();
        let detail = detail.to_owned();
        write_tx!(self, tx => {
            let changed = sqlx::query(
                "UPDATE orders SET status = 'closed', next_check_at = NULL, updated_at = $2 \
                 WHERE out_trade_no = $1 AND status = 'ready'",
            )
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
                    .bind("closed")
                    .bind(&detail)
                    .execute(&mut *tx)
                    .await?;
                tx.announce(&out_trade_no).await?;
            }
            Ok(changed)
        })
    }

    /// Notes a reconciliation decision and when to check next (ready orders only).
    pub async fn schedule_check(
        &self,
        out_trade_no: &str,
        next_check_at_ms: i64,
        decision: &str,
        now_ms: i64,
    ) -> Result<(), sqlx::Error> {
        let out_trade_no = out_trade_no.to_owned();
        let decision = decision.to_owned();
        write_tx!(self, tx => {
            sqlx::query("UPDATE orders SET next_check_at = $2 WHERE out_trade_no = $1 AND status = 'ready'")
                .bind(&out_trade_no)
                .bind(next_check_at_ms)
                .execute(&mut *tx)
                .await?;
            sqlx::query(INSERT_EVENT)
                .bind(&out_trade_no)
                .bind(now_ms)
                .bind("reconcile")
                .bind(&decision)
                .execute(&mut *tx)
                .await?;
            Ok(())
        })
    }

    /// Adds a line to an order's history.
    pub async fn add_event(
        &self,
        out_trade_no: &str,
        kind: &str,
        detail: &str,
        now_ms: i64,
    ) -> Result<(), sqlx::Error> {
        on_pool!(self, pool => {
            sqlx::query(INSERT_EVENT)
                .bind(out_trade_no)
                .bind(now_ms)
                .bind(kind)
                .bind(detail)
                .execute(pool)
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
    ) -> Result<Vec<QueryOrder>, sqlx::Error> {
        let due: Vec<(String, i64)> = on_reader!(self, pool => {
            sqlx::query_as(
                "SELECT out_trade_no, reconcile_checks FROM orders \
                 WHERE status = 'ready' AND next_check_at <= $1 ORDER BY next_check_at LIMIT $2",
            )
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
                let won = sqlx::query(
                    "UPDATE orders SET reconcile_checks = reconcile_checks + 1, next_check_at = $3 \
                     WHERE out_trade_no = $1 AND status = 'ready' AND reconcile_checks = $2",
                )
                .bind(&out_trade_no)
                .bind(checks)
                .bind(now_ms + lease_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if won {
                    let job = QueryOrder { out_trade_no, check: u32::try_from(checks).unwrap_or(u32::MAX) };
                    let task = job_task(&job, job.idempotency_key(), 3, None)
                        .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
                    tx.enqueue(QueryOrder::QUEUE, task).await?;
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
    ) -> Result<Vec<String>, sqlx::Error> {
        let find = match self {
            Store::Sqlite(_) => STUCK_PENDING_SQLITE,
            Store::Postgres(_) => STUCK_PENDING_POSTGRES,
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
                let won = sqlx::query(
                    "UPDATE orders SET prepay_generation = prepay_generation + 1, updated_at = $3 \
                     WHERE out_trade_no = $1 AND status = 'pending' AND prepay_generation = $2",
                )
                .bind(&out_trade_no)
                .bind(generation)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if won {
                    let job = PrepayOrder { out_trade_no: out_trade_no.clone() };
                    let next = u32::try_from(generation + 1).unwrap_or(u32::MAX);
                    let task = job_task(&job, job.idempotency_key(next), PREPAY_JOB_RUNS, None)
                        .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
                    tx.enqueue(PrepayOrder::QUEUE, task).await?;
                    sqlx::query(INSERT_EVENT)
                        .bind(&out_trade_no)
                        .bind(now_ms)
                        .bind("requeued")
                        .bind(format!("prepay job was missing or dead; queued generation {next}"))
                        .execute(&mut *tx)
                        .await?;
                    requeued.push(out_trade_no);
                }
            }
            Ok(requeued)
        })
    }

    /// The order's history: its events, oldest first.
    pub async fn events(&self, out_trade_no: &str) -> Result<Vec<EventRow>, sqlx::Error> {
        on_reader!(self, pool => {
            sqlx::query_as("SELECT at, kind, detail FROM order_events WHERE out_trade_no = $1 ORDER BY id")
                .bind(out_trade_no)
                .fetch_all(pool)
                .await
        })
    }
}

/// The prepay job key of an order's current generation, in SQL (see `PrepayOrder::idempotency_key`).
macro_rules! stuck_pending_sql {
    ($jobs:literal) => {
        concat!(
            "SELECT o.out_trade_no, o.prepay_generation FROM orders o \
             WHERE o.status = 'pending' AND o.created_at < $1 AND NOT EXISTS ( \
               SELECT 1 FROM ", $jobs, " j WHERE j.job_type = 'prepay_order' \
               AND j.idempotency_key = CASE WHEN o.prepay_generation = 0 THEN 'prepay:' || o.out_trade_no \
                   ELSE 'prepay:' || o.out_trade_no || ':' || CAST(o.prepay_generation AS TEXT) END \
               AND (j.status IN ('Pending', 'Queued', 'Running') \
                    OR (j.status = 'Failed' AND j.attempts < j.max_attempts))) \
             ORDER BY o.created_at LIMIT $2"
        )
    };
}

const STUCK_PENDING_SQLITE: &str = stuck_pending_sql!("Jobs");
const STUCK_PENDING_POSTGRES: &str = stuck_pending_sql!("apalis.jobs");
