//! What a `downloadbill` failure means for the day (the error table of
//! https://pay.weixin.qq.com/wiki/doc/api/wxa/wxa_api.php?chapter=9_6, docs/bills.md).

/// How a day's reconciliation proceeds after WeChat did not hand over a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillFailure {
    /// `No Bill Exist`: WeChat has no trade that day. Not an error by itself; local payments
    /// that day are then `missing_wechat`.
    NoBill,
    /// `Bill Creating`: too early (bills are ready from about 10:00 Beijing time the next
    /// day). Ask again later.
    NotYet,
    /// `SYSTEMERROR`, a gzip failure on WeChat's side, no answer: ask again later.
    Retryable,
    /// Our request is wrong (`invalid bill_type`, `SIGN ERROR`, a date WeChat refuses, ...):
    /// asking again will not help; an operator must look.
    Permanent,
}

/// Classifies the `return_msg` of a `return_code=FAIL` answer. Case is ignored: WeChat's
/// documentation writes `NO Bill Exist` where the service sends `No Bill Exist`. Messages not
/// in WeChat's table are permanent, so that an unknown refusal reaches an operator instead of
/// being retried forever.
pub fn classify_bill_failure(return_msg: &str) -> BillFailure {
    let msg = return_msg.trim().to_ascii_lowercase();
    if msg.contains("no bill exist") {
        BillFailure::NoBill
    } else if msg.contains("bill creating") {
        BillFailure::NotYet
    } else if ["systemerror", "system error", "compressgzip error", "系统"]
        .iter()
        .any(|t| msg.contains(t))
    {
        // "UnCompressGZip Error" contains "compressgzip error" too: retryable as well.
        BillFailure::Retryable
    } else {
        BillFailure::Permanent
    }
}

/// Why the provider handed over no statement: what it means for the day, and the detail for
/// the run's `last_error` (the provider's message or the transport failure).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct BillUnavailable {
    pub failure: BillFailure,
    pub detail: String,
}

/// A statement read to its end, its summary checked against its lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BillDownloaded {
    /// Payment and refund lines.
    pub lines: u64,
}
