//! What the payment provider's operations take and give back, whatever protocol version
//! speaks to it. The workers and the domain layer see only these types; each protocol
//! version (`wechat::v2` today) turns them into its own requests and reduces its replies to
//! them. A new operation (refund, refund query, bill download) adds its input and outcome
//! here, next to a decision table in [`crate::decide`].

use serde::{Deserialize, Serialize};

use crate::decide::Reply;

/// The facts of a payment, from a verified notify or an order query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub out_trade_no: String,
    pub transaction_id: String,
    /// Fen, what the order costs (coupons included).
    pub total_fee: i64,
    /// Fen, what the payer's own money covered.
    pub cash_fee: i64,
    /// `yyyyMMddHHmmss`, Beijing time, as WeChat wrote it.
    pub time_end: String,
}

/// Exactly what the mini-program passes to `wx.requestPayment`, signed by the protocol version
/// that made the prepay call. `appId` is signed but not sent: the running mini-program's own
/// AppID is used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PayParams {
    /// Unix time in seconds, as a string (not milliseconds, not a number).
    #[serde(rename = "timeStamp")]
    pub time_stamp: String,
    #[serde(rename = "nonceStr")]
    pub nonce_str: String,
    /// `prepay_id=<prepay_id>`.
    pub package: String,
    /// The algorithm of `paySign` (v2: `MD5` or `HMAC-SHA256`, the prepay call's own).
    #[serde(rename = "signType")]
    pub sign_type: String,
    #[serde(rename = "paySign")]
    pub pay_sign: String,
}

/// An order as the provider is asked to take it, before any protocol shapes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepayInput {
    pub out_trade_no: String,
    /// What the payer sees (`body` in v2).
    pub description: String,
    /// The merchant's own data, returned in the notify.
    pub attach: String,
    pub total_fee: i64,
    pub payer_ip: String,
    pub openid: String,
    /// Unix milliseconds: the order's creation and the end of its payment window.
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
}

/// The fields of an order the merchant's backend supplies, checked before anything is stored.
#[derive(Debug, Clone, Copy)]
pub struct OrderFields<'a> {
    pub openid: &'a str,
    pub description: &'a str,
    pub attach: &'a str,
    pub total_fee: i64,
    pub out_trade_no: Option<&'a str>,
}

/// A request field the provider would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ParamError {
    pub field: &'static str,
    pub reason: String,
}

impl ParamError {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        ParamError {
            field,
            reason: reason.into(),
        }
    }
}

/// What one prepay call came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepayOutcome {
    pub reply: Reply,
    /// The prepay_id and signed pay params, when the reply is a trusted success carrying one.
    pub prepaid: Option<Prepaid>,
}

/// A prepay the provider granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepaid {
    pub prepay_id: String,
    pub pay_params: PayParams,
}

/// What one order query came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryOutcome {
    pub reply: Reply,
    /// `SUCCESS`, `NOTPAY`, `CLOSED`, `USERPAYING`, … from a trusted reply only.
    pub trade_state: Option<String>,
    /// The payment, when a trusted reply reports one with every field present.
    pub payment: Option<Payment>,
}

/// Why stored prepay parameters cannot be sent (they were written by another version, or
/// damaged): the order cannot be prepaid as it stands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored parameters unreadable: {0}")]
pub struct UnreadableParams(pub String);

/// A refund as the provider is asked to make it, before any protocol shapes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundInput {
    pub out_trade_no: String,
    pub out_refund_no: String,
    /// The order's amount, as paid.
    pub total_fee: i64,
    pub refund_fee: i64,
    /// Shown to the payer (`refund_desc` in v2); empty for none.
    pub reason: String,
}

/// What one refund request came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundOutcome {
    /// A short label of the reply for metrics and history (`Reply::label`).
    pub label: String,
    pub decision: crate::refund::RefundDecision,
    /// The provider's refund id, when it accepted this very refund.
    pub refund_id: Option<String>,
}

/// What one refund query about one refund came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundQueryOutcome {
    pub label: String,
    pub decision: crate::refund::RefundQueryDecision,
    /// The provider's refund id and amount, when its trusted reply listed the refund.
    pub refund_id: Option<String>,
    pub refund_fee: Option<i64>,
}

/// A refund notify opened with our key: the provider's claim about one refund, to be checked
/// against a refund we know before it is believed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundNotice {
    pub out_refund_no: String,
    pub out_trade_no: String,
    pub refund_id: String,
    pub total_fee: i64,
    pub refund_fee: i64,
    /// Succeeded, Closed or Abnormal (a notify reports only final results).
    pub result: crate::refund::RefundResult,
    /// Made by hand in the provider's merchant console, not requested by us.
    pub from_console: bool,
}
