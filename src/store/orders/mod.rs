//! Orders: creation with their prepay job, reads and history. Status changes are in
//! [`transitions`], reconciliation bookkeeping in [`reconcile`].

mod paid;
mod reconcile;
mod transitions;

use minipay_jobs::{CreatedOrder, OrderEvent, OrderStatus, PrepayOrder};

pub use transitions::Applied;
pub(super) use transitions::{from, set};

use super::dialect::{Dialect, PgJob};
use super::{Store, StoreError, on_pool, on_reader, write_tx};

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
    /// The frozen prepay request, as the gateway wrote it (JSON).
    pub params: String,
    #[sqlx(try_from = "String")]
    pub status: OrderStatus,
    pub prepay_id: Option<String>,
    /// The signed `wx.requestPayment` parameters (JSON of `minipay_jobs::PayParams`).
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
    /// The refunds that succeeded, in fen.
    pub refunded_fee: i64,
    /// Every refund not failed, in fen (never above `total_fee`).
    pub refund_reserved: i64,
    pub refund_count: i64,
}

/// One line of an order's history.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct EventRow {
    pub at: i64,
    #[sqlx(try_from = "String")]
    pub kind: OrderEvent,
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
    /// Refuse the order when the user already holds this many unpaid orders; `None`: no cap.
    pub unpaid_cap: Option<u32>,
    /// The frozen prepay request (the gateway's text, stored and sent unchanged).
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
            status: OrderStatus::Pending,
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
            refunded_fee: 0,
            refund_reserved: 0,
            refund_count: 0,
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
    /// The user holds as many unpaid orders as the cap allows; the first of them expires at
    /// `first_expiry_ms`.
    TooManyUnpaid { first_expiry_ms: i64 },
}

/// Every new order starts `pending` (the status is bound, spelled by the core crate).
const INSERT_ORDER: &str = "INSERT INTO orders (out_trade_no, session_id, openid, sku, quantity, total_fee, \
     description, attach, payer_ip, idempotency_key, params, status, created_at, updated_at, expires_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $14, $12, $12, $13) ON CONFLICT DO NOTHING";

pub(in crate::store) const INSERT_EVENT: &str =
    "INSERT INTO order_events (out_trade_no, at, kind, detail) VALUES ($1, $2, $3, $4)";

/// SQL text whose order statuses are spelled by the core crate's enum, built once on first
/// use (a static text, so prepared-statement caches and partial indexes still apply).
macro_rules! status_sql {
    ($(#[$doc:meta])* $vis:vis $name:ident = $($fmt:tt)*) => {
        $(#[$doc])*
        $vis static $name: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| format!($($fmt)*));
    };
}
pub(in crate::store) use status_sql;

status_sql!(
    /// The unpaid orders a user placed (from the catalog: not the merchant backend's) and when
    /// the first of them expires (`orders_user_status`).
    COUNT_UNPAID = "SELECT COUNT(*), MIN(expires_at) FROM orders \
     WHERE openid = $1 AND status IN ('{}', '{}') AND sku IS NOT NULL",
    OrderStatus::Pending.as_str(),
    OrderStatus::Ready.as_str()
);

/// Inserts a new order with its prepay job; `false` when the number or the idempotency key is
/// taken (nothing is written).
trait InsertOrder {
    async fn insert_order(
        &mut self,
        order: &NewOrder,
        job: &PrepayOrder,
    ) -> Result<bool, StoreError>;
}

/// [`INSERT_ORDER`]'s parameters, `$1` to `$14`, bound to `query`.
macro_rules! bind_order {
    ($query:expr, $order:expr) => {
        $query
            .bind(&$order.out_trade_no)
            .bind($order.session_id)
            .bind(&$order.openid)
            .bind(&$order.sku)
            .bind($order.quantity)
            .bind($order.total_fee)
            .bind(&$order.description)
            .bind(&$order.attach)
            .bind(&$order.payer_ip)
            .bind(&$order.idempotency_key)
            .bind(&$order.params)
            .bind($order.created_at)
            .bind($order.expires_at)
            .bind(OrderStatus::Pending.as_str())
    };
}

impl InsertOrder for sqlx::SqliteConnection {
    async fn insert_order(
        &mut self,
        order: &NewOrder,
        job: &PrepayOrder,
    ) -> Result<bool, StoreError> {
        let inserted = bind_order!(sqlx::query(INSERT_ORDER), order)
            .execute(&mut *self)
            .await?
            .rows_affected()
            == 1;
        if inserted {
            self.enqueue(job).await?;
        }
        Ok(inserted)
    }
}

/// The order and its job in one statement (see [`PgJob`]).
static INSERT_ORDER_WITH_JOB: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH inserted AS ({INSERT_ORDER} RETURNING out_trade_no) {} RETURNING 1",
        PgJob::insert_from("inserted", 15)
    )
});

