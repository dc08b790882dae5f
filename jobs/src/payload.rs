//! What the workers are asked to do. Each payload is stored as JSON in an apalis row, so its
//! queue name is a fixed string (renaming it would strand queued jobs) and its fields only grow.
//! Each payload's [`Job`] impl is the whole of its queue's identity: name, key and retry
//! budget; `worker::jobs` pairs it with its handler.

use crate::Payment;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A job payload: what one queue's rows hold.
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Stored in every queued row: renaming it strands queued jobs, so it is not the type path.
    const QUEUE: &'static str;
    /// Runs apalis may make of one queued job (apalis' default is 25, re-run at once).
    const RUNS: usize;
    /// The key that makes queueing the same job twice a no-op.
    fn idempotency_key(&self) -> String;
}

/// Get a prepay_id for a `pending` order. Queued in the transaction that inserts the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrepayOrder {
    pub out_trade_no: String,
    /// 0 for the job queued with the order; the reconciler's re-queues count up, so that a
    /// new job does not collide with the dead one's key. Absent (0) in older rows.
    #[serde(default, skip_serializing_if = "is_first")]
    pub generation: u32,
    /// The order as it was created, carried by the job queued with it so that the job's run
    /// needs no read of the order. Absent in re-queued jobs and older rows: those read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<CreatedOrder>,
}

/// What the prepay job needs of a new order: its frozen unifiedorder request and its clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedOrder {
    pub params: String,
    pub created_at: i64,
    pub expires_at: i64,
}

fn is_first(generation: &u32) -> bool {
    *generation == 0
}

impl Job for PrepayOrder {
    const QUEUE: &'static str = "prepay_order";
    /// The handler retries WeChat itself, so apalis only re-runs after an infrastructure
    /// error (database down, crash).
    const RUNS: usize = 5;

    /// `prepay:<out_trade_no>` for the first job, `prepay:<out_trade_no>:<generation>` after
    /// (the reconciler's stuck-order query spells the same key in SQL).
    fn idempotency_key(&self) -> String {
        match self.generation {
            0 => format!("prepay:{}", self.out_trade_no),
            n => format!("prepay:{}:{n}", self.out_trade_no),
        }
    }
}

/// Apply a verified payment (recorded as row `notify_id` of `notifies`) to its order.
/// Queued in the transaction that records the notify, before WeChat hears SUCCESS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyPayment {
    pub notify_id: i64,
    pub out_trade_no: String,
    /// The payment the notify reported, carried so that applying it reads nothing. Absent in
    /// older rows: those read the notify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<NotifiedPayment>,
}

/// A verified notify's payment facts (the order's number is the job's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifiedPayment {
    pub transaction_id: String,
    pub total_fee: i64,
    pub cash_fee: i64,
    pub time_end: String,
}

impl ApplyPayment {
    /// The job for notify `notify_id`, carrying its payment.
    pub fn carrying(notify_id: i64, payment: &Payment) -> ApplyPayment {
        ApplyPayment {
            notify_id,
            out_trade_no: payment.out_trade_no.clone(),
            payment: Some(NotifiedPayment {
                transaction_id: payment.transaction_id.clone(),
                total_fee: payment.total_fee,
                cash_fee: payment.cash_fee,
                time_end: payment.time_end.clone(),
            }),
        }
    }

    /// The carried payment, if the job carries one.
    pub fn payment(&self) -> Option<Payment> {
        self.payment.as_ref().map(|p| Payment {
            out_trade_no: self.out_trade_no.clone(),
            transaction_id: p.transaction_id.clone(),
            total_fee: p.total_fee,
            cash_fee: p.cash_fee,
            time_end: p.time_end.clone(),
        })
    }
}

impl Job for ApplyPayment {
    const QUEUE: &'static str = "apply_payment";
    /// Applying is one guarded transaction, so extra runs only matter when the database was
    /// briefly unavailable.
    const RUNS: usize = 10;

    fn idempotency_key(&self) -> String {
        format!("payment:{}", self.notify_id)
    }
}

/// Ask WeChat about a `ready` order whose notify has not come; close it once expired.
/// `check` counts the checks of this order, so each scheduled check has its own key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryOrder {
    pub out_trade_no: String,
    pub check: u32,
}

impl Job for QueryOrder {
    const QUEUE: &'static str = "query_order";
    /// A lost check comes due again after its lease; a few runs cover a database blip.
    const RUNS: usize = 3;

    fn idempotency_key(&self) -> String {
        format!("query:{}:{}", self.out_trade_no, self.check)
    }
}

