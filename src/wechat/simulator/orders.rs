//! WeChat Pay's order APIs as WeChat answers them: the protocol checks every call gets, then
//! `unifiedorder` (with re-entry and the field rules), `orderquery` and `closeorder` (with
//! its 5-minute rule).

use std::collections::BTreeMap;

use minipay_jobs::ParamError;

use super::Simulator;
use super::state::{SimOrder, TradeState, new_prepay_id, trade_fields, transaction_id};
use crate::wechat::v2::Fields;
use crate::wechat::v2::params::{self, beijing_time, check_text};
use crate::wechat::v2::sign::{SignType, detect_sign_type, verify};

/// The simulator's answer to one pay call, before faults decide how it is delivered.
pub(super) enum Answer {
    /// Unsigned `return_code=FAIL`.
    ReturnFail(String),
    /// Signed `result_code=FAIL`.
    Fail(String, String),
    /// Signed `result_code=SUCCESS` with these extra fields.
    Success(Fields),
}

impl Answer {
    pub(super) fn label(&self) -> String {
        match self {
            Answer::ReturnFail(msg) => format!("RETURN_FAIL: {msg}"),
            Answer::Fail(code, _) => code.clone(),
            Answer::Success(_) => "SUCCESS".to_owned(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Api {
    UnifiedOrder,
    OrderQuery,
    CloseOrder,
    /// `/secapi/pay/refund`, and whether a client certificate came with it.
    Refund {
        client_cert: bool,
    },
    RefundQuery,
}

impl Api {
    pub(super) fn name(self) -> &'static str {
        match self {
            Api::UnifiedOrder => "unifiedorder",
            Api::OrderQuery => "orderquery",
            Api::CloseOrder => "closeorder",
            Api::Refund { .. } => "refund",
            Api::RefundQuery => "refundquery",
        }
    }

    pub(super) fn client_cert(self) -> Option<bool> {
        match self {
            Api::Refund { client_cert } => Some(client_cert),
            _ => None,
        }
    }
}

impl Simulator {
    /// Protocol checks shared by the three pay APIs, then the API's own handling.
    pub(super) fn handle(
        &self,
        api: Api,
        fields: &Fields,
        business: &BTreeMap<String, String>,
    ) -> Answer {
        let config = self.config();
        if fields.get("mch_id") != Some(config.mch_id.as_str()) {
            return Answer::ReturnFail("mch_id参数格式错误".into());
        }
        if fields.non_empty("appid").is_none() {
            return Answer::ReturnFail("appid参数缺失".into());
        }
        match fields.non_empty("nonce_str") {
            Some(n) if n.len() <= 32 => {}
            _ => return Answer::ReturnFail("nonce_str参数长度有误".into()),
        }
        if let Some(name) = fields.non_empty("sign_type")
            && name.parse::<SignType>().is_err()
        {
            return Answer::ReturnFail("sign_type参数格式错误".into());
        }
        if verify(fields, &config.key).is_err() {
            return Answer::ReturnFail("签名错误".into());
        }
        if fields.get("appid") != Some(config.appid.as_str()) {
            return Answer::Fail("APPID_MCHID_NOT_MATCH".into(), "appid和mch_id不匹配".into());
        }
        match api {
            Api::UnifiedOrder => self.unified_order(fields, business),
            Api::OrderQuery => self.order_query(fields),
            Api::CloseOrder => self.close_order(fields),
            Api::Refund { .. } => self.refund_request(fields),
            Api::RefundQuery => self.refund_query_request(fields),
        }
    }

    fn unified_order(&self, fields: &Fields, business: &BTreeMap<String, String>) -> Answer {
        for required in [
            "body",
            "out_trade_no",
            "total_fee",
            "spbill_create_ip",
            "notify_url",
            "trade_type",
        ] {
            if fields.non_empty(required).is_none() {
                return Answer::Fail("LACK_PARAMS".into(), format!("缺少参数{required}"));
            }
        }
        if let Err(refusal) = self.check_unified_order(fields) {
            return refusal;
        }
        let out_trade_no = fields.get("out_trade_no").unwrap_or_default();
        let sign_type = detect_sign_type(fields).unwrap_or(SignType::Md5);
        let now = self.clock().unix();
        let mut state = self.state();
        if let Some(order) = state.orders.get(out_trade_no) {
            return match order.trade_state {
                TradeState::Success | TradeState::Refund => {
                    Answer::Fail("ORDERPAID".into(), "该订单已支付".into())
                }
                TradeState::Closed => Answer::Fail("ORDERCLOSED".into(), "该订单已关闭".into()),
                _ if order.business != *business => {
                    Answer::Fail("INVALID_REQUEST".into(), "201 商户订单号重复".into())
                }
                _ => Answer::Success(prepay_fields(&order.prepay_id)),
            };
        }
        let prepay_id = new_prepay_id(self.clock().now());
        state.orders.insert(
            out_trade_no.to_owned(),
            SimOrder::new(business.clone(), sign_type, prepay_id.clone(), now),
        );
        Answer::Success(prepay_fields(&prepay_id))
    }

    /// Field rules of unifiedorder, answered the way WeChat answers each.
    fn check_unified_order(&self, fields: &Fields) -> Result<(), Answer> {
        let text = |name: &str| fields.get(name).unwrap_or_default();
        let format_error = |e: ParamError| Answer::ReturnFail(format!("{}参数格式错误", e.field));
        if text("trade_type") != "JSAPI" {
            return Err(Answer::ReturnFail("trade_type参数格式错误".into()));
        }
        if fields.non_empty("openid").is_none() {
            return Err(Answer::ReturnFail("JSAPI支付必须传openid".into()));
        }
        params::check_out_trade_no(text("out_trade_no")).map_err(format_error)?;
        for (name, required) in [("body", true), ("attach", false)] {
            if let Err(e) = check_text(name, text(name), required) {
                return Err(if text(name).chars().any(|c| c.len_utf8() == 4) {
                    Answer::Fail("NOT_UTF8".into(), "编码格式错误".into())
                } else {
                    Answer::ReturnFail(format!("{}参数长度有误", e.field))
                });
            }
        }
        let fee = text("total_fee");
        if fee.is_empty() || !fee.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Answer::ReturnFail("total_fee参数格式错误".into()));
        }
        params::check_total_fee(fee.parse().unwrap_or(0)).map_err(format_error)?;
        params::check_ip(text("spbill_create_ip")).map_err(format_error)?;
        params::check_notify_url(text("notify_url")).map_err(format_error)?;
        if let Some(start) = fields.non_empty("time_start") {
            params::parse_beijing_time(start)
                .ok_or_else(|| Answer::ReturnFail("time_start参数格式错误".into()))?;
        }
        if let Some(expire) = fields.non_empty("time_expire") {
            params::check_time_expire(expire, self.clock().now()).map_err(|e| {
                if params::parse_beijing_time(expire).is_none() {
                    Answer::ReturnFail("time_expire参数格式错误".into())
                } else {
                    Answer::ReturnFail(e.reason)
                }
            })?;
        }
        Ok(())
    }

    /// `Forced::PaidElsewhere`: create the order if this is its first call, then pay it
    /// without a notify.
    pub(super) fn pay_elsewhere(
        &self,
        fields: &Fields,
        business: &BTreeMap<String, String>,
        sign_type: SignType,
    ) {
        let Some(out_trade_no) = fields.non_empty("out_trade_no") else {
            return;
        };
        let now = self.clock().now();
        let mut state = self.state();
        state.next_transaction += 1;
        let transaction_id = transaction_id(now, state.next_transaction);
        let order = state
            .orders
            .entry(out_trade_no.to_owned())
            .or_insert_with(|| {
                SimOrder::new(
                    business.clone(),
                    sign_type,
                    new_prepay_id(now),
                    now.timestamp(),
                )
            });
        let total = order
            .business
            .get("total_fee")
            .and_then(|f| f.parse().ok())
            .unwrap_or(0);
        order.trade_state = TradeState::Success;
        order.transaction_id = Some(transaction_id);
        order.time_end = Some(beijing_time(now));
        order.cash_fee = Some(total);
    }

    fn order_query(&self, fields: &Fields) -> Answer {
        let state = self.state();
        let found = match (
            fields.non_empty("transaction_id"),
            fields.non_empty("out_trade_no"),
        ) {
            (Some(txn), _) => state
                .orders
                .iter()
                .find(|(_, o)| o.transaction_id.as_deref() == Some(txn)),
            (None, Some(otn)) => state.orders.get_key_value(otn),
            (None, None) => {
                return Answer::ReturnFail("out_trade_no或transaction_id参数缺失".into());
            }
        };
        let Some((out_trade_no, order)) = found else {
            return Answer::Fail("ORDERNOTEXIST".into(), "order not exist".into());
        };
        Answer::Success(trade_fields(out_trade_no, order))
    }

    fn close_order(&self, fields: &Fields) -> Answer {
        let Some(out_trade_no) = fields.non_empty("out_trade_no") else {
            return Answer::ReturnFail("out_trade_no参数缺失".into());
        };
        let now = self.clock().unix();
        let mut state = self.state();
        let Some(order) = state.orders.get_mut(out_trade_no) else {
            return Answer::Fail("ORDERNOTEXIST".into(), "订单不存在".into());
        };
        match order.trade_state {
            TradeState::Success | TradeState::Refund => {
                Answer::Fail("ORDERPAID".into(), "订单已支付，不能发起关单".into())
            }
            TradeState::Closed => Answer::Fail("ORDERCLOSED".into(), "订单已关闭".into()),
            TradeState::Userpaying => {
                Answer::Fail("FREQUENCY_LIMITED".into(), "你的操作过于频繁".into())
            }
            _ if now - order.created_at < params::MIN_EXPIRE_SECS => {
                let age = now - order.created_at;
                state
                    .close_violations
                    .push(format!("{out_trade_no}: closeorder {age} s after creation"));
                Answer::Fail(
                    "TRADE_STATE_ERROR".into(),
                    "订单生成后不能马上调用关单接口，最短调用时间间隔为5分钟".into(),
                )
            }
            _ => {
                order.trade_state = TradeState::Closed;
                Answer::Success(Fields::from_iter([("result_msg", "OK")]))
            }
        }
    }
}

fn prepay_fields(prepay_id: &str) -> Fields {
    Fields::from_iter([("trade_type", "JSAPI"), ("prepay_id", prepay_id)])
}
