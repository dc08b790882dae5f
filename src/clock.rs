//! Wall-clock time with an adjustable offset. Production never moves it; tests advance it to
//! reach order expiry or WeChat's 5-minute close rule without waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// A shared clock; clones see the same offset.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Unix seconds.
    pub fn unix(&self) -> i64 {
        self.now().timestamp()
    }

    /// Unix milliseconds.
    pub fn unix_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }

    /// Moves this clock (and its clones) forward.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}
