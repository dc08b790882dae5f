//! What each WeChat Pay answer means for an order (docs/wechat-pay-v2.md §4, §7).
//!
//! The caller reduces one HTTP exchange to a [`Reply`]; the functions here turn it into a
//! decision. The rules, in WeChat's own order: protocol (`return_code`) first, then business
//! (`result_code` / `err_code`), then trade state.

/// One exchange with the payment provider, reduced to what a decision needs. Every protocol
/// version reduces its replies to this (v2: `return_code`, `result_code`, `err_code`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// No trustworthy answer: WeChat may or may not have acted (§4.4).
    Unknown(Transport),
    /// HTTP 4xx: WeChat refused the request itself; usually our bug.
    HttpRejected { status: u16 },
    /// `return_code=FAIL`: protocol-level refusal, unsigned, with a human message.
    ReturnFail { return_msg: String },
    /// `return_code=SUCCESS` but the reply's signature, appid or mch_id is not right.
    Untrusted,
    /// Signed reply with `result_code=FAIL`.
    BusinessFail {
        err_code: String,
        err_code_des: String,
    },
    /// Signed reply with `return_code` and `result_code` both `SUCCESS`.
    Success,
}

impl Reply {
    /// A short label for metrics and logs: `SUCCESS`, WeChat's err_code, `RETURN_FAIL`,
    /// `UNTRUSTED`, `HTTP_4xx`, `CONNECT`, `TIMEOUT`, `HTTP_5xx` or `UNREADABLE`.
    pub fn label(&self) -> String {
        match self {
            Reply::Success => "SUCCESS".into(),
            Reply::BusinessFail { err_code, .. } if !err_code.is_empty() => err_code.clone(),
            Reply::BusinessFail { .. } => "RESULT_FAIL".into(),
            Reply::ReturnFail { .. } => "RETURN_FAIL".into(),
            Reply::Untrusted => "UNTRUSTED".into(),
            Reply::HttpRejected { status } => format!("HTTP_{status}"),
            Reply::Unknown(Transport::Connect) => "CONNECT".into(),
            Reply::Unknown(Transport::Timeout) => "TIMEOUT".into(),
            Reply::Unknown(Transport::ServerError(status)) => format!("HTTP_{status}"),
            Reply::Unknown(Transport::Unreadable) => "UNREADABLE".into(),
        }
    }
}

/// Why an exchange gave no trustworthy answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// DNS, TCP or TLS failed: the request never reached WeChat.
    Connect,
    /// Sent, but no full reply within the deadline.
    Timeout,
    /// HTTP 5xx.
    ServerError(u16),
    /// HTTP 200 whose body is not a WeChat XML reply (no `return_code`, not XML, ...).
    Unreadable,
}

/// A permanent refusal as the order's `error` shows it: WeChat's code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: String,
    pub message: String,
}

