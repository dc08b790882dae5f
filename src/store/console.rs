//! What the operator console reads beyond an order's history: order search (each filter
//! backed by an index, pages of at most `limit` rows by creation time, newest first), the
//! day's figures, and the latest alerts.

use minipay_jobs::{OrderEvent, OrderStatus};

use super::{Store, StoreError, on_reader};

/// Which orders to list; every field set narrows the search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderFilter {
    pub out_trade_no: Option<String>,
    pub transaction_id: Option<String>,
    pub openid: Option<String>,
    pub status: Option<OrderStatus>,
    /// Created in `[start, end)`, Unix ms.
    pub created: Option<(i64, i64)>,
    /// The page after this row: created before it (`created_at`, `out_trade_no`).
    pub before: Option<(i64, String)>,
}

/// One order in a list.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrderLine {
    pub out_trade_no: String,
    pub openid: String,
    #[sqlx(try_from = "String")]
    pub status: OrderStatus,
    pub total_fee: i64,
    pub description: String,
    pub transaction_id: Option<String>,
    pub created_at: i64,
}

/// Orders of one status: how many, and their amount in fen.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StatusTotal {
    #[sqlx(try_from = "String")]
    pub status: OrderStatus,
    pub count: i64,
    pub fee: i64,
}

/// How many payments, and how much (fen).
#[derive(Debug, Clone, Copy, Default, sqlx::FromRow)]
pub struct Tally {
    pub count: i64,
    pub fee: i64,
}

/// An alert an order raised: something a person must look at.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AlertLine {
    pub out_trade_no: String,
    pub at: i64,
    pub detail: String,
}

/// A value bound to a search statement.
enum Arg {
    Text(String),
    Int(i64),
}

const ORDER_LINE: &str = "SELECT out_trade_no, openid, status, total_fee, description, \
     transaction_id, created_at FROM orders";

/// The search statement for `filter` and its arguments, in placeholder order.
fn search_sql(filter: &OrderFilter, limit: i64) -> (String, Vec<Arg>) {
    let mut conditions: Vec<String> = Vec::new();
    let mut args = Vec::new();
    let mut add = |condition: &str, arg: Arg, args: &mut Vec<Arg>| {
        args.push(arg);
        conditions.push(condition.replace('?', &format!("${}", args.len())));
    };
    let text = |value: &Option<String>| value.clone().map(Arg::Text);
    for (column, value) in [
        ("out_trade_no = ?", text(&filter.out_trade_no)),
        ("transaction_id = ?", text(&filter.transaction_id)),
        ("openid = ?", text(&filter.openid)),
        (
            "status = ?",
            filter.status.map(|s| Arg::Text(s.as_str().to_owned())),
        ),
    ] {
        if let Some(arg) = value {
            add(column, arg, &mut args);
        }
    }
    if let Some((start, end)) = filter.created {
        add("created_at >= ?", Arg::Int(start), &mut args);
        add("created_at < ?", Arg::Int(end), &mut args);
    }
    if let Some((at, out_trade_no)) = &filter.before {
        args.push(Arg::Int(*at));
        args.push(Arg::Text(out_trade_no.clone()));
        let (a, b) = (args.len() - 1, args.len());
        conditions.push(format!(
            "(created_at < ${a} OR (created_at = ${a} AND out_trade_no < ${b}))"
        ));
    }
    let mut sql = ORDER_LINE.to_owned();
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    args.push(Arg::Int(limit));
    sql.push_str(&format!(
        " ORDER BY created_at DESC, out_trade_no DESC LIMIT ${}",
        args.len()
    ));
    (sql, args)
}

super::orders::status_sql!(
    /// The latest alerts (the partial index `order_events_alerts`).
    LATEST_ALERTS = "SELECT out_trade_no, at, detail FROM order_events WHERE kind = '{}' \
                     ORDER BY at DESC LIMIT $1",
    OrderEvent::Alert.as_str()
);

impl Store {
    /// Up to `limit` orders matching `filter`, newest first.
    pub async fn search_orders(
        &self,
        filter: &OrderFilter,
        limit: i64,
    ) -> Result<Vec<OrderLine>, StoreError> {
        let (sql, args) = search_sql(filter, limit);
        let rows = on_reader!(self, pool => {
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
            for arg in args {
                query = match arg {
                    Arg::Text(text) => query.bind(text),
                    Arg::Int(n) => query.bind(n),
                };
            }
            query.fetch_all(pool).await?
        });
        Ok(rows)
    }

    /// Orders created since `since_ms`, by status (statuses without orders are absent).
    pub async fn created_since(&self, since_ms: i64) -> Result<Vec<StatusTotal>, StoreError> {
        let rows = on_reader!(self, pool => {
            sqlx::query_as(
                "SELECT status, COUNT(*) AS count, CAST(COALESCE(SUM(total_fee), 0) AS BIGINT) AS fee \
                 FROM orders WHERE created_at >= $1 GROUP BY status",
            )
            .bind(since_ms)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Payments applied since `since_ms` (whenever their orders were created).
    pub async fn paid_since(&self, since_ms: i64) -> Result<Tally, StoreError> {
        let tally = on_reader!(self, pool => {
            sqlx::query_as(
                "SELECT COUNT(*) AS count, CAST(COALESCE(SUM(total_fee), 0) AS BIGINT) AS fee \
                 FROM orders WHERE paid_at >= $1",
            )
            .bind(since_ms)
            .fetch_one(pool)
            .await?
        });
        Ok(tally)
    }

    /// The `limit` latest alerts, newest first.
    pub async fn latest_alerts(&self, limit: i64) -> Result<Vec<AlertLine>, StoreError> {
        let rows = on_reader!(self, pool => {
            sqlx::query_as(LATEST_ALERTS.as_str())
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_filters_set() {
        let filter = OrderFilter {
            openid: Some("o1".into()),
            created: Some((10, 20)),
            before: Some((15, "x".into())),
            ..OrderFilter::default()
        };
        let (sql, args) = search_sql(&filter, 50);
        assert!(
            sql.ends_with(
                "WHERE openid = $1 AND created_at >= $2 AND created_at < $3 AND \
                 (created_at < $4 OR (created_at = $4 AND out_trade_no < $5)) \
                 ORDER BY created_at DESC, out_trade_no DESC LIMIT $6"
            ),
            "{sql}"
        );
        assert_eq!(args.len(), 6);
        let (sql, args) = search_sql(&OrderFilter::default(), 10);
        assert!(sql.ends_with("FROM orders ORDER BY created_at DESC, out_trade_no DESC LIMIT $1"));
        assert_eq!(args.len(), 1);
    }
}
