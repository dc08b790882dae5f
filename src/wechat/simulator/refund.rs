//! Refunds as WeChat holds them: `/secapi/pay/refund` (client certificate required) and
//! `/pay/refundquery`, with WeChat's rules (docs/refunds.md): the order must be paid, the total
//! must be the order's, refunds add up to at most the total, 50 per order, within a year of the
//! payment, a minute between two refunds of one order, and the same `out_refund_no` with the
//! same amount is the same refund. An accepted refund turns `SUCCESS` (or a forced result)
//! after `Faults::refund_result_ms`, and its encrypted notify is POSTed until acknowledged.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use minipay_jobs::RefundResult;

use super::Simulator;
use super::api::{Answer, Api};
use super::state::{Delivery, TradeState};
use super::tls::ClientCert;
use crate::wechat::v2::refund::{check_out_refund_no, check_refund_desc};
use crate::wechat::{Fields, params};

/// What nginx in front of `/secapi/` answers a client without a certificate.
pub const NO_CLIENT_CERT: &str = "No required SSL certificate was sent";

/// Refunds per order WeChat allows.
const MAX_REFUNDS_PER_ORDER: usize = 50;
/// Seconds between two new refunds of one order.
const REFUND_SPACING_SECS: i64 = 60;
/// A refund must come within a year of the payment.
const REFUND_WINDOW_SECS: i64 = 365 * 24 * 3600;

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
    fn check_new(&self, new: &NewRefund<'_>, total_fee: i64, now: i64) -> Result<(), Refusal> {
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

    fn take_outcome(&mut self, out_trade_no: &str) -> RefundResult {
        [out_trade_no, super::ANY_ORDER]
            .iter()
            .find_map(|key| self.outcomes.get_mut(*key).and_then(VecDeque::pop_front))
            .unwrap_or(RefundResult::Succeeded)
    }
}

/// `POST /secapi/pay/refund`: only over TLS with a client certificate, as WeChat.
pub(super) async fn secapi_refund(
    State(sim): State<Simulator>,
    cert: Option<Extension<ClientCert>>,
    body: Bytes,
) -> Response {
    let presented = matches!(cert, Some(Extension(ClientCert(true))));
    if !presented {
        sim.record(
            Api::Refund { client_cert: false },
            None,
            BTreeMap::new(),
            "HTTP_400".into(),
        );
        let page = format!(
            "<html>\r\n<head><title>400 {NO_CLIENT_CERT}</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<center>{NO_CLIENT_CERT}</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
        );
        return (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "text/html")],
            page,
        )
            .into_response();
    }
    sim.pay_call(Api::Refund { client_cert: true }, &body).await
}

