//! minipay's pure core: what an order or a refund may become, what the workers are asked to
//! do, what each payment-provider answer means for an order or a refund, the day's bill
//! comparison, and the merchant events with their retry schedule. No async, no I/O, no clock:
//! callers pass `now` in, so every rule here is a table that unit tests can walk.
//!
//! - [`lifecycle`]: what a lifecycle of statuses is (the store's guards are built from it).
//! - [`order`], [`refund`]: statuses and transitions (the ones the store's SQL enforces).
//! - [`payload`]: job payloads with their queue names, keys and retry budgets.
//! - [`gateway`]: the protocol-neutral inputs and outcomes of the provider's operations.
//! - [`notify`]: notify verdicts, what verification found, the answer owed.
//! - [`event`]: merchant events, their delivery states and retry schedule.
//! - [`bill`]: the day's bill comparison.
//! - [`decide`]: the decision tables; [`schedule`]: when reconciliation checks come due.

pub mod bill;
pub mod decide;
pub mod event;
pub mod gateway;
pub mod lifecycle;
pub mod notify;
pub mod order;
pub mod payload;
pub mod refund;
pub mod schedule;

pub use decide::{CloseDecision, Failure, PrepayDecision, QueryDecision, Reply, Transport};
pub use event::{
    AttemptOutcome, DeliverEvent, DeliveryState, EventId, EventType, NextStep, RetrySchedule,
};
pub use gateway::{
    OrderFields, ParamError, PayParams, Payment, Prepaid, PrepayInput, PrepayOutcome, QueryOutcome,
    RefundInput, RefundNotice, RefundOutcome, RefundQueryOutcome, UnreadableParams,
};
pub use lifecycle::Lifecycle;
pub use notify::{CheckedNotify, NotifyAck, NotifyCheck, NotifyVerdict, PostedNotify, Refusal};
pub use order::{OrderEvent, OrderStatus};
pub use payload::{
    ApplyPayment, CreatedOrder, Job, NotifiedPayment, PrepayOrder, QueryOrder, ReconcileBill,
    RefundOrder,
};
pub use refund::{RefundDecision, RefundQueryDecision, RefundResult, RefundStatus};
