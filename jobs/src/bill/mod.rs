//! Daily bill reconciliation, protocol-neutral: WeChat's statement lines for one Beijing day
//! against the orders and refunds minipay holds for it (docs/bills.md).
//!
//! The comparison is pure and streams: the caller builds a [`DayReconciliation`] from that
//! day's local trades (a map keyed by `out_trade_no` / `out_refund_no`), feeds the statement in
//! line by line with [`DayReconciliation::add`] as it is downloaded, looks up the few lines the
//! day's trades did not explain ([`DayReconciliation::unresolved`]) and calls
//! [`DayReconciliation::finish`]. Memory grows with the local trades of the day and the
//! differences found, never with the statement.
//!
//! Why a map rather than a merge of two sorted streams: WeChat's statement is not sorted by
//! `out_trade_no`, so a merge would first have to sort it, which needs the whole statement (in
//! memory or spilled to disk); the local side comes sorted or not from one query either way.

mod entries;
mod failure;
mod report;
pub mod retry;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use crate::OrderStatus;

pub use entries::{
    LocalOrder, LocalRefund, LocalRefundStatus, WechatEntry, WechatPayment, WechatRefund,
};
pub use failure::{BillDownloaded, BillFailure, BillUnavailable, classify_bill_failure};
pub use report::{BillReport, Mismatch, MismatchKind, Totals};

/// Money in fen (1/100 yuan), as every amount in minipay.
pub type Fen = i64;

/// What the caller found for the keys of [`DayReconciliation::unresolved`]: minipay's orders and
/// refunds of any day and any status, keyed by `out_trade_no` / `out_refund_no`. Keys it could
/// not find are simply absent.
#[derive(Debug, Clone, Default)]
pub struct Elsewhere {
    pub orders: HashMap<String, LocalOrder>,
    pub refunds: HashMap<String, LocalRefund>,
}

/// Statement lines the day's local trades did not explain, to be looked up by the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unresolved<'a> {
    pub out_trade_nos: Vec<&'a str>,
    pub out_refund_nos: Vec<&'a str>,
}

struct DayOrder {
    total_fee: Fen,
    status: OrderStatus,
    seen: bool,
}

struct DayRefund {
    out_trade_no: String,
    refund_fee: Fen,
    status: LocalRefundStatus,
    seen: bool,
}

/// The comparison of one Beijing day in progress.
pub struct DayReconciliation {
    orders: HashMap<String, DayOrder>,
    refunds: HashMap<String, DayRefund>,
    unresolved_payments: HashMap<String, WechatPayment>,
    unresolved_refunds: HashMap<String, WechatRefund>,
    wechat: Totals,
    local: Totals,
    mismatches: Vec<Mismatch>,
}

impl DayReconciliation {
    /// Starts a day from minipay's trades of that day: `orders` paid with a `time_end` on it,
    /// `refunds` submitted to WeChat on it (any status). Duplicate keys keep the first.
    pub fn new(
        orders: impl IntoIterator<Item = LocalOrder>,
        refunds: impl IntoIterator<Item = LocalRefund>,
    ) -> Self {
        let mut local = Totals::default();
        let mut day_orders = HashMap::new();
        for order in orders {
            if let std::collections::hash_map::Entry::Vacant(slot) =
                day_orders.entry(order.out_trade_no)
            {
                if order.status == OrderStatus::Paid {
                    local.add_payment(order.total_fee);
                }
                slot.insert(DayOrder {
                    total_fee: order.total_fee,
                    status: order.status,
                    seen: false,
                });
            }
        }
        let mut day_refunds = HashMap::new();
        for refund in refunds {
            if let std::collections::hash_map::Entry::Vacant(slot) =
                day_refunds.entry(refund.out_refund_no)
            {
                if refund.status.counts() {
                    local.add_refund(refund.refund_fee);
                }
                slot.insert(DayRefund {
                    out_trade_no: refund.out_trade_no,
                    refund_fee: refund.refund_fee,
                    status: refund.status,
                    seen: false,
                });
            }
        }
        DayReconciliation {
            orders: day_orders,
            refunds: day_refunds,
            unresolved_payments: HashMap::new(),
            unresolved_refunds: HashMap::new(),
            wechat: Totals::default(),
            local,
            mismatches: Vec::new(),
        }
    }

