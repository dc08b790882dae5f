//! The prepay job: the order's frozen prepay request, sent until the provider grants a
//! prepay, refuses for good, or the attempts run out. Only the nonce and the signature change
//! between attempts (docs/wechat-pay-v2.md §3.4).

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::{AbortError, Attempt, BoxDynError, Data};
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use minipay_jobs::decide::{OrderClock, after_order_query, after_unified_order};
use minipay_jobs::{Failure, Job, OrderStatus, PrepayDecision, PrepayOrder, QueryDecision};
use tracing::Instrument;

use super::guard::guarded;
use crate::config::Config;
use crate::domain::{self, alert};
use crate::services::Services;
use crate::wechat::Admission;

pub async fn run(
    job: PrepayOrder,
    services: Data<Arc<Services>>,
    attempt: Attempt,
) -> Result<(), BoxDynError> {
    let services = Arc::clone(&services);
    let started_ms = services.clock.unix_ms();
    // Admitted first, while this future is small; the call's large future (request, reply,
    // the writes after it) is boxed and exists only once admitted.
    let admission = services.gateway.admit().await;
    let limit = deadline(&services.config);
    let span = tracing::error_span!("prepay", out_trade_no = %job.out_trade_no);
    // apalis counts this run before the handler starts: 1 on the first, more after a failed
    // run or a worker presumed dead.
    let first_run = attempt.current() <= 1;
    let run = Run {
        started_ms,
        first_run,
        admission,
    };
    Box::pin(guarded(
        PrepayOrder::QUEUE,
        limit,
        prepay(services, job, run).instrument(span),
    ))
    .await
}

/// This run of a prepay job.
struct Run {
    /// When the handler started (Unix ms), before it waited for admission.
    started_ms: i64,
    first_run: bool,
    /// Given back once WeChat answered the first attempt.
    admission: Admission,
}

/// The longest a prepay job may take: every attempt timing out plus every backoff.
fn deadline(c: &Config) -> Duration {
    (c.wechat.timeout * 2 + c.workers.prepay_backoff_max) * (c.workers.prepay_max_attempts + 1) * 2
        + Duration::from_secs(30)
}

async fn prepay(services: Arc<Services>, job: PrepayOrder, run: Run) -> Result<(), BoxDynError> {
    let Run {
        started_ms,
        first_run,
        admission,
    } = run;
    let first_job = job.generation == 0;
    let carried = job.created.filter(|_| first_run);
    let order = match carried {
        // The job queued with the order carries it, so its first run reads nothing: the order
        // was created `pending` with no attempt, in the transaction that queued this job. A
        // re-run (after a crash, a worker presumed dead, a shutdown during a backoff) reads
        // the order, which may have moved on.
        Some(created) => Pending {
            out_trade_no: job.out_trade_no,
            params: created.params,
            created_at: created.created_at,
            expires_at: created.expires_at,
            attempts: 0,
        },
        None => {
            let Some(row) = services.store.order(&job.out_trade_no).await? else {
                return Err(AbortError::new(format!("no order {}", job.out_trade_no)).into());
            };
            if row.status != OrderStatus::Pending {
                // Delivered twice, or re-queued after the first run finished.
                tracing::debug!(status = %row.status, "order is no longer pending");
                return Ok(());
            }
            Pending {
                out_trade_no: row.out_trade_no,
                params: row.params,
                created_at: row.created_at,
                expires_at: row.expires_at,
                attempts: row.prepay_attempts,
            }
        }
    };
    if order.attempts == 0 && first_job {
        // The job was queued in the transaction that created the order.
        metrics::histogram!("minipay_job_pickup_seconds", "queue" => PrepayOrder::QUEUE)
            .record((started_ms - order.created_at).max(0) as f64 / 1000.0);
    }
    Attempts::new(&services, &order, admission).run().await
}

/// What the attempts need of a `pending` order.
struct Pending {
    out_trade_no: String,
    /// The frozen unifiedorder request.
    params: String,
    created_at: i64,
    expires_at: i64,
    /// Attempts recorded so far.
    attempts: i64,
}

/// The attempts of one job on one order.
struct Attempts<'a> {
    services: &'a Services,
    order: &'a Pending,
    /// Attempts made so far, by this job and the ones before it (the bound holds across
    /// restarts).
    made: i64,
    max: i64,
    backoff: ExponentialBackoff,
    /// WeChat's last answer, for the order's error when the attempts run out.
    last_error: (String, String),
    /// Held until WeChat answers the first attempt.
    admission: Option<Admission>,
}

impl<'a> Attempts<'a> {
    fn new(services: &'a Services, order: &'a Pending, admission: Admission) -> Self {
        let config = &services.config;
        Attempts {
            services,
            order,
            made: order.attempts,
            max: i64::from(config.workers.prepay_max_attempts),
            backoff: ExponentialBuilder::default()
                .with_min_delay(config.workers.prepay_backoff)
                .with_max_delay(config.workers.prepay_backoff_max)
                .with_jitter()
                .without_max_times()
                .build(),
            last_error: ("RETRIES_EXHAUSTED".to_owned(), "no attempt left".to_owned()),
            admission: Some(admission),
        }
    }

