//! Delivering merchant events: what a delivery reads, each attempt recorded with what comes
//! next (the next attempt queued `run_after` the schedule's pause in the same transaction, or
//! the event `delivered` or `dead`), an operator's redelivery, and the operator's reads.
//!
//! Every attempt is guarded on the event's attempt count, so a `deliver_event` job that apalis
//! runs twice (a crash after the POST) records its attempt once.

use std::time::Duration;

use minipay_jobs::{DeliverEvent, DeliveryState};

use super::dialect::{Dialect, job_task_after};
use super::outbox::Outbox;
use super::{Store, StoreError, on_reader, write_tx};

/// An event row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRecord {
    pub id: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    /// Unix ms.
    pub created_at: i64,
    /// The envelope's `data` (JSON text).
    pub data: String,
    pub out_trade_no: Option<String>,
    pub out_refund_no: Option<String>,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    pub attempts: i64,
    /// The attempt that began the current schedule (1, or the first of a redelivery).
    pub round_start: i64,
    pub next_attempt_at: Option<i64>,
    pub last_attempt_at: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
}

/// One delivery attempt, as recorded.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct AttemptRow {
    pub event_id: String,
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    pub attempt: i64,
    /// Unix ms: when it was sent.
    pub at: i64,
    /// The HTTP status, when the endpoint answered.
    pub status: Option<i64>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// What an attempt came to, to record.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub event_id: String,
    pub attempt: u32,
    /// Unix ms: when it was sent.
    pub at: i64,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: i64,
    /// The first bytes of the answer.
    pub response: String,
}

/// What follows an attempt.
#[derive(Debug, Clone)]
pub enum AfterAttempt {
    Delivered,
    /// Queue `job` (the next attempt) to run after `pause`.
    Retry {
        job: DeliverEvent,
        pause: Duration,
    },
    Dead,
}

/// What a redelivery request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redelivery {
    /// The next attempt is queued (or brought forward), due now.
    Queued,
    NotFound,
    /// No webhook endpoint is configured: there is nowhere to send it.
    NoEndpoint,
}

/// The backlog the events gauges show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventStats {
    pub pending: i64,
    pub dead: i64,
    /// Unix ms of the oldest event not delivered yet (pending).
    pub oldest_pending: Option<i64>,
}

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub out_trade_no: Option<String>,
    pub state: Option<DeliveryState>,
    pub limit: i64,
}

const RECORD_ATTEMPT: &str = "UPDATE events SET attempts = $2, last_attempt_at = $3, \
     last_error = $4, state = $5, next_attempt_at = $6, delivered_at = COALESCE($7, delivered_at) \
     WHERE id = $1 AND state = 'pending' AND attempts = $2 - 1";

const INSERT_ATTEMPT: &str = "INSERT INTO event_attempts \
     (event_id, attempt, at, status, error, duration_ms, response) VALUES ($1, $2, $3, $4, $5, $6, $7)";

const LIST_EVENTS: &str = "SELECT * FROM events \
     WHERE ($1 IS NULL OR out_trade_no = $1) AND ($2 IS NULL OR state = $2) \
     ORDER BY created_at DESC, id LIMIT $3";

