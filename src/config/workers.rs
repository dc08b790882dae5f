//! Worker settings: prepay retries, reconciliation timing, and how the apalis workers run.

use std::time::Duration;

use super::ConfigError;
use super::settings::{positive, settings};

settings! {
    /// The worker settings as read.
    pub struct WorkerSettings {
        /// unifiedorder attempts before an order is `failed`
        prepay_max_attempts: u32 = 8, check |n: &u32| positive(u64::from(*n));
        /// exponential backoff with jitter between attempts: the first pause
        prepay_backoff_ms: u64 = 200;
        /// exponential backoff with jitter between attempts: the longest pause
        prepay_backoff_max_ms: u64 = 5_000;
        /// silence after `ready` before the first order query (WeChat advises ~1 min)
        reconcile_delay_secs: u64 = 60;
        /// how often the reconciler sweeps
        reconcile_interval_ms: u64 = 5_000, check |ms: &u64| positive(*ms);
        /// a `pending` order older than this whose job is gone or dead is re-queued
        stuck_pending_secs: u64 = 120;
        /// jobs each queue runs at once per process (`--concurrency`)
        worker_concurrency: usize = 64, check |n: &usize| positive(*n as u64);
        /// jobs claimed per fetch
        worker_batch_size: usize = 64, check |n: &usize| positive(*n as u64);
        /// worker heartbeat; a worker silent for 3 beats is presumed dead
        heartbeat_secs: u64 = 2, check |secs: &u64| positive(*secs);
    }
}

/// How the workers run.
#[derive(Debug, Clone)]
pub struct Workers {
    pub prepay_max_attempts: u32,
    pub prepay_backoff: Duration,
    pub prepay_backoff_max: Duration,
    pub reconcile_delay: Duration,
    pub reconcile_interval: Duration,
    pub stuck_pending: Duration,
    pub concurrency: usize,
    pub batch_size: usize,
    pub heartbeat: Duration,
}

impl WorkerSettings {
    pub fn config(self) -> Result<Workers, ConfigError> {
        self.check()?;
        Ok(Workers {
            prepay_max_attempts: self.prepay_max_attempts,
            prepay_backoff: Duration::from_millis(self.prepay_backoff_ms),
            prepay_backoff_max: Duration::from_millis(
                self.prepay_backoff_max_ms.max(self.prepay_backoff_ms),
            ),
            reconcile_delay: Duration::from_secs(self.reconcile_delay_secs),
            reconcile_interval: Duration::from_millis(self.reconcile_interval_ms),
            stuck_pending: Duration::from_secs(self.stuck_pending_secs.max(1)),
            concurrency: self.worker_concurrency,
            batch_size: self.worker_batch_size,
            heartbeat: Duration::from_secs(self.heartbeat_secs),
        })
    }
}
