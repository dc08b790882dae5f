//! Login sessions: the hash of the bearer token, the user's openid and sealed session_key;
//! deleted some time after they expire.

use super::{Store, StoreError, on_reader, write_tx};

/// An authenticated session, as request handlers see it (no session_key).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub id: i64,
    pub openid: String,
    /// Unix ms after which the token is refused.
    pub expires_at: i64,
}

impl Store {
    /// Stores a new session; returns its id. `sealed_session_key` is already sealed
    /// (`crate::sealed`): the store never sees the session_key itself.
    pub async fn create_session(
        &self,
        token_hash: &str,
        openid: &str,
        sealed_session_key: &str,
        unionid: Option<&str>,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<i64, StoreError> {
        let (token_hash, openid) = (token_hash.to_owned(), openid.to_owned());
        let (session_key, unionid) = (sealed_session_key.to_owned(), unionid.map(str::to_owned));
        // Through the commit path every write takes: the token is handed out only once the
        // session is on disk.
        write_tx!(self, tx => {
            sqlx::query_scalar(
                "INSERT INTO sessions (token_hash, openid, session_key_sealed, unionid, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(&token_hash)
            .bind(&openid)
            .bind(&session_key)
            .bind(&unionid)
            .bind(now_ms)
            .bind(expires_at_ms)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::from)
        })
    }

    /// The live session whose token hashes to `token_hash`.
    pub async fn session(
        &self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<Option<SessionRow>, StoreError> {
        let row = on_reader!(self, pool => {
            sqlx::query_as("SELECT id, openid, expires_at FROM sessions WHERE token_hash = $1 AND expires_at > $2")
                .bind(token_hash)
                .bind(now_ms)
                .fetch_optional(pool)
                .await?
        });
        Ok(row)
    }

    /// The sealed session_key of a session (to open with `crate::sealed::Sealer`).
    pub async fn sealed_session_key(&self, id: i64) -> Result<Option<String>, StoreError> {
        let sealed = on_reader!(self, pool => {
            sqlx::query_scalar("SELECT session_key_sealed FROM sessions WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        Ok(sealed)
    }

    /// Deletes up to `limit` sessions that expired before `expired_before_ms`; returns how many.
    pub async fn delete_expired_sessions(
        &self,
        expired_before_ms: i64,
        limit: i64,
    ) -> Result<u64, StoreError> {
        write_tx!(self, tx => {
            Ok(sqlx::query(
                "DELETE FROM sessions WHERE id IN \
                 (SELECT id FROM sessions WHERE expires_at < $1 LIMIT $2)",
            )
            .bind(expired_before_ms)
            .bind(limit)
            .execute(&mut *tx)
            .await?
            .rows_affected())
        })
    }
}
