//! The v2 refund request (`/secapi/pay/refund`) and refund query (`/pay/refundquery`): the
//! frozen request parameters and the rules WeChat checks them by, and typed views over the
//! fields of a verified reply (docs/refunds.md). The simulator applies the same rules.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use minipay_jobs::{ParamError, RefundResult};
use serde::{Deserialize, Serialize};

use crate::wechat::v2::params::{BEIJING, check_notify_url, check_out_trade_no, check_total_fee};
use crate::wechat::v2::sign::{ApiKey, SignType};
use crate::wechat::v2::{Fields, Merchant};

/// `refund_desc` is at most this many UTF-8 bytes.
pub const REFUND_DESC_MAX_BYTES: usize = 80;

/// `out_refund_no` is at most this many characters (the current docs say 64, older ones 32;
/// 32 is safe under both).
pub const OUT_REFUND_NO_MAX: usize = 32;

fn refuse(field: &'static str, reason: impl Into<String>) -> ParamError {
    ParamError {
        field,
        reason: reason.into(),
    }
}

/// `out_refund_no`: 1–32 characters of `0-9 a-z A-Z _ - | * @`.
pub fn check_out_refund_no(value: &str) -> Result<(), ParamError> {
    if value.is_empty() || value.len() > OUT_REFUND_NO_MAX {
        return Err(refuse("out_refund_no", "must be 1 to 32 characters"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*' | b'@'))
    {
        return Err(refuse(
            "out_refund_no",
            "only 0-9, a-z, A-Z and _ - | * @ are allowed",
        ));
    }
    Ok(())
}

/// `refund_desc`: at most 80 UTF-8 bytes, no 4-byte characters (API v2 supports only 1–3-byte
/// UTF-8 sequences).
pub fn check_refund_desc(value: &str) -> Result<(), ParamError> {
    if value.len() > REFUND_DESC_MAX_BYTES {
        return Err(refuse(
            "refund_desc",
            format!(
                "is {} UTF-8 bytes; at most {REFUND_DESC_MAX_BYTES} are allowed",
                value.len()
            ),
        ));
    }
    if value.chars().any(|c| c.len_utf8() == 4) {
        return Err(refuse(
            "refund_desc",
            "contains a 4-byte character (emoji?), which WeChat Pay v2 does not support",
        ));
    }
    Ok(())
}

/// `refund_fee`: at least 1 fen and at most the order's `total_fee`.
pub fn check_refund_fee(refund_fee: i64, total_fee: i64) -> Result<(), ParamError> {
    if refund_fee < 1 {
        return Err(refuse("refund_fee", "must be at least 1 fen"));
    }
    if refund_fee > total_fee {
        return Err(refuse("refund_fee", "is more than the order's total_fee"));
    }
    Ok(())
}

/// The parameters of one refund, frozen when the refund is created and sent unchanged on every
/// attempt: WeChat refunds once per `out_refund_no` only while the amount stays the same, and a
/// new `out_refund_no` for a retry can refund twice. Only `nonce_str` and `sign` change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundParams {
    pub appid: String,
    pub mch_id: String,
    pub sign_type: SignType,
    pub out_trade_no: String,
    pub out_refund_no: String,
    /// The order's amount, exactly as paid.
    pub total_fee: i64,
    pub refund_fee: i64,
    /// Shown to the payer in WeChat's refund message; empty is left out.
    #[serde(default)]
    pub refund_desc: String,
    pub notify_url: String,
}

impl RefundParams {
    /// Checks every field the way WeChat does.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_out_trade_no(&self.out_trade_no)?;
        check_out_refund_no(&self.out_refund_no)?;
        check_total_fee(self.total_fee)?;
        check_refund_fee(self.refund_fee, self.total_fee)?;
        check_refund_desc(&self.refund_desc)?;
        check_notify_url(&self.notify_url)
    }

    /// The business fields as WeChat receives them (an empty `refund_desc` is left out).
    pub fn business_fields(&self) -> Fields {
        let mut fields = Fields::new();
        fields.set("out_trade_no", &self.out_trade_no);
        fields.set("out_refund_no", &self.out_refund_no);
        fields.set("total_fee", self.total_fee.to_string());
        fields.set("refund_fee", self.refund_fee.to_string());
        if !self.refund_desc.is_empty() {
            fields.set("refund_desc", &self.refund_desc);
        }
        fields.set("notify_url", &self.notify_url);
        fields
    }

    /// The full signed request with a fresh `nonce`.
    pub fn signed_request(&self, key: &ApiKey, nonce: &str) -> Fields {
        let merchant = Merchant {
            appid: self.appid.clone(),
            mch_id: self.mch_id.clone(),
            key: key.clone(),
            sign_type: self.sign_type,
        };
        merchant.signed(self.business_fields(), nonce)
    }
}

/// A field of a verified reply or notify that is absent or not what WeChat documents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("field {0} is missing")]
    Missing(String),
    #[error("field {field} is malformed: {value:?}")]
    Malformed { field: String, value: String },
    #[error("refund status {0:?} is not one WeChat documents")]
    UnknownStatus(String),
}

