//! Process settings: logs and the graceful-shutdown deadline.

use std::time::Duration;

use super::ConfigError;
use super::settings::settings;

settings! {
    /// The process settings as read.
    pub struct ProcessSettings {
        /// log filter, e.g. `info` or `minipay=debug,info`
        log: String = "info".into();
        /// `text` or `json` (one object per line, span fields included)
        log_format: String = "text".into(), check |format: &String| match format.as_str() {
            "text" | "json" => Ok(()),
            _ => Err("must be text or json".into()),
        };
        /// graceful shutdown deadline
        shutdown_timeout_secs: u64 = 30;
        /// count every SQL statement this process runs in `minipay_db_statements_total` (what `make bench` reads; about a microsecond per statement)
        count_db_statements: bool = false;
    }
}

/// How the process logs and stops.
#[derive(Debug, Clone)]
pub struct Process {
    /// A tracing filter.
    pub log_filter: String,
    pub log_json: bool,
    /// Whether SQL statements are counted (`minipay_db_statements_total`).
    pub count_db_statements: bool,
    pub shutdown_timeout: Duration,
}

impl ProcessSettings {
    pub fn config(self) -> Result<Process, ConfigError> {
        self.check()?;
        Ok(Process {
            log_json: self.log_format == "json",
            log_filter: self.log,
            count_db_statements: self.count_db_statements,
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout_secs),
        })
    }
}