impl InsertOrder for sqlx::PgConnection {
    async fn insert_order(
        &mut self,
        order: &NewOrder,
        job: &PrepayOrder,
    ) -> Result<bool, StoreError> {
        let query = bind_order!(sqlx::query_scalar(INSERT_ORDER_WITH_JOB.as_str()), order);
        let queued: Option<i32> = PgJob::new(job)?
            .bind(query)
            .fetch_optional(&mut *self)
            .await?;
        Ok(queued.is_some())
    }
}

/// One order by its number.
pub(super) const ORDER: &str = "SELECT * FROM orders WHERE out_trade_no = $1";

/// The order a user's Idempotency-Key names.
const BY_IDEMPOTENCY_KEY: &str = "SELECT * FROM orders WHERE openid = $1 AND idempotency_key = $2";

/// `status = 'ready'`: a guard that keeps an update to orders (or refunds…) in one status.
pub(in crate::store) fn is<S: minipay_jobs::Lifecycle>(status: S) -> String {
    format!("status = '{}'", status.as_str())
}

impl Store {
    /// Inserts the order and queues its prepay job in one transaction.
    pub async fn create_order(&self, order: &NewOrder) -> Result<CreateOutcome, StoreError> {
        let job = PrepayOrder {
            out_trade_no: order.out_trade_no.clone(),
            generation: 0,
            created: Some(CreatedOrder {
                params: order.params.clone(),
                created_at: order.created_at,
                expires_at: order.expires_at,
            }),
        };
        if let (Store::Postgres(pool), None) = (self, order.unpaid_cap) {
            // Without the unpaid cap there is nothing to read first: the order and its job
            // are one statement, outside any explicit transaction. A conflict (a replay, a
            // number taken) is answered by the transaction below.
            let inserted = Box::pin(async {
                let mut conn = pool.acquire().await?;
                conn.insert_order(order, &job).await
            });
            if inserted.await? {
                return Ok(CreateOutcome::Created(order.as_inserted()));
            }
        }
        let order = order.clone();
        write_tx!(self, tx => {
            if let Some(cap) = order.unpaid_cap {
                // Placements of one user queue here (PostgreSQL; SQLite has one writer), so two
                // at once cannot both see room for one more.
                tx.lock_user(&order.openid).await?;
                // A replay is answered whatever the user holds now.
                if let Some(key) = &order.idempotency_key {
                    let existing: Option<OrderRow> = sqlx::query_as(BY_IDEMPOTENCY_KEY)
                        .bind(&order.openid)
                        .bind(key)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if let Some(row) = existing {
                        return Ok(CreateOutcome::Existing(row));
                    }
                }
                let (unpaid, first_expiry): (i64, Option<i64>) =
                    sqlx::query_as(COUNT_UNPAID.as_str())
                        .bind(&order.openid)
                        .fetch_one(&mut *tx)
                        .await?;
                if unpaid >= i64::from(cap) {
                    return Ok(CreateOutcome::TooManyUnpaid {
                        first_expiry_ms: first_expiry.unwrap_or_default(),
                    });
                }
            }
            if tx.insert_order(&order, &job).await? {
                return Ok(CreateOutcome::Created(order.as_inserted()));
            }
            // An idempotency key is the user's, whichever of their sessions sends it.
            let existing: Option<OrderRow> = match &order.idempotency_key {
                Some(key) => {
                    sqlx::query_as(BY_IDEMPOTENCY_KEY)
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
                    sqlx::query_as(ORDER)
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

    /// The order `openid` placed with Idempotency-Key `key`, if any.
    pub async fn order_by_idempotency_key(
        &self,
        openid: &str,
        key: &str,
    ) -> Result<Option<OrderRow>, StoreError> {
        let row = on_reader!(self, pool => {
            sqlx::query_as(BY_IDEMPOTENCY_KEY)
                .bind(openid)
                .bind(key)
                .fetch_optional(pool)
                .await?
        });
        Ok(row)
    }

    pub async fn order(&self, out_trade_no: &str) -> Result<Option<OrderRow>, StoreError> {
        let row = on_reader!(self, pool => {
            sqlx::query_as(ORDER)
                .bind(out_trade_no)
                .fetch_optional(pool)
                .await?
        });
        Ok(row)
    }

    /// Adds a line to an order's history.
    pub async fn add_event(
        &self,
        out_trade_no: &str,
        kind: OrderEvent,
        detail: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(INSERT_EVENT)
                .bind(out_trade_no)
                .bind(now_ms)
                .bind(kind.as_str())
                .bind(detail)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}