    /// Takes one statement line.
    pub fn add(&mut self, entry: WechatEntry) {
        match entry {
            WechatEntry::Payment(payment) => self.add_payment(payment),
            WechatEntry::Refund(refund) => self.add_refund(refund),
        }
    }

    fn add_payment(&mut self, payment: WechatPayment) {
        if payment.is_paid() {
            self.wechat.add_payment(payment.fee);
        }
        let found = self.orders.get_mut(&payment.out_trade_no);
        let repeated = match found {
            Some(order) if !order.seen => {
                order.seen = true;
                let local = LocalOrder {
                    out_trade_no: payment.out_trade_no.clone(),
                    total_fee: order.total_fee,
                    status: order.status,
                };
                compare_payment(&payment, &local, false, &mut self.mismatches);
                return;
            }
            Some(_) => true,
            None => self.unresolved_payments.contains_key(&payment.out_trade_no),
        };
        if repeated {
            self.mismatches.push(Mismatch {
                kind: MismatchKind::MissingLocal,
                wechat: format!("{} (listed twice)", payment_side(&payment)),
                local: ABSENT.into(),
                out_trade_no: payment.out_trade_no,
                out_refund_no: None,
                healable: false,
            });
        } else {
            self.unresolved_payments
                .insert(payment.out_trade_no.clone(), payment);
        }
    }

    fn add_refund(&mut self, refund: WechatRefund) {
        if refund.succeeded() {
            self.wechat.add_refund(refund.refund_fee);
        }
        let repeated = match self.refunds.get_mut(&refund.out_refund_no) {
            Some(local) if !local.seen => {
                local.seen = true;
                let local = LocalRefund {
                    out_trade_no: local.out_trade_no.clone(),
                    out_refund_no: refund.out_refund_no.clone(),
                    refund_fee: local.refund_fee,
                    status: local.status,
                };
                compare_refund(&refund, &local, false, &mut self.mismatches);
                return;
            }
            Some(_) => true,
            None => self.unresolved_refunds.contains_key(&refund.out_refund_no),
        };
        if repeated {
            self.mismatches.push(Mismatch {
                kind: MismatchKind::MissingLocal,
                wechat: format!("{} (listed twice)", refund_side(&refund)),
                local: ABSENT.into(),
                out_trade_no: refund.out_trade_no,
                out_refund_no: Some(refund.out_refund_no),
                healable: false,
            });
        } else {
            self.unresolved_refunds
                .insert(refund.out_refund_no.clone(), refund);
        }
    }

