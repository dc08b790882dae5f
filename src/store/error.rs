//! What can go wrong in the store, kept apart from `sqlx::Error` so that a caller can tell
//! "the database cannot take this right now, try again" from a bug, and so that our own
//! failures (a job that cannot be encoded, a panicking transaction) are not dressed up as
//! driver errors.

use std::sync::Arc;

/// A failed store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot take this right now (unreachable, a full disk, an I/O error, a
    /// server shutting down or read-only): the caller answers 503 and the client retries.
    /// Shared: a SQLite batch's failure is every writer's in it.
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] Arc<sqlx::Error>),
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
    /// A unique value was taken by another row (a generated number that collided).
    #[error("conflict: {0}")]
    Conflict(&'static str),
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
            StoreError::Unavailable(Arc::new(e))
        } else {
            StoreError::Database(e)
        }
    }
}

/// Whether a driver error means "the database cannot take this right now" (unreachable, a
/// full disk, an I/O error, a server shutting down) rather than a bug.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let Some(code) = db.code() else {
                return false;
            };
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // The extended result code; its low byte is the primary one. SQLITE_BUSY,
                // SQLITE_LOCKED, SQLITE_NOMEM, SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL,
                // SQLITE_CANTOPEN (https://www.sqlite.org/rescode.html).
                code.parse::<u32>()
                    .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 7 | 8 | 10 | 13 | 14))
            } else {
                // SQLSTATE 08: connection exception; 53: insufficient resources (53100 disk
                // full); 57P01..57P03: the server is shutting down or starting; 58: system
                // error; 25006: a read-only transaction (a standby after a fail-over)
                // (https://www.postgresql.org/docs/current/errcodes-appendix.html).
                code.starts_with("08")
                    || code.starts_with("53")
                    || code.starts_with("58")
                    || matches!(&*code, "57P01" | "57P02" | "57P03" | "25006")
            }
        }
        _ => false,
    }
}
