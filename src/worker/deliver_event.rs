//! The delivery job: POSTs one recorded event to the merchant's endpoint, signed, once, then
//! records the attempt with what follows it in one transaction — `delivered`, the next attempt
//! queued after the schedule's pause (±20 % jitter), or `dead` with an alert. apalis' own
//! retries are immediate, so the schedule is ours: each attempt is its own job.
//!
//! Runs on its own queue with its own (small) concurrency, so a merchant endpoint that hangs
//! holds at most `MINIPAY_WEBHOOK_CONCURRENCY` deliveries for `MINIPAY_WEBHOOK_TIMEOUT_SECS`
//! each, and never a prepay, notify or reconciliation job.

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::{AbortError, BoxDynError, Data};
use chrono::DateTime;
use minipay_jobs::{DeliverEvent, EventType, NextStep, RetrySchedule};
use rand::Rng;
use tracing::Instrument;

use super::guard::guarded;
use crate::events::Envelope;
use crate::services::Services;
use crate::store::{AfterAttempt, AttemptRecord, EventRecord};

pub async fn run(job: DeliverEvent, services: Data<Arc<Services>>) -> Result<(), BoxDynError> {
    let services = Arc::clone(&services);
    let span = tracing::error_span!(
        "deliver_event",
        event_id = %job.event_id,
        attempt = job.attempt,
        out_trade_no = tracing::field::Empty,
    );
    // The delivery ends within the timeout; the rest is two small database round trips.
    let limit = services.config.events.timeout + Duration::from_secs(30);
    guarded(
        DeliverEvent::QUEUE,
        limit,
        deliver(services, job).instrument(span),
    )
    .await
}

async fn deliver(services: Arc<Services>, job: DeliverEvent) -> Result<(), BoxDynError> {
    let Some(event) = services.store.merchant_event(job.event_id.as_str()).await? else {
        return Err(AbortError::new(format!("no event {}", job.event_id)).into());
    };
    if let Some(out_trade_no) = &event.out_trade_no {
        tracing::Span::current().record("out_trade_no", out_trade_no.as_str());
    }
    if event.state != "pending" || event.attempts >= i64::from(job.attempt) {
        tracing::debug!(state = %event.state, "attempt already made; nothing to send");
        return Ok(());
    }
    let Some(deliverer) = &services.deliverer else {
        tracing::warn!("no webhook endpoint configured any more; the event stays pending");
        return Ok(());
    };
    let envelope = envelope(&event)?;
    let sent_at = services.clock.unix_ms();
    let attempt = deliverer
        .attempt(&job.endpoint, &envelope, sent_at / 1000)
        .await;
    let after = next(&services, &job, &event, &attempt.outcome);
    let record = AttemptRecord {
        event_id: event.id.clone(),
        attempt: job.attempt,
        at: sent_at,
        status: attempt.outcome.status(),
        error: attempt.outcome.error(),
        duration_ms: i64::try_from(attempt.duration.as_millis()).unwrap_or(i64::MAX),
        response: attempt.response_excerpt.clone(),
    };
    let recorded = services.store.record_attempt(&record, &after).await?;
    let result = match &after {
        AfterAttempt::Delivered => "delivered",
        AfterAttempt::Retry { .. } => "failed",
        AfterAttempt::Dead => "dead",
    };
    metrics::counter!("minipay_event_deliveries_total", "result" => result).increment(1);
    if !recorded {
        tracing::info!("attempt was recorded by another run");
        return Ok(());
    }
    let error = record.error.as_deref().unwrap_or("-");
    match &after {
        AfterAttempt::Delivered => tracing::info!(
            event_type = %event.kind,
            status = record.status,
            duration_ms = record.duration_ms,
            "event delivered"
        ),
        AfterAttempt::Retry { pause, .. } => tracing::warn!(
            event_type = %event.kind,
            error = ?error,
            retry_in_ms = pause.as_millis() as u64,
            "event delivery failed; retrying"
        ),
        AfterAttempt::Dead => {
            let order = event.out_trade_no.as_deref().unwrap_or("-");
            crate::domain::alert(
                order,
                "event_dead",
                &format!(
                    "event {} ({}) was not delivered after {} attempts (last: {error}): redeliver it once the endpoint is back",
                    event.id, event.kind, job.attempt
                ),
            );
        }
    }
    Ok(())
}

/// The envelope as recorded: the same body on every attempt.
fn envelope(event: &EventRecord) -> Result<Envelope, BoxDynError> {
    let id = minipay_jobs::EventId::parse(&event.id).ok_or("malformed event id")?;
    let kind = EventType::parse(&event.kind)
        .ok_or_else(|| AbortError::new(format!("unknown event type {:?}", event.kind)))?;
    let created_at =
        DateTime::from_timestamp_millis(event.created_at).ok_or("created_at out of range")?;
    let data = serde_json::from_str(&event.data)
        .map_err(|e| AbortError::new(format!("event data is not JSON: {e}")))?;
    Ok(Envelope {
        id,
        kind,
        created_at,
        data,
    })
}

/// The schedule's decision for this attempt, counted from the start of the event's current
/// round (a redelivery starts a new one).
fn next(
    services: &Services,
    job: &DeliverEvent,
    event: &EventRecord,
    outcome: &minipay_jobs::AttemptOutcome,
) -> AfterAttempt {
    let schedule = RetrySchedule::scaled(services.config.events.retry_scale).unwrap_or_default();
    let round_start = u32::try_from(event.round_start.max(1)).unwrap_or(1);
    let in_round = job.attempt.saturating_sub(round_start) + 1;
    let jitter = rand::rng().random_range(-1.0..=1.0);
    match schedule.next_step(in_round, outcome, jitter) {
        NextStep::Done => AfterAttempt::Delivered,
        NextStep::RetryIn(pause) => AfterAttempt::Retry {
            job: DeliverEvent {
                event_id: job.event_id.clone(),
                endpoint: job.endpoint.clone(),
                attempt: job.attempt + 1,
            },
            pause,
        },
        NextStep::Dead => AfterAttempt::Dead,
    }
}
