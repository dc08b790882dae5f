//! The refund job. A `pending` refund: its frozen request sent (same `out_refund_no` and
//! amount every time) until WeChat accepts it (`processing`), refuses it for good (`failed`),
//! or holds it (`NOTENOUGH`: retried slowly, then `failed`); after a lost reply, WeChat is
//! asked before sending again. Two refund requests of one order go at least a minute apart. A
//! `processing` refund whose notify has not come: refundquery, on the schedule of
//! `minipay_jobs::refund`. Waits are not slept out here: the refund's next check is stored
//! and the reconciler queues the next run when it comes due (docs/refunds.md).

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::{AbortError, BoxDynError, Data};
use backon::{BackoffBuilder, ExponentialBuilder};
use minipay_jobs::refund::{
    HoldStep, SAME_ORDER_SPACING_SECS, first_refund_query_at, next_held_attempt,
};
use minipay_jobs::{
    Failure, Job, RefundDecision, RefundOrder, RefundOutcome, RefundQueryDecision, RefundStatus,
};
use tracing::Instrument;

use super::guard::guarded;
use super::refund_check::{apply_result, change, query_processing};
use crate::domain::refund_alert;
use crate::services::Services;
use crate::store::{RefundRow, StoreError};

/// How long to wait before trying a refund again when WeChat gave no usable answer.
const LATER_MS: i64 = 60_000;

pub async fn run(job: RefundOrder, services: Data<Arc<Services>>) -> Result<(), BoxDynError> {
    let services = Arc::clone(&services);
    let c = &services.config;
    let limit = (c.wechat.timeout * 2 + c.workers.prepay_backoff_max)
        * (c.workers.prepay_max_attempts + 4)
        * 2
        + Duration::from_secs(30);
    let span = tracing::error_span!(
        "refund",
        out_trade_no = %job.out_trade_no,
        out_refund_no = %job.out_refund_no,
        run = job.run
    );
    guarded(
        RefundOrder::QUEUE,
        limit,
        work(services, job).instrument(span),
    )
    .await
}

async fn work(services: Arc<Services>, job: RefundOrder) -> Result<(), BoxDynError> {
    let Some(refund) = services.store.refund(&job.out_refund_no).await? else {
        return Err(AbortError::new(format!("no refund {}", job.out_refund_no)).into());
    };
    match refund.status {
        RefundStatus::Pending => Sender::new(&services, &refund).run().await,
        RefundStatus::Processing => query_processing(&services, &refund).await,
        // Settled meanwhile (a notify, or another run): nothing left to do.
        _ => Ok(()),
    }
}

/// The sends of one run for one pending refund.
struct Sender<'a> {
    services: &'a Services,
    refund: &'a RefundRow,
    backoff: backon::ExponentialBackoff,
}

/// After one answer: done for this run, or send again now.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Done,
    Again,
}

/// What asking WeChat about a pending refund came to.
enum Asked {
    /// The refund took WeChat's status: done.
    Settled,
    /// WeChat never got it: sending it again is safe.
    Resend,
    /// No answer: try again later.
    Later(String),
}

impl<'a> Sender<'a> {
    fn new(services: &'a Services, refund: &'a RefundRow) -> Self {
        let workers = &services.config.workers;
        Sender {
            services,
            refund,
            backoff: ExponentialBuilder::default()
                .with_min_delay(workers.prepay_backoff)
                .with_max_delay(workers.prepay_backoff_max)
                .with_jitter()
                .without_max_times()
                .build(),
        }
    }

    async fn run(mut self) -> Result<(), BoxDynError> {
        let (services, refund) = (self.services, self.refund);
        if !services.gateway.refunds_enabled() {
            refund_alert(
                &refund.out_trade_no,
                &refund.out_refund_no,
                "refunds_not_configured",
                "this process has no merchant API certificate; the refund waits",
            );
            return self.park(LATER_MS, "refunds are not configured here").await;
        }
        let mut first = refund.sent_at.is_none();
        for _ in 0..services.config.workers.prepay_max_attempts {
            let now_ms = services.clock.unix_ms();
            let spacing_ms = SAME_ORDER_SPACING_SECS * 1000;
            if let Some(free_at) = services
                .store
                .claim_refund_slot(&refund.out_trade_no, now_ms, spacing_ms, first)
                .await?
            {
                tracing::info!(
                    free_at,
                    "another refund of the order was sent within the minute; waiting"
                );
                let detail =
                    "waiting a minute after the order's last refund request (WeChat's rule)";
                services
                    .store
                    .park_refund(&refund.out_refund_no, free_at, detail, false, now_ms)
                    .await?;
                return Ok(());
            }
            first = false;
            let outcome = services
                .gateway
                .refund(&refund.params)
                .await
                .map_err(|e| AbortError::new(e.to_string()))?;
            metrics::counter!("minipay_refund_attempts_total", "outcome" => outcome.label.clone())
                .increment(1);
            let detail = format!("{:?}", outcome.decision);
            let counted = services
                .store
                .record_refund_attempt(&refund.out_refund_no, &outcome.label, &detail, now_ms)
                .await?;
            if counted.is_none() {
                return Ok(());
            }
            if self.decide(outcome, now_ms).await? == Step::Done {
                return Ok(());
            }
        }
        self.park(
            LATER_MS,
            "no answer after this run's attempts; trying again later",
        )
        .await
    }

