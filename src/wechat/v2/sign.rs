//! WeChat Pay v2 signatures (docs/wechat-pay-v2.md §1): MD5 or HMAC-SHA256 over every non-empty
//! field except `sign`, sorted by name bytes, raw values, `&key=` appended, uppercase hex.

use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use rand::TryRngCore;
use rand::distr::{Alphanumeric, SampleString};
use rand::rngs::OsRng;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::Fields;

/// The two v2 signature algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SignType {
    #[serde(rename = "MD5")]
    Md5,
    #[serde(rename = "HMAC-SHA256")]
    HmacSha256,
}

impl SignType {
    /// The wire name, as in `sign_type` and `signType`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignType::Md5 => "MD5",
            SignType::HmacSha256 => "HMAC-SHA256",
        }
    }

    /// The other algorithm (for "did you mean" hints).
    pub fn other(self) -> SignType {
        match self {
            SignType::Md5 => SignType::HmacSha256,
            SignType::HmacSha256 => SignType::Md5,
        }
    }

    /// The algorithm a signature of this many hex digits was made with.
    pub fn from_signature_len(len: usize) -> Option<SignType> {
        match len {
            32 => Some(SignType::Md5),
            64 => Some(SignType::HmacSha256),
            _ => None,
        }
    }
}

impl fmt::Display for SignType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SignType {
    type Err = SignatureError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "MD5" => Ok(SignType::Md5),
            "HMAC-SHA256" => Ok(SignType::HmacSha256),
            other => Err(SignatureError::UnknownSignType(other.to_owned())),
        }
    }
}

/// The merchant's v2 API key (商户平台 → API安全). Never printed: `Debug` shows a mask.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct ApiKey(SecretString);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(SecretString::from(key.into()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Length in characters, for configuration checks.
    pub fn len(&self) -> usize {
        self.expose().chars().count()
    }

    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the message carries no sign")]
    Missing,
    #[error("sign_type {0:?} is neither MD5 nor HMAC-SHA256")]
    UnknownSignType(String),
    #[error("a sign of {0} characters is neither MD5 (32) nor HMAC-SHA256 (64)")]
    UnrecognisedLength(usize),
    #[error("the sign does not match the message")]
    Mismatch,
}

/// The fields that are signed, sorted by name bytes: non-empty and not `sign`.
pub fn signed_pairs<'a>(
    fields: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<(&'a str, &'a str)> {
    let mut pairs: Vec<_> = fields
        .into_iter()
        .filter(|(name, value)| *name != "sign" && !value.is_empty())
        .collect();
    pairs.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    pairs
}

/// `stringA` of the spec: `name=value` pairs joined by `&`, without the key.
pub fn string_to_sign<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    feed(&signed_pairs(fields), None, &mut |bytes| {
        out.push_str(std::str::from_utf8(bytes).unwrap_or_default())
    });
    out
}

/// Streams `stringA` (and `&key=KEY` when a key is given) into `sink` without building it.
fn feed(pairs: &[(&str, &str)], key: Option<&str>, sink: &mut dyn FnMut(&[u8])) {
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            sink(b"&");
        }
        sink(name.as_bytes());
        sink(b"=");
        sink(value.as_bytes());
    }
    if let Some(key) = key {
        sink(b"&key=");
        sink(key.as_bytes());
    }
}

/// The signature of `fields` with `key`: uppercase hex, 32 digits (MD5) or 64 (HMAC-SHA256).
pub fn sign<'a>(
    fields: impl IntoIterator<Item = (&'a str, &'a str)>,
    key: &ApiKey,
    sign_type: SignType,
) -> String {
    let pairs = signed_pairs(fields);
    digest(key, sign_type, |sink| {
        feed(&pairs, Some(key.expose()), sink)
    })
}