impl Failure {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Failure {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// What to do after a `unifiedorder` exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrepayDecision {
    /// Store the prepay_id and the signed pay params: the order is `ready`.
    Ready,
    /// Call again with the very same business parameters (new nonce and sign only).
    Retry { reason: String },
    /// WeChat refused this order for good: the order is `failed` with this error.
    Fail(Failure),
    /// The order is `failed` and an operator must act: credentials or account setup are wrong,
    /// so every other order is failing the same way.
    Alarm(Failure),
    /// Good news in disguise (`ORDERPAID`): confirm with an order query, then mark `paid`.
    ConfirmPaid,
}

/// `err_code`s WeChat documents as "call again with the same parameters".
const TRANSIENT_CODES: [&str; 3] = ["SYSTEMERROR", "FREQUENCY_LIMITED", "BIZERR_NEED_RETRY"];

/// `err_code`s that mean the merchant's setup is wrong, not this order.
const CONFIGURATION_CODES: [&str; 5] = [
    "NOAUTH",
    "APPID_NOT_EXIST",
    "MCHID_NOT_EXIST",
    "APPID_MCHID_NOT_MATCH",
    "SIGNERROR",
];

/// Decides after `unifiedorder` (docs/wechat-pay-v2.md §4.1, §4.2, §4.4).
pub fn after_unified_order(reply: &Reply) -> PrepayDecision {
    match reply {
        Reply::Success => PrepayDecision::Ready,
        // Re-entry with identical parameters is idempotent at WeChat (§3.4), so "maybe created"
        // is safe to retry.
        Reply::Unknown(transport) => PrepayDecision::Retry {
            reason: transport_reason(*transport),
        },
        // A reply we cannot trust is not an answer; the same parameters are safe to resend.
        Reply::Untrusted => PrepayDecision::Retry {
            reason: "reply signature, appid or mch_id did not verify".into(),
        },
        Reply::HttpRejected { status } => PrepayDecision::Alarm(Failure::new(
            "HTTP_REJECTED",
            format!("WeChat Pay answered HTTP {status}"),
        )),
        Reply::ReturnFail { return_msg } => match classify_return_msg(return_msg) {
            ReturnFailKind::Transient => PrepayDecision::Retry {
                reason: format!("return_code FAIL: {return_msg}"),
            },
            ReturnFailKind::Signature => {
                PrepayDecision::Alarm(Failure::new("SIGNERROR", return_msg))
            }
            ReturnFailKind::Permanent => {
                PrepayDecision::Fail(Failure::new("RETURN_FAIL", return_msg))
            }
        },
        Reply::BusinessFail {
            err_code,
            err_code_des,
        } => {
            if err_code == "ORDERPAID" {
                PrepayDecision::ConfirmPaid
            } else if TRANSIENT_CODES.contains(&err_code.as_str()) {
                PrepayDecision::Retry {
                    reason: format!("{err_code}: {err_code_des}"),
                }
            } else if CONFIGURATION_CODES.contains(&err_code.as_str()) {
                PrepayDecision::Alarm(Failure::new(err_code, err_code_des))
            } else {
                // ORDERCLOSED, OUT_TRADE_NO_USED, INVALID_REQUEST ("201 商户订单号重复"),
                // NOTENOUGH, LACK_PARAMS, XML_FORMAT_ERROR, NOT_UTF8, ... and codes WeChat may
                // add later: permanent by default (§4.2 "anything else").
                PrepayDecision::Fail(Failure::new(err_code, err_code_des))
            }
        }
    }
}

/// How a `return_code=FAIL` message is to be read (§4.2). Matching on text is a heuristic;
/// callers log the raw message always.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnFailKind {
    Transient,
    Signature,
    Permanent,
}

/// Classifies a `return_msg`.
pub fn classify_return_msg(return_msg: &str) -> ReturnFailKind {
    const TRANSIENT: [&str; 5] = [
        "频率限制",
        "系统繁忙",
        "系统错误",
        "系统超时",
        "SYSTEMERROR",
    ];
    if TRANSIENT.iter().any(|t| return_msg.contains(t)) {
        ReturnFailKind::Transient
    } else if return_msg.contains("签名") {
        ReturnFailKind::Signature
    } else {
        ReturnFailKind::Permanent
    }
}

fn transport_reason(transport: Transport) -> String {
    match transport {
        Transport::Connect => "could not connect to WeChat Pay".into(),
        Transport::Timeout => "WeChat Pay did not answer in time".into(),
        Transport::ServerError(status) => format!("WeChat Pay answered HTTP {status}"),
        Transport::Unreadable => "WeChat Pay's reply was not a readable XML reply".into(),
    }
}

/// The times an order-query decision depends on, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderClock {
    /// When the order (and its first unifiedorder) was created.
    pub created_at: i64,
    /// The order's `time_expire`.
    pub expires_at: i64,
    /// Now.
    pub now: i64,
}

/// WeChat refuses `closeorder` within 5 minutes of the order's creation (§7.2). The margin
/// absorbs clock skew between us and WeChat.
pub const CLOSE_NOT_BEFORE_SECS: i64 = 5 * 60 + 30;

impl OrderClock {
    /// The order's payment window is over.
    pub fn expired(&self) -> bool {
        self.now >= self.expires_at
    }

    /// `closeorder` may be called now.
    pub fn may_close(&self) -> bool {
        self.now >= self.created_at + CLOSE_NOT_BEFORE_SECS
    }
}

/// What to do after an `orderquery` on an order we consider `ready`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryDecision {
    /// WeChat holds the money: apply the payment (the same path as a notify).
    Paid,
    /// Unpaid and expired: call `closeorder`.
    Close,
    /// WeChat already closed it: the order is `closed`.
    Closed,
    /// Not settled yet (unpaid and not expired, or the user is paying): check again later.
    Wait,
    /// No answer this time: check again later.
    Retry { reason: String },
    /// WeChat's answer contradicts ours (e.g. it has no such order): keep the order, tell an
    /// operator.
    Alarm(Failure),
}