impl Store {
    /// One event, for its delivery or the operator.
    pub async fn merchant_event(&self, id: &str) -> Result<Option<EventRecord>, StoreError> {
        let row = on_reader!(self, pool => {
            sqlx::query_as("SELECT * FROM events WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        Ok(row)
    }

    /// Events newest first, filtered.
    pub async fn merchant_events(
        &self,
        filter: &EventFilter,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let state = filter.state.map(DeliveryState::as_str);
        let rows = on_reader!(self, pool => {
            sqlx::query_as(LIST_EVENTS)
                .bind(&filter.out_trade_no)
                .bind(state)
                .bind(filter.limit)
                .fetch_all(pool)
                .await?
        });
        Ok(rows)
    }

    /// Records an attempt and what follows it, once: false when this attempt was already
    /// recorded or the event is no longer pending (nothing is written then).
    pub async fn record_attempt(
        &self,
        record: &AttemptRecord,
        after: &AfterAttempt,
    ) -> Result<bool, StoreError> {
        let (record, after) = (record.clone(), after.clone());
        let (state, next_at, delivered_at) = match &after {
            AfterAttempt::Delivered => (DeliveryState::Delivered, None, Some(record.at)),
            AfterAttempt::Retry { pause, .. } => (
                DeliveryState::Pending,
                Some(record.at + i64::try_from(pause.as_millis()).unwrap_or(i64::MAX / 2)),
                None,
            ),
            AfterAttempt::Dead => (DeliveryState::Dead, None, None),
        };
        write_tx!(self, tx => {
            let changed = sqlx::query(RECORD_ATTEMPT)
                .bind(&record.event_id)
                .bind(i64::from(record.attempt))
                .bind(record.at)
                .bind(&record.error)
                .bind(state.as_str())
                .bind(next_at)
                .bind(delivered_at)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if !changed {
                return Ok(false);
            }
            sqlx::query(INSERT_ATTEMPT)
                .bind(&record.event_id)
                .bind(i64::from(record.attempt))
                .bind(record.at)
                .bind(record.status.map(i64::from))
                .bind(&record.error)
                .bind(record.duration_ms)
                .bind(&record.response)
                .execute(&mut *tx)
                .await?;
            if let AfterAttempt::Retry { job, pause } = &after {
                tx.push(DeliverEvent::QUEUE, job_task_after(job, *pause)?).await?;
            }
            Ok(true)
        })
    }

    /// Sends event `id` again with the same id: the event is `pending` again with a fresh
    /// schedule, and its next attempt is due now (queued, or brought forward when one is
    /// already waiting).
    pub async fn redeliver(
        &self,
        id: &str,
        outbox: &Outbox,
        now_ms: i64,
    ) -> Result<Redelivery, StoreError> {
        let Some(endpoint) = outbox.endpoint.clone() else {
            return Ok(match self.merchant_event(id).await? {
                Some(_) => Redelivery::NoEndpoint,
                None => Redelivery::NotFound,
            });
        };
        let id = id.to_owned();
        write_tx!(self, tx => {
            let attempts: Option<i64> = sqlx::query_scalar(
                "UPDATE events SET state = 'pending', round_start = attempts + 1, \
                 next_attempt_at = $2 WHERE id = $1 RETURNING attempts",
            )
            .bind(&id)
            .bind(now_ms)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(attempts) = attempts else {
                return Ok(Redelivery::NotFound);
            };
            let Some(event_id) = minipay_jobs::EventId::parse(&id) else {
                return Ok(Redelivery::NotFound);
            };
            let job = DeliverEvent {
                event_id,
                endpoint,
                attempt: u32::try_from(attempts + 1).unwrap_or(u32::MAX),
            };
            // Already queued (a retry waiting for its pause): the insert is a no-op, and the
            // waiting job is made due now instead.
            tx.enqueue(&job).await?;
            tx.run_now(DeliverEvent::QUEUE, &job.idempotency_key()).await?;
            Ok(Redelivery::Queued)
        })
    }

    /// The events backlog: pending and dead counts and the oldest pending event.
    pub async fn event_stats(&self) -> Result<EventStats, StoreError> {
        let rows: Vec<(String, i64, Option<i64>)> = on_reader!(self, pool => {
            sqlx::query_as(
                "SELECT state, COUNT(*), MIN(created_at) FROM events \
                 WHERE state IN ('pending', 'dead') GROUP BY state",
            )
            .fetch_all(pool)
            .await?
        });
        let mut stats = EventStats::default();
        for (state, count, oldest) in rows {
            match DeliveryState::parse(&state) {
                Some(DeliveryState::Pending) => {
                    stats.pending = count;
                    stats.oldest_pending = oldest;
                }
                Some(DeliveryState::Dead) => stats.dead = count,
                _ => {}
            }
        }
        Ok(stats)
    }
}