    /// Acts on one answer; `Step::Again` when the same request is to be sent again now.
    async fn decide(&mut self, outcome: RefundOutcome, now_ms: i64) -> Result<Step, BoxDynError> {
        let refund = self.refund;
        match outcome.decision {
            RefundDecision::Accepted => {
                let next = first_refund_query_at(now_ms / 1000) * 1000;
                self.settle(
                    RefundStatus::Processing,
                    outcome.refund_id,
                    None,
                    Some(next),
                )
                .await?;
            }
            RefundDecision::Retry {
                reason,
                not_before_secs,
            } => {
                tracing::warn!(reply = %outcome.label, reason = ?reason, "refund not taken this time; retrying with the same out_refund_no and amount");
                if not_before_secs > 0 {
                    self.park(not_before_secs * 1000, &reason).await?;
                    return Ok(Step::Done);
                }
                self.pause().await?;
                return Ok(Step::Again);
            }
            RefundDecision::QueryFirst { reason } => {
                tracing::warn!(reason = ?reason, "refund outcome unknown; asking WeChat before sending again");
                match self.ask().await? {
                    Asked::Settled => {}
                    Asked::Resend => {
                        self.pause().await?;
                        return Ok(Step::Again);
                    }
                    Asked::Later(why) => self.park(LATER_MS, &why).await?,
                }
            }
            RefundDecision::Hold(failure) => self.hold(failure).await?,
            RefundDecision::Fail(failure) => {
                self.settle(RefundStatus::Failed, None, Some(failure), None)
                    .await?;
            }
            RefundDecision::Alarm(failure) => {
                refund_alert(
                    &refund.out_trade_no,
                    &refund.out_refund_no,
                    "wechat_configuration",
                    &format!("{}: {}", failure.code, failure.message),
                );
                self.settle(RefundStatus::Failed, None, Some(failure), None)
                    .await?;
            }
        }
        Ok(Step::Done)
    }

    /// refundquery about a refund whose last request's outcome is unknown.
    async fn ask(&mut self) -> Result<Asked, BoxDynError> {
        let (services, refund) = (self.services, self.refund);
        let mut last = String::new();
        for _ in 0..3 {
            let query = services
                .gateway
                .query_refund(&refund.out_refund_no, RefundStatus::Pending)
                .await;
            metrics::counter!("minipay_refund_queries_total", "outcome" => query.label.clone())
                .increment(1);
            match query.decision {
                RefundQueryDecision::Result(result) => {
                    let next = first_refund_query_at(services.clock.unix()) * 1000;
                    apply_result(services, refund, result, query.refund_id, next).await?;
                    return Ok(Asked::Settled);
                }
                RefundQueryDecision::Resend => return Ok(Asked::Resend),
                RefundQueryDecision::Retry { reason } => last = reason,
                RefundQueryDecision::Alarm(failure) => {
                    refund_alert(
                        &refund.out_trade_no,
                        &refund.out_refund_no,
                        "refund_query",
                        &format!("{}: {}", failure.code, failure.message),
                    );
                    return Ok(Asked::Later(format!("refundquery: {}", failure.code)));
                }
            }
            self.pause().await?;
        }
        Ok(Asked::Later(format!("refundquery gave no answer: {last}")))
    }

    /// `NOTENOUGH`: the refund stays pending with WeChat's error, retried slowly until the
    /// hold policy gives up.
    async fn hold(&self, failure: Failure) -> Result<(), BoxDynError> {
        let (services, refund) = (self.services, self.refund);
        let now_ms = services.clock.unix_ms();
        let held_since = refund.held_since.unwrap_or(now_ms) / 1000;
        let attempt = u32::try_from(refund.attempts.max(1)).unwrap_or(u32::MAX);
        let policy = services.config.refunds.hold;
        match next_held_attempt(held_since, now_ms / 1000, attempt, policy) {
            HoldStep::RetryAt(at) => {
                let held = services
                    .store
                    .hold_refund(
                        &refund.out_refund_no,
                        &failure.code,
                        &failure.message,
                        at * 1000,
                        now_ms,
                    )
                    .await?;
                if held.is_some() && refund.held_since.is_none() {
                    refund_alert(
                        &refund.out_trade_no,
                        &refund.out_refund_no,
                        "refund_held",
                        &format!(
                            "{}: {}; retried until the balance returns",
                            failure.code, failure.message
                        ),
                    );
                }
                Ok(())
            }
            HoldStep::GiveUp => {
                refund_alert(
                    &refund.out_trade_no,
                    &refund.out_refund_no,
                    "refund_held",
                    &format!(
                        "{}: still refused after the hold; refund failed",
                        failure.code
                    ),
                );
                self.settle(RefundStatus::Failed, None, Some(failure), None)
                    .await?;
                Ok(())
            }
        }
    }

    async fn settle(
        &self,
        to: RefundStatus,
        refund_id: Option<String>,
        failure: Option<Failure>,
        next_check_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        change(
            self.services,
            self.refund,
            to,
            refund_id,
            failure,
            next_check_at,
        )
        .await
    }

    async fn park(&self, in_ms: i64, why: &str) -> Result<(), BoxDynError> {
        let now_ms = self.services.clock.unix_ms();
        self.services
            .store
            .park_refund(
                &self.refund.out_refund_no,
                now_ms + in_ms,
                why,
                false,
                now_ms,
            )
            .await?;
        Ok(())
    }

    /// A short pause between two sends; at shutdown the job is handed back instead.
    async fn pause(&mut self) -> Result<(), BoxDynError> {
        let pause = self
            .backoff
            .next()
            .unwrap_or(self.services.config.workers.prepay_backoff_max);
        tokio::select! {
            () = tokio::time::sleep(pause) => Ok(()),
            () = self.services.stopping.cancelled() => {
                Err("shutting down; the refund will be retried".into())
            }
        }
    }
}
