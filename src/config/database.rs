//! Database settings: where orders and the job queue live, how many connections a process
//! opens, and how large a SQLite file may grow.

use std::path::PathBuf;

use super::ConfigError;
use super::settings::{positive, settings};

settings! {
    /// The database settings as read.
    pub struct DatabaseSettings {
        /// `sqlite://PATH` or `postgres://…`; orders and the job queue live together
        database_url: String = "sqlite://minipay.db".into(), check |url: &String| {
            let known = ["sqlite:", "postgres://", "postgresql://"];
            if known.iter().any(|scheme| url.starts_with(scheme)) {
                Ok(())
            } else {
                Err("must be sqlite://PATH or postgres://...".into())
            }
        };
        /// database connections per process
        db_pool_size: u32 = 16, check |n: &u32| positive(u64::from(*n));
        /// a cap on the SQLite database file: past it writes answer 503 as on a full disk; `0`: none
        sqlite_max_size_mb: u64 = 0;
    }
}

/// Where the data lives.
#[derive(Debug, Clone)]
pub struct Database {
    pub url: String,
    pub pool_size: u32,
    /// SQLite pages (4 KiB) the file may grow to; `None`: no cap.
    pub sqlite_max_pages: Option<u64>,
}

impl Database {
    pub fn is_sqlite(&self) -> bool {
        self.url.starts_with("sqlite:")
    }

    /// The SQLite database file, when the database is one (not in memory).
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let path = self
            .url
            .strip_prefix("sqlite:")?
            .trim_start_matches("//")
            .split('?')
            .next()
            .unwrap_or_default();
        (!path.is_empty() && !path.contains(":memory:")).then(|| PathBuf::from(path))
    }
}

impl DatabaseSettings {
    pub fn config(self) -> Result<Database, ConfigError> {
        self.check()?;
        Ok(Database {
            url: self.database_url,
            pool_size: self.db_pool_size,
            sqlite_max_pages: (self.sqlite_max_size_mb > 0)
                .then(|| self.sqlite_max_size_mb.saturating_mul(1024 * 1024 / 4096)),
        })
    }
}
