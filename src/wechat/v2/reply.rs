//! What came back from WeChat Pay v2: replies to our calls and the payment notify, as typed
//! views over the raw fields (which stay the basis of every signature check), reduced to the
//! core crate's protocol-neutral [`Reply`] and [`Payment`].

use minipay_jobs::{Payment, Reply, Transport};

use super::sign::{SignatureError, verify};
use super::{Fields, Merchant, xml};

/// One exchange with WeChat Pay, as the client saw it.
#[derive(Debug, Clone)]
pub enum Answer {
    /// No usable reply: connect failure, timeout, 5xx or an unreadable body.
    Failed(Transport),
    /// HTTP 4xx.
    Rejected(u16),
    /// A WeChat XML reply. `trusted` holds when it is `return_code=SUCCESS` and its sign,
    /// appid and mch_id verified against our merchant.
    Xml { fields: Fields, trusted: bool },
}

impl Answer {
    /// Reads an HTTP 200 body and checks it against `merchant`.
    pub fn from_body(body: &[u8], merchant: &Merchant) -> Answer {
        let Ok(fields) = xml::parse(body, xml::DEFAULT_BODY_LIMIT) else {
            return Answer::Failed(Transport::Unreadable);
        };
        if !fields.contains("return_code") {
            return Answer::Failed(Transport::Unreadable);
        }
        let trusted = fields.get("return_code") == Some("SUCCESS")
            && check_signed_by(&fields, merchant).is_ok();
        Answer::Xml { fields, trusted }
    }

    /// The answer reduced for the decision tables.
    pub fn reply(&self) -> Reply {
        match self {
            Answer::Failed(transport) => Reply::Unknown(*transport),
            Answer::Rejected(status) => Reply::HttpRejected { status: *status },
            Answer::Xml { fields, trusted } => match fields.get("return_code") {
                Some("SUCCESS") if !trusted => Reply::Untrusted,
                Some("SUCCESS") => match fields.get("result_code") {
                    Some("SUCCESS") => Reply::Success,
                    _ => Reply::BusinessFail {
                        err_code: fields.get("err_code").unwrap_or("").to_owned(),
                        err_code_des: fields.get("err_code_des").unwrap_or("").to_owned(),
                    },
                },
                _ => Reply::ReturnFail {
                    return_msg: fields.get("return_msg").unwrap_or("").to_owned(),
                },
            },
        }
    }

    /// A field of a trusted reply; nothing from an untrusted one.
    pub fn field(&self, name: &str) -> Option<&str> {
        match self {
            Answer::Xml {
                fields,
                trusted: true,
            } => fields.non_empty(name),
            _ => None,
        }
    }

    /// All fields of a trusted reply (for payment facts); nothing from an untrusted one.
    pub fn trusted_fields(&self) -> Option<&Fields> {
        match self {
            Answer::Xml {
                fields,
                trusted: true,
            } => Some(fields),
            _ => None,
        }
    }
}

/// Checks a signed message from WeChat: signature with our key and sign type, our appid and
/// our mch_id.
pub fn check_signed_by(fields: &Fields, merchant: &Merchant) -> Result<(), Untrusted> {
    let used = verify(fields, &merchant.key).map_err(Untrusted::Signature)?;
    if used != merchant.sign_type {
        return Err(Untrusted::SignType);
    }
    if fields.get("appid") != Some(merchant.appid.as_str()) {
        return Err(Untrusted::Appid);
    }
    if fields.get("mch_id") != Some(merchant.mch_id.as_str()) {
        return Err(Untrusted::MchId);
    }
    Ok(())
}

/// Why a message claiming to come from WeChat is not believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Untrusted {
    #[error("signature: {0}")]
    Signature(SignatureError),
    #[error("signed with the other sign type than ours")]
    SignType,
    #[error("appid is not ours")]
    Appid,
    #[error("mch_id is not ours")]
    MchId,
}

/// Reads the payment fields of a verified notify or orderquery reply.
pub fn payment_from_fields(fields: &Fields) -> Result<Payment, MissingField> {
    let text = |name: &'static str| fields.non_empty(name).ok_or(MissingField(name));
    let fen = |name: &'static str| text(name)?.parse::<i64>().map_err(|_| MissingField(name));
    Ok(Payment {
        out_trade_no: text("out_trade_no")?.to_owned(),
        transaction_id: text("transaction_id")?.to_owned(),
        total_fee: fen("total_fee")?,
        cash_fee: fen("cash_fee").or_else(|_| fen("total_fee"))?,
        time_end: text("time_end")?.to_owned(),
    })
}

