//! Refunds: what a refund may become, what each WeChat answer means for it, and when to ask
//! WeChat again (docs/refunds.md). Protocol-neutral: the v2 client reduces its exchanges to
//! [`Reply`] and its refund statuses to [`RefundResult`]; nothing here knows XML or a clock.

use serde::{Deserialize, Serialize};

use crate::decide::{Failure, Reply, ReturnFailKind, Transport, classify_return_msg};

/// Where a refund stands. Stored as the lowercase name; the same name is on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum RefundStatus {
    /// Stored; WeChat has not accepted it yet. Every retry sends the same `out_refund_no` and
    /// amount. A refund held by `NOTENOUGH` stays here, with the error shown.
    Pending,
    /// WeChat accepted it; the money is on its way.
    Processing,
    /// The money is back with the payer (refund notify or refundquery).
    Succeeded,
    /// Refused for good, or closed by WeChat.
    Failed,
    /// WeChat could not pay it back (the payer's card is frozen or closed): a person must act.
    Abnormal,
}

impl RefundStatus {
    /// Every status, in lifecycle order (for per-status metrics).
    pub const ALL: [RefundStatus; 5] = [
        RefundStatus::Pending,
        RefundStatus::Processing,
        RefundStatus::Succeeded,
        RefundStatus::Failed,
        RefundStatus::Abnormal,
    ];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Pending => "pending",
            RefundStatus::Processing => "processing",
            RefundStatus::Succeeded => "succeeded",
            RefundStatus::Failed => "failed",
            RefundStatus::Abnormal => "abnormal",
        }
    }

    /// Parses a stored name; `None` for anything else.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The service still works on it (sends it, or waits for WeChat's result). The others need
    /// nothing more from the service; only an `abnormal` one can still change, when a person
    /// resolves it in WeChat's merchant console and WeChat reports it a success.
    pub fn is_open(self) -> bool {
        matches!(self, RefundStatus::Pending | RefundStatus::Processing)
    }

    /// Whether `self → next` is a transition the service may make.
    ///
    /// `pending` may jump to a final status: after a lost reply, refundquery (or a notify) can
    /// be the first news that WeChat took the refund. `abnormal → succeeded` is a person
    /// resolving the refund in WeChat's merchant console.
    pub fn can_become(self, next: RefundStatus) -> bool {
        use RefundStatus::*;
        matches!(
            (self, next),
            (Pending, Processing | Succeeded | Failed | Abnormal)
                | (Processing, Succeeded | Failed | Abnormal)
                | (Abnormal, Succeeded)
        )
    }

    /// The statuses whose amounts count against the order's total: every refund not `failed`.
    pub fn counts_against_total(self) -> bool {
        self != RefundStatus::Failed
    }
}

impl crate::lifecycle::Lifecycle for RefundStatus {
    const ALL: &'static [Self] = &RefundStatus::ALL;

    fn as_str(self) -> &'static str {
        RefundStatus::as_str(self)
    }

    fn can_become(self, next: Self) -> bool {
        RefundStatus::can_become(self, next)
    }
}

/// A stored refund status name that is not one of ours (the column's CHECK makes this a bug).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown refund status {0:?}")]
pub struct UnknownRefundStatus(pub String);

impl TryFrom<String> for RefundStatus {
    type Error = UnknownRefundStatus;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        Self::parse(&name).ok_or(UnknownRefundStatus(name))
    }
}

impl std::fmt::Display for RefundStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// WeChat's word on a refund it holds (v2 spells them `SUCCESS`, `PROCESSING`, `REFUNDCLOSE`,
/// `CHANGE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RefundResult {
    /// The money is back.
    Succeeded,
    /// Accepted, not done yet.
    Processing,
    /// WeChat closed the refund: no money moved.
    Closed,
    /// Paying back failed at the payer's bank (card frozen or closed).
    Abnormal,
}

impl RefundResult {
    /// The status a refund takes on this news.
    pub fn status(self) -> RefundStatus {
        match self {
            RefundResult::Succeeded => RefundStatus::Succeeded,
            RefundResult::Processing => RefundStatus::Processing,
            RefundResult::Closed => RefundStatus::Failed,
            RefundResult::Abnormal => RefundStatus::Abnormal,
        }
    }

