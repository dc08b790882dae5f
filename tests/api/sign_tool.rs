//! `minipay sign` run as a process: the documented vectors reproduce through it.

use std::io::Write;
use std::process::{Command, Stdio};

const KEY: &str = "192006250b4c09247ec02edce69f6a2d";

fn minipay_sign(args: &[&str], stdin: &str) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_minipay"))
        .arg("sign")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
    )
}

#[test]
fn official_vectors_through_the_binary() {
    let fields = [
        "appid=wxd930ea5d5a258f4f",
        "mch_id=10000100",
        "device_info=1000",
        "body=test",
        "nonce_str=ibuaiVcKdpRxkhJA",
    ];
    let mut args = vec!["--key", KEY, "--sign-type", "MD5"];
    args.extend(fields);
    let (code, out) = minipay_sign(&args, "");
    assert_eq!(code, 0);
    assert!(out.contains("= 9A0A8659F005D6984697E2CA0A9CF3B7"), "{out}");
    assert!(!out.contains(KEY), "the key must be masked: {out}");

    let mut args = vec!["--key", KEY, "--sign-type", "HMAC-SHA256"];
    args.extend(fields);
    let (_, out) = minipay_sign(&args, "");
    assert!(
        out.contains("= 6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"),
        "{out}"
    );

    let (_, out) = minipay_sign(
        &[
            "--key",
            "qazwsxedcrfvtgbyhnujmikolp111111",
            "appId=wxd678efh567hg6787",
            "nonceStr=5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
            "package=prepay_id=wx2017033010242291fcfe0db70013231072",
            "signType=MD5",
            "timeStamp=1490840662",
        ],
        "",
    );
    assert!(out.contains("= 22D9B4E54AB1950F51E0649E8810ACD6"), "{out}");
}

#[test]
fn computed_vectors_through_the_binary() {
    // A, from the documented request body on stdin: --check verifies its own sign
    let a = "<xml><appid><![CDATA[wxd930ea5d5a258f4f]]></appid><mch_id>10000100</mch_id><nonce_str><![CDATA[5K8264ILTKCH16CQ2502SI8ZNMTM67VS]]></nonce_str><body><![CDATA[腾讯充值中心-QQ会员充值]]></body><attach><![CDATA[]]></attach><out_trade_no>20150806125346</out_trade_no><total_fee>88</total_fee><spbill_create_ip><![CDATA[123.12.12.123]]></spbill_create_ip><notify_url><![CDATA[https://example.com/v1/wechat/notify]]></notify_url><trade_type><![CDATA[JSAPI]]></trade_type><openid><![CDATA[oUpF8uMuAJO_M2pxb1Q9zNjWeS6o]]></openid><sign><![CDATA[0B8597460089E35E6602B5411146ECE5]]></sign></xml>";
    let (code, out) = minipay_sign(&["--key", KEY, "--check"], a);
    assert_eq!(code, 0, "{out}");

    // the same with attach kept in the string: invalid, and the tool says why
    let wrong = a.replace(
        "0B8597460089E35E6602B5411146ECE5",
        "0CDA264D18CBA55C24AF8307306AB5F7",
    );
    let (code, out) = minipay_sign(&["--key", KEY, "--check"], &wrong);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("attach"), "{out}");

    // B: HMAC-SHA256 with sign_type signed
    let b = a
        .replace("<sign><![CDATA[0B8597460089E35E6602B5411146ECE5]]></sign>", "<sign_type>HMAC-SHA256</sign_type><sign>7DAF1AFA28A23B2BA752C6F3DBFB27D2CEC50652D094EF7F52CC98E1E1E135FB</sign>");
    let (code, out) = minipay_sign(&["--key", KEY, "--check"], &b);
    assert_eq!(code, 0, "{out}");

    // C: paySign in both sign types
    for (sign_type, expected) in [
        (
            "HMAC-SHA256",
            "67F7941A3026A1D978036FFC533907BEDA6166D3F2184DABE130BBDC30792FDF",
        ),
        ("MD5", "EB84DFF2F093AC09BF5EDA0AA14903C2"),
    ] {
        let signed_type = format!("signType={sign_type}");
        let (_, out) = minipay_sign(
            &[
                "--key",
                KEY,
                "--sign-type",
                sign_type,
                "appId=wxd930ea5d5a258f4f",
                "timeStamp=1700000000",
                "nonceStr=5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
                "package=prepay_id=wx201410272009395522657a690389285100",
                &signed_type,
            ],
            "",
        );
        assert!(out.contains(expected), "{sign_type}: {out}");
    }

    // D and D′: the notify with coupon fields, with and without sign_type
    let d = [
        "appid=wxd930ea5d5a258f4f",
        "attach=order-42",
        "bank_type=OTHERS",
        "cash_fee=80",
        "coupon_count=1",
        "coupon_fee=8",
        "coupon_fee_0=8",
        "coupon_id_0=10000",
        "coupon_type_0=NO_CASH",
        "fee_type=CNY",
        "is_subscribe=N",
        "mch_id=10000100",
        "nonce_str=5d2b6c2a8db53831f7eda20af46e531c",
        "openid=oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
        "out_trade_no=20150806125346",
        "result_code=SUCCESS",
        "return_code=SUCCESS",
        "time_end=20231114221320",
        "total_fee=88",
        "trade_type=JSAPI",
        "transaction_id=1004400740201409030005092168",
    ];
    let mut args = vec![
        "--key",
        KEY,
        "--check",
        "sign_type=MD5",
        "sign=FBE032DDA66191DD860150DCF42581EA",
    ];
    args.extend(d);
    assert_eq!(minipay_sign(&args, "").0, 0);
    let mut args = vec![
        "--key",
        KEY,
        "--check",
        "sign=AE9E1F2FA772F1ACEF570E9DA5959BFAC72553488189EA5E70827F5CBB1AFC80",
    ];
    args.extend(d);
    let (code, out) = minipay_sign(&args, "");
    assert_eq!(code, 0, "{out}");
}
