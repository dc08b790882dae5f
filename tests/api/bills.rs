//! `downloadbill` over loopback: the client downloads statements the simulator makes from its
//! own payments (text and gzip), every failure class is classified, and injected differences
//! come out of the comparison as the right mismatch kinds.

use std::time::Duration;

use chrono::{NaiveDate, NaiveTime, Utc};
use minipay::wechat::simulator::{BillInjection, PayRequest, Simulator};
use minipay::wechat::v2::PayClient;
use minipay::wechat::v2::bill::{
    BillQuery, BillRow, DownloadError, Fee, Layout, Statement, beijing_day, beijing_instant,
    download_bill,
};
use minipay::wechat::v2::params::beijing_time;
use minipay::wechat::v2::{ApiKey, Merchant, SignType, UnifiedOrderParams};
use minipay_jobs::OrderStatus::{self, Paid, Ready};
use minipay_jobs::Transport;
use minipay_jobs::bill::{
    BillFailure, BillReport, DayReconciliation, Elsewhere, LocalOrder, MismatchKind,
};
use reqwest::StatusCode;

use crate::helpers::{dead_url, demo_merchant, http, simulator, wechat_http};

fn client(url: &str) -> PayClient {
    PayClient::new(
        wechat_http(),
        vec![url.to_owned()],
        demo_merchant(SignType::Md5),
    )
}

/// Creates and pays orders at the simulator: (out_trade_no, total_fee, coupon_fee).
async fn pay(sim: &Simulator, client: &PayClient, orders: &[(&str, i64, Option<i64>)]) {
    for (out_trade_no, total_fee, coupon_fee) in orders {
        let now = Utc::now();
        let m = client.merchant();
        let params = UnifiedOrderParams {
            appid: m.appid.clone(),
            mch_id: m.mch_id.clone(),
            sign_type: m.sign_type,
            body: "对账测试".into(),
            attach: String::new(),
            out_trade_no: (*out_trade_no).into(),
            total_fee: *total_fee,
            spbill_create_ip: "203.0.113.7".into(),
            notify_url: "http://127.0.0.1:9/v1/wechat/notify".into(),
            trade_type: "JSAPI".into(),
            openid: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".into(),
            time_start: beijing_time(now),
            time_expire: beijing_time(now + chrono::Duration::minutes(30)),
        };
        let answer = client.unified_order(&params).await;
        assert!(answer.field("prepay_id").is_some(), "{answer:?}");
        sim.pay(PayRequest {
            out_trade_no: (*out_trade_no).into(),
            deliver: false,
            coupon_fee: *coupon_fee,
        })
        .unwrap();
    }
}

/// Moves the simulator's clock to just after `hh:mm` Beijing time on the day after `day`.
fn next_morning(sim: &Simulator, day: NaiveDate, hh: u32, mm: u32) {
    let at = day
        .succ_opt()
        .unwrap()
        .and_time(NaiveTime::from_hms_opt(hh, mm, 0).unwrap());
    // The clock moves in whole milliseconds: 10 ms past the mark, never just before it.
    let by = beijing_instant(at) - sim.clock().now() + chrono::Duration::milliseconds(10);
    sim.clock().advance(by.to_std().unwrap());
}

async fn download(
    client: &PayClient,
    day: NaiveDate,
    gzip: bool,
) -> Result<(Vec<BillRow>, Statement), DownloadError> {
    let mut rows = Vec::new();
    let query = BillQuery {
        day,
        gzip,
        timeout: Duration::from_secs(10),
    };
    let statement = download_bill(client, &query, |row| rows.push(row)).await?;
    Ok((rows, statement))
}

async fn failure(client: &PayClient, day: NaiveDate) -> (BillFailure, String) {
    let error = download(client, day, true).await.unwrap_err();
    (error.failure(), error.to_string())
}

fn local(orders: &[(&str, i64, OrderStatus)]) -> Vec<LocalOrder> {
    orders
        .iter()
        .map(|(otn, fee, status)| LocalOrder {
            out_trade_no: (*otn).into(),
            total_fee: *fee,
            status: *status,
        })
        .collect()
}

