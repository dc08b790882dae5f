//! An order's whole history — the order, its history lines, notifies, refused notifies,
//! merchant events with their delivery attempts, and refunds — read as one moment: one read
//! transaction (SQLite's WAL snapshot on the reader; `REPEATABLE READ` on PostgreSQL). Read
//! one by one, a refund settling between two reads showed as succeeded without its event or
//! without the order's refunded fee.

use super::refused_notifies::COLUMNS as REFUSED_COLUMNS;
use super::{
    AttemptRow, EventRecord, EventRow, NotifyRow, OrderRow, RefundRow, RefusedGroup, Store,
    StoreError,
};

/// Everything stored about one order, as of one moment.
pub struct StoredHistory {
    pub order: OrderRow,
    /// The order's history lines, oldest first.
    pub lines: Vec<EventRow>,
    pub notifies: Vec<NotifyRow>,
    pub refused: Vec<RefusedGroup>,
    /// The merchant events about the order, oldest first.
    pub merchant_events: Vec<EventRecord>,
    /// Every delivery attempt of those events, oldest first.
    pub attempts: Vec<AttemptRow>,
    /// Oldest first.
    pub refunds: Vec<RefundRow>,
}

/// Runs the history's reads on `$tx`, an open read transaction.
macro_rules! read_history {
    ($tx:expr, $out_trade_no:expr) => {{
        let otn = $out_trade_no;
        let order: Option<OrderRow> = sqlx::query_as(super::orders::ORDER)
            .bind(otn)
            .fetch_optional(&mut *$tx)
            .await?;
        let Some(order) = order else {
            return Ok(None);
        };
        let history = StoredHistory {
            order,
            lines: sqlx::query_as(
                "SELECT at, kind, detail FROM order_events WHERE out_trade_no = $1 ORDER BY id",
            )
            .bind(otn)
            .fetch_all(&mut *$tx)
            .await?,
            notifies: sqlx::query_as(super::notifies::NOTIFIES_OF_ORDER)
                .bind(otn)
                .fetch_all(&mut *$tx)
                .await?,
            refused: sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {REFUSED_COLUMNS} FROM refused_notifies WHERE out_trade_no = $1 ORDER BY id"
            )))
            .bind(otn)
            .fetch_all(&mut *$tx)
            .await?,
            merchant_events: sqlx::query_as(
                "SELECT * FROM events WHERE out_trade_no = $1 ORDER BY created_at, id",
            )
            .bind(otn)
            .fetch_all(&mut *$tx)
            .await?,
            attempts: sqlx::query_as(
                "SELECT a.event_id, e.type, a.attempt, a.at, a.status, a.error, a.duration_ms \
                 FROM event_attempts a JOIN events e ON e.id = a.event_id \
                 WHERE e.out_trade_no = $1 ORDER BY a.at, a.id",
            )
            .bind(otn)
            .fetch_all(&mut *$tx)
            .await?,
            refunds: sqlx::query_as(super::refunds::REFUNDS_OF_ORDER)
                .bind(otn)
                .fetch_all(&mut *$tx)
                .await?,
        };
        $tx.commit().await?;
        Ok(Some(history))
    }};
}

impl Store {
    /// The order's history as of one moment; `None` when there is no such order.
    pub async fn order_history(
        &self,
        out_trade_no: &str,
    ) -> Result<Option<StoredHistory>, StoreError> {
        match self {
            Store::Sqlite(pools) => {
                let mut tx = pools.reader.begin().await?;
                read_history!(tx, out_trade_no)
            }
            Store::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .execute(&mut *tx)
                    .await?;
                read_history!(tx, out_trade_no)
            }
        }
    }
}