/// Reads the fields of one verified message.
pub(crate) struct Reader<'a>(pub &'a Fields);

impl Reader<'_> {
    pub fn text(&self, name: &str) -> Result<String, FieldError> {
        self.0
            .non_empty(name)
            .map(str::to_owned)
            .ok_or_else(|| FieldError::Missing(name.to_owned()))
    }

    pub fn optional(&self, name: &str) -> Option<String> {
        self.0.non_empty(name).map(str::to_owned)
    }

    pub fn fen(&self, name: &str) -> Result<i64, FieldError> {
        let value = self.text(name)?;
        parse_fen(name, &value)
    }

    pub fn optional_fen(&self, name: &str) -> Result<Option<i64>, FieldError> {
        self.0
            .non_empty(name)
            .map(|value| parse_fen(name, value))
            .transpose()
    }
}

fn parse_fen(name: &str, value: &str) -> Result<i64, FieldError> {
    // Whole non-negative fen, digits only: "+5", "1e2" or " 5" are not amounts.
    if value.len() > 18 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FieldError::Malformed {
            field: name.to_owned(),
            value: value.to_owned(),
        });
    }
    value.parse().map_err(|_| FieldError::Malformed {
        field: name.to_owned(),
        value: value.to_owned(),
    })
}

/// WeChat's v2 spelling of a refund's status.
pub fn parse_refund_status(value: &str) -> Result<RefundResult, FieldError> {
    match value {
        "SUCCESS" => Ok(RefundResult::Succeeded),
        "PROCESSING" => Ok(RefundResult::Processing),
        "REFUNDCLOSE" => Ok(RefundResult::Closed),
        "CHANGE" => Ok(RefundResult::Abnormal),
        other => Err(FieldError::UnknownStatus(other.to_owned())),
    }
}

/// The v2 name of a refund status (as refundquery and the notify write it).
pub fn refund_status_name(result: RefundResult) -> &'static str {
    match result {
        RefundResult::Succeeded => "SUCCESS",
        RefundResult::Processing => "PROCESSING",
        RefundResult::Closed => "REFUNDCLOSE",
        RefundResult::Abnormal => "CHANGE",
    }
}

/// Reads a refund time, `yyyy-MM-dd HH:mm:ss` in Beijing time (unlike payments' `time_end`).
pub fn parse_refund_time(value: &str) -> Option<DateTime<Utc>> {
    let naive = NaiveDateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S").ok()?;
    BEIJING
        .from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
}

/// Writes a refund time as WeChat does.
pub fn refund_time(at: DateTime<Utc>) -> String {
    at.with_timezone(&BEIJING)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// What a successful refund request reply says: WeChat accepted the refund (not done yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundAccepted {
    pub out_trade_no: String,
    pub transaction_id: String,
    pub out_refund_no: String,
    pub refund_id: String,
    pub refund_fee: i64,
    pub total_fee: i64,
}

impl RefundAccepted {
    /// Reads the fields of a verified `result_code=SUCCESS` refund reply.
    pub fn from_fields(fields: &Fields) -> Result<RefundAccepted, FieldError> {
        let r = Reader(fields);
        Ok(RefundAccepted {
            out_trade_no: r.text("out_trade_no")?,
            transaction_id: r.text("transaction_id")?,
            out_refund_no: r.text("out_refund_no")?,
            refund_id: r.text("refund_id")?,
            refund_fee: r.fen("refund_fee")?,
            total_fee: r.fen("total_fee")?,
        })
    }

