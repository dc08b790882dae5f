//! Whether writes are committing: the outcome of the last write (SQLite's group commit reports
//! every batch) and of a small write probe. `/readyz` reads it without touching the database.
//!
//! A disk that filled up, a read-only remount or a database that went away all leave reads
//! working, so a read ping alone would keep a load balancer sending orders to an instance that
//! can only answer 503. The probe runs while writes are failing (so the instance notices by
//! itself when space returns, even with no traffic) and now and then while they succeed (so a
//! quiet instance notices a failure before a user does).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Store, StoreError, write_tx};

/// How often the probe writes while writes fail.
const PROBE_WHILE_FAILING: Duration = Duration::from_secs(1);
/// How often the probe writes while writes succeed.
const PROBE_WHILE_HEALTHY: Duration = Duration::from_secs(10);
/// The probe allocates this much and frees it in the same transaction: a write that fits in
/// space already allocated (an update in place) succeeds on a full disk and proves nothing.
const PROBE_BYTES: usize = 16 * 1024;

/// Shared write-health state; clones see the same state.
#[derive(Debug, Clone, Default)]
pub struct WriteHealth {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Unix ms of the first failure in the current run of failures; 0 while writes succeed.
    failing_since_ms: AtomicI64,
    last_error: Mutex<String>,
}

/// What `/readyz` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteState {
    Ok,
    /// Writes have failed since this Unix ms, the last one with this error.
    Failing {
        since_ms: i64,
        error: String,
    },
}

impl WriteHealth {
    pub fn new() -> Self {
        Self::default()
    }

    /// A write committed.
    pub fn record_ok(&self) {
        if self.inner.failing_since_ms.swap(0, Ordering::AcqRel) != 0 {
            tracing::info!("writes commit again");
        }
    }

    /// A write failed because the database could not take it (full, I/O error, unreachable).
    pub fn record_failure(&self, error: &StoreError) {
        let now_ms = chrono::Utc::now().timestamp_millis().max(1);
        let first = self
            .inner
            .failing_since_ms
            .compare_exchange(0, now_ms, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if let Ok(mut last) = self.inner.last_error.lock() {
            *last = error.to_string();
        }
        if first {
            tracing::error!(error = %error, "writes are failing; answering 503 until they commit again");
        }
    }

    /// The current state, from memory.
    pub fn state(&self) -> WriteState {
        match self.inner.failing_since_ms.load(Ordering::Acquire) {
            0 => WriteState::Ok,
            since_ms => WriteState::Failing {
                since_ms,
                error: self
                    .inner
                    .last_error
                    .lock()
                    .map(|e| e.clone())
                    .unwrap_or_default(),
            },
        }
    }

    pub fn is_ok(&self) -> bool {
        self.inner.failing_since_ms.load(Ordering::Acquire) == 0
    }

    /// Probes until `stop` fires: often while writes fail, rarely while they succeed.
    pub fn spawn_probe(
        &self,
        store: Store,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let health = self.clone();
        tokio::spawn(async move {
            loop {
                let pause = if health.is_ok() {
                    PROBE_WHILE_HEALTHY
                } else {
                    PROBE_WHILE_FAILING
                };
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(pause) => {}
                }
                match store.probe_write().await {
                    Ok(()) => health.record_ok(),
                    Err(e) if e.is_unavailable() => health.record_failure(&e),
                    Err(e) => tracing::warn!(error = %e, "write probe failed"),
                }
            }
        })
    }
}

impl Store {
    /// One committed write that allocates and frees [`PROBE_BYTES`]; on SQLite it goes through
    /// the group commit, like every other write.
    pub async fn probe_write(&self) -> Result<(), StoreError> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        write_tx!(self, tx => {
            sqlx::query("INSERT INTO write_probe (at, pad) VALUES ($1, $2)")
                .bind(now_ms)
                .bind(vec![0u8; PROBE_BYTES])
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM write_probe")
                .execute(&mut *tx)
                .await?;
            Ok(())
        })
    }
}
