//! Client- and operator-supplied order input on arbitrary bytes: the `POST /v1/orders` JSON
//! body, the TOML catalog, and the admin-order field checks. Nothing may panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use minipay::catalog::Catalog;
use minipay::wechat::v2::params::{
    check_ip, check_notify_url, check_out_trade_no, check_text, parse_beijing_time,
};

/// Mirror of the private `http::orders::CreateOrder` (same fields, same serde attributes).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct CreateOrder {
    sku: String,
    quantity: i64,
}

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<CreateOrder>(data);

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(catalog) = Catalog::parse(text) {
        for product in catalog.products() {
            assert!(catalog.get(&product.sku).is_some());
            assert!(product.price >= 1);
        }
    }
    let _ = check_text("description", text, true);
    let _ = check_out_trade_no(text);
    let _ = check_notify_url(text);
    let _ = check_ip(text);
    let _ = parse_beijing_time(text);
});
