//! The parameters `wx.requestPayment` takes (docs/wechat-pay-v2.md §5).

use serde::{Deserialize, Serialize};

use super::sign::{ApiKey, SignType, sign};

/// Exactly what the mini-program passes to `wx.requestPayment`. `appId` is signed but not
/// sent: the running mini-program's own AppID is used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayParams {
    /// Unix time in seconds, as a string (not milliseconds, not a number).
    #[serde(rename = "timeStamp")]
    pub time_stamp: String,
    #[serde(rename = "nonceStr")]
    pub nonce_str: String,
    /// `prepay_id=<prepay_id>`.
    pub package: String,
    /// Must equal the `sign_type` of the unifiedorder call.
    #[serde(rename = "signType")]
    pub sign_type: SignType,
    #[serde(rename = "paySign")]
    pub pay_sign: String,
}

impl PayParams {
    /// Signs `appId, nonceStr, package, signType, timeStamp` — these five names, this casing.
    pub fn new(
        appid: &str,
        prepay_id: &str,
        sign_type: SignType,
        key: &ApiKey,
        unix_secs: i64,
        nonce: String,
    ) -> Self {
        let time_stamp = unix_secs.to_string();
        let package = format!("prepay_id={prepay_id}");
        let pay_sign = sign(
            [
                ("appId", appid),
                ("nonceStr", nonce.as_str()),
                ("package", package.as_str()),
                ("signType", sign_type.as_str()),
                ("timeStamp", time_stamp.as_str()),
            ],
            key,
            sign_type,
        );
        PayParams {
            time_stamp,
            nonce_str: nonce,
            package,
            sign_type,
            pay_sign,
        }
    }

    /// Checks `paySign` the way WeChat's client does, given the mini-program's appid.
    pub fn verify(&self, appid: &str, key: &ApiKey) -> bool {
        let expected = sign(
            [
                ("appId", appid),
                ("nonceStr", self.nonce_str.as_str()),
                ("package", self.package.as_str()),
                ("signType", self.sign_type.as_str()),
                ("timeStamp", self.time_stamp.as_str()),
            ],
            key,
            self.sign_type,
        );
        super::sign::constant_time_eq(expected.as_bytes(), self.pay_sign.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APPID: &str = "wxd930ea5d5a258f4f";
    const PREPAY: &str = "wx201410272009395522657a690389285100";
    const NONCE: &str = "5K8264ILTKCH16CQ2502SI8ZNMTM67VS";

    fn key() -> ApiKey {
        ApiKey::new("192006250b4c09247ec02edce69f6a2d")
    }

    fn params(sign_type: SignType) -> PayParams {
        PayParams::new(
            APPID,
            PREPAY,
            sign_type,
            &key(),
            1_700_000_000,
            NONCE.into(),
        )
    }

    #[test]
    fn vector_c_in_both_sign_types() {
        assert_eq!(
            params(SignType::HmacSha256).pay_sign,
            "67F7941A3026A1D978036FFC533907BEDA6166D3F2184DABE130BBDC30792FDF"
        );
        assert_eq!(
            params(SignType::Md5).pay_sign,
            "EB84DFF2F093AC09BF5EDA0AA14903C2"
        );
        assert!(params(SignType::Md5).verify(APPID, &key()));
        assert!(!params(SignType::Md5).verify("wx_other_app", &key()));
    }

    #[test]
    fn the_json_is_what_wx_request_payment_takes() {
        let json = serde_json::to_value(params(SignType::Md5)).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({
                "timeStamp": "1700000000",
                "nonceStr": NONCE,
                "package": "prepay_id=wx201410272009395522657a690389285100",
                "signType": "MD5",
                "paySign": "EB84DFF2F093AC09BF5EDA0AA14903C2",
            })
        );
    }

    /// The seed signed `+new Date()`: a number of milliseconds.
    #[test]
    fn time_stamp_is_a_string_of_seconds() {
        let p = params(SignType::Md5);
        assert_eq!(p.time_stamp.len(), 10);
        let json = serde_json::to_value(&p).unwrap_or_default();
        assert!(json["timeStamp"].is_string());
        let millis = sign(
            [
                ("appId", APPID),
                ("nonceStr", NONCE),
                ("package", p.package.as_str()),
                ("signType", "MD5"),
                ("timeStamp", "1700000000000"),
            ],
            &key(),
            SignType::Md5,
        );
        assert_ne!(millis, p.pay_sign);
    }

    /// The seed signed `appid` and `nonce_str`; the names are case-sensitive and signed.
    #[test]
    fn signed_names_are_app_id_and_nonce_str_exactly() {
        let seed_spelling = sign(
            [
                ("appid", APPID),
                ("nonce_str", NONCE),
                ("package", "prepay_id=wx201410272009395522657a690389285100"),
                ("signType", "MD5"),
                ("timeStamp", "1700000000"),
            ],
            &key(),
            SignType::Md5,
        );
        assert_ne!(seed_spelling, params(SignType::Md5).pay_sign);
    }

    /// The seed built `'perpay_id=' + xml.perpay_id`.
    #[test]
    fn package_is_prepay_id_equals() {
        let p = params(SignType::HmacSha256);
        assert_eq!(p.package, format!("prepay_id={PREPAY}"));
        assert!(!p.package.contains("perpay"));
        assert_eq!(p.sign_type, SignType::HmacSha256);
    }
}