    async fn run(mut self) -> Result<(), BoxDynError> {
        let (services, order) = (self.services, self.order);
        loop {
            if self.made >= self.max {
                let (code, message) = &self.last_error;
                let message = format!("gave up after {} attempts: {message}", self.made);
                domain::fail_order(services, &order.out_trade_no, code, &message).await?;
                return Ok(());
            }
            let outcome = services
                .gateway
                .prepay(&order.params, &services.clock)
                .await
                .map_err(|e| AbortError::new(e.to_string()))?;
            // Answered: the next admitted job may start while this one records the answer.
            self.admission = None;
            let label = outcome.reply.label();
            metrics::counter!("minipay_prepay_attempts_total", "outcome" => label.clone())
                .increment(1);
            match (after_unified_order(&outcome.reply), outcome.prepaid) {
                (PrepayDecision::Ready, Some(prepaid)) => {
                    let attempt = self.made + 1;
                    domain::mark_ready(services, &order.out_trade_no, &prepaid, attempt).await?;
                    return Ok(());
                }
                (PrepayDecision::Ready, None) => {
                    let reason = "SUCCESS reply without prepay_id".to_owned();
                    if !self.retry(label, reason).await? {
                        return Ok(());
                    }
                }
                (PrepayDecision::Retry { reason }, _) => {
                    if !self.retry(label, reason).await? {
                        return Ok(());
                    }
                }
                (PrepayDecision::Fail(failure), _) => {
                    return self.refused(label, failure, false).await;
                }
                (PrepayDecision::Alarm(failure), _) => {
                    return self.refused(label, failure, true).await;
                }
                (PrepayDecision::ConfirmPaid, _) => {
                    tracing::info!("WeChat says ORDERPAID; confirming with an order query");
                    return confirm_paid(services, order, &mut self.backoff).await;
                }
            }
        }
    }

    /// A passing failure: recorded, then a pause before the next attempt. False when the
    /// order settled meanwhile (e.g. paid by a notify) and there is nothing left to do.
    async fn retry(&mut self, label: String, reason: String) -> Result<bool, BoxDynError> {
        let services = self.services;
        tracing::warn!(
            attempt = self.made + 1,
            outcome = ?label,
            ?reason,
            "prepay attempt failed; retrying"
        );
        let now_ms = services.clock.unix_ms();
        match services
            .store
            .record_prepay_attempt(&self.order.out_trade_no, &label, &reason, now_ms)
            .await?
        {
            Some(n) => self.made = n,
            None => return Ok(false),
        }
        self.last_error = (label, reason);
        if self.made < self.max {
            let pause = self
                .backoff
                .next()
                .unwrap_or(services.config.workers.prepay_backoff_max);
            // At shutdown, hand the job back instead of waiting out the backoff: the next
            // process retries it (apalis re-runs a failed job).
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = services.stopping.cancelled() => {
                    return Err("shutting down; the prepay will be retried".into());
                }
            }
        }
        Ok(true)
    }

    /// A permanent refusal: the order fails with WeChat's code. `alarm`: the merchant's
    /// setup is wrong (every order fails the same way), so an operator is alerted too.
    async fn refused(
        &self,
        label: String,
        failure: Failure,
        alarm: bool,
    ) -> Result<(), BoxDynError> {
        let (services, otn) = (self.services, &self.order.out_trade_no);
        if alarm {
            let detail = format!("{}: {}", failure.code, failure.message);
            alert(otn, "wechat_configuration", &detail);
        } else {
            tracing::warn!(code = ?failure.code, message = ?failure.message, "WeChat refused the order");
        }
        let now_ms = services.clock.unix_ms();
        services
            .store
            .record_prepay_attempt(otn, &label, &failure.message, now_ms)
            .await?;
        domain::fail_order(services, otn, &failure.code, &failure.message).await?;
        Ok(())
    }
}

/// `ORDERPAID` on a prepay: the user paid after an earlier reply was lost. Ask WeChat for the
/// payment and apply it like a notify; never mark the order failed.
async fn confirm_paid(
    services: &Services,
    order: &Pending,
    backoff: &mut impl Iterator<Item = Duration>,
) -> Result<(), BoxDynError> {
    let mut last = String::new();
    for _ in 0..services.config.workers.prepay_max_attempts {
        let outcome = services.gateway.query_order(&order.out_trade_no).await;
        let clock = OrderClock {
            created_at: order.created_at / 1000,
            expires_at: order.expires_at / 1000,
            now: services.clock.unix(),
        };
        match after_order_query(&outcome.reply, outcome.trade_state.as_deref(), clock) {
            QueryDecision::Paid => {
                let payment = outcome
                    .payment
                    .ok_or("orderquery reply without a complete payment")?;
                let source = "orderquery after ORDERPAID";
                domain::apply_payment(services, &payment, source, None).await?;
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
