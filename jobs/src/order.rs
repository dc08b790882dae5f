//! Order statuses and the transitions between them (docs/http-api.md, "Order statuses"). These
//! are the transitions the store enforces: each guarded `UPDATE` into a status accepts
//! exactly the statuses [`OrderStatus::sources`] names, so `can_become` is the rule, not a
//! description of it.

use serde::{Deserialize, Serialize};

use crate::lifecycle::Lifecycle;

/// Where an order stands. Stored as the lowercase name in the `orders.status` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    /// Stored, prepay job queued.
    Pending,
    /// prepay_id held, pay params available to the mini-program.
    Ready,
    /// A verified notify or order query said WeChat took the money.
    Paid,
    /// WeChat refused the prepay for good (or we gave up retrying).
    Failed,
    /// Expired unpaid and closed with WeChat.
    Closed,
    /// Refunds that succeeded add up to the order's total.
    Refunded,
}

impl OrderStatus {
    /// Every status, in lifecycle order (used for per-status metrics).
    pub const ALL: [OrderStatus; 6] = [
        OrderStatus::Pending,
        OrderStatus::Ready,
        OrderStatus::Paid,
        OrderStatus::Failed,
        OrderStatus::Closed,
        OrderStatus::Refunded,
    ];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Ready => "ready",
            OrderStatus::Paid => "paid",
            OrderStatus::Failed => "failed",
            OrderStatus::Closed => "closed",
            OrderStatus::Refunded => "refunded",
        }
    }

    /// Parses a stored name; `None` for anything else.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// No transition leaves a terminal status.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            OrderStatus::Failed | OrderStatus::Closed | OrderStatus::Refunded
        )
    }

    /// WeChat took the money for it: `paid`, or `refunded` since.
    pub fn was_paid(self) -> bool {
        matches!(self, OrderStatus::Paid | OrderStatus::Refunded)
    }

    /// Whether `self → next` is a transition the service may make.
    ///
    /// `pending → paid` exists because an `ORDERPAID` answer to a prepay retry is good news:
    /// the first attempt reached WeChat and the user already paid.
    pub fn can_become(self, next: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, next),
            (Pending, Ready)
                | (Pending, Failed)
                | (Pending, Paid)
                | (Ready, Paid)
                | (Ready, Closed)
                | (Paid, Refunded)
        )
    }

    /// Every status that may become `to`, in lifecycle order: the guard of the store's update
    /// into `to` (`WHERE status IN (…)`). Empty for `pending`, which only an insert makes.
    pub fn sources(to: OrderStatus) -> impl Iterator<Item = OrderStatus> {
        Self::ALL
            .into_iter()
            .filter(move |from| from.can_become(to))
    }

    /// The statuses a verified payment may move to `paid`.
    pub fn payable() -> Vec<OrderStatus> {
        Self::sources(OrderStatus::Paid).collect()
    }
}

impl Lifecycle for OrderStatus {
    const ALL: &'static [Self] = &OrderStatus::ALL;

    fn as_str(self) -> &'static str {
        OrderStatus::as_str(self)
    }

    fn can_become(self, next: Self) -> bool {
        OrderStatus::can_become(self, next)
    }
}

/// A stored status name that is not one of ours (the column's CHECK makes this a bug).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown order status {0:?}")]
pub struct UnknownStatus(pub String);

impl TryFrom<String> for OrderStatus {
    type Error = UnknownStatus;

    /// Reads a stored name; anything else is an error, never a guess.
    fn try_from(name: String) -> Result<Self, Self::Error> {
        Self::parse(&name).ok_or(UnknownStatus(name))
    }
}

