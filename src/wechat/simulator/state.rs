//! What the simulator remembers: orders as WeChat holds them, every call, fault settings.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::delivery::Delivery;
use super::refund_book::RefundBook;
use crate::wechat::v2::params::beijing_time;
use crate::wechat::v2::sign::random_alphanumeric;
use crate::wechat::v2::{Fields, SignType};

/// WeChat's `trade_state` values the simulator can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TradeState {
    Notpay,
    Userpaying,
    Success,
    Closed,
    Refund,
    Payerror,
}

impl TradeState {
    pub fn as_str(self) -> &'static str {
        match self {
            TradeState::Notpay => "NOTPAY",
            TradeState::Userpaying => "USERPAYING",
            TradeState::Success => "SUCCESS",
            TradeState::Closed => "CLOSED",
            TradeState::Refund => "REFUND",
            TradeState::Payerror => "PAYERROR",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            TradeState::Notpay => "订单未支付",
            TradeState::Userpaying => "用户支付中",
            TradeState::Success => "支付成功",
            TradeState::Closed => "订单已关闭",
            TradeState::Refund => "转入退款",
            TradeState::Payerror => "支付失败",
        }
    }
}

/// Fault injection for every call (per-order rules are [`Forced`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every WeChat Pay call before it is handled.
    pub latency_ms: u64,
    /// Share (0..1) of calls answered HTTP 500 without being handled.
    pub http_500_share: f64,
    /// Share of calls that are handled and then never answered (the reply is lost).
    pub hang_share: f64,
    /// How long a hung call keeps the connection before answering 500.
    pub hang_ms: u64,
    /// Share of calls answered with a signed `SYSTEMERROR`, without being handled.
    pub systemerror_share: f64,
    /// Sign every reply with a wrong key.
    pub bad_signature: bool,
    /// Multiplies WeChat's notify re-send schedule (15 s, 15 s, 30 s, 3 min, ...);
    /// 0.001 turns 15 s into 15 ms.
    pub notify_time_scale: f64,
    /// The merchant's balance is short: every new refund is refused `NOTENOUGH` until this is
    /// turned off again (the balance returns).
    pub refund_notenough: bool,
    /// How long an accepted refund stays `PROCESSING` before its result, in milliseconds.
    pub refund_result_ms: u64,
    /// Refund notifies are never sent: results are only found by refundquery.
    pub drop_refund_notifies: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency_ms: 0,
            http_500_share: 0.0,
            hang_share: 0.0,
            hang_ms: 120_000,
            systemerror_share: 0.0,
            bad_signature: false,
            notify_time_scale: 1.0,
            refund_notenough: false,
            refund_result_ms: 2_000,
            drop_refund_notifies: false,
        }
    }
}

/// An outcome forced on the next calls for one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Forced {
    /// HTTP 500 before handling.
    #[serde(rename = "http_500")]
    Http500,
    /// Handled, then the connection hangs (the reply is lost).
    Hang,
    /// Signed `result_code=FAIL` `SYSTEMERROR`, not handled.
    SystemError,
    /// Signed `result_code=FAIL` with this code, not handled.
    ErrCode {
        err_code: String,
        err_code_des: String,
    },
    /// Unsigned `return_code=FAIL` with this message, not handled.
    ReturnFail { return_msg: String },
    /// Handled, but the reply is signed with a wrong key.
    BadSignature,
    /// The user paid after an earlier reply was lost and the notify never arrived: the order
    /// becomes paid (no notify is sent) and this call is answered `ORDERPAID`.
    PaidElsewhere,
}

/// One call the simulator received.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Call {
    /// `unifiedorder`, `orderquery`, `closeorder`, `refund`, `refundquery` or `jscode2session`.
    pub api: String,
    pub out_trade_no: Option<String>,
    /// The received fields without `nonce_str` and `sign`: what must not change on re-entry.
    pub business: BTreeMap<String, String>,
    /// Unix milliseconds (real time, not the adjustable clock).
    pub at_ms: i64,
    /// How it was answered: `SUCCESS`, an err_code, `RETURN_FAIL: ...`, `HTTP_500`, `HANG`.
    pub outcome: String,
    /// For `refund` calls: whether the client presented a certificate over TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<bool>,
}

