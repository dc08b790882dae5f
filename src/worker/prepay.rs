//! The prepay job: `unifiedorder` with the order's frozen parameters until WeChat gives a
//! prepay_id, refuses for good, or the attempts run out. Only `nonce_str` and `sign` change
//! between attempts (docs/wechat-pay-v2.md §3.4).

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::{AbortError, BoxDynError, Data};
use backon::{BackoffBuilder, ExponentialBuilder};
use minipay_jobs::decide::{OrderClock, after_order_query, after_unified_order};
use minipay_jobs::{OrderStatus, PrepayDecision, PrepayOrder, QueryDecision};
use tracing::Instrument;

use super::guard::guarded;
use super::payments::{self, alert};
use crate::app::Services;
use crate::store::OrderRow;
use crate::wechat::reply::Payment;
use crate::wechat::sign::nonce;
use crate::wechat::{PayParams, UnifiedOrderParams};

pub async fn run(job: PrepayOrder, services: Data<Arc<Services>>) -> Result<(), BoxDynError> {
    let services = Arc::clone(&services);
    let limit = services.prepay_deadline();
    let span = tracing::error_span!("prepay", out_trade_no = %job.out_trade_no);
    guarded(
        PrepayOrder::QUEUE,
        limit,
        prepay(services, job).instrument(span),
    )
    .await
}

async fn prepay(services: Arc<Services>, job: PrepayOrder) -> Result<(), BoxDynError> {
    let started_ms = services.clock.unix_ms();
    let store = &services.store;
    let Some(order) = store.order(&job.out_trade_no).await? else {
        return Err(AbortError::new(format!("no order {}", job.out_trade_no)).into());
    };
    if order.prepay_attempts == 0 && order.prepay_generation == 0 {
        // The job was queued in the transaction that created the order.
        metrics::histogram!("minipay_job_pickup_seconds", "queue" => PrepayOrder::QUEUE)
            .record((started_ms - order.created_at).max(0) as f64 / 1000.0);
    }
    if order.status() != OrderStatus::Pending {
        // Delivered twice, or re-queued after the first run finished: nothing left to do.
        tracing::debug!(status = %order.status, "order is no longer pending");
        return Ok(());
    }
    let params: UnifiedOrderParams = serde_json::from_str(&order.params)
        .map_err(|e| AbortError::new(format!("stored parameters unreadable: {e}")))?;
    let config = &services.config;
    let max_attempts = i64::from(config.prepay_max_attempts);
    let mut attempts = order.prepay_attempts;
    let mut backoff = ExponentialBuilder::default()
        .with_min_delay(config.prepay_backoff)
        .with_max_delay(config.prepay_backoff_max)
        .with_jitter()
        .without_max_times()
        .build();
    let mut last_error = ("RETRIES_EXHAUSTED".to_owned(), "no attempt left".to_owned());

    loop {
        if attempts >= max_attempts {
            // Attempts made before a crash count too: the bound holds across restarts.
            let (code, message) = &last_error;
            fail(
                &services,
                &order,
                code,
                &format!("gave up after {attempts} attempts: {message}"),
            )
            .await?;
            return Ok(());
        }
        let answer = services.pay.unified_order(&params).await;
        let outcome = answer.label();
        metrics::counter!("minipay_prepay_attempts_total", "outcome" => outcome.clone())
            .increment(1);
        let decision = match after_unified_order(&answer.reply()) {
            PrepayDecision::Ready if answer.field("prepay_id").is_none() => PrepayDecision::Retry {
                reason: "SUCCESS reply without prepay_id".into(),
            },
            decision => decision,
        };
        // A permanent refusal is the merchant's setup (alarm) or this order's problem.
        let configuration_problem = matches!(decision, PrepayDecision::Alarm(_));
        match decision {
            PrepayDecision::Ready => {
                let prepay_id = answer.field("prepay_id").unwrap_or_default();
                let key = &services.pay.merchant().key;
                let pay_params = PayParams::new(
                    &params.appid,
                    prepay_id,
                    params.sign_type,
                    key,
                    services.clock.unix(),
                    nonce(),
                );
                let now_ms = services.clock.unix_ms();
                let first_check = minipay_jobs::schedule::first_check_at(
                    now_ms / 1000,
                    config.reconcile_delay.as_secs() as i64,
                ) * 1000;
                if store
                    .mark_ready(
                        &order.out_trade_no,
                        prepay_id,
                        &serde_json::to_string(&pay_params)?,
                        now_ms,
                        first_check,
                    )
                    .await?
                {
                    tracing::info!(attempt = attempts + 1, "order ready");
                    services.waiters.wake(&order.out_trade_no);
                }
                return Ok(());
            }
            PrepayDecision::Retry { reason } => {
                tracing::warn!(
                    attempt = attempts + 1,
                    ?outcome,
                    ?reason,
                    "prepay attempt failed; retrying"
                );
                let now_ms = services.clock.unix_ms();
                match store
                    .record_prepay_attempt(&order.out_trade_no, &outcome, &reason, now_ms)
                    .await?
                {
                    Some(n) => attempts = n,
                    None => return Ok(()), // settled meanwhile (e.g. paid by a notify)
                }
                last_error = (outcome, reason);
                if attempts < max_attempts {
                    let pause = backoff.next().unwrap_or(config.prepay_backoff_max);
                    // At shutdown, hand the job back instead of waiting out the backoff: the
                    // next process retries it (apalis re-runs a failed job).
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = services.stopping.cancelled() => {
                            return Err("shutting down; the prepay will be retried".into());
                        }
                    }
                }
            }
            PrepayDecision::Fail(failure) | PrepayDecision::Alarm(failure) => {
                if configuration_problem {
                    let detail = format!("{}: {}", failure.code, failure.message);
                    alert(&order.out_trade_no, "wechat_configuration", &detail);
                } else {
                    tracing::warn!(code = ?failure.code, message = ?failure.message, "WeChat refused the order");
                }
                let now_ms = services.clock.unix_ms();
                store
                    .record_prepay_attempt(&order.out_trade_no, &outcome, &failure.message, now_ms)
                    .await?;
                fail(&services, &order, &failure.code, &failure.message).await?;
                return Ok(());
            }
            PrepayDecision::ConfirmPaid => {
                tracing::info!("WeChat says ORDERPAID; confirming with an order query");
                return confirm_paid(&services, &order, &mut backoff).await;
            }
        }
    }
}

