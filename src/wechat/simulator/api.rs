//! WeChat's own endpoints: `/pay/unifiedorder`, `/pay/orderquery`, `/pay/closeorder` and
//! `/sns/jscode2session`, checked the way WeChat checks them.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::Simulator;
use super::state::{Call, Forced, SimOrder, TradeState};
use crate::wechat::params::{self, ParamError, beijing_time, check_text};
use crate::wechat::sign::{SignType, detect_sign_type, nonce, random_alphanumeric, sign, verify};
use crate::wechat::{ApiKey, Fields, xml};

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
    fn label(&self) -> String {
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
    fn name(self) -> &'static str {
        match self {
            Api::UnifiedOrder => "unifiedorder",
            Api::OrderQuery => "orderquery",
            Api::CloseOrder => "closeorder",
            Api::Refund { .. } => "refund",
            Api::RefundQuery => "refundquery",
        }
    }

    fn client_cert(self) -> Option<bool> {
        match self {
            Api::Refund { client_cert } => Some(client_cert),
            _ => None,
        }
    }
}

pub(super) async fn unified_order(State(sim): State<Simulator>, body: Bytes) -> Response {
    sim.pay_call(Api::UnifiedOrder, &body).await
}

pub(super) async fn order_query(State(sim): State<Simulator>, body: Bytes) -> Response {
    sim.pay_call(Api::OrderQuery, &body).await
}

pub(super) async fn close_order(State(sim): State<Simulator>, body: Bytes) -> Response {
    sim.pay_call(Api::CloseOrder, &body).await
}

/// How a call is delivered, decided by faults before or after handling.
enum Delivery {
    Normal,
    BadSignature,
    Hang,
}

impl Simulator {
    pub(super) async fn pay_call(&self, api: Api, body: &[u8]) -> Response {
        let faults = self.state().faults.clone();
        if faults.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
        }
        let fields = match xml::parse(body, xml::DEFAULT_BODY_LIMIT) {
            Ok(fields) => fields,
            Err(e) => {
                self.record(api, None, BTreeMap::new(), format!("RETURN_FAIL: {e}"));
                return return_fail("XML格式错误");
            }
        };
        let out_trade_no = fields.non_empty("out_trade_no").map(str::to_owned);
        let business: BTreeMap<String, String> = fields
            .iter()
            .filter(|(name, _)| !matches!(*name, "nonce_str" | "sign"))
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        // The reply is signed the way the request was; MD5 when that is unreadable.
        let sign_type = detect_sign_type(&fields).unwrap_or(SignType::Md5);

        let forced = self.state().take_forced(out_trade_no.as_deref());
        let mut delivery = if faults.bad_signature {
            Delivery::BadSignature
        } else {
            Delivery::Normal
        };
        let before_handling = match forced {
            Some(Forced::Http500) => Some(None),
            Some(Forced::SystemError) => Some(Some(Answer::Fail(
                "SYSTEMERROR".into(),
                "系统错误".to_owned(),
            ))),
            Some(Forced::ErrCode {
                err_code,
                err_code_des,
            }) => Some(Some(Answer::Fail(err_code, err_code_des))),
            Some(Forced::ReturnFail { return_msg }) => Some(Some(Answer::ReturnFail(return_msg))),
            Some(Forced::Hang) => {
                delivery = Delivery::Hang;
                None
            }
            Some(Forced::BadSignature) => {
                delivery = Delivery::BadSignature;
                None
            }
            Some(Forced::PaidElsewhere) => {
                self.pay_elsewhere(&fields, &business, sign_type);
                None
            }
            None if rand::random::<f64>() < faults.http_500_share => Some(None),
            None if rand::random::<f64>() < faults.systemerror_share => Some(Some(Answer::Fail(
                "SYSTEMERROR".into(),
                "系统错误".to_owned(),
            ))),
            None => {
                if rand::random::<f64>() < faults.hang_share {
                    delivery = Delivery::Hang;
                }
                None
            }
        };

        let answer = match before_handling {
            Some(None) => {
                self.record(api, out_trade_no, business, "HTTP_500".into());
                return (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
                    .into_response();
            }
            Some(Some(answer)) => answer,
            None => self.handle(api, &fields, &business),
        };
        let outcome = match delivery {
            Delivery::Hang => format!("HANG after {}", answer.label()),
            _ => answer.label(),
        };
        self.record(api, out_trade_no, business, outcome);

        let key = match delivery {
            Delivery::BadSignature => ApiKey::new("not-the-merchant-key-not-the-key!"),
            _ => self.config().key.clone(),
        };
        let response = self.reply(answer, sign_type, &key);
        if let Delivery::Hang = delivery {
            tokio::time::sleep(Duration::from_millis(faults.hang_ms)).await;
            return (StatusCode::INTERNAL_SERVER_ERROR, "gateway timeout").into_response();
        }
        response
    }

