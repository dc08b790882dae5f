//! Retention settings: how long what is kept only for a while stays — finished jobs, expired
//! sessions, refused notifies. The workers' sweep deletes the rest.

use std::time::Duration;

use super::ConfigError;
use super::settings::settings;

settings! {
    /// The retention settings as read.
    pub struct RetentionSettings {
        /// finished jobs older than this are deleted
        job_retention_secs: u64 = 3600;
        /// expired sessions are deleted this long after they expire
        session_retention_secs: u64 = 24 * 3600;
        /// refused notifies are deleted this long after they were last seen
        refused_notify_retention_secs: u64 = 7 * 24 * 3600;
    }
}

/// How long records are kept.
#[derive(Debug, Clone)]
pub struct Retention {
    pub jobs: Duration,
    pub sessions: Duration,
    pub refused_notifies: Duration,
}

impl RetentionSettings {
    pub fn config(self) -> Result<Retention, ConfigError> {
        self.check()?;
        Ok(Retention {
            jobs: Duration::from_secs(self.job_retention_secs),
            sessions: Duration::from_secs(self.session_retention_secs),
            refused_notifies: Duration::from_secs(self.refused_notify_retention_secs),
        })
    }
}
