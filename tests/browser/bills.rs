//! The console's bill pages: a day that disagrees with WeChat's statement is flagged on the
//! dashboard, listed with its mismatch count, and its page names the order.

use std::time::Duration;

use chrono::NaiveTime;
use fantoccini::Locator;
use minipay::app::Role;
use minipay::wechat::simulator::BillInjection;
use minipay::wechat::v2::bill::{beijing_day, beijing_instant};
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Browser, Viewport};
use crate::helpers::{ADMIN_TOKEN, Backend, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bill_mismatch_is_flagged_and_names_its_order() {
    let Some(mut browser) = Browser::open(Viewport::Desktop).await else {
        return;
    };
    let app = TestApp::spawn_with(Backend::Sqlite, Role::All, |s| {
        s.bills.bill_at = "23:59".into();
    })
    .await
    .unwrap();
    let token = app.login("bill-olga#1").await;
    let order = app.create_order(&token, "sms-100", 2).await;
    let otn = order["out_trade_no"].as_str().unwrap().to_owned();
    app.wait_for_status(&token, &otn, "ready").await;
    app.pay(&otn, true);
    app.wait_for_status(&token, &otn, "paid").await;
    let sim = app.sim();
    sim.inject_bill(BillInjection::Amount {
        out_trade_no: otn.clone(),
        out_refund_no: None,
        fee: 1,
    })
    .unwrap();
    // The next morning, the day is reconciled.
    let day = beijing_day(app.services.clock.now());
    let morning = beijing_instant(
        day.succ_opt()
            .unwrap()
            .and_time(NaiveTime::from_hms_opt(10, 1, 0).unwrap()),
    );
    for clock in [&app.services.clock, sim.clock()] {
        clock.advance((morning - clock.now()).to_std().unwrap());
    }
    let path = format!("/v1/admin/bills/{day}/reconcile");
    let (status, body) = app.post_json(&path, Some(ADMIN_TOKEN), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while app
        .get_json(&format!("/v1/admin/bills/{day}"), Some(ADMIN_TOKEN))
        .await
        .1["status"]
        != "done"
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the day was never reconciled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    browser.sign_in(&app.base, ADMIN_TOKEN).await;
    browser.goto("/admin").await;
    let flagged = browser.text(".bill-alert").await;
    assert!(
        flagged.contains(&day.to_string()) && flagged.contains("1 mismatch"),
        "{flagged}"
    );
    browser.follow(Locator::LinkText("Bills")).await;
    let bills = browser.table("table.bills").await;
    assert_eq!(bills[1][0], day.to_string(), "{bills:?}");
    assert_eq!(bills[1][1], "done");
    assert_eq!(bills[1][4], "1", "one mismatch: {bills:?}");
    browser.follow(Locator::LinkText(&day.to_string())).await;
    let mismatches = browser.table("table.mismatches").await;
    assert_eq!(mismatches.len(), 2, "{mismatches:?}");
    assert_eq!(mismatches[1][0], "amount");
    assert_eq!(mismatches[1][1], otn);
    browser.screenshot("console-bill").await;
    // The order is one click away.
    browser.follow(Locator::LinkText(&otn)).await;
    assert_eq!(browser.text(".order-status").await, "paid");

    browser.close().await;
    app.stop().await;
}