/// An order as WeChat holds it.
#[derive(Debug, Clone)]
pub(super) struct SimOrder {
    pub business: BTreeMap<String, String>,
    pub sign_type: SignType,
    pub prepay_id: String,
    /// Clock seconds of the first unifiedorder.
    pub created_at: i64,
    pub trade_state: TradeState,
    pub transaction_id: Option<String>,
    pub time_end: Option<String>,
    pub cash_fee: Option<i64>,
    pub coupon_fee: Option<i64>,
    pub deliveries: Vec<Delivery>,
}

impl SimOrder {
    /// An order as the first unifiedorder creates it: unpaid.
    pub fn new(
        business: BTreeMap<String, String>,
        sign_type: SignType,
        prepay_id: String,
        created_at: i64,
    ) -> SimOrder {
        SimOrder {
            business,
            sign_type,
            prepay_id,
            created_at,
            trade_state: TradeState::Notpay,
            transaction_id: None,
            time_end: None,
            cash_fee: None,
            coupon_fee: None,
            deliveries: Vec::new(),
        }
    }
}

/// What `GET /sim/orders/{out_trade_no}` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimOrderView {
    pub out_trade_no: String,
    pub trade_state: TradeState,
    pub prepay_id: String,
    pub transaction_id: Option<String>,
    pub total_fee: i64,
    pub created_at: i64,
    pub calls: Vec<Call>,
    pub deliveries: Vec<Delivery>,
}

/// How many of the most recent calls the simulator keeps for `/sim/calls` and the order views.
pub const KEPT_CALLS: usize = 100_000;

/// A [`ForceRule`] for this `out_trade_no` applies to the next calls of any order.
pub const ANY_ORDER: &str = "*";

#[derive(Default)]
pub(super) struct SimState {
    pub orders: HashMap<String, SimOrder>,
    /// The most recent calls ([`KEPT_CALLS`] at most: a long run must not grow without end).
    pub calls: Vec<Call>,
    /// Every call ever recorded, also those no longer kept.
    pub calls_total: usize,
    pub faults: Faults,
    pub forced: HashMap<String, VecDeque<Forced>>,
    pub used_codes: HashSet<String>,
    pub close_violations: Vec<String>,
    pub next_transaction: u64,
    pub bills: super::trades::BillState,
    pub refunds: RefundBook,
}

impl SimState {
    pub fn force(&mut self, rule: ForceRule) {
        let queue = self.forced.entry(rule.out_trade_no).or_default();
        for _ in 0..rule.times {
            queue.push_back(rule.outcome.clone());
        }
    }

    /// The next forced outcome for this order, else for any order (`out_trade_no` "*").
    pub fn take_forced(&mut self, out_trade_no: Option<&str>) -> Option<Forced> {
        if let Some(forced) = out_trade_no
            .and_then(|otn| self.forced.get_mut(otn))
            .and_then(VecDeque::pop_front)
        {
            return Some(forced);
        }
        self.forced.get_mut(ANY_ORDER)?.pop_front()
    }

    pub fn view(&self, out_trade_no: &str) -> Option<SimOrderView> {
        let order = self.orders.get(out_trade_no)?;
        Some(SimOrderView {
            out_trade_no: out_trade_no.to_owned(),
            trade_state: order.trade_state,
            prepay_id: order.prepay_id.clone(),
            transaction_id: order.transaction_id.clone(),
            total_fee: order
                .business
                .get("total_fee")
                .and_then(|f| f.parse().ok())
                .unwrap_or_default(),
            created_at: order.created_at,
            calls: self
                .calls
                .iter()
                .filter(|c| c.out_trade_no.as_deref() == Some(out_trade_no))
                .cloned()
                .collect(),
            deliveries: order.deliveries.clone(),
        })
    }