/// Compares a downloaded statement with minipay's day (and the orders found elsewhere).
fn reconcile(rows: &[BillRow], day: Vec<LocalOrder>, elsewhere: Vec<LocalOrder>) -> BillReport {
    let mut rec = DayReconciliation::new(day, []);
    for row in rows {
        rec.add(row.entry());
    }
    let wanted: Vec<String> = rec
        .unresolved()
        .out_trade_nos
        .iter()
        .map(|s| s.to_string())
        .collect();
    let found = Elsewhere {
        orders: elsewhere
            .into_iter()
            .filter(|o| wanted.contains(&o.out_trade_no))
            .map(|o| (o.out_trade_no.clone(), o))
            .collect(),
        ..Elsewhere::default()
    };
    rec.finish(&found)
}

#[tokio::test]
async fn a_day_of_payments_downloads_as_text_and_gzip_and_reconciles_clean() {
    let (sim, url) = simulator().await;
    let client = client(&url);
    let day = beijing_day(sim.clock().now());
    pay(
        &sim,
        &client,
        &[("MPBILL0001", 88, None), ("MPBILL0002", 3400, Some(400))],
    )
    .await;
    next_morning(&sim, day, 10, 1);

    for gzip in [false, true] {
        let (rows, statement) = download(&client, day, gzip).await.unwrap();
        assert_eq!(statement.layout, Layout::Columns27);
        assert_eq!(statement.summary.count, 2);
        assert_eq!(statement.summary.total_fee, Some(3488));
        let coupon = rows
            .iter()
            .find(|r| r.out_trade_no == "MPBILL0002")
            .unwrap();
        assert_eq!(
            coupon.settlement_total_fee, 3000,
            "the coupon is not settled"
        );
        assert_eq!(coupon.coupon_fee, 400);
        assert_eq!(coupon.order.as_ref().unwrap().total_fee, 3400);
        assert_eq!(coupon.poundage, Fee(18_000), "0.6% of 30.00 yuan");
        assert_eq!(beijing_day(beijing_instant(coupon.trade_time)), day);

        let report = reconcile(
            &rows,
            local(&[("MPBILL0001", 88, Paid), ("MPBILL0002", 3400, Paid)]),
            vec![],
        );
        assert!(report.is_clean(), "{report:#?}");
        assert_eq!(
            (report.wechat.payments, report.wechat.payment_fee),
            (2, 3488)
        );
    }
    let calls: Vec<_> = sim
        .calls()
        .into_iter()
        .filter(|c| c.api == "downloadbill")
        .collect();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        calls[1].business.get("bill_date").unwrap(),
        &day.format("%Y%m%d").to_string()
    );
    assert_eq!(calls[1].business.get("bill_type").unwrap(), "ALL");
    assert_eq!(calls[1].business.get("tar_type").unwrap(), "GZIP");
    assert!(!calls[0].business.contains_key("tar_type"));
    assert_eq!(calls[1].outcome, "SUCCESS");
}

#[tokio::test]
async fn a_days_bill_is_ready_from_ten_the_next_morning() {
    let (sim, url) = simulator().await;
    let client = client(&url);
    let day = beijing_day(sim.clock().now());
    pay(&sim, &client, &[("MPBILL0101", 1, None)]).await;
    assert_eq!(failure(&client, day).await.0, BillFailure::NotYet);
    next_morning(&sim, day, 9, 59);
    assert_eq!(failure(&client, day).await.0, BillFailure::NotYet);
    sim.clock().advance(Duration::from_secs(61));
    let (rows, _) = download(&client, day, true).await.unwrap();
    assert_eq!(rows.len(), 1);
}

