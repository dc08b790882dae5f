//! Merchant events: what happened (the event types), where a delivery stands, the job that
//! delivers one event to one endpoint, and when a failed delivery is tried again. The wire format
//! and the signing live in the service (`minipay::events`); this module holds the rules only.
//!
//! The schedule follows the Standard Webhooks specification's example, cut after the seventh
//! retry (docs/webhooks.md, "Retries").

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What happened. The wire name (`order.paid`, ...) is the event's `type` and is stored as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// An order became `paid`.
    #[serde(rename = "order.paid")]
    OrderPaid,
    /// WeChat refused an order's prepay for good.
    #[serde(rename = "order.failed")]
    OrderFailed,
    /// An order expired unpaid and was closed with WeChat.
    #[serde(rename = "order.closed")]
    OrderClosed,
    /// The refunds that succeeded add up to the order's `total_fee`.
    #[serde(rename = "order.refunded")]
    OrderRefunded,
    /// WeChat paid a refund back.
    #[serde(rename = "refund.succeeded")]
    RefundSucceeded,
    /// WeChat refused a refund for good.
    #[serde(rename = "refund.failed")]
    RefundFailed,
    /// WeChat reports the refund as abnormal (for example the payer's card was cancelled).
    #[serde(rename = "refund.abnormal")]
    RefundAbnormal,
    /// A payment that could not be applied as usual: paid after close or failure, paid twice,
    /// amount mismatch.
    #[serde(rename = "payment.anomaly")]
    PaymentAnomaly,
}

impl EventType {
    /// Every type, orders first.
    pub const ALL: [EventType; 8] = [
        EventType::OrderPaid,
        EventType::OrderFailed,
        EventType::OrderClosed,
        EventType::OrderRefunded,
        EventType::RefundSucceeded,
        EventType::RefundFailed,
        EventType::RefundAbnormal,
        EventType::PaymentAnomaly,
    ];

    /// The wire and stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::OrderPaid => "order.paid",
            EventType::OrderFailed => "order.failed",
            EventType::OrderClosed => "order.closed",
            EventType::OrderRefunded => "order.refunded",
            EventType::RefundSucceeded => "refund.succeeded",
            EventType::RefundFailed => "refund.failed",
            EventType::RefundAbnormal => "refund.abnormal",
            EventType::PaymentAnomaly => "payment.anomaly",
        }
    }

    /// Parses a stored name; `None` for anything else.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// Whether the event's `data` is the admin view of a refund (else of an order).
    pub fn is_about_a_refund(self) -> bool {
        matches!(
            self,
            EventType::RefundSucceeded | EventType::RefundFailed | EventType::RefundAbnormal
        )
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the delivery of an event stands. Stored as the lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Not delivered yet; an attempt is queued or running.
    Pending,
    /// An attempt got a 2xx answer in time.
    Delivered,
    /// Every attempt of the schedule failed; only an operator's redeliver tries again.
    Dead,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 3] = [
        DeliveryState::Pending,
        DeliveryState::Delivered,
        DeliveryState::Dead,
    ];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
        }
    }

    /// Parses a stored name (or the admin filter `state=`); `None` for anything else.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// An event's id: `evt_` and 32 lowercase hex digits (128 random bits). It is the
/// `webhook-id` of every attempt, so merchants dedupe on it; it never changes after the event
/// is recorded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventId(String);

impl EventId {
    const PREFIX: &'static str = "evt_";

    /// The id made of these random bytes. The caller draws them from the OS generator so that
    /// ids cannot be guessed; this crate does no I/O.
    pub fn from_random(bytes: [u8; 16]) -> Self {
        let mut id = String::with_capacity(Self::PREFIX.len() + 32);
        id.push_str(Self::PREFIX);
        for byte in bytes {
            id.push(hex_digit(byte >> 4));
            id.push(hex_digit(byte & 0x0f));
        }
        EventId(id)
    }

    /// Accepts exactly the shape `from_random` makes (a path segment of the admin API, say).
    pub fn parse(text: &str) -> Option<Self> {
        let digits = text.strip_prefix(Self::PREFIX)?;
        let well_formed = digits.len() == 32
            && digits
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        well_formed.then(|| EventId(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(nibble & 0x0f)])
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for EventId {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        EventId::parse(&text).ok_or_else(|| format!("{text:?} is not an event id"))
    }
}

impl From<EventId> for String {
    fn from(id: EventId) -> String {
        id.0
    }
}

/// POST one event to one endpoint, once. Queued in the transaction that records the event
/// (attempt 1), then by each failed attempt for the next one, with `run_after` set from
/// [`RetrySchedule::after_failure`], in the transaction that records the failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliverEvent {
    pub event_id: EventId,
    /// The endpoint's URL.
    pub endpoint: String,
    /// 1 for the first attempt; each attempt of this event to this endpoint, redeliveries
    /// included, has its own number, so each has its own task key.
    pub attempt: u32,
}

impl DeliverEvent {
    /// Stored in every queued row: renaming it strands queued jobs.
    pub const QUEUE: &'static str = "deliver_event";