async fn fail(
    services: &Services,
    order: &OrderRow,
    code: &str,
    message: &str,
) -> Result<(), sqlx::Error> {
    let now_ms = services.clock.unix_ms();
    if services
        .store
        .mark_failed(&order.out_trade_no, code, message, now_ms)
        .await?
    {
        tracing::warn!(code, message, "order failed");
        services.waiters.wake(&order.out_trade_no);
    }
    Ok(())
}

/// `ORDERPAID` on a prepay: the user paid after an earlier reply was lost. Ask WeChat for the
/// payment and apply it like a notify; never mark the order failed.
async fn confirm_paid(
    services: &Services,
    order: &OrderRow,
    backoff: &mut impl Iterator<Item = Duration>,
) -> Result<(), BoxDynError> {
    let mut last = String::new();
    for _ in 0..services.config.prepay_max_attempts {
        let answer = services.pay.order_query(&order.out_trade_no).await;
        let clock = OrderClock {
            created_at: order.created_at / 1000,
            expires_at: order.expires_at / 1000,
            now: services.clock.unix(),
        };
        match after_order_query(&answer.reply(), answer.field("trade_state"), clock) {
            QueryDecision::Paid => {
                let fields = answer
                    .trusted_fields()
                    .ok_or("untrusted orderquery reply")?;
                let payment = Payment::from_fields(fields)?;
                payments::apply(services, &payment, "orderquery after ORDERPAID", None).await?;
                return Ok(());
            }
            other => {
                last = format!("{other:?}");
                tracing::warn!(decision = ?last, "order query after ORDERPAID did not confirm the payment yet");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff.next().unwrap_or(Duration::from_secs(1))) => {}
            () = services.stopping.cancelled() => break,
        }
    }
    // Leave it pending: the job runs again, and the reconciler re-queues it if it dies.
    Err(format!("ORDERPAID not confirmed by orderquery: {last}").into())
}
