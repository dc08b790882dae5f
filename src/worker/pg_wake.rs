//! The PostgreSQL workers' wake-ups: one LISTEN connection per process, fanned out per queue.
//!
//! apalis gives each worker its own `Pubsub` listener, and a worker fetches on *every* wake of
//! its task, whatever woke it: each listener hears every queue's inserts, so one new prepay
//! job also made the apply-payment and query-order workers run an empty fetch (a
//! BEGIN/`get_jobs`/COMMIT round each). Counted in PostgreSQL's statement log over 200 orders:
//! 322 such fetches, 1.6 per order, about a quarter of the statements an order costs. Here one
//! listener reads each notification's `job_type` and wakes only that queue's workers.
//!
//! It also outlives a database restart: apalis' `Pubsub` ends for good once its connection
//! cannot be re-established, and a finished stream reads as "always ready" to apalis' poll
//! strategy (found by the fault soak: the worker spun a core and never fetched again). This
//! loop tries again after a pause; the workers' safety poll covers the gap.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use apalis_postgres::{InsertEvent, PgPool};
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use crate::store::{InsertSignal, JobWake};

/// apalis' insert trigger notifies on this channel with `{"job_type", "id", "run_at"}`.
const JOB_CHANNEL: &str = "apalis::job::insert";

/// Pause before listening again after the listener connection failed.
const RELISTEN_AFTER: Duration = Duration::from_secs(1);

/// Wakes each queue's workers when a job is inserted into that queue, by any process.
#[derive(Clone, Debug)]
pub struct PgJobWakeups {
    /// The queues listened for; inserts into them wake their own workers through `signal`.
    queues: Arc<[String]>,
    signal: InsertSignal,
    /// Connection attempts, and how many of them got to listening.
    pub attempts: Arc<AtomicU64>,
    pub connections: Arc<AtomicU64>,
}

impl PgJobWakeups {
    /// Starts listening for inserts into `queues` until `stop` fires.
    pub fn start(pool: PgPool, queues: &[&str], stop: CancellationToken) -> Self {
        let wakeups = Self {
            queues: queues.iter().map(|q| (*q).to_owned()).collect(),
            signal: InsertSignal::new(),
            attempts: Arc::default(),
            connections: Arc::default(),
        };
        let listening = wakeups.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = listening.listen(pool) => {}
                () = stop.cancelled() => {}
            }
        });
        wakeups
    }

    /// A stream that yields after inserts into `queue` (coalesced), for one worker. `queue`
    /// must be one given to [`PgJobWakeups::start`]: no insert would ever wake it otherwise.
    pub fn subscribe(&self, queue: &str) -> JobWake {
        assert!(
            self.queues.iter().any(|q| q == queue),
            "queue {queue} was not registered for wake-ups"
        );
        self.signal.subscribe_to(queue)
    }

    async fn listen(&self, pool: PgPool) {
        loop {
            let error = self.listen_once(&pool).await.err().map(|e| e.to_string());
            tracing::warn!(
                error,
                "job notification listener lost; listening again shortly"
            );
            tokio::time::sleep(RELISTEN_AFTER).await;
        }
    }

    /// Listens until the connection fails.
    async fn listen_once(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(JOB_CHANNEL).await?;
        // Jobs inserted while no one listened: wake everyone once.
        self.signal.fire();
        self.connections.fetch_add(1, Ordering::Relaxed);
        // `None`: the connection was lost (notifications sent meanwhile are gone).
        while let Some(notification) = listener.try_recv().await? {
            let Ok(event) = serde_json::from_str::<InsertEvent>(notification.payload()) else {
                continue;
            };
            self.signal.fire_queue(&event.job_type);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use sqlx::postgres::PgPoolOptions;

    /// A pool whose every connection attempt fails at once (nothing listens on port 1).
    fn unreachable_pool() -> PgPool {
        PgPoolOptions::new()
            .acquire_timeout(Duration::from_millis(200))
            .connect_lazy("postgres://postgres@127.0.0.1:1/none")
            .expect("valid URL")
    }

    #[tokio::test]
    async fn while_the_database_is_down_the_listener_retries_without_spinning() {
        let stop = CancellationToken::new();
        let wakeups = PgJobWakeups::start(unreachable_pool(), &["q"], stop.clone());
        let mut wake = wakeups.subscribe("q");
        let outcome = tokio::time::timeout(Duration::from_millis(2500), wake.next()).await;
        assert!(
            outcome.is_err(),
            "no wake-up without a listener, got {outcome:?}"
        );
        assert_eq!(wakeups.connections.load(Ordering::Relaxed), 0);
        // One attempt, then one per pause: neither given up nor retried in a loop.
        let attempts = wakeups.attempts.load(Ordering::Relaxed);
        assert!((2..=4).contains(&attempts), "{attempts} attempts in 2.5 s");
        stop.cancel();
    }
}