#[tokio::test]
async fn every_failure_class_is_classified() {
    let (sim, url) = simulator().await;
    let client = client(&url);
    let day = beijing_day(sim.clock().now());
    pay(&sim, &client, &[("MPBILL0201", 1, None)]).await;
    next_morning(&sim, day, 10, 0);

    let (class, message) = failure(&client, day.pred_opt().unwrap()).await;
    assert_eq!(class, BillFailure::NoBill, "{message}");
    assert!(message.contains("No Bill Exist"), "{message}");
    let long_ago = day.checked_sub_months(chrono::Months::new(4)).unwrap();
    assert_eq!(failure(&client, long_ago).await.0, BillFailure::Permanent);
    let tomorrow = day.succ_opt().unwrap().succ_opt().unwrap();
    assert_eq!(failure(&client, tomorrow).await.0, BillFailure::Permanent);

    for (return_msg, expected) in [
        ("Bill Creating", BillFailure::NotYet),
        ("SYSTEMERROR", BillFailure::Retryable),
        ("CompressGZip Error", BillFailure::Retryable),
        ("invalid bill_type", BillFailure::Permanent),
    ] {
        sim.force_bill(return_msg, 1);
        let (class, message) = failure(&client, day).await;
        assert_eq!(class, expected, "{return_msg}: {message}");
        assert!(message.contains(return_msg), "{message}");
    }
    // The forced failures are used up: the same day downloads now.
    assert_eq!(download(&client, day, true).await.unwrap().0.len(), 1);

    let wrong_key = PayClient::new(
        wechat_http(),
        vec![url.clone()],
        Merchant {
            key: ApiKey::new("x".repeat(32)),
            ..demo_merchant(SignType::HmacSha256)
        },
    );
    let (class, message) = failure(&wrong_key, day).await;
    assert_eq!(class, BillFailure::Permanent);
    assert!(message.contains("SIGN ERROR"), "{message}");

    let unreachable = PayClient::new(
        wechat_http(),
        vec![dead_url().await],
        demo_merchant(SignType::Md5),
    );
    match download(&unreachable, day, true).await.unwrap_err() {
        e @ DownloadError::Transport(Transport::Connect) => {
            assert_eq!(e.failure(), BillFailure::Retryable)
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn injected_differences_each_come_out_as_their_kind() {
    let (sim, url) = simulator().await;
    let client = client(&url);
    let day = beijing_day(sim.clock().now());
    let orders = [
        ("MPBILL0301", 100, None),
        ("MPBILL0302", 200, None),
        ("MPBILL0303", 300, None),
        // Paid at WeChat, but the notify was lost: minipay still holds it as ready.
        ("MPBILL0304", 400, None),
        ("MPBILL0305", 500, None),
    ];
    pay(&sim, &client, &orders).await;
    let drop = |otn: &str| BillInjection::Drop {
        out_trade_no: otn.into(),
        out_refund_no: None,
    };
    sim.inject_bill(drop("MPBILL0301")).unwrap();
    sim.inject_bill(BillInjection::Amount {
        out_trade_no: "MPBILL0302".into(),
        out_refund_no: None,
        fee: 250,
    })
    .unwrap();
    sim.inject_bill(BillInjection::Status {
        out_trade_no: "MPBILL0303".into(),
        out_refund_no: None,
        status: "REVOKED".into(),
    })
    .unwrap();
    sim.inject_bill(BillInjection::Extra {
        date: day.to_string(),
        out_trade_no: "MPGHOST0001".into(),
        total_fee: 999,
    })
    .unwrap();
    let yesterday = day.pred_opt().unwrap();
    let noon = beijing_instant(yesterday.and_time(NaiveTime::from_hms_opt(12, 0, 0).unwrap()));
    sim.backdate("MPBILL0305", noon).unwrap();
    next_morning(&sim, day, 10, 0);

    let minipay_today = local(&[
        ("MPBILL0301", 100, Paid),
        ("MPBILL0302", 200, Paid),
        ("MPBILL0303", 300, Paid),
        ("MPBILL0305", 500, Paid),
    ]);
    let elsewhere = local(&[("MPBILL0304", 400, Ready), ("MPBILL0305", 500, Paid)]);
    let (rows, _) = download(&client, day, false).await.unwrap();
    let report = reconcile(&rows, minipay_today, elsewhere.clone());
    let kinds: Vec<(MismatchKind, &str, bool)> = report
        .mismatches
        .iter()
        .map(|m| (m.kind, m.out_trade_no.as_str(), m.healable))
        .collect();
    assert_eq!(
        kinds,
        [
            (MismatchKind::MissingWechat, "MPBILL0301", false),
            (MismatchKind::Amount, "MPBILL0302", false),
            (MismatchKind::Status, "MPBILL0303", false),
            (MismatchKind::Status, "MPBILL0304", true),
            (MismatchKind::MissingWechat, "MPBILL0305", false),
            (MismatchKind::MissingLocal, "MPGHOST0001", false),
        ],
        "{report:#?}"
    );
    assert_eq!(report.healable().collect::<Vec<_>>(), ["MPBILL0304"]);

    // The backdated payment is on yesterday's bill, which minipay holds on another day.
    let (rows, _) = download(&client, yesterday, false).await.unwrap();
    let report = reconcile(&rows, vec![], elsewhere);
    assert_eq!(report.mismatches.len(), 1);
    assert_eq!(report.mismatches[0].local, "paid 500 (another day)");

    sim.clear_bill_injections();
    let (rows, _) = download(&client, day, false).await.unwrap();
    assert_eq!(rows.len(), 4, "MPBILL0301..0304 without injections");
}

#[tokio::test]
async fn a_24_column_statement_lists_the_settled_amount() {
    let (sim, url) = simulator().await;
    let client = client(&url);
    let day = beijing_day(sim.clock().now());
    sim.set_bill_layout(Layout::Columns24);
    pay(&sim, &client, &[("MPBILL0401", 1000, Some(100))]).await;
    next_morning(&sim, day, 10, 0);
    let (rows, statement) = download(&client, day, true).await.unwrap();
    assert_eq!(statement.layout, Layout::Columns24);
    assert_eq!(statement.summary.total_fee, None);
    assert_eq!(rows[0].order, None);
    // Without 订单金额 the comparison uses 应结订单金额: a coupon shows as a difference.
    let report = reconcile(&rows, local(&[("MPBILL0401", 1000, Paid)]), vec![]);
    assert_eq!(report.count(MismatchKind::Amount), 1);
    assert_eq!(report.mismatches[0].wechat, "SUCCESS 900");
}

#[tokio::test]
async fn the_control_endpoints_take_json_and_refuse_nonsense() {
    let (sim, url) = simulator().await;
    let client = client(&url);
    let day = beijing_day(sim.clock().now());
    pay(&sim, &client, &[("MPBILL0501", 10, None)]).await;
    let post = |path: &str, body: serde_json::Value| {
        http().post(format!("{url}{path}")).json(&body).send()
    };
    let status = |r: reqwest::Response| r.status();
    let yesterday_noon = format!("{}120000", day.pred_opt().unwrap().format("%Y%m%d"));
    for (path, body, expected) in [
        (
            "/sim/bill/injections",
            serde_json::json!({"kind": "extra", "date": day.to_string(), "out_trade_no": "MPGHOST0501", "total_fee": 5}),
            StatusCode::NO_CONTENT,
        ),
        (
            "/sim/bill/injections",
            serde_json::json!({"kind": "amount", "out_trade_no": "MPBILL0501", "fee": 11}),
            StatusCode::NO_CONTENT,
        ),
        (
            "/sim/bill/injections",
            serde_json::json!({"kind": "status", "out_trade_no": "MPBILL0501", "status": "REFUND"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/sim/bill/injections",
            serde_json::json!({"kind": "extra", "date": "29.11.2026", "out_trade_no": "X", "total_fee": 5}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/sim/bill/force",
            serde_json::json!({"return_msg": "SYSTEMERROR", "times": 2}),
            StatusCode::NO_CONTENT,
        ),
        (
            "/sim/bill/layout",
            serde_json::json!({"columns": 25}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/sim/bill/layout",
            serde_json::json!({"columns": 27}),
            StatusCode::NO_CONTENT,
        ),
        (
            "/sim/orders/MPBILL0501/backdate",
            serde_json::json!({"time_end": "2026-11-29"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/sim/orders/MPNOSUCH01/backdate",
            serde_json::json!({"time_end": yesterday_noon}),
            StatusCode::CONFLICT,
        ),
    ] {
        assert_eq!(
            status(post(path, body.clone()).await.unwrap()),
            expected,
            "{path} {body}"
        );
    }
    next_morning(&sim, day, 10, 0);
    assert_eq!(failure(&client, day).await.0, BillFailure::Retryable);
    assert_eq!(failure(&client, day).await.0, BillFailure::Retryable);
    let (rows, _) = download(&client, day, false).await.unwrap();
    let listed: Vec<(&str, i64)> = rows
        .iter()
        .map(|r| (r.out_trade_no.as_str(), r.order.as_ref().unwrap().total_fee))
        .collect();
    assert_eq!(listed, [("MPBILL0501", 11), ("MPGHOST0501", 5)]);

    let cleared = http()
        .delete(format!("{url}/sim/bill/injections"))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), StatusCode::NO_CONTENT);
    let moved = post(
        "/sim/orders/MPBILL0501/backdate",
        serde_json::json!({"time_end": yesterday_noon}),
    )
    .await
    .unwrap();
    assert_eq!(moved.status(), StatusCode::NO_CONTENT);
    assert_eq!(failure(&client, day).await.0, BillFailure::NoBill);
}
