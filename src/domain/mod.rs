//! The business operations both the HTTP handlers and the workers call: place an order, apply
//! a payment, mark an order ready, fail or close it, receive a notify. Each is one store
//! transaction plus what follows it — the long-poll wake-up, the log line with the order
//! number, the metric, the alert — so no caller has to remember them.
//!
//! Refunds are here too: requested (stored with their job), settled, and received by notify.

pub mod bill;
mod notify;
mod payment;
mod place;
mod refund;
mod refund_notify;
mod transitions;

pub use notify::{Arrival, Received, Refused, receive_notify};
pub use payment::apply_payment;
pub use place::{Draft, PlaceError, Placed, check_draft, place_order};
pub use refund::{
    RefundError, RefundRequest, Requested, lease_ms, refund_alert, request_refund, settle_refund,
};
pub use refund_notify::receive_refund_notify;
pub use transitions::{close_order, fail_order, mark_ready};

/// An operator must look at this: one ERROR line with the order number and a counter.
pub fn alert(out_trade_no: &str, kind: &'static str, message: &str) {
    // The message quotes WeChat's text: escaped, so it cannot start a log line of its own.
    tracing::error!(out_trade_no, alert = kind, "{}", message.escape_debug());
    metrics::counter!("minipay_alerts_total", "kind" => kind).increment(1);
}
