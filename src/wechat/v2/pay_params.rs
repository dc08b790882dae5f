//! The parameters `wx.requestPayment` takes, signed the v2 way (docs/wechat-pay-v2.md §5): the
//! core crate's [`PayParams`] with an MD5 or HMAC-SHA256 `paySign`.

use minipay_jobs::PayParams;

use super::sign::{ApiKey, SignType, constant_time_eq, sign};

/// Signs `appId, nonceStr, package, signType, timeStamp` — these five names, this casing.
pub fn sign_pay_params(
    appid: &str,
    prepay_id: &str,
    sign_type: SignType,
    key: &ApiKey,
    unix_secs: i64,
    nonce: String,
) -> PayParams {
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
        sign_type: sign_type.as_str().to_owned(),
        pay_sign,
    }
}

/// Checks `paySign` the way WeChat's client does, given the mini-program's appid.
pub fn verify_pay_params(params: &PayParams, appid: &str, key: &ApiKey) -> bool {
    let Ok(sign_type) = params.sign_type.parse::<SignType>() else {
        return false;
    };
    let expected = sign(
        [
            ("appId", appid),
            ("nonceStr", params.nonce_str.as_str()),
            ("package", params.package.as_str()),
            ("signType", params.sign_type.as_str()),
            ("timeStamp", params.time_stamp.as_str()),
        ],
        key,
        sign_type,
    );
    constant_time_eq(expected.as_bytes(), params.pay_sign.as_bytes())
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
        sign_pay_params(
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
        assert!(verify_pay_params(&params(SignType::Md5), APPID, &key()));
        assert!(!verify_pay_params(
            &params(SignType::Md5),
            "wx_other_app",
            &key()
        ));
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
        assert_eq!(p.sign_type, SignType::HmacSha256.as_str());
    }
}