/// The signature of an already-built `stringA` (for diagnostics that build variants of it).
pub fn sign_string(string_a: &str, key: &ApiKey, sign_type: SignType) -> String {
    digest(key, sign_type, |sink| {
        sink(string_a.as_bytes());
        sink(b"&key=");
        sink(key.expose().as_bytes());
    })
}

/// Hashes the message `write` produces: MD5 of it, or HMAC-SHA256 of it keyed with `key`.
fn digest(key: &ApiKey, sign_type: SignType, write: impl Fn(&mut dyn FnMut(&[u8]))) -> String {
    match sign_type {
        SignType::Md5 => {
            let mut md5 = Md5::new();
            write(&mut |b| md5.update(b));
            hex::encode_upper(md5.finalize())
        }
        SignType::HmacSha256 => {
            // HMAC accepts keys of any length; the error arm is unreachable.
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.expose().as_bytes()) else {
                return String::new();
            };
            write(&mut |b| mac.update(b));
            hex::encode_upper(mac.finalize().into_bytes())
        }
    }
}

/// The algorithm a received message is verified with: its `sign_type` field when present,
/// otherwise the length of its `sign` (HMAC-SHA256 notifies come without `sign_type`).
pub fn detect_sign_type(fields: &Fields) -> Result<SignType, SignatureError> {
    let sign = fields.non_empty("sign").ok_or(SignatureError::Missing)?;
    match fields.non_empty("sign_type") {
        Some(name) => name.parse(),
        None => SignType::from_signature_len(sign.len())
            .ok_or(SignatureError::UnrecognisedLength(sign.len())),
    }
}