/// `deliver_event` (the payload is [`crate::event::DeliverEvent`]): POST one event to the
/// merchant's endpoint once. The handler records every attempt and queues the next one itself,
/// `run_after` the schedule's pause (apalis' own retries are immediate), so apalis only re-runs
/// after an infrastructure error (database down, crash).
impl Job for crate::event::DeliverEvent {
    const QUEUE: &'static str = crate::event::DeliverEvent::QUEUE;
    const RUNS: usize = 5;

    fn idempotency_key(&self) -> String {
        crate::event::DeliverEvent::idempotency_key(self)
    }
}

/// Work on one open refund: send its frozen request while it is `pending` (until WeChat
/// accepts, refuses, or holds it), or ask WeChat about it while it is `processing`. Queued in
/// the transaction that creates the refund (run 0), then by the reconciler when the refund's
/// next check comes due (runs count up, so each has its own key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundOrder {
    pub out_refund_no: String,
    pub out_trade_no: String,
    #[serde(default)]
    pub run: u32,
}

impl Job for RefundOrder {
    const QUEUE: &'static str = "refund_order";
    /// The handler retries WeChat itself and parks the refund for the reconciler, so apalis
    /// only re-runs after an infrastructure error.
    const RUNS: usize = 5;

    fn idempotency_key(&self) -> String {
        format!("refund:{}:{}", self.out_refund_no, self.run)
    }
}

/// Reconcile one Beijing day against WeChat's statement (`bill_date` `YYYY-MM-DD`). Queued
/// when a due bill run is claimed; `claim` is the run's claim count at that moment, so each
/// attempt has its own key and a job of an older claim finds the run moved on and does nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileBill {
    pub bill_date: String,
    pub claim: u32,
}

impl Job for ReconcileBill {
    const QUEUE: &'static str = "reconcile_bill";
    /// The handler reschedules WeChat's "not yet" and transient failures itself (in the bill
    /// run's row); apalis only re-runs after an infrastructure error.
    const RUNS: usize = 3;

    fn idempotency_key(&self) -> String {
        format!("bill:{}:{}", self.bill_date, self.claim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_per_job() {
        let p = |generation| PrepayOrder {
            out_trade_no: "MP1".into(),
            generation,
            created: None,
        };
        assert_eq!(p(0).idempotency_key(), "prepay:MP1");
        assert_ne!(p(0).idempotency_key(), p(1).idempotency_key());
        let q = |check| QueryOrder {
            out_trade_no: "MP1".into(),
            check,
        };
        assert_ne!(q(0).idempotency_key(), q(1).idempotency_key());
        let r = |run| RefundOrder {
            out_refund_no: "R1".into(),
            out_trade_no: "MP1".into(),
            run,
        };
        assert_eq!(r(0).idempotency_key(), "refund:R1:0");
        assert_ne!(r(0).idempotency_key(), r(1).idempotency_key());
    }

    #[test]
    fn payloads_round_trip_as_json() {
        let job = ApplyPayment {
            notify_id: 7,
            out_trade_no: "MP1".into(),
            payment: None,
        };
        let bytes = serde_json::to_vec(&job).unwrap();
        assert_eq!(bytes, br#"{"notify_id":7,"out_trade_no":"MP1"}"#);
        assert_eq!(serde_json::from_slice::<ApplyPayment>(&bytes).unwrap(), job);
        // A first prepay job stores what it always did; older rows read as generation 0.
        let first = PrepayOrder {
            out_trade_no: "MP1".into(),
            generation: 0,
            created: None,
        };
        assert_eq!(
            serde_json::to_vec(&first).unwrap(),
            br#"{"out_trade_no":"MP1"}"#
        );
        let old: PrepayOrder = serde_json::from_slice(br#"{"out_trade_no":"MP1"}"#).unwrap();
        assert_eq!(old, first);
        // The job queued with its order carries the order; the key does not change.
        let carried = PrepayOrder {
            created: Some(CreatedOrder {
                params: "<xml/>".into(),
                created_at: 1,
                expires_at: 2,
            }),
            ..first.clone()
        };
        let bytes = serde_json::to_vec(&carried).unwrap();
        assert_eq!(
            serde_json::from_slice::<PrepayOrder>(&bytes).unwrap(),
            carried
        );
        assert_eq!(carried.idempotency_key(), first.idempotency_key());
        // An apply job carries its payment back whole; PostgreSQL's ingest writes the same
        // JSON in SQL (the store's tests read such a job back).
        let payment = crate::Payment {
            out_trade_no: "MP1".into(),
            transaction_id: "4200".into(),
            total_fee: 88,
            cash_fee: 80,
            time_end: "20261130120000".into(),
        };
        let apply = ApplyPayment::carrying(7, &payment);
        let bytes = serde_json::to_vec(&apply).unwrap();
        let back: ApplyPayment = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back.payment(), Some(payment));
        assert_eq!(back.idempotency_key(), "payment:7");
    }
}
