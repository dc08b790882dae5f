//! What can go wrong in the store, kept apart from `sqlx::Error` so that a caller can tell
//! "the database is down, try again" from a bug, and so that our own failures (a job that
//! cannot be encoded, a panicking transaction) are not dressed up as driver errors.

/// A failed store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached right now (connection, pool, TLS): try again shortly.
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The database refused or failed a statement.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// A job payload or a stored value could not be written as JSON.
    #[error("encoding {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// apalis could not queue a job in the transaction.
    #[error("queueing a job: {0}")]
    Enqueue(String),
    /// A write transaction panicked; it was rolled back alone.
    #[error("a write transaction panicked")]
    Panicked,
    /// The SQLite batch this write was part of failed to commit.
    #[error("group commit failed: {0}")]
    BatchFailed(String),
    /// The committing task is gone (the store is shutting down).
    #[error("the store is closed")]
    Closed,
}

impl StoreError {
    /// Whether the database is unreachable right now rather than wrong: the caller answers
    /// 503 (or retries) instead of reporting a bug.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Closed)
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            StoreError::Unavailable(e)
        } else {
            StoreError::Database(e)
        }
    }
}

/// Whether a driver error means "the database is not reachable right now" rather than a bug.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
    )
}