/// Decides after `orderquery` (§7.1, §4.3); `trade_state` is read only on [`Reply::Success`].
pub fn after_order_query(
    reply: &Reply,
    trade_state: Option<&str>,
    clock: OrderClock,
) -> QueryDecision {
    match reply {
        Reply::Success => match trade_state.unwrap_or("") {
            // REFUND: it was paid and a refund has started; the payment happened.
            "SUCCESS" | "REFUND" => QueryDecision::Paid,
            "CLOSED" | "REVOKED" => QueryDecision::Closed,
            "NOTPAY" | "PAYERROR" if clock.expired() && clock.may_close() => QueryDecision::Close,
            "NOTPAY" | "PAYERROR" | "USERPAYING" | "ACCEPT" => QueryDecision::Wait,
            other => QueryDecision::Alarm(Failure::new(
                "UNKNOWN_TRADE_STATE",
                format!("orderquery answered trade_state {other:?}"),
            )),
        },
        Reply::Unknown(transport) => QueryDecision::Retry {
            reason: transport_reason(*transport),
        },
        Reply::Untrusted => QueryDecision::Retry {
            reason: "reply signature, appid or mch_id did not verify".into(),
        },
        Reply::ReturnFail { return_msg } => match classify_return_msg(return_msg) {
            ReturnFailKind::Transient => QueryDecision::Retry {
                reason: format!("return_code FAIL: {return_msg}"),
            },
            _ => QueryDecision::Alarm(Failure::new("RETURN_FAIL", return_msg)),
        },
        Reply::HttpRejected { status } => QueryDecision::Alarm(Failure::new(
            "HTTP_REJECTED",
            format!("WeChat Pay answered HTTP {status}"),
        )),
        Reply::BusinessFail {
            err_code,
            err_code_des,
        } => {
            if TRANSIENT_CODES.contains(&err_code.as_str()) {
                QueryDecision::Retry {
                    reason: format!("{err_code}: {err_code_des}"),
                }
            } else {
                // ORDERNOTEXIST for an order that got a prepay_id, or a configuration error.
                QueryDecision::Alarm(Failure::new(err_code, err_code_des))
            }
        }
    }
}

/// What to do after a `closeorder`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseDecision {
    /// Closed (now or before): the order is `closed`.
    Closed,
    /// The user paid at the last moment: query, then mark `paid` ("请当作已支付的正常交易").
    ConfirmPaid,
    /// Try again at the next check.
    Retry { reason: String },
    /// A refusal an operator must look at; the order stays as it is.
    Alarm(Failure),
}

