//! What a day's comparison reports: each side's totals and every difference, by kind.

use serde::{Deserialize, Serialize};

use super::Fen;

/// One side's totals, in the contract's JSON shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Paid orders (WeChat: lines in state `SUCCESS`).
    pub payments: u64,
    pub payment_fee: Fen,
    /// Refunds that count as refunded (WeChat: `SUCCESS` or `PROCESSING`; minipay: not failed).
    pub refunds: u64,
    pub refund_fee: Fen,
}

impl Totals {
    pub(super) fn add_payment(&mut self, fee: Fen) {
        self.payments += 1;
        self.payment_fee = self.payment_fee.saturating_add(fee);
    }

    pub(super) fn add_refund(&mut self, fee: Fen) {
        self.refunds += 1;
        self.refund_fee = self.refund_fee.saturating_add(fee);
    }
}

/// The kinds of difference, stored and served by these names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MismatchKind {
    /// WeChat lists it; minipay has no such order or refund.
    MissingLocal,
    /// minipay holds it for the day; WeChat does not list it.
    MissingWechat,
    /// Both have it with different amounts.
    Amount,
    /// Both have it; one says paid (refunded) and the other does not, or minipay holds it on
    /// another day.
    Status,
}

impl MismatchKind {
    pub const ALL: [MismatchKind; 4] = [
        MismatchKind::MissingLocal,
        MismatchKind::MissingWechat,
        MismatchKind::Amount,
        MismatchKind::Status,
    ];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            MismatchKind::MissingLocal => "missing_local",
            MismatchKind::MissingWechat => "missing_wechat",
            MismatchKind::Amount => "amount",
            MismatchKind::Status => "status",
        }
    }
}

/// One difference. `wechat` and `local` describe each side as `"<state> <fen>"` (`"absent"`
/// when a side has nothing), e.g. `"SUCCESS 3400"` against `"ready 3400"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    pub kind: MismatchKind,
    pub out_trade_no: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_refund_no: Option<String>,
    pub wechat: String,
    pub local: String,
    /// WeChat has the payment and minipay holds the order as `pending` or `ready`: an order
    /// query settles it through the usual path. Nothing is changed on the statement's word.
    #[serde(default)]
    pub healable: bool,
}

/// The outcome of one day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillReport {
    pub wechat: Totals,
    pub local: Totals,
    /// Sorted by `out_trade_no`, then `out_refund_no`, then kind.
    pub mismatches: Vec<Mismatch>,
}

impl BillReport {
    /// No differences and equal totals.
    pub fn is_clean(&self) -> bool {
        self.mismatches.is_empty() && self.wechat == self.local
    }

    /// Orders an order query may settle (see [`Mismatch::healable`]).
    pub fn healable(&self) -> impl Iterator<Item = &str> {
        self.mismatches
            .iter()
            .filter(|m| m.healable)
            .map(|m| m.out_trade_no.as_str())
    }

    /// How many mismatches of `kind` the report holds.
    pub fn count(&self, kind: MismatchKind) -> usize {
        self.mismatches.iter().filter(|m| m.kind == kind).count()
    }
}
