//! Verifying a v2 payment notify (docs/wechat-pay-v2.md §6): the XML read strictly, the signature over
//! every received field with our key and sign type, our appid and mch_id, the result code, the
//! payment's fields and its currency. Matching the payment to an order is the domain's part.

use minipay_jobs::{CheckedNotify, NotifyAck, NotifyCheck, NotifyVerdict, PostedNotify, Refusal};

use super::refund_notify::is_refund_notify;
use super::reply::{Untrusted, check_signed_by, payment_from_fields};
use super::xml::{self, DEFAULT_BODY_LIMIT, to_xml};
use super::{Fields, Merchant};

/// The exact acknowledgement WeChat expects (docs/wechat-pay-v2.md §6.3).
pub const SUCCESS_REPLY: &str = "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>";

/// Reads one notify body and, when it is a payment notify, verifies it for `merchant`. The
/// body is parsed once: telling a refund notify apart needs its fields too.
pub fn read(body: &[u8], merchant: &Merchant) -> PostedNotify {
    let fields = match xml::parse(body, DEFAULT_BODY_LIMIT) {
        Ok(fields) => fields,
        Err(e) => {
            return PostedNotify::Payment(CheckedNotify {
                out_trade_no: None,
                check: NotifyCheck::Refused(Refusal::new(e.verdict(), e.to_string())),
            });
        }
    };
    // A refund notify carries `req_info`, whichever URL it was posted to.
    if is_refund_notify(&fields) {
        return PostedNotify::Refund;
    }
    PostedNotify::Payment(CheckedNotify {
        out_trade_no: fields.non_empty("out_trade_no").map(str::to_owned),
        check: check(&fields, merchant),
    })
}

fn check(fields: &Fields, merchant: &Merchant) -> NotifyCheck {
    let refuse = |verdict, detail: String| NotifyCheck::Refused(Refusal::new(verdict, detail));
    if fields.get("return_code") != Some("SUCCESS") {
        return refuse(
            NotifyVerdict::ReturnFail,
            "return_code is not SUCCESS".into(),
        );
    }
    if let Err(e) = check_signed_by(fields, merchant) {
        let verdict = match e {
            Untrusted::Appid | Untrusted::MchId => NotifyVerdict::ForeignMerchant,
            Untrusted::Signature(_) | Untrusted::SignType => NotifyVerdict::BadSignature,
        };
        return refuse(verdict, e.to_string());
    }
    let result = fields.get("result_code").unwrap_or_default();
    if result != "SUCCESS" {
        return NotifyCheck::NotPaid {
            result: result.to_owned(),
        };
    }
    let payment = match payment_from_fields(fields) {
        Ok(payment) => payment,
        Err(e) => return refuse(NotifyVerdict::Incomplete, e.to_string()),
    };
    if let Some(currency) = fields.non_empty("fee_type")
        && currency != "CNY"
    {
        return refuse(NotifyVerdict::WrongCurrency, format!("fee_type {currency}"));
    }
    NotifyCheck::Paid(payment)
}

/// The XML body answering a notify.
pub fn reply(ack: &NotifyAck) -> String {
    match ack {
        NotifyAck::Success => SUCCESS_REPLY.to_owned(),
        NotifyAck::Fail(reason) => to_xml([("return_code", "FAIL"), ("return_msg", reason)]),
    }
}