/// Decides after `closeorder` (§4.3, §7.2).
pub fn after_close_order(reply: &Reply) -> CloseDecision {
    match reply {
        Reply::Success => CloseDecision::Closed,
        Reply::Unknown(transport) => CloseDecision::Retry {
            reason: transport_reason(*transport),
        },
        Reply::Untrusted => CloseDecision::Retry {
            reason: "reply signature, appid or mch_id did not verify".into(),
        },
        Reply::ReturnFail { return_msg } => match classify_return_msg(return_msg) {
            ReturnFailKind::Transient => CloseDecision::Retry {
                reason: format!("return_code FAIL: {return_msg}"),
            },
            _ => CloseDecision::Alarm(Failure::new("RETURN_FAIL", return_msg)),
        },
        Reply::HttpRejected { status } => CloseDecision::Alarm(Failure::new(
            "HTTP_REJECTED",
            format!("WeChat Pay answered HTTP {status}"),
        )),
        Reply::BusinessFail {
            err_code,
            err_code_des,
        } => match err_code.as_str() {
            "ORDERCLOSED" => CloseDecision::Closed,
            "ORDERPAID" => CloseDecision::ConfirmPaid,
            // FREQUENCY_LIMITED on close: the user may be entering the password right now.
            code if TRANSIENT_CODES.contains(&code) => CloseDecision::Retry {
                reason: format!("{err_code}: {err_code_des}"),
            },
            _ => CloseDecision::Alarm(Failure::new(err_code, err_code_des)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(err_code: &'static str) -> Reply {
        Reply::BusinessFail {
            err_code: err_code.into(),
            err_code_des: "描述".into(),
        }
    }

    fn return_fail(return_msg: &str) -> Reply {
        Reply::ReturnFail {
            return_msg: return_msg.into(),
        }
    }

    #[derive(Debug, PartialEq)]
    enum P {
        Ready,
        Retry,
        Fail(&'static str),
        Alarm(&'static str),
        ConfirmPaid,
    }

    fn prepay(reply: Reply) -> P {
        match after_unified_order(&reply) {
            PrepayDecision::Ready => P::Ready,
            PrepayDecision::Retry { .. } => P::Retry,
            PrepayDecision::Fail(f) => P::Fail(leak(f.code)),
            PrepayDecision::Alarm(f) => P::Alarm(leak(f.code)),
            PrepayDecision::ConfirmPaid => P::ConfirmPaid,
        }
    }

    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }

    #[test]
    fn unified_order_decision_table() {
        let table: Vec<(Reply, P)> = vec![
            (Reply::Success, P::Ready),
            // §4.4: transport failures are "maybe created" -> same parameters again
            (Reply::Unknown(Transport::Connect), P::Retry),
            (Reply::Unknown(Transport::Timeout), P::Retry),
            (Reply::Unknown(Transport::ServerError(500)), P::Retry),
            (Reply::Unknown(Transport::ServerError(503)), P::Retry),
            (Reply::Unknown(Transport::Unreadable), P::Retry),
            (Reply::Untrusted, P::Retry),
            (
                Reply::HttpRejected { status: 404 },
                P::Alarm("HTTP_REJECTED"),
            ),
            // §4.2: return_code FAIL by message
            (return_fail("频率限制"), P::Retry),
            (return_fail("系统繁忙,请稍后再试"), P::Retry),
            (return_fail("签名错误"), P::Alarm("SIGNERROR")),
            (return_fail("错误的签名，验签失败"), P::Alarm("SIGNERROR")),
            (return_fail("body参数长度有误"), P::Fail("RETURN_FAIL")),
            (
                return_fail("time_expire时间过短，刷卡至少1分钟，其他5分钟"),
                P::Fail("RETURN_FAIL"),
            ),
            (return_fail(""), P::Fail("RETURN_FAIL")),
            // §4.1: every documented err_code
            (fail("SYSTEMERROR"), P::Retry),
            (fail("ORDERPAID"), P::ConfirmPaid),
            (fail("ORDERCLOSED"), P::Fail("ORDERCLOSED")),
            (fail("OUT_TRADE_NO_USED"), P::Fail("OUT_TRADE_NO_USED")),
            (fail("INVALID_REQUEST"), P::Fail("INVALID_REQUEST")),
            (fail("NOAUTH"), P::Alarm("NOAUTH")),
            (fail("NOTENOUGH"), P::Fail("NOTENOUGH")),
            (fail("APPID_NOT_EXIST"), P::Alarm("APPID_NOT_EXIST")),
            (fail("MCHID_NOT_EXIST"), P::Alarm("MCHID_NOT_EXIST")),
            (
                fail("APPID_MCHID_NOT_MATCH"),
                P::Alarm("APPID_MCHID_NOT_MATCH"),
            ),
            (fail("LACK_PARAMS"), P::Fail("LACK_PARAMS")),
            (fail("SIGNERROR"), P::Alarm("SIGNERROR")),
            (fail("XML_FORMAT_ERROR"), P::Fail("XML_FORMAT_ERROR")),
            (fail("REQUIRE_POST_METHOD"), P::Fail("REQUIRE_POST_METHOD")),
            (fail("POST_DATA_EMPTY"), P::Fail("POST_DATA_EMPTY")),
            (fail("NOT_UTF8"), P::Fail("NOT_UTF8")),
            // not in the unifiedorder table, but documented as retryable elsewhere
            (fail("FREQUENCY_LIMITED"), P::Retry),
            (fail("BIZERR_NEED_RETRY"), P::Retry),
            // a code WeChat adds tomorrow: permanent by default
            (fail("SOMETHING_NEW"), P::Fail("SOMETHING_NEW")),
        ];
        for (reply, expected) in table {
            assert_eq!(prepay(reply.clone()), expected, "{reply:?}");
        }
    }

    #[test]
    fn a_failure_keeps_wechats_code_and_message() {
        let d = after_unified_order(&Reply::BusinessFail {
            err_code: "INVALID_REQUEST".into(),
            err_code_des: "201 商户订单号重复".into(),
        });
        assert_eq!(
            d,
            PrepayDecision::Fail(Failure::new("INVALID_REQUEST", "201 商户订单号重复"))
        );
    }

    fn clock(age: i64, until_expiry: i64) -> OrderClock {
        let now = 1_700_000_000;
        OrderClock {
            created_at: now - age,
            expires_at: now + until_expiry,
            now,
        }
    }

    #[test]
    fn order_query_decision_table() {
        let live = clock(120, 600);
        let expired = clock(3600, -10);
        let expired_young = clock(200, -10); // clocks disagree: expired but < 5 min old
        let ok = Reply::Success;
        let cases: Vec<(Reply, Option<&str>, OrderClock, QueryDecision)> = vec![
            (ok.clone(), Some("SUCCESS"), live, QueryDecision::Paid),
            (ok.clone(), Some("SUCCESS"), expired, QueryDecision::Paid),
            (ok.clone(), Some("REFUND"), live, QueryDecision::Paid),
            (ok.clone(), Some("NOTPAY"), live, QueryDecision::Wait),
            (ok.clone(), Some("NOTPAY"), expired, QueryDecision::Close),
            (
                ok.clone(),
                Some("NOTPAY"),
                expired_young,
                QueryDecision::Wait,
            ),
            (ok.clone(), Some("USERPAYING"), expired, QueryDecision::Wait),
            (ok.clone(), Some("ACCEPT"), live, QueryDecision::Wait),
            (ok.clone(), Some("PAYERROR"), expired, QueryDecision::Close),
            (ok.clone(), Some("CLOSED"), live, QueryDecision::Closed),
            (ok.clone(), Some("REVOKED"), live, QueryDecision::Closed),
        ];
        for (reply, state, clock, expected) in cases {
            assert_eq!(
                after_order_query(&reply, state, clock),
                expected,
                "{state:?}"
            );
        }
        assert!(matches!(
            after_order_query(&ok, Some("WHATEVER"), live),
            QueryDecision::Alarm(_)
        ));
        assert!(matches!(
            after_order_query(&Reply::Unknown(Transport::Timeout), None, expired),
            QueryDecision::Retry { .. }
        ));
        assert!(matches!(
            after_order_query(&fail("SYSTEMERROR"), None, live),
            QueryDecision::Retry { .. }
        ));
        assert!(matches!(
            after_order_query(&fail("FREQUENCY_LIMITED"), None, live),
            QueryDecision::Retry { .. }
        ));
        assert_eq!(
            after_order_query(&fail("ORDERNOTEXIST"), None, live),
            QueryDecision::Alarm(Failure::new("ORDERNOTEXIST", "描述"))
        );
        assert!(matches!(
            after_order_query(&return_fail("签名错误"), None, live),
            QueryDecision::Alarm(_)
        ));
    }

    #[test]
    fn close_is_never_decided_within_five_minutes_of_creation() {
        for age in [0, 60, 299, 300, CLOSE_NOT_BEFORE_SECS - 1] {
            let c = clock(age, -1);
            assert!(c.expired());
            assert_ne!(
                after_order_query(&Reply::Success, Some("NOTPAY"), c),
                QueryDecision::Close,
                "age {age}"
            );
        }
        let c = clock(CLOSE_NOT_BEFORE_SECS, -1);
        assert_eq!(
            after_order_query(&Reply::Success, Some("NOTPAY"), c),
            QueryDecision::Close
        );
    }

    #[test]
    fn close_order_decision_table() {
        assert_eq!(after_close_order(&Reply::Success), CloseDecision::Closed);
        assert_eq!(
            after_close_order(&fail("ORDERCLOSED")),
            CloseDecision::Closed
        );
        assert_eq!(
            after_close_order(&fail("ORDERPAID")),
            CloseDecision::ConfirmPaid
        );
        for transient in ["SYSTEMERROR", "FREQUENCY_LIMITED"] {
            assert!(matches!(
                after_close_order(&fail(transient)),
                CloseDecision::Retry { .. }
            ));
        }
        for permanent in [
            "SIGNERROR",
            "REQUIRE_POST_METHOD",
            "XML_FORMAT_ERROR",
            "ORDERNOTEXIST",
        ] {
            assert!(matches!(
                after_close_order(&fail(permanent)),
                CloseDecision::Alarm(_)
            ));
        }
        assert!(matches!(
            after_close_order(&Reply::Unknown(Transport::ServerError(502))),
            CloseDecision::Retry { .. }
        ));
        assert!(matches!(
            after_close_order(&Reply::HttpRejected { status: 400 }),
            CloseDecision::Alarm(_)
        ));
    }

    #[test]
    fn return_messages_are_classified() {
        assert_eq!(classify_return_msg("频率限制"), ReturnFailKind::Transient);
        assert_eq!(classify_return_msg("签名错误"), ReturnFailKind::Signature);
        assert_eq!(
            classify_return_msg("mch_id参数格式错误"),
            ReturnFailKind::Permanent
        );
    }
}