    /// The error a `failed` or `abnormal` refund shows for this news.
    pub fn failure(self) -> Option<Failure> {
        match self {
            RefundResult::Closed => Some(Failure::new("REFUNDCLOSE", "WeChat closed the refund")),
            RefundResult::Abnormal => Some(Failure::new(
                "CHANGE",
                "WeChat could not pay the refund back (the payer's card is frozen or closed): \
                 refund by other means",
            )),
            RefundResult::Succeeded | RefundResult::Processing => None,
        }
    }
}

/// What to do after a refund request (`/secapi/pay/refund`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundDecision {
    /// WeChat accepted it: the refund is `processing` (not done: wait for the notify or query).
    Accepted,
    /// WeChat did not take it this time: send again with the same `out_refund_no` and amount,
    /// not before `not_before_secs` from now.
    Retry {
        reason: String,
        not_before_secs: i64,
    },
    /// No trustworthy answer, so WeChat may have taken it: refundquery before sending again.
    QueryFirst { reason: String },
    /// `NOTENOUGH`: the merchant's balance cannot cover it. Stays `pending` with this error
    /// and is retried on [`next_held_attempt`]'s schedule; operators are alerted.
    Hold(Failure),
    /// Refused for good: the refund is `failed` with this error.
    Fail(Failure),
    /// The refund is `failed` and an operator must act: credentials, certificate or account
    /// setup are wrong, so every other refund is failing the same way.
    Alarm(Failure),
}

/// Refund `err_code`s WeChat documents as "try again with the same out_refund_no".
const TRANSIENT_CODES: [&str; 4] = [
    "SYSTEMERROR",
    "BIZERR_NEED_RETRY",
    "FREQUENCY_LIMITED",
    "INVALID_REQ_TOO_MUCH",
];

/// WeChat wants at least a minute between two refund requests of one order, and asks for a
/// pause after too many invalid requests.
pub const SAME_ORDER_SPACING_SECS: i64 = 60;

/// `err_code`s that mean the merchant's setup is wrong, not this refund.
const CONFIGURATION_CODES: [&str; 6] = [
    "NOAUTH",
    "SIGNERROR",
    "APPID_NOT_EXIST",
    "MCHID_NOT_EXIST",
    "APPID_MCHID_NOT_MATCH",
    "CERT_ERROR",
];

/// Decides after a refund request.
pub fn after_refund(reply: &Reply) -> RefundDecision {
    match reply {
        Reply::Success => RefundDecision::Accepted,
        // Never reached WeChat, or WeChat said so with a 5xx before acting: same again.
        Reply::Unknown(Transport::Connect | Transport::ServerError(_)) => RefundDecision::Retry {
            reason: unknown_reason(reply),
            not_before_secs: 0,
        },
        Reply::Unknown(Transport::Timeout | Transport::Unreadable) | Reply::Untrusted => {
            RefundDecision::QueryFirst {
                reason: unknown_reason(reply),
            }
        }
        // The certificate was missing or refused ("400 No required SSL certificate was sent").
        Reply::HttpRejected { status } => RefundDecision::Alarm(Failure::new(
            "HTTP_REJECTED",
            format!("WeChat Pay answered HTTP {status}"),
        )),
        Reply::ReturnFail { return_msg } => match classify_return_msg(return_msg) {
            ReturnFailKind::Transient => RefundDecision::Retry {
                reason: format!("return_code FAIL: {return_msg}"),
                not_before_secs: SAME_ORDER_SPACING_SECS,
            },
            ReturnFailKind::Signature => {
                RefundDecision::Alarm(Failure::new("SIGNERROR", return_msg))
            }
            ReturnFailKind::Permanent => {
                RefundDecision::Fail(Failure::new("RETURN_FAIL", return_msg))
            }
        },
        Reply::BusinessFail {
            err_code,
            err_code_des,
        } => {
            if TRANSIENT_CODES.contains(&err_code.as_str()) {
                let spaced = matches!(
                    err_code.as_str(),
                    "FREQUENCY_LIMITED" | "INVALID_REQ_TOO_MUCH"
                );
                RefundDecision::Retry {
                    reason: format!("{err_code}: {err_code_des}"),
                    not_before_secs: if spaced { SAME_ORDER_SPACING_SECS } else { 0 },
                }
            } else if err_code == "NOTENOUGH" {
                RefundDecision::Hold(Failure::new(err_code, err_code_des))
            } else if CONFIGURATION_CODES.contains(&err_code.as_str()) {
                RefundDecision::Alarm(Failure::new(err_code, err_code_des))
            } else {
                // USER_ACCOUNT_ABNORMAL, TRADE_OVERDUE, ORDERNOTEXIST, INVALID_TRANSACTIONID,
                // PARAM_ERROR, ERROR, REFUND_FEE_MISMATCH, INVALID_REQUEST, ... and codes
                // WeChat may add later: permanent by default.
                RefundDecision::Fail(Failure::new(err_code, err_code_des))
            }
        }
    }
}

