//! The periodic sweep every worker process runs: queue order queries for `ready` orders whose
//! check is due, queue the job of open refunds whose next step is due (a send, a held
//! refund's retry, or a refundquery for a `processing` one without its notify), re-queue
//! `pending` orders whose prepay job was lost or died, and delete what is kept only for a while
//! (finished jobs, expired sessions, refused notifies), and the bill schedule
//! (`bill_schedule.rs`). Claims are guarded in SQL, so any number of processes can sweep at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::services::Services;
use crate::store::StoreError;

/// How often old records are deleted.
const VACUUM_EVERY: Duration = Duration::from_secs(60);
/// Rows deleted per statement, so that one delete never holds SQLite's writer for long.
const DELETE_BATCH: i64 = 5_000;

pub async fn run(services: Arc<Services>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(services.config.workers.reconcile_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_vacuum = Instant::now();
    let mut bills = super::bill_schedule::BillSchedule::default();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = sweep(&services, &mut last_vacuum).await {
            tracing::warn!(error = %e, "reconciliation sweep failed; retrying at the next tick");
        }
        if let Err(e) = bills.tick(&services).await {
            tracing::warn!(error = %e, "bill schedule failed; retrying at the next tick");
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
    for job in store.claim_due_refunds(now_ms, lease_ms, 200).await? {
        tracing::info!(out_trade_no = %job.out_trade_no, out_refund_no = %job.out_refund_no, run = job.run, "refund job queued");
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
        delete_old_records(services).await?;
    }
    Ok(())
}

/// Deletes finished jobs, expired sessions and refused notifies past their retention.
pub async fn delete_old_records(services: &Services) -> Result<(), StoreError> {
    let retention = &services.config.retention;
    let store = &services.store;
    let now_ms = services.clock.unix_ms();
    let jobs = store
        .vacuum_jobs(now_ms / 1000, retention.jobs.as_secs() as i64)
        .await?;
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let mut sessions = 0;
    loop {
        let n = store
            .delete_expired_sessions(now_ms - ms(retention.sessions), DELETE_BATCH)
            .await?;
        sessions += n;
        if n < DELETE_BATCH as u64 {
            break;
        }
    }
    let mut refused = 0;
    loop {
        let n = store
            .delete_refused_notifies(now_ms - ms(retention.refused_notifies), DELETE_BATCH)
            .await?;
        refused += n;
        if n < DELETE_BATCH as u64 {
            break;
        }
    }
    if jobs + sessions + refused > 0 {
        tracing::info!(
            jobs,
            sessions,
            refused_notifies = refused,
            "old records deleted"
        );
    }
    Ok(())
}