/// What a line of an order's history records. Stored as the lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OrderEvent {
    /// Stored (from the order's own columns, not an event row).
    Created,
    /// Got its pay params (from the order's own columns).
    Ready,
    /// A prepay call that did not make it ready, with WeChat's answer.
    PrepayAttempt,
    Failed,
    Paid,
    Closed,
    /// A refund requested, sent, answered or settled (with its out_refund_no).
    Refund,
    /// The order's refunds add up to its total.
    Refunded,
    /// A reconciliation decision.
    Reconcile,
    /// The reconciler queued a lost prepay job again.
    Requeued,
    /// Something an operator must look at.
    Alert,
}

impl OrderEvent {
    pub const ALL: [OrderEvent; 11] = [
        OrderEvent::Created,
        OrderEvent::Ready,
        OrderEvent::PrepayAttempt,
        OrderEvent::Failed,
        OrderEvent::Paid,
        OrderEvent::Closed,
        OrderEvent::Refund,
        OrderEvent::Refunded,
        OrderEvent::Reconcile,
        OrderEvent::Requeued,
        OrderEvent::Alert,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderEvent::Created => "created",
            OrderEvent::Ready => "ready",
            OrderEvent::PrepayAttempt => "prepay_attempt",
            OrderEvent::Failed => "failed",
            OrderEvent::Paid => "paid",
            OrderEvent::Closed => "closed",
            OrderEvent::Refund => "refund",
            OrderEvent::Refunded => "refunded",
            OrderEvent::Reconcile => "reconcile",
            OrderEvent::Requeued => "requeued",
            OrderEvent::Alert => "alert",
        }
    }
}

/// A stored event name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown order event {0:?}")]
pub struct UnknownEvent(pub String);

impl TryFrom<String> for OrderEvent {
    type Error = UnknownEvent;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        Self::ALL
            .into_iter()
            .find(|e| e.as_str() == name)
            .ok_or(UnknownEvent(name))
    }
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::OrderStatus::{self, *};

    #[test]
    fn names_round_trip() {
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(OrderStatus::parse("PAID"), None);
        assert_eq!(OrderStatus::parse(""), None);
    }

    #[test]
    fn transitions_follow_the_contract() {
        let allowed = [
            (Pending, Ready),
            (Pending, Failed),
            (Pending, Paid),
            (Ready, Paid),
            (Ready, Closed),
            (Paid, Refunded),
        ];
        for from in OrderStatus::ALL {
            for to in OrderStatus::ALL {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn terminal_statuses_have_no_way_out() {
        for from in OrderStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            assert!(OrderStatus::ALL.iter().all(|to| !from.can_become(*to)));
        }
        assert!(!Ready.is_terminal() && !Pending.is_terminal() && !Paid.is_terminal());
        assert!(Paid.was_paid() && Refunded.was_paid() && !Ready.was_paid());
    }

    #[test]
    fn sources_are_exactly_the_statuses_that_can_become_the_target() {
        assert_eq!(
            OrderStatus::sources(Paid).collect::<Vec<_>>(),
            [Pending, Ready]
        );
        assert_eq!(OrderStatus::sources(Pending).count(), 0);
        for to in OrderStatus::ALL {
            for from in OrderStatus::ALL {
                assert_eq!(
                    OrderStatus::sources(to).any(|s| s == from),
                    from.can_become(to),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn stored_names_are_read_strictly() {
        assert_eq!(OrderStatus::try_from("paid".to_owned()), Ok(Paid));
        assert!(OrderStatus::try_from("Paid".to_owned()).is_err());
        for event in super::OrderEvent::ALL {
            assert_eq!(
                super::OrderEvent::try_from(event.as_str().to_owned()),
                Ok(event)
            );
            assert_eq!(
                serde_json::to_value(event).unwrap_or_default(),
                event.as_str()
            );
        }
    }

    #[test]
    fn a_failed_or_closed_order_is_not_payable() {
        assert!(!OrderStatus::payable().contains(&Failed));
        assert!(!OrderStatus::payable().contains(&Closed));
        assert!(!OrderStatus::payable().contains(&Paid));
        assert!(!OrderStatus::payable().contains(&Refunded));
    }
}