fn unknown_reason(reply: &Reply) -> String {
    match reply {
        Reply::Unknown(Transport::Connect) => "could not connect to WeChat Pay".into(),
        Reply::Unknown(Transport::Timeout) => "WeChat Pay did not answer in time".into(),
        Reply::Unknown(Transport::ServerError(status)) => {
            format!("WeChat Pay answered HTTP {status}")
        }
        Reply::Unknown(Transport::Unreadable) => {
            "WeChat Pay's reply was not a readable XML reply".into()
        }
        _ => "reply signature, appid or mch_id did not verify".into(),
    }
}

/// What to do after a refundquery about one refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundQueryDecision {
    /// WeChat's news about the refund: move it to `result.status()` (for
    /// [`RefundResult::Processing`], keep waiting and query again on the schedule).
    Result(RefundResult),
    /// WeChat has no such refund and ours is `pending`: it never got the request, so sending it
    /// again (same parameters) is safe.
    Resend,
    /// No answer this time: query again later.
    Retry { reason: String },
    /// WeChat's answer contradicts ours (no such refund after accepting it, an unknown status,
    /// a refusal): keep the refund as it is, tell an operator, keep querying.
    Alarm(Failure),
}

/// Decides after refundquery. `result` is the status WeChat gave for this refund on
/// [`Reply::Success`] (`None`: the reply did not list it readably); `current` is ours.
pub fn after_refund_query(
    reply: &Reply,
    result: Option<RefundResult>,
    current: RefundStatus,
) -> RefundQueryDecision {
    match reply {
        Reply::Success => match result {
            Some(result) => RefundQueryDecision::Result(result),
            None => RefundQueryDecision::Alarm(Failure::new(
                "UNREADABLE_REFUND_STATUS",
                "refundquery did not list the refund with a known status",
            )),
        },
        Reply::Unknown(_) | Reply::Untrusted => RefundQueryDecision::Retry {
            reason: unknown_reason(reply),
        },
        Reply::ReturnFail { return_msg } => match classify_return_msg(return_msg) {
            ReturnFailKind::Transient => RefundQueryDecision::Retry {
                reason: format!("return_code FAIL: {return_msg}"),
            },
            _ => RefundQueryDecision::Alarm(Failure::new("RETURN_FAIL", return_msg)),
        },
        Reply::HttpRejected { status } => RefundQueryDecision::Alarm(Failure::new(
            "HTTP_REJECTED",
            format!("WeChat Pay answered HTTP {status}"),
        )),
        Reply::BusinessFail {
            err_code,
            err_code_des,
        } => {
            if err_code == "REFUNDNOTEXIST" && current == RefundStatus::Pending {
                RefundQueryDecision::Resend
            } else if TRANSIENT_CODES.contains(&err_code.as_str()) {
                RefundQueryDecision::Retry {
                    reason: format!("{err_code}: {err_code_des}"),
                }
            } else {
                RefundQueryDecision::Alarm(Failure::new(err_code, err_code_des))
            }
        }
    }
}

/// A `processing` refund with no notify is first queried about a minute after WeChat
/// accepted it.
pub const FIRST_QUERY_AFTER_SECS: i64 = 60;