/// A payment field that is absent or not a number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field {0} is missing or malformed")]
pub struct MissingField(pub &'static str);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::v2::sign::{ApiKey, SignType, sign};

    fn merchant() -> Merchant {
        Merchant {
            appid: "wxd930ea5d5a258f4f".into(),
            mch_id: "10000100".into(),
            key: ApiKey::new("192006250b4c09247ec02edce69f6a2d"),
            sign_type: SignType::Md5,
        }
    }

    fn signed(pairs: &[(&str, &str)], key: &ApiKey) -> Vec<u8> {
        let mut fields: Fields = pairs.iter().copied().collect();
        let signature = sign(fields.iter(), key, SignType::Md5);
        fields.set("sign", signature);
        xml::to_xml(fields.iter()).into_bytes()
    }

    const OURS: [(&str, &str); 3] = [
        ("appid", "wxd930ea5d5a258f4f"),
        ("mch_id", "10000100"),
        ("nonce_str", "abc"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        OURS.iter().chain(extra).copied().collect()
    }

    #[test]
    fn success_needs_return_code_result_code_and_a_valid_sign() {
        let m = merchant();
        let good = signed(
            &with(&[
                ("return_code", "SUCCESS"),
                ("result_code", "SUCCESS"),
                ("prepay_id", "wx1"),
            ]),
            &m.key,
        );
        let answer = Answer::from_body(&good, &m);
        assert_eq!(answer.reply(), Reply::Success);
        assert_eq!(answer.field("prepay_id"), Some("wx1"));
    }

    /// The seed's check was inverted and never looked at result_code.
    #[test]
    fn a_reply_is_not_success_unless_both_codes_say_so() {
        let m = merchant();
        let business_fail = signed(
            &with(&[
                ("return_code", "SUCCESS"),
                ("result_code", "FAIL"),
                ("err_code", "NOAUTH"),
                ("err_code_des", "商户无此接口权限"),
                ("prepay_id", "wx1"),
            ]),
            &m.key,
        );
        let answer = Answer::from_body(&business_fail, &m);
        assert_eq!(
            answer.reply(),
            Reply::BusinessFail {
                err_code: "NOAUTH".into(),
                err_code_des: "商户无此接口权限".into()
            }
        );

        let protocol_fail = xml::to_xml([
            ("return_code", "FAIL"),
            ("return_msg", "签名错误"),
            ("prepay_id", "wx1"),
        ]);
        let answer = Answer::from_body(protocol_fail.as_bytes(), &m);
        assert_eq!(
            answer.reply(),
            Reply::ReturnFail {
                return_msg: "签名错误".into()
            }
        );
        assert_eq!(
            answer.field("prepay_id"),
            None,
            "fields of an unsigned FAIL are not trusted"
        );

        let no_codes = signed(&with(&[("prepay_id", "wx1")]), &m.key);
        assert_eq!(
            Answer::from_body(&no_codes, &m).reply(),
            Reply::Unknown(Transport::Unreadable)
        );
    }

    #[test]
    fn forged_or_foreign_replies_are_untrusted() {
        let m = merchant();
        let success = [
            ("return_code", "SUCCESS"),
            ("result_code", "SUCCESS"),
            ("prepay_id", "wx1"),
        ];
        let forged = signed(&with(&success), &ApiKey::new("some other key"));
        assert_eq!(Answer::from_body(&forged, &m).reply(), Reply::Untrusted);
        assert_eq!(Answer::from_body(&forged, &m).field("prepay_id"), None);

        let unsigned = xml::to_xml(with(&success));
        assert_eq!(
            Answer::from_body(unsigned.as_bytes(), &m).reply(),
            Reply::Untrusted
        );

        let foreign_app: Vec<_> = with(&success)
            .into_iter()
            .map(|(n, v)| {
                if n == "appid" {
                    (n, "wx_someone_else")
                } else {
                    (n, v)
                }
            })
            .collect();
        let foreign = signed(&foreign_app, &m.key);
        assert_eq!(Answer::from_body(&foreign, &m).reply(), Reply::Untrusted);

        assert_eq!(
            Answer::from_body(b"<html>502 Bad Gateway</html>", &m).reply(),
            Reply::Unknown(Transport::Unreadable)
        );
    }
}
