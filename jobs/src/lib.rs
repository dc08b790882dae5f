//! minipay's pure core: what an order or a refund may become, what the workers are asked to
//! do, what each WeChat answer means for an order or a refund, the day's bill comparison, and
//! the merchant events with their retry schedule. No async, no I/O, no clock: callers pass
//! `now` in, so every rule here is a table that unit tests can walk.

pub mod bill;
pub mod decide;
pub mod event;
pub mod order;
pub mod payload;
pub mod refund;
pub mod schedule;

pub use decide::{CloseDecision, Failure, PrepayDecision, QueryDecision, Reply, Transport};
pub use event::{
    AttemptOutcome, DeliverEvent, DeliveryState, EventId, EventType, NextStep, RetrySchedule,
};
pub use order::OrderStatus;
pub use payload::{ApplyPayment, PrepayOrder, QueryOrder};
pub use refund::{RefundDecision, RefundQueryDecision, RefundResult, RefundStatus};
