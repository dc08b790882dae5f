//! Verified payment notifies, recorded with their status-update job before WeChat hears
//! SUCCESS. (Refused ones are summarised in `refused_notifies`.)

use minipay_jobs::{ApplyPayment, NotifyVerdict, Payment};

use super::dialect::{Dialect, PgJob};
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

/// A verified notify's row; `$1` to `$9`.
/// The verified notifies of one order, oldest first.
pub(super) const NOTIFIES_OF_ORDER: &str =
    "SELECT * FROM notifies WHERE out_trade_no = $1 ORDER BY id";

const INSERT_NOTIFY: &str = concat!(
    "INSERT INTO notifies (received_at, verdict, detail, out_trade_no, transaction_id, ",
    "total_fee, cash_fee, time_end, raw) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ",
    "ON CONFLICT (transaction_id) DO NOTHING RETURNING id"
);

/// [`INSERT_NOTIFY`]'s parameters, bound to `query`.
macro_rules! bind_notify {
    ($query:expr, $notify:expr) => {
        $query
            .bind($notify.received_at)
            .bind(NotifyVerdict::Accepted.as_str())
            .bind("")
            .bind(&$notify.payment.out_trade_no)
            .bind(&$notify.payment.transaction_id)
            .bind($notify.payment.total_fee)
            .bind($notify.payment.cash_fee)
            .bind(&$notify.payment.time_end)
            .bind(&$notify.raw)
    };
}

/// PostgreSQL: the notify and its apply job in one statement, the job's JSON (an
/// [`ApplyPayment`] carrying the payment) written from the inserted row; `$10` to `$12` are
/// the job's id, queue and retry budget. Returns the notify's id, or no row for a re-send.
static INSERT_NOTIFY_WITH_JOB: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let args = "convert_to(json_build_object('notify_id', id, 'out_trade_no', out_trade_no, \
         'payment', json_build_object('transaction_id', transaction_id, 'total_fee', total_fee, \
         'cash_fee', cash_fee, 'time_end', time_end))::text, 'UTF8')";
    format!(
        "WITH inserted AS ({}, out_trade_no, transaction_id, total_fee, cash_fee, time_end), \
         queued AS ({}) SELECT id FROM inserted",
        INSERT_NOTIFY,
        PgJob::insert_sql("inserted", ["$10", "$11", args, "$12", "'payment:' || id"])
    )
});

impl Store {
    /// Stores a verified payment notify and its status-update job in one transaction (on
    /// PostgreSQL one statement). The unique transaction_id makes concurrent re-sends collapse
    /// into one row and one job.
    pub async fn record_verified_notify(
        &self,
        notify: &VerifiedNotify,
    ) -> Result<RecordedNotify, StoreError> {
        let notify = notify.clone();
        let id = match self {
            Store::Postgres(pool) => {
                let (job_id, queue, runs) = PgJob::columns_of::<ApplyPayment>();
                let query =
                    bind_notify!(sqlx::query_scalar(INSERT_NOTIFY_WITH_JOB.as_str()), notify);
                query
                    .bind(job_id)
                    .bind(queue)
                    .bind(runs)
                    .fetch_optional(pool)
                    .await?
            }
            Store::Sqlite(_) => write_tx!(self, tx => {
                let id: Option<i64> = bind_notify!(sqlx::query_scalar(INSERT_NOTIFY), notify)
                    .fetch_optional(&mut *tx)
                    .await?;
                if let Some(id) = id {
                    tx.enqueue(&ApplyPayment::carrying(id, &notify.payment)).await?;
                }
                Ok::<_, StoreError>(id)
            })?,
        };
        Ok(id.map_or(RecordedNotify::Duplicate, RecordedNotify::New))
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
            sqlx::query_as(NOTIFIES_OF_ORDER)
                .bind(out_trade_no)
                .fetch_all(pool)
                .await?
        });
        Ok(rows)
    }
}