    pub(super) fn record(
        &self,
        api: Api,
        out_trade_no: Option<String>,
        business: BTreeMap<String, String>,
        outcome: String,
    ) {
        self.state().record(Call {
            api: api.name().to_owned(),
            out_trade_no,
            business,
            at_ms: chrono::Utc::now().timestamp_millis(),
            outcome,
            client_cert: api.client_cert(),
        });
    }

    fn reply(&self, answer: Answer, sign_type: SignType, key: &ApiKey) -> Response {
        let mut fields = match answer {
            Answer::ReturnFail(msg) => return return_fail(&msg),
            Answer::Fail(code, description) => Fields::from_iter([
                ("result_code", "FAIL"),
                ("err_code", code.as_str()),
                ("err_code_des", description.as_str()),
            ]),
            Answer::Success(extra) => {
                let mut fields = Fields::from_iter([("result_code", "SUCCESS")]);
                for (name, value) in extra.iter() {
                    fields.set(name, value);
                }
                fields
            }
        };
        fields.set("return_code", "SUCCESS");
        fields.set("return_msg", "OK");
        fields.set("appid", &self.config().appid);
        fields.set("mch_id", &self.config().mch_id);
        fields.set("nonce_str", nonce());
        let signature = sign(fields.iter(), key, sign_type);
        fields.set("sign", signature);
        xml_response(xml::to_xml(fields.iter()))
    }

    /// Protocol checks shared by the three pay APIs, then the API's own handling.
    fn handle(&self, api: Api, fields: &Fields, business: &BTreeMap<String, String>) -> Answer {
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
    fn pay_elsewhere(
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

fn prepay_fields(prepay_id: &str) -> Fields {
    Fields::from_iter([("trade_type", "JSAPI"), ("prepay_id", prepay_id)])
}

/// `wx` + Beijing time + 20 random characters, like `wx201410272009395522657a690389285100`.
fn new_prepay_id(now: chrono::DateTime<chrono::Utc>) -> String {
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

pub(super) fn return_fail(message: &str) -> Response {
    xml_response(xml::to_xml([
        ("return_code", "FAIL"),
        ("return_msg", message),
    ]))
}

fn xml_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response()
}

#[derive(Deserialize)]
pub(super) struct CodeQuery {
    #[serde(default)]
    appid: String,
    #[serde(default)]
    secret: String,
    #[serde(default)]
    js_code: String,
    #[serde(default)]
    grant_type: String,
}

/// `jscode2session`. A code is single-use. Codes starting with `invalid` are refused
/// (40029), `blocked` (40226), `busy` (-1). The part before a `#` names the user, so
/// `alice#1` and `alice#2` log the same openid in twice.
pub(super) async fn code_to_session(
    State(sim): State<Simulator>,
    Query(query): Query<CodeQuery>,
) -> Response {
    let config = sim.config();
    let (errcode, errmsg) = if query.appid != config.appid {
        (40013, "invalid appid")
    } else if query.secret != config.app_secret {
        (40125, "invalid appsecret")
    } else if query.grant_type != "authorization_code" {
        (40002, "invalid grant_type")
    } else if query.js_code.is_empty() {
        (41008, "missing code")
    } else if query.js_code.starts_with("invalid") {
        (40029, "invalid code")
    } else if query.js_code.starts_with("blocked") {
        (40226, "code blocked")
    } else if query.js_code.starts_with("busy") {
        (-1, "system error")
    } else if !sim.state().used_codes.insert(query.js_code.clone()) {
        (40163, "code been used")
    } else {
        (0, "")
    };
    sim.state().record(Call {
        api: "jscode2session".into(),
        out_trade_no: None,
        business: BTreeMap::new(),
        at_ms: chrono::Utc::now().timestamp_millis(),
        outcome: errcode.to_string(),
        client_cert: None,
    });
    let body = if errcode != 0 {
        serde_json::json!({ "errcode": errcode, "errmsg": errmsg })
    } else {
        let user = query.js_code.split('#').next().unwrap_or_default();
        let digest = Sha256::digest(format!("{}:{user}", config.appid));
        let openid = format!(
            "o{}",
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)[..27]
        );
        let session_key =
            base64::engine::general_purpose::STANDARD.encode(random_alphanumeric(16).as_bytes());
        serde_json::json!({ "openid": openid, "session_key": session_key })
    };
    // WeChat's login API is known to answer with text/plain; clients must not depend on it.
    ([(header::CONTENT_TYPE, "text/plain")], body.to_string()).into_response()
}
