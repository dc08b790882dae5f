//! The periodic sweep every worker process runs: queue order queries for `ready` orders whose
//! check is due, re-queue `pending` orders whose prepay job was lost or died, and delete old
//! finished jobs. Claims are guarded in SQL, so any number of processes can sweep at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::services::Services;
use crate::store::StoreError;

/// How often finished jobs are deleted.
const VACUUM_EVERY: Duration = Duration::from_secs(60);

pub async fn run(services: Arc<Services>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(services.config.workers.reconcile_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_vacuum = Instant::now();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = sweep(&services, &mut last_vacuum).await {
            tracing::warn!(error = %e, "reconciliation sweep failed; retrying at the next tick");
        }
    }
}

async fn sweep(services: &Services, last_vacuum: &mut Instant) -> Result<(), StoreError> {
    let config = &services.config;
    let store = &services.store;
    let now_ms = services.clock.unix_ms();
    // The claim holds the order until the query job reschedules it; if the job is lost, the
    // order comes due again after the lease.
    let lease_ms = (config.wechat.timeout.as_millis() as i64 * 10).max(60_000);
    for job in store.claim_due_checks(now_ms, lease_ms, 200).await? {
        tracing::info!(out_trade_no = %job.out_trade_no, check = job.check, "no notify yet; order query queued");
    }
    let stuck_before = now_ms - config.workers.stuck_pending.as_millis() as i64;
    for out_trade_no in store
        .requeue_stuck_pending(stuck_before, 100, now_ms)
        .await?
    {
        tracing::warn!(%out_trade_no, "pending order had no live prepay job; re-queued");
        metrics::counter!("minipay_prepay_requeued_total").increment(1);
    }
    if last_vacuum.elapsed() >= VACUUM_EVERY {
        *last_vacuum = Instant::now();
        let now_secs = chrono::Utc::now().timestamp();
        let deleted = store
            .vacuum_jobs(now_secs, config.workers.job_retention.as_secs() as i64)
            .await?;
        if deleted > 0 {
            tracing::info!(deleted, "old finished jobs deleted");
        }
    }
    Ok(())
}