/// Gaps between later queries, in seconds; the last one repeats until the refund is final.
const QUERY_GAPS_SECS: [i64; 4] = [5 * 60, 10 * 60, 20 * 60, 30 * 60];

/// Unix second of the first refundquery of a refund WeChat accepted at `accepted_at`.
pub fn first_refund_query_at(accepted_at: i64) -> i64 {
    accepted_at + FIRST_QUERY_AFTER_SECS
}

/// Unix second of the query after query number `query` (0-based) ran at `now` and found the
/// refund still processing.
pub fn next_refund_query_at(now: i64, query: u32) -> i64 {
    now + QUERY_GAPS_SECS[(query as usize).min(QUERY_GAPS_SECS.len() - 1)]
}

/// How long a refund refused with `NOTENOUGH` is retried before it is `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldPolicy {
    /// Seconds from the first `NOTENOUGH`; a day unless configured.
    pub give_up_after_secs: i64,
}

impl Default for HoldPolicy {
    fn default() -> Self {
        HoldPolicy {
            give_up_after_secs: 24 * 3600,
        }
    }
}

/// Gaps between attempts of a held refund; the last repeats. Slow on purpose: the balance
/// returns when money is paid in or settles, not within seconds.
const HOLD_GAPS_SECS: [i64; 4] = [5 * 60, 10 * 60, 20 * 60, 30 * 60];

/// What happens to a held refund after another `NOTENOUGH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldStep {
    /// Send the same request again at this Unix second.
    RetryAt(i64),
    /// The hold is over: the refund is `failed` with `NOTENOUGH`, and operators are alerted.
    GiveUp,
}

/// The step after attempt number `attempt` (1 for the first `NOTENOUGH`) was refused at `now`,
/// the first refusal having come at `held_since`. The last attempt is at the deadline itself.
pub fn next_held_attempt(held_since: i64, now: i64, attempt: u32, policy: HoldPolicy) -> HoldStep {
    let deadline = held_since.saturating_add(policy.give_up_after_secs);
    if now >= deadline {
        return HoldStep::GiveUp;
    }
    let index = (attempt.max(1) as usize - 1).min(HOLD_GAPS_SECS.len() - 1);
    HoldStep::RetryAt((now + HOLD_GAPS_SECS[index]).min(deadline))
}

#[cfg(test)]
mod tests {
    use super::RefundStatus::*;
    use super::*;

