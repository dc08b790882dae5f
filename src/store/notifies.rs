//! Verified payment notifies, recorded with their status-update job before WeChat hears
//! SUCCESS. (Refused ones are summarised in `refused_notifies`.)

use minipay_jobs::{ApplyPayment, NotifyVerdict, Payment};

use super::dialect::Dialect;
use super::{Store, StoreError, on_reader, write_tx};

/// A verified payment notify, to record with its status-update job. It cannot be without its
/// payment.
#[derive(Debug, Clone)]
pub struct VerifiedNotify {
    pub received_at: i64,
    pub payment: Payment,
    /// The body as received (truncated by the caller).
    pub raw: String,
}

/// A stored notify.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct NotifyRow {
    pub id: i64,
    pub received_at: i64,
    #[sqlx(try_from = "String")]
    pub verdict: NotifyVerdict,
    pub detail: String,
    pub out_trade_no: Option<String>,
    pub transaction_id: Option<String>,
    pub total_fee: Option<i64>,
    pub cash_fee: Option<i64>,
    pub time_end: Option<String>,
    pub raw: String,
    pub applied_at: Option<i64>,
}

/// The payment columns of a notify row (all set on verified ones, none on refused ones).
#[derive(sqlx::FromRow)]
struct PaymentColumns {
    out_trade_no: Option<String>,
    transaction_id: Option<String>,
    total_fee: Option<i64>,
    cash_fee: Option<i64>,
    time_end: Option<String>,
}

impl PaymentColumns {
    fn payment(self) -> Option<Payment> {
        Some(Payment {
            out_trade_no: self.out_trade_no?,
            transaction_id: self.transaction_id?,
            total_fee: self.total_fee?,
            cash_fee: self.cash_fee?,
            time_end: self.time_end?,
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

impl Store {
    /// Stores a verified payment notify and its status-update job in one transaction. The
    /// unique transaction_id makes concurrent re-sends collapse into one row and one job.
    pub async fn record_verified_notify(
        &self,
        notify: &VerifiedNotify,
    ) -> Result<RecordedNotify, StoreError> {
        let notify = notify.clone();
        write_tx!(self, tx => {
            let payment = &notify.payment;
            let id: Option<i64> = sqlx::query_scalar(concat!(
                "INSERT INTO notifies (received_at, verdict, detail, out_trade_no, transaction_id, ",
                "total_fee, cash_fee, time_end, raw) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ",
                "ON CONFLICT (transaction_id) DO NOTHING RETURNING id"
            ))
            .bind(notify.received_at)
            .bind(NotifyVerdict::Accepted.as_str())
            .bind("")
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
            tx.enqueue(&job).await?;
            Ok(RecordedNotify::New(id))
        })
    }

    /// The payment a recorded notify carries; `None` when there is no such notify or it is
    /// not a verified payment.
    pub async fn notify_payment(&self, id: i64) -> Result<Option<Payment>, StoreError> {
        let row: Option<PaymentColumns> = on_reader!(self, pool => {
            sqlx::query_as(
                "SELECT out_trade_no, transaction_id, total_fee, cash_fee, time_end \
                 FROM notifies WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.and_then(PaymentColumns::payment))
    }

    /// Every verified notify about an order, oldest first.
    pub async fn notifies_for(&self, out_trade_no: &str) -> Result<Vec<NotifyRow>, StoreError> {
        let rows = on_reader!(self, pool => {
            sqlx::query_as("SELECT * FROM notifies WHERE out_trade_no = $1 ORDER BY id")
                .bind(out_trade_no)
                .fetch_all(pool)
                .await?
        });
        Ok(rows)
    }
}