    pub fn record(&mut self, call: Call) {
        self.calls.push(call);
        self.calls_total += 1;
        // Forget the oldest tenth at a time, so that recording stays cheap.
        if self.calls.len() > KEPT_CALLS + KEPT_CALLS / 10 {
            let over = self.calls.len() - KEPT_CALLS;
            self.calls.drain(..over);
        }
    }
}

/// `POST /sim/force`: the next `times` calls for `out_trade_no` (or for any order, with
/// `"*"`) get `outcome`.
// No `deny_unknown_fields`: serde does not support it together with `flatten`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForceRule {
    pub out_trade_no: String,
    #[serde(flatten)]
    pub outcome: Forced,
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

/// The fields orderquery (and the notify) report for an order.
pub(super) fn trade_fields(out_trade_no: &str, order: &SimOrder) -> Fields {
    let business = |name: &str| order.business.get(name).cloned().unwrap_or_default();
    let mut fields = Fields::new();
    fields.set("device_info", ""); // WeChat sends it empty; it must not be signed
    fields.set("out_trade_no", out_trade_no);
    fields.set("trade_state", order.trade_state.as_str());
    fields.set("trade_state_desc", order.trade_state.description());
    fields.set("total_fee", business("total_fee"));
    fields.set("attach", business("attach"));
    if matches!(order.trade_state, TradeState::Success | TradeState::Refund) {
        fields.set("openid", business("openid"));
        fields.set("is_subscribe", "N");
        fields.set("trade_type", business("trade_type"));
        fields.set("bank_type", "OTHERS");
        fields.set("fee_type", "CNY");
        let total: i64 = business("total_fee").parse().unwrap_or(0);
        fields.set("cash_fee", order.cash_fee.unwrap_or(total).to_string());
        if let Some(coupon) = order.coupon_fee {
            fields.set("coupon_fee", coupon.to_string());
            fields.set("coupon_count", "1");
            fields.set("coupon_type_0", "NO_CASH");
            fields.set("coupon_id_0", "10000");
            fields.set("coupon_fee_0", coupon.to_string());
        }
        fields.set(
            "transaction_id",
            order.transaction_id.clone().unwrap_or_default(),
        );
        fields.set("time_end", order.time_end.clone().unwrap_or_default());
    }
    fields
}

/// `wx` + Beijing time + 20 random characters, like `wx201410272009395522657a690389285100`.
pub(super) fn new_prepay_id(now: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "wx{}{}",
        beijing_time(now),
        random_alphanumeric(20).to_lowercase()
    )
}

/// A 28-digit WeChat transaction id.
pub(super) fn transaction_id(now: chrono::DateTime<chrono::Utc>, serial: u64) -> String {
    format!(
        "4200{}{:010}",
        &beijing_time(now)[..14],
        serial % 10_000_000_000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(n: usize) -> Call {
        Call {
            api: "orderquery".into(),
            out_trade_no: Some(format!("T{n}")),
            business: BTreeMap::new(),
            at_ms: 0,
            outcome: "SUCCESS".into(),
            client_cert: None,
        }
    }

    #[test]
    fn only_the_most_recent_calls_are_kept_and_all_are_counted() {
        let mut state = SimState::default();
        let total = KEPT_CALLS * 2 + 7;
        for n in 0..total {
            state.record(call(n));
        }
        assert_eq!(state.calls_total, total);
        assert!(state.calls.len() <= KEPT_CALLS + KEPT_CALLS / 10);
        assert!(state.calls.len() >= KEPT_CALLS);
        let last = state.calls.last().unwrap().out_trade_no.clone();
        assert_eq!(last, Some(format!("T{}", total - 1)), "the newest is kept");
    }
}
