//! The refund notify (docs/refunds.md): an unsigned outer `<xml>` whose `req_info` is base64
//! of AES-256-ECB (PKCS#7) over a `<root>` document of the refund's fields, keyed with the
//! 32 ASCII characters of the lower-case hex MD5 of the API key. AES-ECB gives secrecy, not
//! integrity: a decrypted notify is a claim to check against a refund we know, which is the
//! caller's job; this module only opens it, with a typed error for each way it can fail.

use aes::Aes256;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use ecb::cipher::block_padding::Pkcs7;
use ecb::cipher::{BlockDecryptMut, BlockEncryptMut, KeyInit};
use md5::{Digest, Md5};
use minipay_jobs::RefundResult;

use super::refund::{FieldError, Reader, parse_refund_status, parse_refund_time};
use super::refund::{refund_status_name, refund_time};
use crate::wechat::v2::sign::ApiKey;
use crate::wechat::v2::xml::{self, XmlError};
use crate::wechat::v2::{Fields, Merchant};

/// Why a refund notify was not opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefundNotifyError {
    #[error("notify body: {0}")]
    Body(XmlError),
    #[error("return_code is not SUCCESS ({0:?})")]
    ReturnFail(String),
    #[error("appid is not ours")]
    ForeignAppid,
    #[error("mch_id is not ours")]
    ForeignMchId,
    #[error("the notify carries no req_info")]
    MissingReqInfo,
    #[error("req_info is not base64")]
    NotBase64,
    #[error("req_info is not a whole number of AES blocks")]
    BadCiphertext,
    #[error("req_info does not decrypt with our key (bad padding)")]
    BadPadding,
    #[error("decrypted req_info: {0}")]
    Plaintext(XmlError),
    #[error("decrypted req_info: {0}")]
    Field(#[from] FieldError),
}

impl RefundNotifyError {
    /// A short stable name, for metrics labels and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            RefundNotifyError::Body(_) => "body",
            RefundNotifyError::ReturnFail(_) => "return_fail",
            RefundNotifyError::ForeignAppid => "foreign_appid",
            RefundNotifyError::ForeignMchId => "foreign_mch_id",
            RefundNotifyError::MissingReqInfo => "missing_req_info",
            RefundNotifyError::NotBase64 => "not_base64",
            RefundNotifyError::BadCiphertext => "bad_ciphertext",
            RefundNotifyError::BadPadding => "bad_padding",
            RefundNotifyError::Plaintext(_) => "plaintext",
            RefundNotifyError::Field(_) => "field",
        }
    }
}

/// The AES-256 key: the lower-case hex MD5 of the API key, as 32 ASCII bytes. Hex-encoding the
/// digest bytes keeps a leading zero (a digest printed as a number would lose it and give a
/// 31-byte key).
fn aes_key(key: &ApiKey) -> [u8; 32] {
    let digest = Md5::digest(key.expose().as_bytes());
    let mut aes_key = [0u8; 32];
    // 16 digest bytes always encode to exactly 32 hex characters.
    let _ = hex::encode_to_slice(digest, &mut aes_key);
    aes_key
}

/// Decrypts a `req_info` value into the bytes of its `<root>` document.
pub fn decrypt_req_info(req_info: &str, key: &ApiKey) -> Result<Vec<u8>, RefundNotifyError> {
    let ciphertext = STANDARD
        .decode(req_info)
        .map_err(|_| RefundNotifyError::NotBase64)?;
    if ciphertext.is_empty() || ciphertext.len() % 16 != 0 {
        return Err(RefundNotifyError::BadCiphertext);
    }
    ecb::Decryptor::<Aes256>::new(&aes_key(key).into())
        .decrypt_padded_vec_mut::<Pkcs7>(&ciphertext)
        .map_err(|_| RefundNotifyError::BadPadding)
}

/// Encrypts a `<root>` document into a `req_info` value (the simulator's side).
pub fn encrypt_req_info(plain: &[u8], key: &ApiKey) -> String {
    let ciphertext =
        ecb::Encryptor::<Aes256>::new(&aes_key(key).into()).encrypt_padded_vec_mut::<Pkcs7>(plain);
    STANDARD.encode(ciphertext)
}