    #[test]
    fn names_round_trip_and_serialise_lowercase() {
        for s in RefundStatus::ALL {
            assert_eq!(RefundStatus::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert_eq!(RefundStatus::parse("SUCCEEDED"), None);
        assert_eq!(RefundStatus::parse("refunded"), None);
    }

    #[test]
    fn transitions_follow_the_contract() {
        let allowed = [
            (Pending, Processing),
            (Pending, Succeeded),
            (Pending, Failed),
            (Pending, Abnormal),
            (Processing, Succeeded),
            (Processing, Failed),
            (Processing, Abnormal),
            (Abnormal, Succeeded),
        ];
        for from in RefundStatus::ALL {
            for to in RefundStatus::ALL {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
        for done in [Succeeded, Failed] {
            assert!(RefundStatus::ALL.iter().all(|to| !done.can_become(*to)));
        }
        let open: Vec<_> = RefundStatus::ALL
            .into_iter()
            .filter(|s| s.is_open())
            .collect();
        assert_eq!(open, [Pending, Processing]);
        let counted: Vec<_> = RefundStatus::ALL
            .into_iter()
            .filter(|s| s.counts_against_total())
            .collect();
        assert_eq!(counted, [Pending, Processing, Succeeded, Abnormal]);
    }

    #[test]
    fn wechat_results_map_to_statuses() {
        assert_eq!(RefundResult::Succeeded.status(), Succeeded);
        assert_eq!(RefundResult::Processing.status(), Processing);
        assert_eq!(RefundResult::Closed.status(), Failed);
        assert_eq!(RefundResult::Abnormal.status(), Abnormal);
        assert_eq!(RefundResult::Closed.failure().unwrap().code, "REFUNDCLOSE");
        assert_eq!(RefundResult::Abnormal.failure().unwrap().code, "CHANGE");
        assert_eq!(RefundResult::Succeeded.failure(), None);
    }

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
    enum D {
        Accepted,
        Retry(i64),
        QueryFirst,
        Hold(&'static str),
        Fail(&'static str),
        Alarm(&'static str),
    }

    fn decide(reply: Reply) -> D {
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        match after_refund(&reply) {
            RefundDecision::Accepted => D::Accepted,
            RefundDecision::Retry {
                not_before_secs, ..
            } => D::Retry(not_before_secs),
            RefundDecision::QueryFirst { .. } => D::QueryFirst,
            RefundDecision::Hold(f) => D::Hold(leak(f.code)),
            RefundDecision::Fail(f) => D::Fail(leak(f.code)),
            RefundDecision::Alarm(f) => D::Alarm(leak(f.code)),
        }
    }

    #[test]
    fn refund_decision_table() {
        let table: Vec<(Reply, D)> = vec![
            (Reply::Success, D::Accepted),
            // never reached WeChat, or refused before acting: the same request again
            (Reply::Unknown(Transport::Connect), D::Retry(0)),
            (Reply::Unknown(Transport::ServerError(500)), D::Retry(0)),
            (Reply::Unknown(Transport::ServerError(502)), D::Retry(0)),
            // WeChat may have acted: ask before sending again
            (Reply::Unknown(Transport::Timeout), D::QueryFirst),
            (Reply::Unknown(Transport::Unreadable), D::QueryFirst),
            (Reply::Untrusted, D::QueryFirst),
            // "400 No required SSL certificate was sent"
            (
                Reply::HttpRejected { status: 400 },
                D::Alarm("HTTP_REJECTED"),
            ),
            (return_fail("频率限制"), D::Retry(60)),
            (return_fail("签名错误"), D::Alarm("SIGNERROR")),
            (return_fail("invalid refund_fee"), D::Fail("RETURN_FAIL")),
            (fail("SYSTEMERROR"), D::Retry(0)),
            (fail("BIZERR_NEED_RETRY"), D::Retry(0)),
            (fail("FREQUENCY_LIMITED"), D::Retry(60)),
            (fail("INVALID_REQ_TOO_MUCH"), D::Retry(60)),
            (fail("NOTENOUGH"), D::Hold("NOTENOUGH")),
            (
                fail("USER_ACCOUNT_ABNORMAL"),
                D::Fail("USER_ACCOUNT_ABNORMAL"),
            ),
            (fail("TRADE_OVERDUE"), D::Fail("TRADE_OVERDUE")),
            (fail("ORDERNOTEXIST"), D::Fail("ORDERNOTEXIST")),
            (
                fail("INVALID_TRANSACTIONID"),
                D::Fail("INVALID_TRANSACTIONID"),
            ),
            (fail("PARAM_ERROR"), D::Fail("PARAM_ERROR")),
            (fail("ERROR"), D::Fail("ERROR")),
            (fail("REFUND_FEE_MISMATCH"), D::Fail("REFUND_FEE_MISMATCH")),
            (fail("INVALID_REQUEST"), D::Fail("INVALID_REQUEST")),
            (fail("LACK_PARAMS"), D::Fail("LACK_PARAMS")),
            (fail("XML_FORMAT_ERROR"), D::Fail("XML_FORMAT_ERROR")),
            (fail("SIGNERROR"), D::Alarm("SIGNERROR")),
            (fail("NOAUTH"), D::Alarm("NOAUTH")),
            (fail("APPID_NOT_EXIST"), D::Alarm("APPID_NOT_EXIST")),
            (fail("MCHID_NOT_EXIST"), D::Alarm("MCHID_NOT_EXIST")),
            (
                fail("APPID_MCHID_NOT_MATCH"),
                D::Alarm("APPID_MCHID_NOT_MATCH"),
            ),
            (fail("CERT_ERROR"), D::Alarm("CERT_ERROR")),
            // a code WeChat adds tomorrow: permanent by default
            (fail("SOMETHING_NEW"), D::Fail("SOMETHING_NEW")),
        ];
        for (reply, expected) in table {
            assert_eq!(decide(reply.clone()), expected, "{reply:?}");
        }
    }

    #[test]
    fn a_held_refund_shows_wechats_code_and_message() {
        let d = after_refund(&Reply::BusinessFail {
            err_code: "NOTENOUGH".into(),
            err_code_des: "基本账户余额不足，请充值后重新发起".into(),
        });
        assert_eq!(
            d,
            RefundDecision::Hold(Failure::new(
                "NOTENOUGH",
                "基本账户余额不足，请充值后重新发起"
            ))
        );
    }

    #[test]
    fn refund_query_decision_table() {
        use RefundQueryDecision as Q;
        let ok = Reply::Success;
        let results = [
            RefundResult::Succeeded,
            RefundResult::Processing,
            RefundResult::Closed,
            RefundResult::Abnormal,
        ];
        for result in results {
            for current in [Pending, Processing, Abnormal] {
                assert_eq!(
                    after_refund_query(&ok, Some(result), current),
                    Q::Result(result)
                );
            }
        }
        assert!(matches!(
            after_refund_query(&ok, None, Processing),
            Q::Alarm(f) if f.code == "UNREADABLE_REFUND_STATUS"
        ));
        // WeChat never got a pending refund's request: safe to send it again
        assert_eq!(
            after_refund_query(&fail("REFUNDNOTEXIST"), None, Pending),
            Q::Resend
        );
        // ...but it had accepted a processing one: a contradiction for a person
        assert!(matches!(
            after_refund_query(&fail("REFUNDNOTEXIST"), None, Processing),
            Q::Alarm(f) if f.code == "REFUNDNOTEXIST"
        ));
        for transient in ["SYSTEMERROR", "FREQUENCY_LIMITED", "BIZERR_NEED_RETRY"] {
            assert!(matches!(
                after_refund_query(&fail(transient), None, Processing),
                Q::Retry { .. }
            ));
        }
        for unknown in [
            Reply::Unknown(Transport::Timeout),
            Reply::Unknown(Transport::Connect),
            Reply::Unknown(Transport::ServerError(503)),
            Reply::Untrusted,
            return_fail("系统繁忙,请稍后再试"),
        ] {
            assert!(matches!(
                after_refund_query(&unknown, None, Processing),
                Q::Retry { .. }
            ));
        }
        for alarm in [
            fail("SIGNERROR"),
            fail("ORDERNOTEXIST"),
            Reply::HttpRejected { status: 404 },
            return_fail("签名错误"),
        ] {
            assert!(matches!(
                after_refund_query(&alarm, None, Processing),
                Q::Alarm(_)
            ));
        }
    }

    #[test]
    fn queries_start_after_a_minute_and_back_off_to_half_an_hour() {
        let mut now = first_refund_query_at(1000);
        assert_eq!(now, 1060);
        let mut gaps = vec![];
        for query in 0..7 {
            let next = next_refund_query_at(now, query);
            gaps.push((next - now) / 60);
            now = next;
        }
        assert_eq!(gaps, [5, 10, 20, 30, 30, 30, 30]);
    }

    #[test]
    fn a_held_refund_is_retried_slowly_until_the_deadline_then_given_up() {
        let policy = HoldPolicy::default();
        let held_since = 10_000;
        let mut now = held_since;
        let mut gaps = vec![];
        let mut attempt = 1;
        while let HoldStep::RetryAt(at) = next_held_attempt(held_since, now, attempt, policy) {
            assert!(at > now);
            gaps.push(at - now);
            now = at;
            attempt += 1;
        }
        assert_eq!(
            now,
            held_since + 24 * 3600,
            "the last attempt is at the deadline"
        );
        assert_eq!(gaps[..5], [300, 600, 1200, 1800, 1800]);
        assert!(gaps.iter().all(|g| *g <= 1800));

        let short = HoldPolicy {
            give_up_after_secs: 900,
        };
        assert_eq!(next_held_attempt(0, 0, 1, short), HoldStep::RetryAt(300));
        assert_eq!(next_held_attempt(0, 300, 2, short), HoldStep::RetryAt(900));
        assert_eq!(next_held_attempt(0, 900, 3, short), HoldStep::GiveUp);
        assert_eq!(next_held_attempt(0, 5000, 3, short), HoldStep::GiveUp);
    }
}
