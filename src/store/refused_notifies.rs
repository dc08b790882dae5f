//! Refused notifies, summarised: one row per verdict, client IP and minute, with a count and a
//! sample (the first notify's detail, and its body's SHA-256, length and first bytes). A flood
//! of forgeries from one client adds one small row a minute; rows are deleted after the
//! retention period.

use minipay_jobs::NotifyVerdict;

use super::{Store, StoreError, write_tx};

/// Refused notifies of one verdict from one client within one minute.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct RefusedGroup {
    /// Unix ms: the start of the minute.
    pub window_start: i64,
    pub first_at: i64,
    pub last_at: i64,
    pub peer: String,
    #[sqlx(try_from = "String")]
    pub verdict: NotifyVerdict,
    pub count: i64,
    pub detail: String,
    pub out_trade_no: Option<String>,
    pub body_sha256: String,
    pub body_prefix: String,
    pub body_len: i64,
}

/// The minute a notify received at `at_ms` is counted in.
pub fn refusal_window(at_ms: i64) -> i64 {
    at_ms - at_ms.rem_euclid(60_000)
}

pub(super) const COLUMNS: &str = "window_start, first_at, last_at, peer, verdict, count, detail, out_trade_no, \
     body_sha256, body_prefix, body_len";

impl Store {
    /// Adds the groups; a group already stored gains their count and keeps its sample.
    pub async fn record_refused_notifies(&self, groups: &[RefusedGroup]) -> Result<(), StoreError> {
        let groups = groups.to_vec();
        write_tx!(self, tx => {
            for g in groups {
                sqlx::query(concat!(
                    "INSERT INTO refused_notifies (window_start, first_at, last_at, peer, verdict, count, ",
                    "detail, out_trade_no, body_sha256, body_prefix, body_len) ",
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ",
                    "ON CONFLICT (verdict, peer, window_start) DO UPDATE SET ",
                    "count = refused_notifies.count + excluded.count, ",
                    "last_at = CASE WHEN excluded.last_at > refused_notifies.last_at ",
                    "THEN excluded.last_at ELSE refused_notifies.last_at END"
                ))
                .bind(g.window_start)
                .bind(g.first_at)
                .bind(g.last_at)
                .bind(&g.peer)
                .bind(g.verdict.as_str())
                .bind(g.count)
                .bind(&g.detail)
                .bind(&g.out_trade_no)
                .bind(&g.body_sha256)
                .bind(&g.body_prefix)
                .bind(g.body_len)
                .execute(&mut *tx)
                .await?;
            }
            Ok(())
        })
    }

    /// Deletes up to `limit` groups last seen before `last_seen_before_ms`; returns how many.
    pub async fn delete_refused_notifies(
        &self,
        last_seen_before_ms: i64,
        limit: i64,
    ) -> Result<u64, StoreError> {
        write_tx!(self, tx => {
            Ok(sqlx::query(
                "DELETE FROM refused_notifies WHERE id IN \
                 (SELECT id FROM refused_notifies WHERE last_at < $1 LIMIT $2)",
            )
            .bind(last_seen_before_ms)
            .bind(limit)
            .execute(&mut *tx)
            .await?
            .rows_affected())
        })
    }
}