    pub fn idempotency_key(&self) -> String {
        format!(
            "deliver:{}:{}:{}",
            self.event_id, self.attempt, self.endpoint
        )
    }
}

/// What one attempt came to, as recorded in the event's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// A 2xx answer within the timeout.
    Delivered { status: u16 },
    /// An answer that is not 2xx (a 3xx too: redirects are not followed).
    Refused { status: u16 },
    /// No answer: refused connection, TLS failure, timeout, reset.
    NoAnswer { error: String },
}

impl AttemptOutcome {
    pub fn is_delivered(&self) -> bool {
        matches!(self, AttemptOutcome::Delivered { .. })
    }

    /// The HTTP status, when the endpoint answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            AttemptOutcome::Delivered { status } | AttemptOutcome::Refused { status } => {
                Some(*status)
            }
            AttemptOutcome::NoAnswer { .. } => None,
        }
    }

    /// The admin view's `last_error`: `None` for a delivery.
    pub fn error(&self) -> Option<String> {
        match self {
            AttemptOutcome::Delivered { .. } => None,
            AttemptOutcome::Refused { status } => Some(format!("HTTP {status}")),
            AttemptOutcome::NoAnswer { error } => Some(error.clone()),
        }
    }
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Delivered: the event is `delivered`.
    Done,
    /// Queue attempt `attempt + 1` to run after this delay.
    RetryIn(Duration),
    /// The schedule is used up: the event is `dead`.
    Dead,
}

/// Nominal pauses after the 1st, 2nd, ... failed attempt, in seconds: 5 s, 5 min, 30 min,
/// 2 h, 5 h, 10 h, 10 h. Eight attempts in all, over about 27.6 hours.
pub const RETRY_DELAYS_SECS: [u64; 7] = [5, 300, 1_800, 7_200, 18_000, 36_000, 36_000];

/// Each pause is moved by up to this share either way, so that endpoints that failed
/// together are not all retried in the same second.
pub const JITTER_SHARE: f64 = 0.2;

/// When failed attempts are tried again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetrySchedule {
    time_scale: f64,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        RetrySchedule { time_scale: 1.0 }
    }
}

impl RetrySchedule {
    /// The production schedule.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every pause multiplied by `time_scale` (tests use `0.001` to walk the schedule in
    /// seconds). `None` unless it is finite and above 0.
    pub fn scaled(time_scale: f64) -> Option<Self> {
        (time_scale.is_finite() && time_scale > 0.0).then_some(RetrySchedule { time_scale })
    }

    pub fn time_scale(&self) -> f64 {
        self.time_scale
    }

    /// How many attempts an event gets before it is `dead`.
    pub fn max_attempts(&self) -> u32 {
        RETRY_DELAYS_SECS.len() as u32 + 1
    }

