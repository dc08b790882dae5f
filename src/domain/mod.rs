//! The business operations both the HTTP handlers and the workers call: place an order, apply
//! a payment, mark an order ready, fail or close it, receive a notify. Each is one store
//! transaction plus what follows it — the long-poll wake-up, the log line with the order
//! number, the metric, the alert — so no caller has to remember them.
//!
//! Refunds and merchant events are the next operations here: each a store transaction (with
//! its job or outbox row queued inside it) plus its wake-ups and alerts.

pub mod bill;
mod notify;
mod payment;
mod place;
mod transitions;

pub use notify::{Arrival, Received, Refused, receive_notify};
pub use payment::apply_payment;
pub use place::{Draft, PlaceError, Placed, check_draft, place_order};
pub use transitions::{close_order, fail_order, mark_ready};

/// An operator must look at this: one ERROR line with the order number and a counter.
pub fn alert(out_trade_no: &str, kind: &'static str, message: &str) {
    // The message quotes WeChat's text: escaped, so it cannot start a log line of its own.
    tracing::error!(out_trade_no, alert = kind, "{}", message.escape_debug());
    metrics::counter!("minipay_alerts_total", "kind" => kind).increment(1);
}
