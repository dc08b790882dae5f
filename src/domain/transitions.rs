//! The status changes the workers make, each with its wake-up: the long-polls of this process
//! are woken here (other processes hear the store's PostgreSQL NOTIFY).

use minipay_jobs::Prepaid;
use minipay_jobs::schedule::first_check_at;

use crate::services::Services;
use crate::store::StoreError;

/// `pending → ready` with the prepay and its signed pay params; the reconciler's first check
/// is set after the configured silence. `attempt` is the prepay attempt that got it (for the
/// log). False when the order was no longer pending.
pub async fn mark_ready(
    services: &Services,
    out_trade_no: &str,
    prepaid: &Prepaid,
    attempt: i64,
) -> Result<bool, StoreError> {
    let now_ms = services.clock.unix_ms();
    let delay = services.config.workers.reconcile_delay.as_secs() as i64;
    let first_check = first_check_at(now_ms / 1000, delay) * 1000;
    let changed = services
        .store
        .mark_ready(out_trade_no, prepaid, now_ms, first_check)
        .await?;
    if changed {
        tracing::info!(attempt, "order ready");
        services.waiters.wake(out_trade_no);
    }
    Ok(changed)
}

/// `→ failed` with WeChat's (or our) error. False when the order may not fail now.
pub async fn fail_order(
    services: &Services,
    out_trade_no: &str,
    code: &str,
    message: &str,
) -> Result<bool, StoreError> {
    let now_ms = services.clock.unix_ms();
    let changed = services
        .store
        .mark_failed(out_trade_no, code, message, &services.outbox(), now_ms)
        .await?;
    if changed {
        tracing::warn!(code, message, "order failed");
        services.waiters.wake(out_trade_no);
    }
    Ok(changed)
}

/// `→ closed`, after WeChat closed it (or reported it closed). False when the order may not
/// close now.
pub async fn close_order(
    services: &Services,
    out_trade_no: &str,
    detail: &str,
) -> Result<bool, StoreError> {
    let changed = services
        .store
        .mark_closed(
            out_trade_no,
            detail,
            &services.outbox(),
            services.clock.unix_ms(),
        )
        .await?;
    if changed {
        tracing::info!(detail, "order closed");
        services.waiters.wake(out_trade_no);
    }
    Ok(changed)
}
