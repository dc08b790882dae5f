//! What `/metrics` and `/readyz` answer from: a background task reads the database-backed
//! gauges every `MINIPAY_METRICS_REFRESH_MS` and probes readiness (database, migrations, this
//! process's workers) every second (every 100 ms while not ready); the endpoints only read
//! memory. A scrape flood then costs
//! the database nothing, and `/readyz` answers at once however busy the pools are.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics::{DbGauges, gauge_line};
use crate::services::Services;
use crate::store::StoreError;
use crate::worker::QUEUES;

/// How often readiness is probed.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How often while it fails (at start, until the workers' first heartbeat; during an outage):
/// an instance that can serve says so at once.
const PROBE_WHILE_NOT_READY: Duration = Duration::from_millis(100);
/// A probe step that takes longer than this counts as failed.
const STEP_TIMEOUT: Duration = Duration::from_secs(2);
/// A readiness probe older than this is not believed: the probing itself is stuck.
pub const STALE_AFTER: Duration = Duration::from_secs(5);

/// Shared cached state; clones see the same state.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    inner: Arc<RwLock<Inner>>,
    /// Held by the one request that probes or reads before the background task has (at start).
    first: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The last gauges read successfully.
    gauges: Option<DbGauges>,
    /// When the last read was attempted, and whether it succeeded.
    refreshed: Option<(Instant, bool)>,
    probe: Option<Probe>,
}

/// The outcome of one readiness probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub at: Instant,
    pub database: bool,
    pub migrations: bool,
    /// Worker roles only: this process's workers are heartbeating.
    pub workers: Option<bool>,
}

/// Readiness as `/readyz` reports it, from the last probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    pub database: bool,
    pub migrations: bool,
    pub workers: Option<bool>,
    /// How old the probe is; `None` before the first.
    pub age: Option<Duration>,
}

impl Checked {
    /// Whether all checks passed and the probe is fresh.
    pub fn ok(&self) -> bool {
        self.database && self.migrations && self.workers.unwrap_or(true)
    }
}

impl Snapshot {
    pub fn new() -> Self {
        Self::default()
    }

    /// The last probe's outcome at `now`; a probe older than [`STALE_AFTER`] (or none yet)
    /// counts as a failed one.
    pub fn checked(&self, now: Instant) -> Checked {
        let probe = self.inner.read().ok().and_then(|i| i.probe);
        let Some(probe) = probe else {
            return Checked {
                database: false,
                migrations: false,
                workers: None,
                age: None,
            };
        };
        let age = now.saturating_duration_since(probe.at);
        let fresh = age <= STALE_AFTER;
        Checked {
            database: fresh && probe.database,
            migrations: fresh && probe.migrations,
            workers: probe.workers.map(|w| fresh && w),
            age: Some(age),
        }
    }

    /// The snapshot's gauges in Prometheus text, with `long_poll_waiters` (from memory).
    pub fn render(&self, now: Instant, long_poll_waiters: usize) -> String {
        let mut out = String::new();
        if let Ok(inner) = self.inner.read() {
            if let Some(gauges) = &inner.gauges {
                gauges.render(&mut out);
            }
            let (up, age) = match inner.refreshed {
                Some((at, ok)) => (ok, now.saturating_duration_since(at).as_secs_f64()),
                None => (false, 0.0),
            };
            gauge_line(
                &mut out,
                "minipay_database_up",
                "1 when the last background refresh of the gauges could read the database.",
                if up { 1.0 } else { 0.0 },
            );
            gauge_line(
                &mut out,
                "minipay_gauges_age_seconds",
                "Seconds since the database-backed gauges were last read.",
                age,
            );
        }
        gauge_line(
            &mut out,
            "minipay_long_poll_waiters",
            "Orders with a long-poll waiting in this process.",
            long_poll_waiters as f64,
        );
        out
    }

    /// Like [`Snapshot::checked`], but before the first background probe one request probes
    /// (the others wait for it): a process just started answers at once, not a second later.
    pub async fn checked_or_probe(
        &self,
        services: &Services,
        worker_node: Option<&str>,
    ) -> Checked {
        let checked = self.checked(Instant::now());
        if checked.age.is_some() {
            return checked;
        }
        let _first = self.first.lock().await;
        if self.checked(Instant::now()).age.is_none() {
            self.probe(services, worker_node).await;
        }
        self.checked(Instant::now())
    }

    /// Before the first background read of the gauges, one scrape reads them (the others wait
    /// for it), so the first scrape of a process just started has them.
    pub async fn refresh_if_never(&self, services: &Services) {
        let never = |s: &Self| s.inner.read().is_ok_and(|i| i.refreshed.is_none());
        if !never(self) {
            return;
        }
        let _first = self.first.lock().await;
        if never(self) {
            self.refresh(services).await;
        }
    }

