//! Protocol micro-benchmarks: the work every notify costs before any I/O.

use criterion::{Criterion, criterion_group, criterion_main};
use minipay::wechat::v2::sign::{ApiKey, SignType, sign, verify};
use minipay::wechat::v2::{Fields, xml};
use std::hint::black_box;

/// Vector D of docs/wechat-pay-v2.md §1.4: a notify with a coupon, 22 fields.
fn notify_fields() -> Fields {
    [
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
    .into_iter()
    .collect()
}

fn protocol(c: &mut Criterion) {
    let key = ApiKey::new("192006250b4c09247ec02edce69f6a2d");
    for sign_type in [SignType::Md5, SignType::HmacSha256] {
        let mut fields = notify_fields();
        if sign_type == SignType::HmacSha256 {
            fields.remove("sign_type");
        }
        let signature = sign(fields.iter(), &key, sign_type);
        fields.set("sign", signature);
        c.bench_function(&format!("sign+verify notify ({sign_type})"), |b| {
            b.iter(|| {
                let s = sign(black_box(&fields).iter(), &key, sign_type);
                black_box(s);
                verify(black_box(&fields), &key).is_ok()
            })
        });
    }
    let mut fields = notify_fields();
    let signature = sign(fields.iter(), &key, SignType::Md5);
    fields.set("sign", signature);
    let body = xml::to_xml(fields.iter());
    c.bench_function("parse notify body", |b| {
        b.iter(|| xml::parse(black_box(body.as_bytes()), xml::DEFAULT_BODY_LIMIT))
    });
    c.bench_function("parse + verify notify body", |b| {
        b.iter(|| {
            let parsed = xml::parse(black_box(body.as_bytes()), xml::DEFAULT_BODY_LIMIT).ok();
            parsed.map(|f| verify(&f, &key).is_ok())
        })
    });
}

criterion_group!(benches, protocol);
criterion_main!(benches);