/// Verifies a received message over all its raw fields; returns the algorithm it used.
pub fn verify(fields: &Fields, key: &ApiKey) -> Result<SignType, SignatureError> {
    let sign_type = detect_sign_type(fields)?;
    let received = fields.non_empty("sign").ok_or(SignatureError::Missing)?;
    let expected = sign(fields.iter(), key, sign_type);
    if constant_time_eq(expected.as_bytes(), received.as_bytes()) {
        Ok(sign_type)
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Byte equality whose time does not depend on where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// 32 alphanumeric characters from the operating system's CSPRNG.
pub fn nonce() -> String {
    random_alphanumeric(32)
}

/// `len` alphanumeric characters from the operating system's CSPRNG.
pub fn random_alphanumeric(len: usize) -> String {
    Alphanumeric.sample_string(&mut OsRng.unwrap_err(), len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DOC_KEY: &str = "192006250b4c09247ec02edce69f6a2d";

    fn key() -> ApiKey {
        ApiKey::new(DOC_KEY)
    }

    /// Vector A of docs/wechat-pay-v2.md §1.4 (Chinese body, empty attach skipped).
    fn vector_a() -> Vec<(&'static str, &'static str)> {
        vec![
            ("appid", "wxd930ea5d5a258f4f"),
            ("mch_id", "10000100"),
            ("nonce_str", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS"),
            ("body", "腾讯充值中心-QQ会员充值"),
            ("attach", ""),
            ("out_trade_no", "20150806125346"),
            ("total_fee", "88"),
            ("spbill_create_ip", "123.12.12.123"),
            ("notify_url", "https://example.com/v1/wechat/notify"),
            ("trade_type", "JSAPI"),
            ("openid", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"),
        ]
    }

    /// Vector D of §1.4: a notify with coupon fields a naive struct would drop.
    fn vector_d() -> Vec<(&'static str, &'static str)> {
        vec![
            ("appid", "wxd930ea5d5a258f4f"),
            ("attach", "order-42"),
            ("bank_type", "OTHERS"),
            ("cash_fee", "80"),
            ("coupon_count", "1"),
            ("coupon_fee", "8"),
            ("coupon_fee_0", "8"),
            ("coupon_id_0", "10000"),
            ("coupon_type_0", "NO_CASH"),
            ("fee_type", "CNY"),
            ("is_subscribe", "N"),
            ("mch_id", "10000100"),
            ("nonce_str", "5d2b6c2a8db53831f7eda20af46e531c"),
            ("openid", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"),
            ("out_trade_no", "20150806125346"),
            ("result_code", "SUCCESS"),
            ("return_code", "SUCCESS"),
            ("sign_type", "MD5"),
            ("time_end", "20231114221320"),
            ("total_fee", "88"),
            ("trade_type", "JSAPI"),
            ("transaction_id", "1004400740201409030005092168"),
        ]
    }

    #[test]
    fn official_vector_md5_and_hmac() {
        let fields = [
            ("appid", "wxd930ea5d5a258f4f"),
            ("mch_id", "10000100"),
            ("device_info", "1000"),
            ("body", "test"),
            ("nonce_str", "ibuaiVcKdpRxkhJA"),
        ];
        assert_eq!(
            string_to_sign(fields),
            "appid=wxd930ea5d5a258f4f&body=test&device_info=1000&mch_id=10000100&nonce_str=ibuaiVcKdpRxkhJA"
        );
        assert_eq!(
            sign(fields, &key(), SignType::Md5),
            "9A0A8659F005D6984697E2CA0A9CF3B7"
        );
        assert_eq!(
            sign(fields, &key(), SignType::HmacSha256),
            "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"
        );
    }

    #[test]
    fn official_pay_sign_vector() {
        let fields = [
            ("appId", "wxd678efh567hg6787"),
            ("nonceStr", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS"),
            ("package", "prepay_id=wx2017033010242291fcfe0db70013231072"),
            ("signType", "MD5"),
            ("timeStamp", "1490840662"),
        ];
        let key = ApiKey::new("qazwsxedcrfvtgbyhnujmikolp111111");
        assert_eq!(
            sign(fields, &key, SignType::Md5),
            "22D9B4E54AB1950F51E0649E8810ACD6"
        );
    }

    #[test]
    fn vector_a_skips_the_empty_attach() {
        assert_eq!(
            sign(vector_a(), &key(), SignType::Md5),
            "0B8597460089E35E6602B5411146ECE5"
        );
        // the control: signing "attach=" gives WeChat's "签名错误"
        let keep_empty = vector_a()
            .into_iter()
            .map(|(n, v)| if n == "attach" { (n, "\u{0}") } else { (n, v) })
            .collect::<Vec<_>>();
        let with_empty = string_to_sign(keep_empty).replace('\u{0}', "");
        let md5 = hex::encode_upper(Md5::digest(format!("{with_empty}&key={DOC_KEY}")));
        assert_eq!(md5, "0CDA264D18CBA55C24AF8307306AB5F7");
    }

    #[test]
    fn vector_b_signs_the_sign_type_field() {
        let mut fields = vector_a();
        fields.push(("sign_type", "HMAC-SHA256"));
        assert_eq!(
            sign(fields.clone(), &key(), SignType::HmacSha256),
            "7DAF1AFA28A23B2BA752C6F3DBFB27D2CEC50652D094EF7F52CC98E1E1E135FB"
        );
        let without: Vec<_> = fields
            .into_iter()
            .filter(|(n, _)| *n != "sign_type")
            .collect();
        assert_eq!(
            sign(without, &key(), SignType::HmacSha256),
            "58D4CCB5B2030A85FB6CA949BABAD46B14827D05EE20E0B17BA8B109402918B7"
        );
    }

    #[test]
    fn vector_d_counts_coupon_fields_and_d_prime_is_found_by_length() {
        assert_eq!(
            sign(vector_d(), &key(), SignType::Md5),
            "FBE032DDA66191DD860150DCF42581EA"
        );
        let naive: Vec<_> = vector_d()
            .into_iter()
            .filter(|(n, _)| !matches!(*n, "coupon_fee_0" | "coupon_id_0" | "coupon_type_0"))
            .collect();
        assert_eq!(
            sign(naive, &key(), SignType::Md5),
            "37484EF1CFEE50BC64D25F1C31BD8537"
        );

        // D': the same notify as sent for an HMAC-SHA256 order, without sign_type
        let mut fields: Fields = vector_d()
            .into_iter()
            .filter(|(n, _)| *n != "sign_type")
            .collect();
        fields.set(
            "sign",
            "AE9E1F2FA772F1ACEF570E9DA5959BFAC72553488189EA5E70827F5CBB1AFC80",
        );
        assert_eq!(verify(&fields, &key()), Ok(SignType::HmacSha256));
    }

    #[test]
    fn verification_uses_the_sign_type_field_then_the_length() {
        let mut d: Fields = vector_d().into_iter().collect();
        d.set("sign", "FBE032DDA66191DD860150DCF42581EA");
        assert_eq!(verify(&d, &key()), Ok(SignType::Md5));

        // sign_type says HMAC but the sign is the MD5 one: mismatch, not a fallback
        let mut lying = d.clone();
        lying.set("sign_type", "HMAC-SHA256");
        assert_eq!(verify(&lying, &key()), Err(SignatureError::Mismatch));

        let mut unknown = d.clone();
        unknown.set("sign_type", "SHA1");
        assert_eq!(
            verify(&unknown, &key()),
            Err(SignatureError::UnknownSignType("SHA1".into()))
        );

        let mut odd = d.clone();
        odd.remove("sign_type");
        odd.set("sign", "ABC");
        assert_eq!(
            verify(&odd, &key()),
            Err(SignatureError::UnrecognisedLength(3))
        );

        let mut unsigned = d.clone();
        unsigned.remove("sign");
        assert_eq!(verify(&unsigned, &key()), Err(SignatureError::Missing));
        unsigned.set("sign", "");
        assert_eq!(verify(&unsigned, &key()), Err(SignatureError::Missing));

        let mut lower = d.clone();
        lower.set("sign", "fbe032dda66191dd860150dcf42581ea");
        assert_eq!(verify(&lower, &key()), Err(SignatureError::Mismatch));

        assert_eq!(
            verify(&d, &ApiKey::new("another key")),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn values_are_raw_never_trimmed_or_url_encoded() {
        let spaced = sign([("a", " x "), ("b", "a&b=c")], &key(), SignType::Md5);
        let trimmed = sign([("a", "x"), ("b", "a&b=c")], &key(), SignType::Md5);
        assert_ne!(spaced, trimmed);
        assert_eq!(
            string_to_sign([("b", "a&b=c"), ("a", " x ")]),
            "a= x &b=a&b=c"
        );
    }

    #[test]
    fn the_key_never_shows_in_debug() {
        assert_eq!(format!("{:?}", key()), "ApiKey(***)");
    }

    #[test]
    fn nonces_are_32_alphanumerics_and_differ() {
        let (a, b) = (nonce(), nonce());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    proptest! {
        #[test]
        fn sign_then_verify_round_trips(
            map in proptest::collection::btree_map("[a-z_0-9]{1,12}", ".{0,40}", 0..20),
            hmac in any::<bool>(),
            key_text in ".{1,40}",
        ) {
            let key = ApiKey::new(key_text);
            let sign_type = if hmac { SignType::HmacSha256 } else { SignType::Md5 };
            let mut fields: Fields = map.into_iter().filter(|(n, _)| n != "sign" && n != "sign_type").collect();
            let signature = sign(fields.iter(), &key, sign_type);
            fields.set("sign", signature);
            prop_assert_eq!(verify(&fields, &key), Ok(sign_type));
            // any change to a signed value breaks it
            let first_signed = fields
                .iter()
                .find(|(n, v)| *n != "sign" && !v.is_empty())
                .map(|(n, v)| (n.to_owned(), v.to_owned()));
            if let Some((name, value)) = first_signed {
                fields.set(name, format!("{value}x"));
                prop_assert_eq!(verify(&fields, &key), Err(SignatureError::Mismatch));
            }
        }
    }
}