/// The refund a notify reports, as decrypted from `req_info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundInfo {
    pub transaction_id: String,
    pub out_trade_no: String,
    pub refund_id: String,
    pub out_refund_no: String,
    pub total_fee: i64,
    pub settlement_total_fee: Option<i64>,
    pub refund_fee: i64,
    pub settlement_refund_fee: Option<i64>,
    /// Succeeded, Closed or Abnormal: a notify reports only final results.
    pub refund_status: RefundResult,
    /// When the money went back (`yyyy-MM-dd HH:mm:ss` Beijing time on the wire).
    pub success_time: Option<DateTime<Utc>>,
    /// `refund_recv_accout` (sic, WeChat's spelling): where the money went.
    pub refund_recv_accout: Option<String>,
    /// Which of the merchant's funds paid it, e.g. `REFUND_SOURCE_RECHARGE_FUNDS`.
    pub refund_account: Option<String>,
    /// `API`, or `VENDOR_PLATFORM` for a refund made by hand in WeChat's merchant console.
    pub refund_request_source: Option<String>,
}

impl RefundInfo {
    /// Reads the decrypted fields.
    pub fn from_fields(fields: &Fields) -> Result<RefundInfo, FieldError> {
        let r = Reader(fields);
        let status_text = r.text("refund_status")?;
        let refund_status = match parse_refund_status(&status_text)? {
            RefundResult::Processing => {
                return Err(FieldError::Malformed {
                    field: "refund_status".into(),
                    value: status_text,
                });
            }
            final_result => final_result,
        };
        let success_time = match r.optional("success_time") {
            Some(t) => Some(parse_refund_time(&t).ok_or(FieldError::Malformed {
                field: "success_time".into(),
                value: t,
            })?),
            None => None,
        };
        Ok(RefundInfo {
            transaction_id: r.text("transaction_id")?,
            out_trade_no: r.text("out_trade_no")?,
            refund_id: r.text("refund_id")?,
            out_refund_no: r.text("out_refund_no")?,
            total_fee: r.fen("total_fee")?,
            settlement_total_fee: r.optional_fen("settlement_total_fee")?,
            refund_fee: r.fen("refund_fee")?,
            settlement_refund_fee: r.optional_fen("settlement_refund_fee")?,
            refund_status,
            success_time,
            refund_recv_accout: r.optional("refund_recv_accout"),
            refund_account: r.optional("refund_account"),
            refund_request_source: r.optional("refund_request_source"),
        })
    }

    /// The fields as WeChat writes them (the simulator's side).
    pub fn to_fields(&self) -> Fields {
        let mut fields = Fields::new();
        fields.set("transaction_id", &self.transaction_id);
        fields.set("out_trade_no", &self.out_trade_no);
        fields.set("refund_id", &self.refund_id);
        fields.set("out_refund_no", &self.out_refund_no);
        fields.set("total_fee", self.total_fee.to_string());
        if let Some(fee) = self.settlement_total_fee {
            fields.set("settlement_total_fee", fee.to_string());
        }
        fields.set("refund_fee", self.refund_fee.to_string());
        if let Some(fee) = self.settlement_refund_fee {
            fields.set("settlement_refund_fee", fee.to_string());
        }
        fields.set("refund_status", refund_status_name(self.refund_status));
        let optional = [
            ("success_time", self.success_time.map(refund_time)),
            ("refund_recv_accout", self.refund_recv_accout.clone()),
            ("refund_account", self.refund_account.clone()),
            ("refund_request_source", self.refund_request_source.clone()),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                fields.set(name, value);
            }
        }
        fields
    }

    /// Made by hand in WeChat's merchant console, not by our request.
    pub fn from_merchant_console(&self) -> bool {
        self.refund_request_source.as_deref() == Some("VENDOR_PLATFORM")
    }
}

/// Decrypts and reads a `req_info` value.
pub fn open_req_info(req_info: &str, key: &ApiKey) -> Result<RefundInfo, RefundNotifyError> {
    let plain = decrypt_req_info(req_info, key)?;
    let fields = xml::parse_root(&plain, xml::DEFAULT_BODY_LIMIT, "root")
        .map_err(RefundNotifyError::Plaintext)?;
    Ok(RefundInfo::from_fields(&fields)?)
}

