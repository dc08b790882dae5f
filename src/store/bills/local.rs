//! minipay's side of a day's statement: the payments and refunds it holds for a Beijing day,
//! and the ones the statement names that the day did not explain (any day, any status).

use futures::TryStreamExt;
use minipay_jobs::OrderStatus;
use minipay_jobs::bill::{LocalOrder, LocalRefund, LocalRefundStatus};

use super::super::{Store, StoreError, on_reader};

/// A Beijing day, as the two columns that place a trade in it compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillDay {
    /// `yyyyMMdd` of the day and of the next (payments: `time_end` is Beijing text).
    pub yyyymmdd: String,
    pub next_yyyymmdd: String,
    /// Unix ms of the day's Beijing midnight and of the next (refunds: `accepted_at`).
    pub from_ms: i64,
    pub to_ms: i64,
}

/// A day's paid orders by WeChat's payment time: `time_end` is `yyyyMMddHHmmss` Beijing, so
/// the day is a range of its text (index `orders_time_end`).
const LOCAL_DAY: &str = "SELECT out_trade_no, total_fee, status FROM orders \
     WHERE time_end >= $1 AND time_end < $2";

/// A day's refunds as WeChat lists them: on the day it accepted the request (index
/// `refunds_accepted`, migration 0011). Refunds WeChat never accepted are on no statement.
const LOCAL_REFUND_DAY: &str = "SELECT out_trade_no, out_refund_no, refund_fee, status \
     FROM refunds WHERE accepted_at >= $1 AND accepted_at < $2";

#[derive(sqlx::FromRow)]
struct LocalOrderRow {
    out_trade_no: String,
    total_fee: i64,
    status: String,
}

impl LocalOrderRow {
    fn into_local(self) -> Option<LocalOrder> {
        // A refunded order was paid: its payment line compares as paid (its refunds are lines
        // of their own).
        let status = match self.status.as_str() {
            "refunded" => OrderStatus::Paid,
            name => OrderStatus::parse(name)?,
        };
        Some(LocalOrder {
            out_trade_no: self.out_trade_no,
            total_fee: self.total_fee,
            status,
        })
    }
}

#[derive(sqlx::FromRow)]
struct LocalRefundRow {
    out_trade_no: String,
    out_refund_no: String,
    refund_fee: i64,
    status: String,
}

impl LocalRefundRow {
    fn into_local(self) -> LocalRefund {
        // WeChat's statement knows `SUCCESS` and `PROCESSING`: a refund minipay has sent and
        // not seen settle (pending with an unknown answer, processing, or abnormal: accepted,
        // the money not yet back) is processing there.
        let status = match self.status.as_str() {
            "succeeded" => LocalRefundStatus::Succeeded,
            "failed" => LocalRefundStatus::Failed,
            _ => LocalRefundStatus::Processing,
        };
        LocalRefund {
            out_trade_no: self.out_trade_no,
            out_refund_no: self.out_refund_no,
            refund_fee: self.refund_fee,
            status,
        }
    }
}

/// Lookups by number go in batches of this many.
const LOOKUP_BATCH: usize = 500;

impl Store {
    /// minipay's trades of a Beijing day: orders with a `time_end` on it and refunds WeChat
    /// accepted on it.
    pub async fn local_bill_day(
        &self,
        day: &BillDay,
    ) -> Result<(Vec<LocalOrder>, Vec<LocalRefund>), StoreError> {
        // Streamed into the lists: a day's rows are never held twice.
        let (mut orders, mut refunds) = (Vec::new(), Vec::new());
        on_reader!(self, pool => {
            let mut rows = sqlx::query_as::<_, LocalOrderRow>(LOCAL_DAY)
                .bind(&day.yyyymmdd)
                .bind(&day.next_yyyymmdd)
                .fetch(pool);
            while let Some(row) = rows.try_next().await? {
                orders.extend(row.into_local());
            }
        });
        on_reader!(self, pool => {
            let mut rows = sqlx::query_as::<_, LocalRefundRow>(LOCAL_REFUND_DAY)
                .bind(day.from_ms)
                .bind(day.to_ms)
                .fetch(pool);
            while let Some(row) = rows.try_next().await? {
                refunds.push(row.into_local());
            }
        });
        Ok((orders, refunds))
    }

    /// The orders named, of any day and status (the statement lines a day did not explain).
    pub async fn local_orders(&self, numbers: &[&str]) -> Result<Vec<LocalOrder>, StoreError> {
        let rows: Vec<LocalOrderRow> = self
            .named(
                "SELECT out_trade_no, total_fee, status FROM orders WHERE out_trade_no IN (",
                numbers,
            )
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(LocalOrderRow::into_local)
            .collect())
    }

    /// The refunds named, of any day and status (the statement lines a day did not explain).
    pub async fn local_refunds(&self, numbers: &[&str]) -> Result<Vec<LocalRefund>, StoreError> {
        let rows: Vec<LocalRefundRow> = self
            .named(
                "SELECT out_trade_no, out_refund_no, refund_fee, status FROM refunds \
                 WHERE out_refund_no IN (",
                numbers,
            )
            .await?;
        Ok(rows.into_iter().map(LocalRefundRow::into_local).collect())
    }

    /// The rows `select` (ending in `IN (`) names, looked up [`LOOKUP_BATCH`] numbers at a time.
    async fn named<R>(&self, select: &str, numbers: &[&str]) -> Result<Vec<R>, StoreError>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
            + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
            + Send
            + Unpin,
    {
        let mut found = Vec::new();
        for batch in numbers.chunks(LOOKUP_BATCH) {
            let rows: Vec<R> = on_reader!(self, pool => {
                let mut query = sqlx::QueryBuilder::new(select);
                let mut list = query.separated(", ");
                for number in batch {
                    list.push_bind(*number);
                }
                query.push(")");
                query.build_query_as().fetch_all(pool).await?
            });
            found.extend(rows);
        }
        Ok(found)
    }
}
