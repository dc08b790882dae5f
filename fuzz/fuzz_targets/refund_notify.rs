//! The refund notify path on arbitrary bytes, three ways: as a whole notify body (read,
//! check the merchant, decrypt `req_info`, read the refund), as a `req_info` value, and as the
//! plaintext inside one. Nothing may panic; whatever opens must survive being written back,
//! encrypted again and reopened unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use minipay::wechat::v2::refund_notify::{
    RefundInfo, encrypt_req_info, open_req_info, read_refund_notify, refund_notify_body,
};
use minipay::wechat::v2::{ApiKey, Merchant, SignType};

/// The documented example key, so seeds can carry a `req_info` that decrypts.
const KEY: &str = "192006250b4c09247ec02edce69f6a2d";

fn merchant() -> Merchant {
    Merchant {
        appid: "wxd930ea5d5a258f4f".into(),
        mch_id: "10000100".into(),
        key: ApiKey::new(KEY),
        sign_type: SignType::Md5,
    }
}

fn reopens(info: &RefundInfo, m: &Merchant) {
    let body = refund_notify_body(&m.appid, &m.mch_id, &m.key, info);
    match read_refund_notify(body.as_bytes(), m) {
        Ok(again) => assert_eq!(&again, info, "the notify changed on a round trip"),
        Err(e) => panic!("a notify we wrote does not open ({e}): {body:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let m = merchant();
    if let Ok(info) = read_refund_notify(data, &m) {
        reopens(&info, &m);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(info) = open_req_info(text, &m.key)
    {
        reopens(&info, &m);
    }
    // As plaintext: encrypting never fails, and what then opens is what a reader accepts.
    let req_info = encrypt_req_info(data, &m.key);
    if let Ok(info) = open_req_info(&req_info, &m.key) {
        reopens(&info, &m);
    }
});