/// A notify body is a refund notify (not a payment one) when it carries `req_info`: merchants
/// often give WeChat one URL for both.
pub fn is_refund_notify(fields: &Fields) -> bool {
    fields.contains("req_info")
}

/// Opens a refund notify body: the safe XML reader, `return_code` SUCCESS, our appid and
/// mch_id, then `req_info` decrypted with our key and read.
pub fn read_refund_notify(
    body: &[u8],
    merchant: &Merchant,
) -> Result<RefundInfo, RefundNotifyError> {
    let fields = xml::parse(body, xml::DEFAULT_BODY_LIMIT).map_err(RefundNotifyError::Body)?;
    open_refund_notify(&fields, merchant)
}

/// [`read_refund_notify`] for a body already read into fields.
pub fn open_refund_notify(
    fields: &Fields,
    merchant: &Merchant,
) -> Result<RefundInfo, RefundNotifyError> {
    if fields.get("return_code") != Some("SUCCESS") {
        let message = fields.get("return_msg").unwrap_or_default().to_owned();
        return Err(RefundNotifyError::ReturnFail(message));
    }
    if fields.get("appid") != Some(merchant.appid.as_str()) {
        return Err(RefundNotifyError::ForeignAppid);
    }
    if fields.get("mch_id") != Some(merchant.mch_id.as_str()) {
        return Err(RefundNotifyError::ForeignMchId);
    }
    let req_info = fields
        .non_empty("req_info")
        .ok_or(RefundNotifyError::MissingReqInfo)?;
    open_req_info(req_info, &merchant.key)
}

/// The notify body WeChat POSTs for `info` (the simulator's side).
pub fn refund_notify_body(appid: &str, mch_id: &str, key: &ApiKey, info: &RefundInfo) -> String {
    let plain = to_root_xml(&info.to_fields());
    xml::to_xml([
        ("return_code", "SUCCESS"),
        ("appid", appid),
        ("mch_id", mch_id),
        ("nonce_str", crate::wechat::v2::sign::nonce().as_str()),
        ("req_info", encrypt_req_info(plain.as_bytes(), key).as_str()),
    ])
}

