//! Order statuses and the transitions between them (docs/http-api.md, "Order statuses").

use serde::{Deserialize, Serialize};

/// Where an order stands. Stored as the lowercase name in the `orders.status` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
}

impl OrderStatus {
    /// Every status, in lifecycle order (used for per-status metrics).
    pub const ALL: [OrderStatus; 5] = [
        OrderStatus::Pending,
        OrderStatus::Ready,
        OrderStatus::Paid,
        OrderStatus::Failed,
        OrderStatus::Closed,
    ];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Ready => "ready",
            OrderStatus::Paid => "paid",
            OrderStatus::Failed => "failed",
            OrderStatus::Closed => "closed",
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
            OrderStatus::Paid | OrderStatus::Failed | OrderStatus::Closed
        )
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
        )
    }

    /// The statuses a verified payment may move to `paid`.
    pub fn payable() -> [OrderStatus; 2] {
        [OrderStatus::Pending, OrderStatus::Ready]
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
        assert!(!Ready.is_terminal() && !Pending.is_terminal());
    }

    #[test]
    fn a_failed_or_closed_order_is_not_payable() {
        assert!(!OrderStatus::payable().contains(&Failed));
        assert!(!OrderStatus::payable().contains(&Closed));
        assert!(!OrderStatus::payable().contains(&Paid));
    }
}