    /// WeChat echoed the refund we asked for (a mismatch means the reply is not about it).
    pub fn matches(&self, params: &RefundParams) -> bool {
        self.out_refund_no == params.out_refund_no
            && self.out_trade_no == params.out_trade_no
            && self.refund_fee == params.refund_fee
            && self.total_fee == params.total_fee
    }
}

/// What a refundquery asks about: exactly one of WeChat's four keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundQueryKey {
    OutRefundNo(String),
    RefundId(String),
    OutTradeNo(String),
    TransactionId(String),
}

impl RefundQueryKey {
    /// The request's business field.
    pub fn business_fields(&self) -> Fields {
        let (name, value) = match self {
            RefundQueryKey::OutRefundNo(v) => ("out_refund_no", v),
            RefundQueryKey::RefundId(v) => ("refund_id", v),
            RefundQueryKey::OutTradeNo(v) => ("out_trade_no", v),
            RefundQueryKey::TransactionId(v) => ("transaction_id", v),
        };
        Fields::from_iter([(name, value.as_str())])
    }
}

/// One refund as refundquery lists it (fields `*_$n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRecord {
    pub out_refund_no: String,
    pub refund_id: String,
    pub refund_fee: i64,
    pub settlement_refund_fee: Option<i64>,
    pub status: RefundResult,
    /// `refund_success_time_$n`, when WeChat gives it (only for `SUCCESS`).
    pub success_time: Option<DateTime<Utc>>,
    /// `refund_recv_accout_$n` (sic): where the money went, e.g. `支付用户的零钱`.
    pub recv_account: Option<String>,
    pub channel: Option<String>,
}

/// Refunds listed per reply at most (WeChat pages with `offset` past 10; 50 per order).
pub const MAX_LISTED_REFUNDS: usize = 50;

/// A verified refundquery reply: the order and its refunds. Coupon fields
/// (`coupon_refund_*_$n_$m`) are not read, but they count in the signature check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundQueryReply {
    pub out_trade_no: String,
    pub transaction_id: String,
    pub total_fee: i64,
    pub refunds: Vec<RefundRecord>,
}

impl RefundQueryReply {
    /// Reads the fields of a verified `result_code=SUCCESS` refundquery reply.
    pub fn from_fields(fields: &Fields) -> Result<RefundQueryReply, FieldError> {
        let r = Reader(fields);
        let count = r.fen("refund_count")?;
        let count = usize::try_from(count)
            .ok()
            .filter(|c| *c <= MAX_LISTED_REFUNDS)
            .ok_or_else(|| FieldError::Malformed {
                field: "refund_count".into(),
                value: count.to_string(),
            })?;
        let refunds = (0..count)
            .map(|n| {
                let field = |name: &str| format!("{name}_{n}");
                let success_time = match r.optional(&field("refund_success_time")) {
                    Some(t) => Some(parse_refund_time(&t).ok_or(FieldError::Malformed {
                        field: field("refund_success_time"),
                        value: t,
                    })?),
                    None => None,
                };
                Ok(RefundRecord {
                    out_refund_no: r.text(&field("out_refund_no"))?,
                    refund_id: r.text(&field("refund_id"))?,
                    refund_fee: r.fen(&field("refund_fee"))?,
                    settlement_refund_fee: r.optional_fen(&field("settlement_refund_fee"))?,
                    status: parse_refund_status(&r.text(&field("refund_status"))?)?,
                    success_time,
                    recv_account: r.optional(&field("refund_recv_accout")),
                    channel: r.optional(&field("refund_channel")),
                })
            })
            .collect::<Result<Vec<_>, FieldError>>()?;
        Ok(RefundQueryReply {
            out_trade_no: r.text("out_trade_no")?,
            transaction_id: r.text("transaction_id")?,
            total_fee: r.fen("total_fee")?,
            refunds,
        })
    }