/// A flat `<root>` document, as WeChat encrypts into `req_info`.
fn to_root_xml(fields: &Fields) -> String {
    let inner = xml::to_xml(fields.iter());
    let body = inner
        .strip_prefix("<xml>")
        .and_then(|s| s.strip_suffix("</xml>"))
        .unwrap_or_default();
    format!("<root>{body}</root>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::v2::SignType;

    /// wechatpy's `tests/test_crypto.py` (`test_refund_notify_decrypt_message`).
    const WECHATPY_KEY: &str = "OF4Ne3znh8KqL0V4NqmALQa0uXMYKcEk";
    const WECHATPY_REQ_INFO: &str = "51A27s9LxbaEv52nBOrqa0FCs3HVIM31Wc3BpNqSCP5MQlS8HL1Vl7mZ21043B7PZy7adtOZGtZv44lGl0U8JXlVFL4Ltxsw6+pACjZBB0Qi1LUDjFlP2IyTxYX4eC57kxnCphDdIyRkU67kOWW/HN/efggTUlaPJkoL5kVe9Y1MZF55IHR4lwGI7WtVLtxATX1tkAVZF+/ri0WlPXo9+GkqeB2/id6Ozw09Tqp8C/TKbmKBpRhTCRU2TzfQoLa6fjbgETFHJ795aEMyUZPQYbbsz6U9Rj9lUzEh8+Oc8KYTXa9zVk+nnFr82+yjffb3d36ylTe0y/VmYf90rf9cbiJQdM00zZ8Qa99SlMTs2wjOO4Mi4Btlg1PebsLF8TkqbSZkRJDGs61UunUB8Km1b/VeBxXuv4D3H7DiVZ9Fj7lq2j07zFDpxxlhhen7kZvMWWO3lrfFpA9c4eFOqfF9SxcU9nBmHfDD1g/dsrMl6+a71xQHJ/gn80fZOefUBv92ggqutsuJ4gd4OqkmO0XUs8e4XQyLpra+LvpmahsU5lBIZuQcMq3FHrqe8hXTfp3+3qym2wGfvPI75jx41VZwmBQy9izB1Id+A5lUeXC5QJy+ryDu/dWkhB+aMjkElaI/Epmcc/IEPaI73W6Hc58hNednOM536rPnn+GDc98PdGszpLTjmaZSu8dtqwPaym66yRqFQowzFoBbooik57iHUFBCeWya7XcXYL9WKhRF3uIZM+Kfv9/Zs2pF+w9/EJpltuzPpT1GP2VTMSHz45zwphFlS2lX8wHyZ+k9n2dptzQqpOCPedt5iQAmAe1oNQMxNdPDH9g68x9UzWD1kfK/dPO+3NPAh0XG+io4x15fIknNf7JLjpAuWicMMzCdwC4hhqeYOzQ+pC9f2xJXi5YViNKIZY69oO8eoHYRitLZrHLgx3oB2zimmqX6BI+DMklKAzAqqgGmbFxcVTvxZB6cMCx+H7TTWXnjAG+6A3SrCcxg0l5+UB93pkAYR7SVJ+VaZoiBqlqnZvb7IM17n9XaaFntlzvbbFCIa7OnOQb5Lvw=";

    fn wechatpy_merchant() -> Merchant {
        Merchant {
            appid: "wx4f4bc4dec97d474b".into(),
            mch_id: "12345678".into(),
            key: ApiKey::new(WECHATPY_KEY),
            sign_type: SignType::Md5,
        }
    }

    fn wechatpy_body() -> String {
        format!(
            "\n<xml>\n<return_code>SUCCESS</return_code>\n<appid><![CDATA[wx4f4bc4dec97d474b]]></appid>\n<mch_id><![CDATA[12345678]]></mch_id>\n<nonce_str><![CDATA[c1c237efc87ee8dfcb3f9124b63a4d94]]></nonce_str>\n<req_info><![CDATA[{WECHATPY_REQ_INFO}]]></req_info>\n</xml>"
        )
    }

    #[test]
    fn wechatpys_refund_notify_opens() {
        let info = read_refund_notify(wechatpy_body().as_bytes(), &wechatpy_merchant()).unwrap();
        assert_eq!(info.out_refund_no, "1234");
        assert_eq!(info.out_trade_no, "2020010418301551404339261814");
        assert_eq!(info.transaction_id, "4200000483202001042069747825");
        assert_eq!(info.refund_id, "50300103182020010413419046597");
        // The rest as `openssl enc -d -aes-256-ecb` reads the same ciphertext.
        assert_eq!((info.total_fee, info.refund_fee), (1, 1));
        assert_eq!(
            (info.settlement_total_fee, info.settlement_refund_fee),
            (Some(1), Some(1))
        );
        assert_eq!(info.refund_status, RefundResult::Succeeded);
        assert_eq!(
            info.success_time.map(refund_time).as_deref(),
            Some("2020-01-04 18:34:24")
        );
        assert_eq!(
            info.refund_recv_accout.as_deref(),
            Some("招商银行信用卡8915")
        );
        assert_eq!(
            info.refund_account.as_deref(),
            Some("REFUND_SOURCE_RECHARGE_FUNDS")
        );
        assert_eq!(info.refund_request_source.as_deref(), Some("API"));
        assert!(!info.from_merchant_console());
    }

    /// The two computed vectors of docs/refunds.md; the second key's MD5 starts with a zero
    /// byte (`0149ee48...`).
    #[test]
    fn the_documented_vectors_decrypt_including_a_leading_zero_digest() {
        let vectors = [
            (
                "192006250b4c09247ec02edce69f6a2d",
                "WBzGpzQuNpcFxIlFjUUD9BfnwwNUlVAs7bwvgHME4/T+gvHVcxv3RuVKsUsb6tmZEzEQIOaZs9EYO4DOrifmCTgq0kjybTzAAohuK22oZiQeYmN6vH/Djg1pZrZaR/RzEBJoUKtpJ+UjPj4YZ/5FKPGEhp/A+N2mzr6rdQUz6oAnyxks5bOHDzmimgCtgvJhSQ0zU3hlCkgrJ3W05mxTEQ==",
                "<root><out_refund_no><![CDATA[R20231114001]]></out_refund_no><refund_fee>88</refund_fee><refund_status><![CDATA[SUCCESS]]></refund_status></root>",
            ),
            (
                "37381208bbce2acddc69e6aa2c6597d8",
                "lXqnge/d+DFUzGW0RTSh07Pe63wb028c1dloXlqGU6/VrLE8J6tKopTBMR0RYvYrARHQ3jTZg6oSGh9EUVB3H2TO7SE45D/PFAtpjwMLYBJZ+z7JwCEEv/llDKmG/N376n8s9wjynst/8BsL2J/NFSciLWFNJG2G9DPihET3y0f56NIGWNc1Dt4j3CTEbStp",
                "<root><out_refund_no><![CDATA[R1]]></out_refund_no><refund_fee>1</refund_fee><refund_status><![CDATA[SUCCESS]]></refund_status></root>",
            ),
        ];
        for (api_key, req_info, plain) in vectors {
            let key = ApiKey::new(api_key);
            let decrypted = decrypt_req_info(req_info, &key).unwrap();
            assert_eq!(String::from_utf8(decrypted).unwrap(), plain);
            assert_eq!(encrypt_req_info(plain.as_bytes(), &key), req_info);
            // These vectors carry only three fields; a real notify needs the rest.
            assert_eq!(
                open_req_info(req_info, &key),
                Err(RefundNotifyError::Field(FieldError::Missing(
                    "transaction_id".into()
                )))
            );
        }
        let zero_led = aes_key(&ApiKey::new("37381208bbce2acddc69e6aa2c6597d8"));
        assert_eq!(&zero_led, b"0149ee4840bbaf838affca6d31d25ee1");
    }

    /// The fuzz seed was encrypted with `openssl enc -aes-256-ecb`, independently of this code.
    #[test]
    fn a_notify_encrypted_by_openssl_opens() {
        let body = include_bytes!("../../../fuzz/seeds/refund_notify/notify-success.xml");
        let m = Merchant {
            key: ApiKey::new("192006250b4c09247ec02edce69f6a2d"),
            ..ours()
        };
        let info = read_refund_notify(body, &m).unwrap();
        assert_eq!(info.out_refund_no, "R20231114001");
        assert_eq!((info.total_fee, info.refund_fee), (88, 30));
        assert!(info.from_merchant_console());
    }

    fn info() -> RefundInfo {
        RefundInfo {
            transaction_id: "4200000483202001042069747825".into(),
            out_trade_no: "MP20231114_0001".into(),
            refund_id: "50300103182020010413419046597".into(),
            out_refund_no: "R1".into(),
            total_fee: 88,
            settlement_total_fee: Some(88),
            refund_fee: 30,
            settlement_refund_fee: Some(30),
            refund_status: RefundResult::Succeeded,
            success_time: parse_refund_time("2023-11-14 22:13:20"),
            refund_recv_accout: Some("支付用户的零钱".into()),
            refund_account: Some("REFUND_SOURCE_RECHARGE_FUNDS".into()),
            refund_request_source: Some("API".into()),
        }
    }

    fn ours() -> Merchant {
        Merchant {
            appid: "wxd930ea5d5a258f4f".into(),
            mch_id: "10000100".into(),
            key: ApiKey::new("37381208bbce2acddc69e6aa2c6597d8"),
            sign_type: SignType::Md5,
        }
    }

    #[test]
    fn a_notify_round_trips_through_encryption() {
        let m = ours();
        for status in [
            RefundResult::Succeeded,
            RefundResult::Closed,
            RefundResult::Abnormal,
        ] {
            let mut sent = info();
            sent.refund_status = status;
            let body = refund_notify_body(&m.appid, &m.mch_id, &m.key, &sent);
            let fields = xml::parse(body.as_bytes(), xml::DEFAULT_BODY_LIMIT).unwrap();
            assert!(is_refund_notify(&fields));
            assert!(!fields.contains("sign"), "refund notifies are unsigned");
            assert_eq!(read_refund_notify(body.as_bytes(), &m), Ok(sent));
        }
        let mut console = info();
        console.refund_request_source = Some("VENDOR_PLATFORM".into());
        assert!(console.from_merchant_console());
        assert!(!info().from_merchant_console());
    }

    #[test]
    #[allow(clippy::too_many_lines)] // one case per way to fail, read as one table
    fn each_way_a_notify_fails_has_its_error() {
        let m = ours();
        let good = refund_notify_body(&m.appid, &m.mch_id, &m.key, &info());
        let fields = xml::parse(good.as_bytes(), xml::DEFAULT_BODY_LIMIT).unwrap();
        let with = |name: &str, value: &str| {
            let mut f = fields.clone();
            f.set(name, value);
            open_refund_notify(&f, &m)
        };
        let req_info = fields.get("req_info").unwrap().to_owned();

        let other_key = Merchant {
            key: ApiKey::new("192006250b4c09247ec02edce69f6a2d"),
            ..ours()
        };
        assert!(matches!(
            open_refund_notify(&fields, &other_key),
            Err(RefundNotifyError::BadPadding | RefundNotifyError::Plaintext(_))
        ));
        assert_eq!(
            with("appid", "wx_other"),
            Err(RefundNotifyError::ForeignAppid)
        );
        assert_eq!(with("mch_id", "999"), Err(RefundNotifyError::ForeignMchId));
        assert_eq!(
            with("return_code", "FAIL"),
            Err(RefundNotifyError::ReturnFail(String::new()))
        );
        assert_eq!(with("req_info", ""), Err(RefundNotifyError::MissingReqInfo));
        assert_eq!(
            with("req_info", "not base64 at all!"),
            Err(RefundNotifyError::NotBase64)
        );
        assert_eq!(
            with("req_info", "AAAA"),
            Err(RefundNotifyError::BadCiphertext)
        );
        // Flip a bit in the last block: the padding no longer reads.
        let mut bytes = STANDARD.decode(&req_info).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x55;
        assert!(matches!(
            with("req_info", &STANDARD.encode(&bytes)),
            Err(RefundNotifyError::BadPadding | RefundNotifyError::Plaintext(_))
        ));
        // A tampered first block decrypts to garbage: not the <root> document.
        let mut bytes = STANDARD.decode(&req_info).unwrap();
        bytes[0] ^= 0x01;
        assert!(matches!(
            with("req_info", &STANDARD.encode(&bytes)),
            Err(RefundNotifyError::Plaintext(_))
        ));

        let encrypted = |plain: &str| encrypt_req_info(plain.as_bytes(), &m.key);
        assert_eq!(
            with(
                "req_info",
                &encrypted("<!DOCTYPE r [<!ENTITY x \"y\">]><root><a>&x;</a></root>")
            ),
            Err(RefundNotifyError::Plaintext(XmlError::Doctype))
        );
        assert_eq!(
            with("req_info", &encrypted("<xml><a>1</a></xml>")),
            Err(RefundNotifyError::Plaintext(XmlError::WrongRoot(
                "xml".into()
            )))
        );
        let mut processing = info().to_fields();
        processing.set("refund_status", "PROCESSING");
        assert!(matches!(
            with("req_info", &encrypted(&to_root_xml(&processing))),
            Err(RefundNotifyError::Field(FieldError::Malformed { .. }))
        ));
        let mut no_fee = info().to_fields();
        no_fee.remove("refund_fee");
        assert_eq!(
            with("req_info", &encrypted(&to_root_xml(&no_fee))),
            Err(RefundNotifyError::Field(FieldError::Missing(
                "refund_fee".into()
            )))
        );
        assert!(matches!(
            read_refund_notify(&vec![b' '; xml::DEFAULT_BODY_LIMIT + 1], &m),
            Err(RefundNotifyError::Body(XmlError::TooLarge { .. }))
        ));
        assert!(matches!(
            read_refund_notify(b"<!DOCTYPE xml><xml/>", &m),
            Err(RefundNotifyError::Body(XmlError::Doctype))
        ));
    }
}