    /// The orders and refunds WeChat listed that are not among the day's local trades; look
    /// them up (any day, any status) and pass what was found to [`Self::finish`].
    pub fn unresolved(&self) -> Unresolved<'_> {
        let mut out_trade_nos: Vec<&str> = self
            .unresolved_payments
            .keys()
            .map(String::as_str)
            .collect();
        let mut out_refund_nos: Vec<&str> =
            self.unresolved_refunds.keys().map(String::as_str).collect();
        out_trade_nos.sort_unstable();
        out_refund_nos.sort_unstable();
        Unresolved {
            out_trade_nos,
            out_refund_nos,
        }
    }

    /// Ends the day: settles the unresolved lines with what the caller found `elsewhere`, and
    /// reports the day's local trades WeChat never listed.
    pub fn finish(mut self, elsewhere: &Elsewhere) -> BillReport {
        for (out_trade_no, payment) in std::mem::take(&mut self.unresolved_payments) {
            match elsewhere.orders.get(&out_trade_no) {
                Some(local) => compare_payment(&payment, local, true, &mut self.mismatches),
                None => self.mismatches.push(Mismatch {
                    kind: MismatchKind::MissingLocal,
                    wechat: payment_side(&payment),
                    local: ABSENT.into(),
                    out_trade_no,
                    out_refund_no: None,
                    healable: false,
                }),
            }
        }
        for (out_refund_no, refund) in std::mem::take(&mut self.unresolved_refunds) {
            match elsewhere.refunds.get(&out_refund_no) {
                Some(local) => compare_refund(&refund, local, true, &mut self.mismatches),
                None => self.mismatches.push(Mismatch {
                    kind: MismatchKind::MissingLocal,
                    wechat: refund_side(&refund),
                    local: ABSENT.into(),
                    out_trade_no: refund.out_trade_no,
                    out_refund_no: Some(out_refund_no),
                    healable: false,
                }),
            }
        }
        // A day's trade WeChat need not list: an order not paid, a refund WeChat refused.
        let listed = |o: &DayOrder| !o.seen && o.status == OrderStatus::Paid;
        for (out_trade_no, order) in self.orders.into_iter().filter(|(_, o)| listed(o)) {
            self.mismatches.push(Mismatch {
                kind: MismatchKind::MissingWechat,
                wechat: ABSENT.into(),
                local: format!("{} {}", order.status, order.total_fee),
                out_trade_no,
                out_refund_no: None,
                healable: false,
            });
        }
        let listed = |r: &DayRefund| !r.seen && r.status.counts();
        for (out_refund_no, refund) in self.refunds.into_iter().filter(|(_, r)| listed(r)) {
            self.mismatches.push(Mismatch {
                kind: MismatchKind::MissingWechat,
                wechat: ABSENT.into(),
                local: format!("{} {}", refund.status.as_str(), refund.refund_fee),
                out_trade_no: refund.out_trade_no,
                out_refund_no: Some(out_refund_no),
                healable: false,
            });
        }
        self.mismatches.sort_by(|a, b| {
            (&a.out_trade_no, &a.out_refund_no, a.kind).cmp(&(
                &b.out_trade_no,
                &b.out_refund_no,
                b.kind,
            ))
        });
        BillReport {
            wechat: self.wechat,
            local: self.local,
            mismatches: self.mismatches,
        }
    }
}

const ABSENT: &str = "absent";

fn payment_side(payment: &WechatPayment) -> String {
    format!("{} {}", payment.state, payment.fee)
}

fn refund_side(refund: &WechatRefund) -> String {
    format!("{} {}", refund.status, refund.refund_fee)
}

/// Status, then amount: both are reported when both differ. `other_day` marks an order found
/// outside the day's trades, which is a difference even when it is paid.
fn compare_payment(
    payment: &WechatPayment,
    local: &LocalOrder,
    other_day: bool,
    out: &mut Vec<Mismatch>,
) {
    let local_paid = local.status == OrderStatus::Paid;
    let mut local_side = format!("{} {}", local.status, local.total_fee);
    if other_day && local_paid {
        local_side.push_str(" (another day)");
    }
    let mut push = |kind, healable| {
        out.push(Mismatch {
            kind,
            out_trade_no: payment.out_trade_no.clone(),
            out_refund_no: None,
            wechat: payment_side(payment),
            local: local_side.clone(),
            healable,
        })
    };
    if payment.is_paid() != local_paid || (other_day && local_paid) {
        let healable = payment.is_paid() && OrderStatus::payable().contains(&local.status);
        push(MismatchKind::Status, healable);
    }
    if payment.fee != local.total_fee {
        push(MismatchKind::Amount, false);
    }
}

fn compare_refund(
    refund: &WechatRefund,
    local: &LocalRefund,
    other_day: bool,
    out: &mut Vec<Mismatch>,
) {
    let local_refunded = local.status.counts();
    let mut local_side = format!("{} {}", local.status.as_str(), local.refund_fee);
    if other_day {
        local_side.push_str(" (another day)");
    }
    let mut push = |kind| {
        out.push(Mismatch {
            kind,
            out_trade_no: refund.out_trade_no.clone(),
            out_refund_no: Some(refund.out_refund_no.clone()),
            wechat: refund_side(refund),
            local: local_side.clone(),
            healable: false,
        })
    };
    // WeChat lists a refund with the status it had on the day: one that was closed later
    // (REFUNDCLOSE) was PROCESSING then.
    let closed_later = local.status == LocalRefundStatus::Failed && refund.status == "PROCESSING";
    if (refund.succeeded() != local_refunded && !closed_later) || other_day {
        push(MismatchKind::Status);
    }
    if refund.refund_fee != local.refund_fee {
        push(MismatchKind::Amount);
    }
}