    /// The pause after failed attempt number `attempt` (1-based), or `None` once the schedule
    /// is used up. `jitter` is a sample in `[-1, 1]` (clamped): -1 is 20 % early, +1 is 20 %
    /// late, 0 the nominal pause. Rounded to the millisecond.
    pub fn after_failure(&self, attempt: u32, jitter: f64) -> Option<Duration> {
        let index = usize::try_from(attempt.checked_sub(1)?).ok()?;
        let nominal_secs = *RETRY_DELAYS_SECS.get(index)?;
        let jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(-1.0, 1.0)
        };
        let factor = (1.0 + JITTER_SHARE * jitter) * self.time_scale;
        let millis = (nominal_secs as f64 * 1000.0 * factor).round();
        Some(Duration::from_millis(millis as u64))
    }

    /// The decision after attempt number `attempt` (1-based) came to `outcome`.
    pub fn next_step(&self, attempt: u32, outcome: &AttemptOutcome, jitter: f64) -> NextStep {
        if outcome.is_delivered() {
            return NextStep::Done;
        }
        match self.after_failure(attempt, jitter) {
            Some(pause) => NextStep::RetryIn(pause),
            None => NextStep::Dead,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_use_their_wire_names() {
        for t in EventType::ALL {
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
            assert_eq!(serde_json::from_str::<EventType>(&json).unwrap(), t);
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        let names: Vec<_> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(
            names,
            [
                "order.paid",
                "order.failed",
                "order.closed",
                "order.refunded",
                "refund.succeeded",
                "refund.failed",
                "refund.abnormal",
                "payment.anomaly"
            ]
        );
        assert_eq!(EventType::parse("order.Paid"), None);
        assert!(serde_json::from_str::<EventType>("\"OrderPaid\"").is_err());
        assert!(EventType::RefundAbnormal.is_about_a_refund());
        assert!(!EventType::OrderRefunded.is_about_a_refund());
    }

    #[test]
    fn delivery_states_round_trip() {
        for s in DeliveryState::ALL {
            assert_eq!(DeliveryState::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert_eq!(DeliveryState::parse("failed"), None);
    }

    #[test]
    fn event_ids_have_one_shape() {
        let id = EventId::from_random([0xab; 16]);
        assert_eq!(id.as_str(), format!("evt_{}", "ab".repeat(16)));
        assert_eq!(EventId::parse(id.as_str()), Some(id.clone()));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<EventId>(&json).unwrap(), id);
        assert_ne!(EventId::from_random([0; 16]), EventId::from_random([1; 16]));
        for bad in [
            "",
            "evt_",
            "msg_abababababababababababababababab",
            "evt_ABABABABABABABABABABABABABABABAB",
            "evt_abababababababababababababababa",
            "evt_ab.babababababababababababababab",
        ] {
            assert_eq!(EventId::parse(bad), None, "{bad}");
        }
        assert!(serde_json::from_str::<EventId>("\"evt_x\"").is_err());
    }

    #[test]
    fn deliver_event_keys_differ_per_attempt_and_endpoint() {
        let job = |attempt, endpoint: &str| DeliverEvent {
            event_id: EventId::from_random([7; 16]),
            endpoint: endpoint.into(),
            attempt,
        };
        let first = job(1, "https://shop.example/hooks");
        assert_eq!(
            first.idempotency_key(),
            "deliver:evt_07070707070707070707070707070707:1:https://shop.example/hooks"
        );
        assert_ne!(
            first.idempotency_key(),
            job(2, &first.endpoint).idempotency_key()
        );
        assert_ne!(
            first.idempotency_key(),
            job(1, "https://other.example/").idempotency_key()
        );
        let bytes = serde_json::to_vec(&first).unwrap();
        assert_eq!(
            serde_json::from_slice::<DeliverEvent>(&bytes).unwrap(),
            first
        );
        assert_eq!(DeliverEvent::QUEUE, "deliver_event");
    }

    #[test]
    fn the_schedule_walks_the_nominal_pauses_then_gives_up() {
        let schedule = RetrySchedule::new();
        let pauses: Vec<_> = (1..=8)
            .map(|attempt| schedule.after_failure(attempt, 0.0).map(|d| d.as_secs()))
            .collect();
        assert_eq!(
            pauses,
            [
                Some(5),
                Some(300),
                Some(1_800),
                Some(7_200),
                Some(18_000),
                Some(36_000),
                Some(36_000),
                None
            ]
        );
        assert_eq!(schedule.after_failure(0, 0.0), None);
        assert_eq!(schedule.after_failure(u32::MAX, 0.0), None);
        assert_eq!(schedule.max_attempts(), 8);
    }

    #[test]
    fn jitter_moves_a_pause_by_at_most_a_fifth() {
        let schedule = RetrySchedule::new();
        let ms = |attempt, jitter| schedule.after_failure(attempt, jitter).unwrap().as_millis();
        assert_eq!(ms(1, -1.0), 4_000);
        assert_eq!(ms(1, 1.0), 6_000);
        assert_eq!(ms(1, 0.5), 5_500);
        assert_eq!(ms(7, -1.0), 28_800_000);
        // out-of-range samples are clamped, never a longer or negative pause
        assert_eq!(ms(1, 7.0), 6_000);
        assert_eq!(ms(1, -7.0), 4_000);
        assert_eq!(ms(1, f64::NAN), 5_000);
    }

    #[test]
    fn a_scaled_clock_shrinks_every_pause_alike() {
        let fast = RetrySchedule::scaled(0.001).unwrap();
        let ms: Vec<_> = (1..=7)
            .map(|a| fast.after_failure(a, 0.0).unwrap().as_millis())
            .collect();
        assert_eq!(ms, [5, 300, 1_800, 7_200, 18_000, 36_000, 36_000]);
        assert_eq!(fast.after_failure(1, 1.0).unwrap().as_millis(), 6);
        assert_eq!(fast.after_failure(8, 0.0), None);
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(RetrySchedule::scaled(bad), None);
        }
    }

    #[test]
    fn next_step_after_each_outcome() {
        let schedule = RetrySchedule::new();
        let delivered = AttemptOutcome::Delivered { status: 204 };
        let refused = AttemptOutcome::Refused { status: 302 };
        let silent = AttemptOutcome::NoAnswer {
            error: "timed out after 10 s".into(),
        };
        assert_eq!(schedule.next_step(8, &delivered, 0.0), NextStep::Done);
        assert_eq!(
            schedule.next_step(1, &refused, 0.0),
            NextStep::RetryIn(Duration::from_secs(5))
        );
        assert_eq!(
            schedule.next_step(2, &silent, 0.0),
            NextStep::RetryIn(Duration::from_secs(300))
        );
        assert_eq!(schedule.next_step(8, &silent, 0.0), NextStep::Dead);
        assert_eq!(refused.error().as_deref(), Some("HTTP 302"));
        assert_eq!(refused.status(), Some(302));
        assert_eq!(silent.status(), None);
        assert_eq!(delivered.error(), None);
        assert_eq!(
            serde_json::to_string(&refused).unwrap(),
            r#"{"result":"refused","status":302}"#
        );
    }
}