    /// The listed refund with this `out_refund_no`.
    pub fn find(&self, out_refund_no: &str) -> Option<&RefundRecord> {
        self.refunds
            .iter()
            .find(|r| r.out_refund_no == out_refund_no)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::v2::sign::{SignType, verify};

    fn params() -> RefundParams {
        RefundParams {
            appid: "wxd930ea5d5a258f4f".into(),
            mch_id: "10000100".into(),
            sign_type: SignType::Md5,
            out_trade_no: "20150806125346".into(),
            out_refund_no: "R20231114001".into(),
            total_fee: 88,
            refund_fee: 50,
            refund_desc: "商品已售完".into(),
            notify_url: "https://example.com/v1/wechat/refund-notify".into(),
        }
    }

    #[test]
    fn the_signed_request_matches_an_independent_md5() {
        let key = ApiKey::new("192006250b4c09247ec02edce69f6a2d");
        let request = params().signed_request(&key, "5K8264ILTKCH16CQ2502SI8ZNMTM67VS");
        // Computed with Python's hashlib over the sorted stringA + "&key=...".
        assert_eq!(
            request.get("sign"),
            Some("FF1D1851F31423DC26DDA6D1F547F1E6")
        );
        assert_eq!(verify(&request, &key), Ok(SignType::Md5));
        let mut no_desc = params();
        no_desc.refund_desc.clear();
        assert!(!no_desc.business_fields().contains("refund_desc"));
    }

    #[test]
    fn frozen_params_round_trip_as_json() {
        let json = serde_json::to_string(&params()).unwrap();
        assert_eq!(
            serde_json::from_str::<RefundParams>(&json).unwrap(),
            params()
        );
        assert!(json.contains(r#""sign_type":"MD5""#));
    }

    #[test]
    fn the_builder_refuses_what_wechat_refuses() {
        assert_eq!(params().validate(), Ok(()));
        let refused = |change: &dyn Fn(&mut RefundParams)| {
            let mut p = params();
            change(&mut p);
            p.validate().map_err(|e| e.field)
        };
        assert_eq!(refused(&|p| p.out_refund_no = "R".repeat(32)), Ok(()));
        assert_eq!(refused(&|p| p.out_refund_no = "a_b-c|d*e@f".into()), Ok(()));
        assert_eq!(
            refused(&|p| p.out_refund_no = "R".repeat(33)),
            Err("out_refund_no")
        );
        assert_eq!(refused(&|p| p.out_refund_no.clear()), Err("out_refund_no"));
        for bad in ["R 1", "R#1", "R/1", "退款1", "R.1"] {
            assert_eq!(
                refused(&|p| p.out_refund_no = bad.into()),
                Err("out_refund_no"),
                "{bad}"
            );
        }
        // 26 three-byte characters and 2 ASCII bytes are 80 bytes: the limit exactly.
        assert_eq!(
            refused(&|p| p.refund_desc = format!("{}xy", "退".repeat(26))),
            Ok(())
        );
        assert_eq!(
            refused(&|p| p.refund_desc = format!("{}xyz", "退".repeat(26))),
            Err("refund_desc")
        );
        assert_eq!(
            refused(&|p| p.refund_desc = "坏了😞".into()),
            Err("refund_desc")
        );
        assert_eq!(refused(&|p| p.refund_fee = 0), Err("refund_fee"));
        assert_eq!(refused(&|p| p.refund_fee = -5), Err("refund_fee"));
        assert_eq!(refused(&|p| p.refund_fee = 89), Err("refund_fee"));
        assert_eq!(refused(&|p| p.refund_fee = 88), Ok(()));
        assert_eq!(refused(&|p| p.total_fee = 0), Err("total_fee"));
        assert_eq!(
            refused(&|p| p.notify_url = "https://example.com/n?x=1".into()),
            Err("notify_url")
        );
        assert_eq!(
            refused(&|p| p.notify_url = "/relative".into()),
            Err("notify_url")
        );
        assert_eq!(
            refused(&|p| p.out_trade_no = "abc".into()),
            Err("out_trade_no")
        );
    }

    fn query_reply() -> Fields {
        Fields::from_iter([
            ("return_code", "SUCCESS"),
            ("result_code", "SUCCESS"),
            ("out_trade_no", "20150806125346"),
            ("transaction_id", "4200000483202001042069747825"),
            ("total_fee", "88"),
            ("cash_fee", "88"),
            ("refund_count", "2"),
            ("out_refund_no_0", "R1"),
            ("refund_id_0", "50300103182020010413419046597"),
            ("refund_channel_0", "ORIGINAL"),
            ("refund_fee_0", "30"),
            ("settlement_refund_fee_0", "30"),
            ("refund_status_0", "SUCCESS"),
            ("refund_recv_accout_0", "支付用户的零钱"),
            ("refund_success_time_0", "2023-11-14 22:13:20"),
            ("coupon_refund_count_0", "1"),
            ("coupon_refund_fee_0_0", "5"),
            ("coupon_refund_id_0_0", "10000"),
            ("out_refund_no_1", "R2"),
            ("refund_id_1", "50300103182020010413419046598"),
            ("refund_fee_1", "58"),
            ("refund_status_1", "PROCESSING"),
        ])
    }

    #[test]
    fn a_refund_query_reply_reads_every_listed_refund() {
        let reply = RefundQueryReply::from_fields(&query_reply()).unwrap();
        assert_eq!(reply.total_fee, 88);
        assert_eq!(reply.refunds.len(), 2);
        let first = reply.find("R1").unwrap();
        assert_eq!(first.status, RefundResult::Succeeded);
        assert_eq!(first.refund_fee, 30);
        assert_eq!(first.settlement_refund_fee, Some(30));
        assert_eq!(first.recv_account.as_deref(), Some("支付用户的零钱"));
        assert_eq!(
            first.success_time.map(|t| t.to_rfc3339()),
            Some("2023-11-14T14:13:20+00:00".into())
        );
        let second = reply.find("R2").unwrap();
        assert_eq!(second.status, RefundResult::Processing);
        assert_eq!(second.success_time, None);
        assert!(reply.find("R3").is_none());
    }

    #[test]
    fn a_refund_query_reply_with_a_bad_field_is_refused_by_name() {
        let broken = |name: &str, value: Option<&str>| {
            let mut fields = query_reply();
            match value {
                Some(v) => fields.set(name, v),
                None => {
                    fields.remove(name);
                }
            }
            RefundQueryReply::from_fields(&fields).unwrap_err()
        };
        assert_eq!(
            broken("refund_id_1", None),
            FieldError::Missing("refund_id_1".into())
        );
        assert_eq!(
            broken("refund_status_0", Some("REFUNDED")),
            FieldError::UnknownStatus("REFUNDED".into())
        );
        assert!(matches!(
            broken("refund_fee_0", Some("3.0")),
            FieldError::Malformed { field, .. } if field == "refund_fee_0"
        ));
        assert!(matches!(
            broken("refund_fee_0", Some("+3")),
            FieldError::Malformed { .. }
        ));
        assert!(matches!(
            broken("refund_count", Some("51")),
            FieldError::Malformed { .. }
        ));
        assert!(matches!(
            broken("refund_success_time_0", Some("20231114221320")),
            FieldError::Malformed { .. }
        ));
        assert_eq!(
            broken("refund_count", Some("3")),
            FieldError::Missing("out_refund_no_2".into())
        );
    }

    #[test]
    fn statuses_and_times_use_wechats_spelling() {
        for (name, result) in [
            ("SUCCESS", RefundResult::Succeeded),
            ("PROCESSING", RefundResult::Processing),
            ("REFUNDCLOSE", RefundResult::Closed),
            ("CHANGE", RefundResult::Abnormal),
        ] {
            assert_eq!(parse_refund_status(name), Ok(result));
            assert_eq!(refund_status_name(result), name);
        }
        assert!(parse_refund_status("success").is_err());
        let at = parse_refund_time("2023-11-14 22:13:20").unwrap();
        assert_eq!(refund_time(at), "2023-11-14 22:13:20");
        assert_eq!(parse_refund_time("2023-11-14T22:13:20"), None);
    }

    #[test]
    fn an_accepted_reply_is_checked_against_the_request() {
        let fields = Fields::from_iter([
            ("out_trade_no", "20150806125346"),
            ("transaction_id", "4200000483202001042069747825"),
            ("out_refund_no", "R20231114001"),
            ("refund_id", "50300103182020010413419046597"),
            ("refund_fee", "50"),
            ("total_fee", "88"),
        ]);
        let accepted = RefundAccepted::from_fields(&fields).unwrap();
        assert!(accepted.matches(&params()));
        let mut other = params();
        other.refund_fee = 51;
        assert!(!accepted.matches(&other));
    }
}
