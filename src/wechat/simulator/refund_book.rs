//! What the simulator remembers of refunds: every refund as WeChat holds it, the rules a new
//! refund must pass (count, amount, one minute between two of one order), and the results
//! forced on the next ones. Data and its rules only; the endpoints are in `refund`.

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, Utc};
use minipay_jobs::RefundResult;

use super::delivery::Delivery;

/// Refunds per order WeChat allows.
const MAX_REFUNDS_PER_ORDER: usize = 50;
/// Seconds between two new refunds of one order.
const REFUND_SPACING_SECS: i64 = 60;
/// A refund must come within a year of the payment.
pub(super) const REFUND_WINDOW_SECS: i64 = 365 * 24 * 3600;

/// One refund as WeChat holds it.
#[derive(Debug, Clone)]
pub(super) struct SimRefund {
    pub out_refund_no: String,
    pub out_trade_no: String,
    pub transaction_id: String,
    pub refund_id: String,
    pub refund_fee: i64,
    pub total_fee: i64,
    pub refund_desc: String,
    pub notify_url: String,
    /// `API`, or `VENDOR_PLATFORM` for a refund made in the merchant console.
    pub source: &'static str,
    /// Clock seconds of the request that created it.
    pub requested_at: i64,
    pub status: RefundResult,
    /// What it becomes when its result comes.
    pub outcome: RefundResult,
    pub success_time: Option<DateTime<Utc>>,
    pub deliveries: Vec<Delivery>,
}

/// A refusal: WeChat's `err_code` and `err_code_des`.
pub(super) type Refusal = (&'static str, String);

/// Every refund, and what is forced on the next ones.
#[derive(Default)]
pub(super) struct RefundBook {
    pub refunds: BTreeMap<String, SimRefund>,
    /// Clock seconds of each order's last new refund (the one-minute rule).
    pub last_new_refund: HashMap<String, i64>,
    /// Results forced on the next refunds accepted for an order (or `*`).
    pub outcomes: HashMap<String, VecDeque<RefundResult>>,
    pub serial: u64,
}

impl RefundBook {
    pub fn of_order<'a>(
        &'a self,
        out_trade_no: &'a str,
    ) -> impl Iterator<Item = &'a SimRefund> + 'a {
        self.refunds
            .values()
            .filter(move |r| r.out_trade_no == out_trade_no)
    }

    /// The count, amount and frequency rules for a new refund of an order of `total_fee`.
    pub(super) fn check_new(
        &self,
        new: &NewRefund<'_>,
        total_fee: i64,
        now: i64,
    ) -> Result<(), Refusal> {
        if self.of_order(new.out_trade_no).count() >= MAX_REFUNDS_PER_ORDER {
            return Err(("ERROR", "退款次数超过限制，每笔订单最多退款50次".to_owned()));
        }
        // A closed refund gave nothing back; every other one counts against the total.
        let refunded: i64 = self
            .of_order(new.out_trade_no)
            .filter(|r| r.status != RefundResult::Closed)
            .map(|r| r.refund_fee)
            .sum();
        if refunded >= total_fee {
            return Err(("ERROR", "订单已全额退款".to_owned()));
        }
        if refunded + new.refund_fee > total_fee {
            return Err(("INVALID_REQUEST", "refund_fee大于可退金额".to_owned()));
        }
        // The console is a person at WeChat's website, not an API client.
        if new.source == "API"
            && let Some(last) = self.last_new_refund.get(new.out_trade_no)
            && now - last < REFUND_SPACING_SECS
        {
            return Err((
                "FREQUENCY_LIMITED",
                "频率限制，同一笔订单多次退款的请求需相隔1分钟".to_owned(),
            ));
        }
        Ok(())
    }

    pub(super) fn take_outcome(&mut self, out_trade_no: &str) -> RefundResult {
        [out_trade_no, super::ANY_ORDER]
            .iter()
            .find_map(|key| self.outcomes.get_mut(*key).and_then(VecDeque::pop_front))
            .unwrap_or(RefundResult::Succeeded)
    }
}

/// A new refund for a paid order, as the request or the merchant console asks for it.
pub(super) struct NewRefund<'a> {
    pub out_trade_no: &'a str,
    pub out_refund_no: &'a str,
    pub refund_fee: i64,
    pub refund_desc: &'a str,
    pub notify_url: &'a str,
    pub source: &'static str,
}
