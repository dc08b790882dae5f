//! Verified payment notifies, recorded with their status-update job before WeChat hears
//! SUCCESS. (Refused ones are summarised in `refused_notifies`.)

use minipay_jobs::ApplyPayment;

use super::dialect::{Dialect, job_task};
use super::{Store, on_reader, write_tx};
use crate::wechat::reply::Payment;

/// A received notify to record.
#[derive(Debug, Clone)]
pub struct NewNotify {
    pub received_at: i64,
    /// `accepted`, or why it was refused (`bad_signature`, `amount_mismatch`, ...).
    pub verdict: String,
    pub detail: String,
    pub out_trade_no: Option<String>,
    /// The payment, for verified notifies only.
    pub payment: Option<Payment>,
    pub raw: String,
}

/// A stored notify.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct NotifyRow {
    pub id: i64,
    pub received_at: i64,
    pub verdict: String,
    pub detail: String,
    pub out_trade_no: Option<String>,
    pub transaction_id: Option<String>,
    pub total_fee: Option<i64>,
    pub cash_fee: Option<i64>,
    pub time_end: Option<String>,
    pub raw: String,
    pub applied_at: Option<i64>,
}

impl NotifyRow {
    /// The payment it carries, when it was verified.
    pub fn payment(&self) -> Option<Payment> {
        Some(Payment {
            out_trade_no: self.out_trade_no.clone()?,
            transaction_id: self.transaction_id.clone()?,
            total_fee: self.total_fee?,
            cash_fee: self.cash_fee?,
            time_end: self.time_end.clone()?,
        })
    }
}

/// What recording a verified notify did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordedNotify {
    /// First time for this transaction: stored with its job.
    New(i64),
    /// This transaction is already recorded (a re-send).
    Duplicate,
}

/// Runs of an apply-payment job: applying is one guarded transaction, so extra runs only
/// matter when the database was briefly unavailable.
const APPLY_JOB_RUNS: usize = 10;

impl Store {
    /// Stores a verified payment notify and its status-update job in one transaction. The
    /// unique transaction_id makes concurrent re-sends collapse into one row and one job.
    pub async fn record_verified_notify(
        &self,
        notify: &NewNotify,
    ) -> Result<RecordedNotify, sqlx::Error> {
        let notify = notify.clone();
        let payment = notify
            .payment
            .clone()
            .ok_or_else(|| sqlx::Error::Protocol("a verified notify carries its payment".into()))?;
        write_tx!(self, tx => {
            let id: Option<i64> = sqlx::query_scalar(concat!(
                "INSERT INTO notifies (received_at, verdict, detail, out_trade_no, transaction_id, ",
                "total_fee, cash_fee, time_end, raw) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ",
                "ON CONFLICT (transaction_id) DO NOTHING RETURNING id"
            ))
            .bind(notify.received_at)
            .bind(&notify.verdict)
            .bind(&notify.detail)
            .bind(&payment.out_trade_no)
            .bind(&payment.transaction_id)
            .bind(payment.total_fee)
            .bind(payment.cash_fee)
            .bind(&payment.time_end)
            .bind(&notify.raw)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(id) = id else {
                return Ok(RecordedNotify::Duplicate);
            };
            let job = ApplyPayment {
                notify_id: id,
                out_trade_no: payment.out_trade_no.clone(),
            };
            let task = job_task(&job, job.idempotency_key(), APPLY_JOB_RUNS, None)
                .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
            tx.enqueue(ApplyPayment::QUEUE, task).await?;
            Ok(RecordedNotify::New(id))
        })
    }

    pub async fn notify(&self, id: i64) -> Result<Option<NotifyRow>, sqlx::Error> {
        on_reader!(self, pool => {
            sqlx::query_as("SELECT * FROM notifies WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await
        })
    }

    /// Every verified notify about an order, oldest first.
    pub async fn notifies_for(&self, out_trade_no: &str) -> Result<Vec<NotifyRow>, sqlx::Error> {
        on_reader!(self, pool => {
            sqlx::query_as("SELECT * FROM notifies WHERE out_trade_no = $1 ORDER BY id")
                .bind(out_trade_no)
                .fetch_all(pool)
                .await
        })
    }
}
