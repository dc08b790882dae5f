//! The payment notify path on arbitrary bytes: read, verify the signature, detect the sign
//! type, extract the payment and check the merchant. Nothing may panic, and a signature that
//! verifies must be exactly the one `sign` computes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use minipay::wechat::v2::reply::{check_signed_by, payment_from_fields};
use minipay::wechat::v2::sign::{detect_sign_type, sign, verify};
use minipay::wechat::v2::xml::{DEFAULT_BODY_LIMIT, parse};
use minipay::wechat::v2::{ApiKey, Merchant, SignType};

/// The documented example key (docs/wechat-pay-v2.md §1.4), so seeds can carry valid signatures.
const KEY: &str = "192006250b4c09247ec02edce69f6a2d";

fuzz_target!(|data: &[u8]| {
    let Ok(fields) = parse(data, DEFAULT_BODY_LIMIT) else {
        return;
    };
    let key = ApiKey::new(KEY);
    let merchant = Merchant {
        appid: "wxd930ea5d5a258f4f".into(),
        mch_id: "10000100".into(),
        key: key.clone(),
        sign_type: SignType::Md5,
    };

    let verified = verify(&fields, &key);
    let detected = detect_sign_type(&fields);
    let _ = payment_from_fields(&fields);
    let checked = check_signed_by(&fields, &merchant);

    if let Ok(sign_type) = verified {
        assert_eq!(
            detected,
            Ok(sign_type),
            "verify and detect_sign_type disagree"
        );
        let expected = sign(fields.iter(), &key, sign_type);
        assert_eq!(
            Some(expected.as_str()),
            fields.get("sign"),
            "verify accepted a sign that re-signing does not reproduce"
        );
    }
    if checked.is_ok() {
        assert_eq!(
            verified,
            Ok(SignType::Md5),
            "check_signed_by accepted what verify did not"
        );
        assert_eq!(fields.get("appid"), Some("wxd930ea5d5a258f4f"));
        assert_eq!(fields.get("mch_id"), Some("10000100"));
    }
});