    /// Reads the gauges now.
    pub async fn refresh(&self, services: &Services) {
        let read = DbGauges::read(
            &services.store,
            QUEUES,
            services.clock.unix_ms(),
            services.config.workers.reconcile_delay,
        );
        let read = tokio::time::timeout(STEP_TIMEOUT * 5, read).await;
        let ok = matches!(read, Ok(Ok(_)));
        if let Ok(mut inner) = self.inner.write() {
            if let Ok(Ok(gauges)) = read {
                inner.gauges = Some(gauges);
            }
            inner.refreshed = Some((Instant::now(), ok));
        }
    }

    /// Probes readiness now.
    pub async fn probe(&self, services: &Services, worker_node: Option<&str>) {
        let store = &services.store;
        let database = within(async { store.ping().await.map(|()| true) }).await;
        let migrations = database && within(store.migrations_applied()).await;
        let workers = match worker_node {
            Some(node) => {
                let secs = (services.config.workers.heartbeat.as_secs() as i64 * 3).max(5);
                let now = chrono::Utc::now().timestamp();
                Some(within(store.workers_alive(node, now, secs)).await)
            }
            None => None,
        };
        if let Ok(mut inner) = self.inner.write() {
            inner.probe = Some(Probe {
                at: Instant::now(),
                database,
                migrations,
                workers,
            });
        }
    }

    /// Refreshes and probes until `stop` fires: first at once, then on their intervals.
    pub fn spawn(
        &self,
        services: Arc<Services>,
        worker_node: Option<String>,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        let snapshot = self.clone();
        let every = services.config.http.metrics_refresh;
        tokio::spawn(async move {
            // The first refresh may already have been made by a scrape that came first.
            let mut next_refresh: Option<Instant> = None;
            loop {
                snapshot.probe(&services, worker_node.as_deref()).await;
                match next_refresh {
                    None => snapshot.refresh_if_never(&services).await,
                    Some(at) if Instant::now() >= at => snapshot.refresh(&services).await,
                    Some(_) => {}
                }
                if next_refresh.is_none_or(|at| Instant::now() >= at) {
                    next_refresh = Some(Instant::now() + every);
                }
                let next_refresh = next_refresh.unwrap_or_else(Instant::now);
                let probe_every = match snapshot.checked(Instant::now()).ok() {
                    true => PROBE_EVERY,
                    false => PROBE_WHILE_NOT_READY,
                };
                let until_refresh = next_refresh.saturating_duration_since(Instant::now());
                let tick = probe_every.min(until_refresh);
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(tick) => {}
                }
            }
        })
    }
}

/// Whether a probe step answered `true` in time.
async fn within(step: impl Future<Output = Result<bool, StoreError>>) -> bool {
    matches!(tokio::time::timeout(STEP_TIMEOUT, step).await, Ok(Ok(true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_probe(probe: Probe) -> Snapshot {
        let snapshot = Snapshot::new();
        snapshot.inner.write().unwrap().probe = Some(probe);
        snapshot
    }

    #[test]
    fn no_probe_yet_is_not_ready() {
        let checked = Snapshot::new().checked(Instant::now());
        assert!(!checked.ok());
        assert_eq!(checked.age, None);
    }

    #[test]
    fn a_fresh_good_probe_is_ready_and_a_stale_one_is_not() {
        let at = Instant::now();
        let snapshot = with_probe(Probe {
            at,
            database: true,
            migrations: true,
            workers: Some(true),
        });
        assert!(snapshot.checked(at + Duration::from_secs(1)).ok());
        let stale = snapshot.checked(at + STALE_AFTER + Duration::from_millis(1));
        assert!(!stale.ok());
        assert_eq!(
            (stale.database, stale.migrations, stale.workers),
            (false, false, Some(false))
        );
    }

    #[test]
    fn a_failed_check_is_not_ready() {
        let at = Instant::now();
        for (database, migrations, workers) in [
            (false, false, None),
            (true, false, None),
            (true, true, Some(false)),
        ] {
            let snapshot = with_probe(Probe {
                at,
                database,
                migrations,
                workers,
            });
            assert!(!snapshot.checked(at).ok());
        }
    }

    #[test]
    fn gauges_render_from_memory() {
        let snapshot = Snapshot::new();
        let text = snapshot.render(Instant::now(), 3);
        assert!(text.contains("minipay_database_up 0\n"), "{text}");
        assert!(text.contains("minipay_long_poll_waiters 3\n"), "{text}");
        assert!(
            !text.contains("minipay_orders{"),
            "no gauges before a read: {text}"
        );
    }
}
