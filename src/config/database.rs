//! Database settings: where orders and the job queue live, and how many connections a process
//! opens.

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
    }
}

/// Where the data lives.
#[derive(Debug, Clone)]
pub struct Database {
    pub url: String,
    pub pool_size: u32,
}

impl Database {
    pub fn is_sqlite(&self) -> bool {
        self.url.starts_with("sqlite:")
    }
}

impl DatabaseSettings {
    pub fn config(self) -> Result<Database, ConfigError> {
        self.check()?;
        Ok(Database {
            url: self.database_url,
            pool_size: self.db_pool_size,
        })
    }
}