/// `POST /pay/refundquery` (no certificate needed).
pub(super) async fn refund_query(State(sim): State<Simulator>, body: Bytes) -> Response {
    sim.pay_call(Api::RefundQuery, &body).await
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

impl Simulator {
    /// Handles a signed, verified refund request.
    pub(super) fn refund_request(&self, fields: &Fields) -> Answer {
        let text = |name: &str| fields.get(name).unwrap_or_default();
        for required in ["out_refund_no", "total_fee", "refund_fee"] {
            if fields.non_empty(required).is_none() {
                return Answer::Fail("LACK_PARAMS".into(), format!("缺少参数{required}"));
            }
        }
        let (total_fee, refund_fee) = match (fen(text("total_fee")), fen(text("refund_fee"))) {
            (Some(total), Some(refund)) if refund >= 1 => (total, refund),
            _ => return Answer::ReturnFail("invalid refund_fee".into()),
        };
        if refund_fee > total_fee {
            return Answer::ReturnFail("invalid refund_fee".into());
        }
        if let Err(e) = check_out_refund_no(text("out_refund_no"))
            .and_then(|()| check_refund_desc(text("refund_desc")))
        {
            return Answer::Fail("PARAM_ERROR".into(), format!("{}参数格式错误", e.field));
        }
        if let Some(url) = fields.non_empty("notify_url")
            && params::check_notify_url(url).is_err()
        {
            return Answer::Fail("PARAM_ERROR".into(), "notify_url参数格式错误".into());
        }
        let out_trade_no = match self.find_order(fields) {
            Ok(out_trade_no) => out_trade_no,
            Err(refusal) => return refusal,
        };
        let order_total = self.order_total(&out_trade_no);
        if order_total != Some(total_fee) {
            return Answer::Fail("PARAM_ERROR".into(), "订单金额与原订单不一致".into());
        }
        let notify_url = fields
            .non_empty("notify_url")
            .map(str::to_owned)
            .unwrap_or_else(|| self.default_refund_notify_url(&out_trade_no));
        let created = self.create_refund(NewRefund {
            out_trade_no: &out_trade_no,
            out_refund_no: text("out_refund_no"),
            refund_fee,
            refund_desc: text("refund_desc"),
            notify_url: &notify_url,
            source: "API",
        });
        match created {
            Ok(refund) => Answer::Success(accepted_fields(&refund)),
            Err((code, description)) => Answer::Fail(code.into(), description),
        }
    }

    /// The paid order a refund request names (`transaction_id` first, as WeChat reads it).
    fn find_order(&self, fields: &Fields) -> Result<String, Answer> {
        let state = self.state();
        let found = match (
            fields.non_empty("transaction_id"),
            fields.non_empty("out_trade_no"),
        ) {
            (Some(txn), _) => state
                .orders
                .iter()
                .find(|(_, o)| o.transaction_id.as_deref() == Some(txn))
                .ok_or_else(|| {
                    Answer::Fail("INVALID_TRANSACTIONID".into(), "无效transaction_id".into())
                })?,
            (None, Some(otn)) => state
                .orders
                .get_key_value(otn)
                .ok_or_else(|| Answer::Fail("ORDERNOTEXIST".into(), "订单不存在".into()))?,
            (None, None) => {
                return Err(Answer::ReturnFail(
                    "out_trade_no或transaction_id参数缺失".into(),
                ));
            }
        };
        match found.1.trade_state {
            // Refunds need a payment: an unpaid order has no transaction to refund.
            TradeState::Success | TradeState::Refund => Ok(found.0.clone()),
            _ => Err(Answer::Fail("ORDERNOTEXIST".into(), "订单未支付".into())),
        }
    }

    fn order_total(&self, out_trade_no: &str) -> Option<i64> {
        self.state()
            .orders
            .get(out_trade_no)?
            .business
            .get("total_fee")?
            .parse()
            .ok()
    }

    /// Where a refund without its own notify_url is notified: the order's last refund's URL,
    /// else its payment notify_url (merchants often configure one URL for both).
    pub(super) fn default_refund_notify_url(&self, out_trade_no: &str) -> String {
        let state = self.state();
        let last_refund = state
            .refunds
            .of_order(out_trade_no)
            .max_by_key(|r| r.requested_at)
            .map(|r| r.notify_url.clone());
        last_refund
            .or_else(|| {
                state
                    .orders
                    .get(out_trade_no)
                    .and_then(|o| o.business.get("notify_url").cloned())
            })
            .unwrap_or_default()
    }

    /// Applies WeChat's refund rules and records the refund; an existing `out_refund_no` with
    /// the same amount is the same refund. Refusals are `(err_code, err_code_des)`.
    pub(super) fn create_refund(&self, new: NewRefund<'_>) -> Result<SimRefund, Refusal> {
        let now = self.clock().unix();
        let faults = self.state().faults.clone();
        let mut state = self.state();
        let order = state
            .orders
            .get(new.out_trade_no)
            .ok_or(("ORDERNOTEXIST", "订单不存在".to_owned()))?;
        let total_fee: i64 = order
            .business
            .get("total_fee")
            .and_then(|f| f.parse().ok())
            .unwrap_or(0);
        let transaction_id = order.transaction_id.clone().unwrap_or_default();
        let paid_at = order
            .time_end
            .as_deref()
            .and_then(params::parse_beijing_time)
            .map_or(now, |t| t.timestamp());
        if let Some(existing) = state.refunds.refunds.get(new.out_refund_no) {
            return if existing.out_trade_no == new.out_trade_no
                && existing.refund_fee == new.refund_fee
            {
                Ok(existing.clone())
            } else {
                Err((
                    "REFUND_FEE_MISMATCH",
                    "订单金额或退款金额与之前请求不一致，请核实后再试".to_owned(),
                ))
            };
        }
        if now - paid_at > REFUND_WINDOW_SECS {
            return Err(("TRADE_OVERDUE", "订单已经超过退款期限".to_owned()));
        }
        state.refunds.check_new(&new, total_fee, now)?;
        if faults.refund_notenough {
            return Err(("NOTENOUGH", "基本账户余额不足，请充值后重新发起".to_owned()));
        }
        let book = &mut state.refunds;
        book.serial += 1;
        let refund = SimRefund {
            out_refund_no: new.out_refund_no.to_owned(),
            out_trade_no: new.out_trade_no.to_owned(),
            transaction_id,
            refund_id: format!("503{now:014}{:012}", book.serial % 1_000_000_000_000),
            refund_fee: new.refund_fee,
            total_fee,
            refund_desc: new.refund_desc.to_owned(),
            notify_url: new.notify_url.to_owned(),
            source: new.source,
            requested_at: now,
            status: RefundResult::Processing,
            outcome: book.take_outcome(new.out_trade_no),
            success_time: None,
            deliveries: Vec::new(),
        };
        book.last_new_refund
            .insert(new.out_trade_no.to_owned(), now);
        book.refunds
            .insert(refund.out_refund_no.clone(), refund.clone());
        if let Some(order) = state.orders.get_mut(new.out_trade_no) {
            order.trade_state = TradeState::Refund;
        }
        drop(state);
        let sim = self.clone();
        let out_refund_no = refund.out_refund_no.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(faults.refund_result_ms)).await;
            sim.settle_refund(&out_refund_no, None);
        });
        Ok(refund)
    }
}

/// Digits only, as WeChat reads an amount.
fn fen(value: &str) -> Option<i64> {
    if value.is_empty() || value.len() > 12 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// The fields of an accepted refund request's reply.
fn accepted_fields(refund: &SimRefund) -> Fields {
    let mut fields = Fields::from_iter([
        ("transaction_id", refund.transaction_id.as_str()),
        ("out_trade_no", refund.out_trade_no.as_str()),
        ("out_refund_no", refund.out_refund_no.as_str()),
        ("refund_id", refund.refund_id.as_str()),
    ]);
    for (name, fee) in [
        ("refund_fee", refund.refund_fee),
        ("settlement_refund_fee", refund.refund_fee),
        ("total_fee", refund.total_fee),
        ("settlement_total_fee", refund.total_fee),
        ("cash_fee", refund.total_fee),
        ("cash_refund_fee", refund.refund_fee),
    ] {
        fields.set(name, fee.to_string());
    }
    fields.set("refund_channel", "");
    fields.set("coupon_refund_fee", "0");
    fields
}
