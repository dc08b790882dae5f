//! What the workers are asked to do. Each payload is stored as JSON in an apalis row, so its
//! queue name is a fixed string (renaming it would strand queued jobs) and its fields only grow.

use serde::{Deserialize, Serialize};

/// Get a prepay_id for a `pending` order. Queued in the transaction that inserts the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrepayOrder {
    pub out_trade_no: String,
}

impl PrepayOrder {
    pub const QUEUE: &'static str = "prepay_order";

    /// The first job of an order. Re-queues by the reconciler carry a generation number so
    /// that they do not collide with the dead job's key.
    pub fn idempotency_key(&self, generation: u32) -> String {
        match generation {
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
}

impl ApplyPayment {
    pub const QUEUE: &'static str = "apply_payment";

    pub fn idempotency_key(&self) -> String {
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

impl QueryOrder {
    pub const QUEUE: &'static str = "query_order";

    pub fn idempotency_key(&self) -> String {
        format!("query:{}:{}", self.out_trade_no, self.check)
    }
}

/// Every queue the service runs, for metrics and the admin view.
pub const QUEUES: [&str; 3] = [PrepayOrder::QUEUE, ApplyPayment::QUEUE, QueryOrder::QUEUE];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_per_job() {
        let p = PrepayOrder {
            out_trade_no: "MP1".into(),
        };
        assert_eq!(p.idempotency_key(0), "prepay:MP1");
        assert_ne!(p.idempotency_key(0), p.idempotency_key(1));
        let q = |check| QueryOrder {
            out_trade_no: "MP1".into(),
            check,
        };
        assert_ne!(q(0).idempotency_key(), q(1).idempotency_key());
    }

    #[test]
    fn payloads_round_trip_as_json() {
        let job = ApplyPayment {
            notify_id: 7,
            out_trade_no: "MP1".into(),
        };
        let bytes = serde_json::to_vec(&job).unwrap();
        assert_eq!(bytes, br#"{"notify_id":7,"out_trade_no":"MP1"}"#);
        assert_eq!(serde_json::from_slice::<ApplyPayment>(&bytes).unwrap(), job);
    }
}
