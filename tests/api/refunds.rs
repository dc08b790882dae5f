//! Refunds end to end, on both backends: the admin endpoints, the `refund_order` job against
//! the simulator over mutual TLS, the refund notify (and its routing from the payment URL),
//! refundquery when notifies are lost, holds, WeChat's one-minute rule, and the guard that
//! keeps an order's refunds within its total under concurrent requests.

use std::time::Duration;

use minipay::wechat::simulator::{ConsoleRefund, Faults, ForceRule, Forced};
use minipay::wechat::v2::ApiKey;
use minipay::wechat::v2::refund_notify::{RefundInfo, refund_notify_body};
use minipay_jobs::RefundResult;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, TestApp, eventually, on_both_backends};

/// A paid order of `total_fee` fen, created by the merchant's backend and paid in the
/// simulator (notify delivered).
async fn paid_order(app: &TestApp, total_fee: i64) -> String {
    let (status, body) = app
        .post_json(
            "/v1/admin/orders",
            Some(ADMIN_TOKEN),
            json!({"openid": "oRefundTester", "description": "退款测试", "total_fee": total_fee}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let otn = body["out_trade_no"].as_str().unwrap().to_owned();
    wait_order(app, &otn, "ready").await;
    app.pay(&otn, true);
    wait_order(app, &otn, "paid").await;
    otn
}

async fn wait_order(app: &TestApp, otn: &str, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let order = app.history(otn).await;
        if order["status"] == status {
            return order;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "order never became {status}: {order}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn refund(app: &TestApp, otn: &str, body: Value, key: Option<&str>) -> (StatusCode, Value) {
    let mut request = app
        .http
        .post(format!("{}/v1/admin/orders/{otn}/refunds", app.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Requests a refund, expecting 202; its out_refund_no.
async fn refund_ok(app: &TestApp, otn: &str, fee: i64) -> String {
    let (status, body) = refund(app, otn, json!({"refund_fee": fee}), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["out_refund_no"].as_str().unwrap().to_owned()
}

async fn show(app: &TestApp, no: &str) -> Value {
    let (status, body) = app
        .get_json(&format!("/v1/admin/refunds/{no}"), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn wait_refund(app: &TestApp, no: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let refund = show(app, no).await;
        if check(&refund) {
            return refund;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "refund never got there: {refund}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn wait_status(app: &TestApp, no: &str, status: &str) -> Value {
    wait_refund(app, no, |r| r["status"] == status).await
}

/// Moves the service's clock and the simulator's together.
fn advance(app: &TestApp, by: Duration) {
    app.services.clock.advance(by);
    app.sim().clock().advance(by);
}

fn sim_refund_calls(app: &TestApp) -> Vec<minipay::wechat::simulator::Call> {
    app.sim()
        .calls()
        .into_iter()
        .filter(|c| c.api == "refund")
        .collect()
}

/// The merchant events recorded about the order, as (type, out_refund_no), sorted.
async fn events_of(app: &TestApp, otn: &str) -> Vec<(String, String)> {
    let mut list: Vec<(String, String)> =
        crate::events::events(app, &format!("out_trade_no={otn}"))
            .await
            .iter()
            .map(|e| {
                let no = e["out_refund_no"].as_str().unwrap_or_default();
                (e["type"].as_str().unwrap().to_owned(), no.to_owned())
            })
            .collect();
    list.sort();
    list
}

fn pair(kind: &str, no: &str) -> (String, String) {
    (kind.to_owned(), no.to_owned())
}

async fn metrics(app: &TestApp) -> String {
    app.http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

on_both_backends! {
    async fn a_full_refund_succeeds_and_refunds_the_order(backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        let otn = paid_order(&app, 88).await;
        let (status, created) = refund(&app, &otn, json!({"refund_fee": 88, "reason": "商品缺货"}), Some("k-1")).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{created}");
        let no = created["out_refund_no"].as_str().unwrap().to_owned();
        assert_eq!(created, json!({"out_refund_no": no, "out_trade_no": otn, "refund_fee": 88, "status": "pending"}));
        assert!(no.len() <= 32 && no.bytes().all(|b| b.is_ascii_alphanumeric()), "{no}");
        // The same key and body: the same refund; another body: refused.
        let (again, body) = refund(&app, &otn, json!({"refund_fee": 88, "reason": "商品缺货"}), Some("k-1")).await;
        assert_eq!((again, &body), (StatusCode::OK, &created));
        let (reused, body) = refund(&app, &otn, json!({"refund_fee": 1}), Some("k-1")).await;
        assert_eq!(reused, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"]["code"], "IDEMPOTENCY_KEY_REUSED");

        let done = wait_status(&app, &no, "succeeded").await;
        assert!(done["refund_id"].as_str().is_some_and(|id| !id.is_empty()), "{done}");
        assert!(done["succeeded_at"].as_str().is_some(), "{done}");
        assert!(done.get("error").is_none(), "{done}");
        let order = wait_order(&app, &otn, "refunded").await;
        assert_eq!(order["refunded_fee"], 88, "{order}");
        assert_eq!(order["refunds"][0]["out_refund_no"], no.as_str());
        let kinds: Vec<&str> = order["history"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert!(kinds.contains(&"refund") && kinds.contains(&"refunded"), "{kinds:?}");
        // One merchant event per change: paid, the refund's success, the order fully refunded.
        assert_eq!(
            events_of(&app, &otn).await,
            vec![pair("order.paid", ""), pair("order.refunded", ""), pair("refund.succeeded", &no)]
        );

        // WeChat saw one refund, with the frozen fields, over a client certificate.
        let sim = app.sim().refunds();
        assert_eq!(sim.len(), 1);
        assert_eq!((sim[0].out_refund_no.as_str(), sim[0].refund_fee, sim[0].total_fee), (no.as_str(), 88, 88));
        assert_eq!(sim[0].refund_desc, "商品缺货");
        assert!(sim[0].notify_url.ends_with("/v1/wechat/refund-notify"), "{}", sim[0].notify_url);
        let calls = sim_refund_calls(&app);
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].client_cert, Some(true));
        assert_eq!(calls[0].business["out_refund_no"], no);
        // The notify was acknowledged.
        eventually("the refund notify is acknowledged", || async {
            app.sim().refund(&no).unwrap().deliveries.iter().any(|d| d.acknowledged)
        }).await;

        // Nothing is left to refund; the list shows the one refund.
        let (status, body) = refund(&app, &otn, json!({"refund_fee": 1}), None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["code"], "REFUND_EXCEEDS_PAID");
        let (status, list) = app.get_json(&format!("/v1/admin/orders/{otn}/refunds"), Some(ADMIN_TOKEN)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list["refunds"].as_array().unwrap().len(), 1);
        assert!(metrics(&app).await.contains("minipay_refunds{status=\"succeeded\"}"));
        app.stop().await;
    }
}

/// What the order's history says about its refunds, checked to be one moment: the order's
/// `refunded_fee` and status, its refunds and its merchant events agree. Returns whether the
/// order is refunded.
fn history_agrees_with_itself(history: &Value) -> bool {
    let refunds = history["refunds"].as_array().unwrap();
    let succeeded: Vec<&Value> = refunds
        .iter()
        .filter(|r| r["status"] == "succeeded")
        .collect();
    let sum: i64 = succeeded
        .iter()
        .map(|r| r["refund_fee"].as_i64().unwrap())
        .sum();
    // The view leaves `refunded_fee` out until a refund succeeded.
    let refunded_fee = history["refunded_fee"].as_i64().unwrap_or_default();
    assert_eq!(
        refunded_fee, sum,
        "the order and its refunds disagree: {history}"
    );
    let events = history["events"].as_array().unwrap();
    let announced = events
        .iter()
        .filter(|e| e["type"] == "refund.succeeded")
        .count();
    assert_eq!(
        announced,
        succeeded.len(),
        "the refunds and their events disagree: {history}"
    );
    let refunded = history["status"] == "refunded";
    assert_eq!(
        refunded,
        sum == history["total_fee"].as_i64().unwrap(),
        "{history}"
    );
    assert_eq!(
        refunded,
        events.iter().any(|e| e["type"] == "order.refunded"),
        "the status and its event disagree: {history}"
    );
    refunded
}

on_both_backends! {
    async fn an_order_history_read_while_its_refund_settles_is_one_moment(backend) {
        // The console's order page showed a refund as succeeded without its event (found by a
        // browser test): the history was several reads, and a refund settled between them.
        let Some(app) = TestApp::spawn(backend).await else { return };
        for _ in 0..8 {
            let otn = paid_order(&app, 10).await;
            refund_ok(&app, &otn, 10).await;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while !history_agrees_with_itself(&app.history(&otn).await) {
                assert!(tokio::time::Instant::now() < deadline, "{otn} never refunded");
            }
        }
        app.stop().await;
    }
}

on_both_backends! {
    async fn refund_requests_are_checked_before_anything_is_stored(backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        let (status, body) = refund(&app, "MPNOSUCHORDER", json!({"refund_fee": 1}), None).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("ORDER_NOT_FOUND")));
        let (status, body) = app.get_json("/v1/admin/refunds/RFNOSUCH", Some(ADMIN_TOKEN)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let (_, created) = app
            .post_json("/v1/admin/orders", Some(ADMIN_TOKEN), json!({"openid": "oX", "description": "d", "total_fee": 50}))
            .await;
        let unpaid = created["out_trade_no"].as_str().unwrap();
        let (status, body) = refund(&app, unpaid, json!({"refund_fee": 1}), None).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("ORDER_NOT_PAID")));
        let otn = paid_order(&app, 50).await;
        for bad in [json!({"refund_fee": 0}), json!({"refund_fee": 1.5}), json!({"refund_fee": "1"}),
                    json!({"refund_fee": 1, "reason": "太".repeat(27)})] {
            let (status, body) = refund(&app, &otn, bad.clone(), None).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad} {body}");
        }
        let (status, body) = refund(&app, &otn, json!({"refund_fee": 51}), None).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("REFUND_EXCEEDS_PAID")));
        assert_eq!(app.scalar("SELECT COUNT(*) FROM refunds").await, 0);
        app.stop().await;
    }
}

on_both_backends! {
    async fn two_partial_refunds_go_a_minute_apart_and_a_third_is_refused(backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        let otn = paid_order(&app, 100).await;
        let first = refund_ok(&app, &otn, 60).await;
        let second = refund_ok(&app, &otn, 40).await;
        let (status, body) = refund(&app, &otn, json!({"refund_fee": 1}), None).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("REFUND_EXCEEDS_PAID")));
        // Whichever job got the order's slot first is sent; the other waits for WeChat's minute.
        eventually("one refund succeeds", || async {
            show(&app, &first).await["status"] == "succeeded" || show(&app, &second).await["status"] == "succeeded"
        }).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let statuses = [show(&app, &first).await["status"].clone(), show(&app, &second).await["status"].clone()];
        assert!(statuses.contains(&json!("pending")), "{statuses:?}");
        assert_eq!(app.sim().refunds().len(), 1);
        advance(&app, Duration::from_secs(61));
        wait_status(&app, &first, "succeeded").await;
        wait_status(&app, &second, "succeeded").await;
        let sim = app.sim().refunds();
        assert_eq!(sim.len(), 2);
        assert!(sim[1].requested_at - sim[0].requested_at >= 60, "{sim:?}");
        assert!(sim_refund_calls(&app).iter().all(|c| c.outcome == "SUCCESS"), "never refused by the minute rule");
        let order = wait_order(&app, &otn, "refunded").await;
        assert_eq!(order["refunded_fee"], 100);
        app.stop().await;
    }
}

on_both_backends! {
    async fn concurrent_refund_requests_never_exceed_the_order(backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        let otn = paid_order(&app, 100).await;
        let requests = (0..20).map(|_| refund(&app, &otn, json!({"refund_fee": 7}), None));
        let answers = futures::future::join_all(requests).await;
        let accepted = answers.iter().filter(|(s, _)| *s == StatusCode::ACCEPTED).count();
        let refused = answers
            .iter()
            .filter(|(s, b)| *s == StatusCode::UNPROCESSABLE_ENTITY && b["error"]["code"] == "REFUND_EXCEEDS_PAID")
            .count();
        assert_eq!((accepted, refused), (14, 6), "{answers:?}");
        assert_eq!(app.scalar("SELECT CAST(COALESCE(SUM(refund_fee), 0) AS BIGINT) FROM refunds").await, 98);
        assert_eq!(app.scalar("SELECT refund_reserved FROM orders").await, 98);
        app.stop().await;
    }
}

on_both_backends! {
    async fn transient_failures_retry_the_same_refund_and_wechat_refunds_once(backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        let otn = paid_order(&app, 88).await;
        let force = |outcome: Forced, times: u32| {
            app.sim().force(ForceRule { out_trade_no: otn.clone(), outcome, times })
        };
        force(Forced::SystemError, 2);
        force(Forced::Http500, 1);
        force(Forced::Hang, 1);
        let no = refund_ok(&app, &otn, 50).await;
        wait_status(&app, &no, "succeeded").await;
        let calls = sim_refund_calls(&app);
        assert!(calls.len() >= 4, "{calls:?}");
        assert!(calls.windows(2).all(|w| w[0].business == w[1].business), "every attempt the same");
        assert_eq!(calls[0].business["out_refund_no"], no);
        assert_eq!(calls[0].business["refund_fee"], "50");
        assert_eq!(app.sim().refunds().len(), 1, "WeChat refunded once");
        assert!(show(&app, &no).await["attempts"].as_i64().unwrap() >= 4);
        assert_eq!(wait_order(&app, &otn, "paid").await["refunded_fee"], 50);
        app.stop().await;
    }
}

on_both_backends! {
    async fn notenough_holds_the_refund_until_the_balance_returns(backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        let otn = paid_order(&app, 88).await;
        app.sim().set_faults(Faults { refund_notenough: true, notify_time_scale: 0.001, ..Faults::default() });
        let no = refund_ok(&app, &otn, 88).await;
        let held = wait_refund(&app, &no, |r| r["error"]["code"] == "NOTENOUGH").await;
        assert_eq!(held["status"], "pending", "{held}");
        assert!(metrics(&app).await.contains("kind=\"refund_held\""));
        app.sim().set_faults(Faults { notify_time_scale: 0.001, ..Faults::default() });
        advance(&app, Duration::from_secs(6 * 60));
        let done = wait_status(&app, &no, "succeeded").await;
        assert!(done.get("error").is_none(), "{done}");
        wait_order(&app, &otn, "refunded").await;
        app.stop().await;
    }
}

on_both_backends! {
    async fn change_is_abnormal_with_an_alert_and_refundclose_fails(backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        let otn = paid_order(&app, 100).await;
        app.sim().force_refund_outcome(&otn, RefundResult::Abnormal, 1);
        let abnormal = refund_ok(&app, &otn, 30).await;
        let view = wait_status(&app, &abnormal, "abnormal").await;
        assert_eq!(view["error"]["code"], "CHANGE", "{view}");
        assert!(metrics(&app).await.contains("kind=\"refund_abnormal\""));

        advance(&app, Duration::from_secs(61));
        app.sim().force_refund_outcome(&otn, RefundResult::Closed, 1);
        let closed = refund_ok(&app, &otn, 70).await;
        let view = wait_status(&app, &closed, "failed").await;
        assert_eq!(view["error"]["code"], "REFUNDCLOSE", "{view}");
        // A closed refund gave nothing back: its amount can be refunded again.
        let order = app.history(&otn).await;
        assert_eq!(order["status"], "paid");
        assert!(order.get("refunded_fee").is_none(), "{order}");
        assert_eq!(
            events_of(&app, &otn).await,
            vec![pair("order.paid", ""), pair("refund.abnormal", &abnormal), pair("refund.failed", &closed)]
        );
        refund_ok(&app, &otn, 70).await;
        app.stop().await;
    }
}

on_both_backends! {
    async fn with_every_notify_dropped_refundquery_finds_the_result(backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        let otn = paid_order(&app, 88).await;
        app.sim().set_faults(Faults {
            drop_refund_notifies: true,
            refund_result_ms: 100,
            notify_time_scale: 0.001,
            ..Faults::default()
        });
        let no = refund_ok(&app, &otn, 88).await;
        wait_status(&app, &no, "processing").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(show(&app, &no).await["status"], "processing");
        advance(&app, Duration::from_secs(61));
        wait_status(&app, &no, "succeeded").await;
        assert!(app.sim().refund(&no).unwrap().deliveries.is_empty(), "no notify was sent");
        assert!(app.sim().calls().iter().any(|c| c.api == "refundquery"));
        wait_order(&app, &otn, "refunded").await;
        app.stop().await;
    }
}

/// A refund notify body for `info`, encrypted with `key`.
fn notify_body(app: &TestApp, key: &ApiKey, info: &RefundInfo) -> String {
    let m = app.merchant();
    refund_notify_body(&m.appid, &m.mch_id, key, info)
}

async fn post_refund_notify(app: &TestApp, path: &str, body: String) -> String {
    // A connection of its own: the server may close one after refusing a large body.
    let response = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
        .post(format!("{}{path}", app.base))
        .header("content-type", "text/xml")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

fn is_success(reply: &str) -> bool {
    reply.contains("<return_code><![CDATA[SUCCESS]]></return_code>")
}

on_both_backends! {
    async fn forged_refund_notifies_change_nothing_and_replays_are_harmless(backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        let otn = paid_order(&app, 88).await;
        app.sim().set_faults(Faults { drop_refund_notifies: true, notify_time_scale: 0.001, ..Faults::default() });
        let no = refund_ok(&app, &otn, 60).await;
        let accepted = wait_status(&app, &no, "processing").await;
        let genuine = RefundInfo {
            transaction_id: app.sim().order(&otn).unwrap().transaction_id.unwrap(),
            out_trade_no: otn.clone(),
            refund_id: accepted["refund_id"].as_str().unwrap().to_owned(),
            out_refund_no: no.clone(),
            total_fee: 88,
            settlement_total_fee: Some(88),
            refund_fee: 60,
            settlement_refund_fee: Some(60),
            refund_status: RefundResult::Succeeded,
            success_time: Some(chrono::Utc::now()),
            refund_recv_accout: Some("支付用户的零钱".into()),
            refund_account: Some("REFUND_SOURCE_RECHARGE_FUNDS".into()),
            refund_request_source: Some("API".into()),
        };
        let key = app.merchant().key.clone();
        let m = app.merchant().clone();
        let mut forged: Vec<(&str, String)> = Vec::new();
        forged.push(("other key", notify_body(&app, &ApiKey::new("0123456789abcdef0123456789abcdef"), &genuine)));
        let good = notify_body(&app, &key, &genuine);
        let req_info = good.split("<req_info><![CDATA[").nth(1).unwrap().split("]]>").next().unwrap().to_owned();
        let mut tampered = req_info.clone().into_bytes();
        tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
        forged.push(("tampered", good.replace(&req_info, std::str::from_utf8(&tampered).unwrap())));
        forged.push(("not base64", good.replace(&req_info, "%%%not-base64%%%")));
        forged.push(("unknown refund", notify_body(&app, &key, &RefundInfo { out_refund_no: "RFNOSUCHREFUND".into(), ..genuine.clone() })));
        forged.push(("amount", notify_body(&app, &key, &RefundInfo { refund_fee: 88, ..genuine.clone() })));
        forged.push(("other order", notify_body(&app, &key, &RefundInfo { out_trade_no: "MPOTHER".into(), ..genuine.clone() })));
        forged.push(("foreign appid", refund_notify_body("wx0000000000000000", &m.mch_id, &key, &genuine)));
        forged.push(("foreign mch_id", refund_notify_body(&m.appid, "19999999", &key, &genuine)));
        forged.push(("doctype", format!("<!DOCTYPE xml [<!ENTITY x \"y\">]>{good}")));
        forged.push(("oversized", good.replace("<nonce_str>", &format!("<pad>{}</pad><nonce_str>", "x".repeat(200_000)))));
        for (what, body) in forged {
            for path in ["/v1/wechat/refund-notify", "/v1/wechat/notify"] {
                let reply = post_refund_notify(&app, path, body.clone()).await;
                assert!(reply.contains("FAIL"), "{what} to {path}: {reply}");
            }
        }
        assert_eq!(show(&app, &no).await["status"], "processing");
        assert!(app.history(&otn).await.get("refunded_fee").is_none());

        // The genuine one, sent to the payment notify URL (one URL for both): applied.
        assert!(is_success(&post_refund_notify(&app, "/v1/wechat/notify", good.clone()).await));
        assert_eq!(show(&app, &no).await["status"], "succeeded");
        assert_eq!(app.history(&otn).await["refunded_fee"], 60);
        // Replays: SUCCESS, nothing changes.
        for path in ["/v1/wechat/refund-notify", "/v1/wechat/notify"] {
            assert!(is_success(&post_refund_notify(&app, path, good.clone()).await));
        }
        assert_eq!(app.history(&otn).await["refunded_fee"], 60);
        app.stop().await;
    }
}

on_both_backends! {
    async fn a_console_refund_is_recorded_as_external_and_counted(backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        let otn = paid_order(&app, 88).await;
        // No notify_url of its own: WeChat posts it to the order's payment notify URL.
        let console = app
            .sim()
            .console_refund(ConsoleRefund { out_trade_no: otn.clone(), refund_fee: 20, out_refund_no: None, notify_url: None })
            .unwrap();
        eventually("the console refund is recorded", || async {
            app.history(&otn).await["refunded_fee"] == 20
        }).await;
        let view = show(&app, &console.out_refund_no).await;
        assert_eq!((view["status"].as_str(), view["external"].as_bool()), (Some("succeeded"), Some(true)), "{view}");
        eventually("the console refund's notify is acknowledged", || async {
            app.sim().refund(&console.out_refund_no).unwrap().deliveries.iter().any(|d| d.acknowledged)
        }).await;
        // It counts against the total.
        let (status, body) = refund(&app, &otn, json!({"refund_fee": 69}), None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let rest = refund_ok(&app, &otn, 68).await;
        advance(&app, Duration::from_secs(61));
        wait_status(&app, &rest, "succeeded").await;
        let order = wait_order(&app, &otn, "refunded").await;
        assert_eq!(order["refunded_fee"], 88);
        assert_eq!(
            events_of(&app, &otn).await,
            {
                let mut expected = vec![
                    pair("order.paid", ""),
                    pair("order.refunded", ""),
                    pair("refund.succeeded", &console.out_refund_no),
                    pair("refund.succeeded", &rest),
                ];
                expected.sort();
                expected
            }
        );
        app.stop().await;
    }
}

/// Live-mode settings against a simulator at `base` (a staging WeChat).
fn live(s: &mut minipay::config::Settings, base: &str) {
    let demo = minipay::wechat::simulator::SimConfig::demo();
    s.wechat.appid = Some(demo.appid);
    s.wechat.app_secret = Some(demo.app_secret.into());
    s.wechat.mch_id = Some(demo.mch_id);
    s.wechat.api_key = Some(demo.key.expose().to_owned().into());
    s.wechat.notify_url = Some("https://pay.example.com/v1/wechat/notify".into());
    s.wechat.pay_base_url = Some(base.to_owned());
    s.wechat.auth_base_url = Some(base.to_owned());
}

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/refund-tls/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[tokio::test]
async fn live_mode_without_a_certificate_starts_and_refunds_answer_not_configured() {
    let (_sim, base) = crate::helpers::simulator().await;
    let Some(app) = TestApp::spawn_with(
        crate::helpers::Backend::Sqlite,
        minipay::app::Role::All,
        |s| live(s, &base),
    )
    .await
    else {
        return;
    };
    assert!(!app.services.gateway.refunds_enabled());
    let (status, body) = refund(&app, "MPANYORDER", json!({"refund_fee": 1}), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "REFUNDS_NOT_CONFIGURED");
    app.stop().await;
}

#[tokio::test]
async fn startup_refuses_a_certificate_it_cannot_use_and_loads_a_good_one() {
    let (_sim, base) = crate::helpers::simulator().await;
    let cases = [
        (
            "apiclient_cert.pem",
            "missing_key.pem",
            "MINIPAY_CLIENT_KEY",
        ),
        ("wrong_cn_cert.pem", "wrong_cn_key.pem", "10000100"),
        ("apiclient_cert.pem", "other_key.pem", "does not belong"),
    ];
    for (cert, key, expected) in cases {
        let db = crate::helpers::Database::create(crate::helpers::Backend::Sqlite)
            .await
            .unwrap();
        let mut s = crate::helpers::test_settings(&db.url);
        live(&mut s, &base);
        s.refunds.client_cert = Some(fixture(cert));
        s.refunds.client_key = Some(fixture(key));
        let config = minipay::config::Config::from_settings(s).unwrap();
        let refused = minipay::app::App::build(config, minipay::app::Role::Serve).await;
        let message = format!("{:#}", refused.err().expect("refused"));
        assert!(message.contains(expected), "{cert}/{key}: {message}");
    }
    // WeChat's legacy-encrypted p12, password the mch_id: loaded, refunds on.
    let Some(app) = TestApp::spawn_with(
        crate::helpers::Backend::Sqlite,
        minipay::app::Role::Serve,
        |s| {
            live(s, &base);
            s.refunds.client_p12 = Some(fixture("apiclient_cert.p12"));
        },
    )
    .await
    else {
        return;
    };
    assert!(app.services.gateway.refunds_enabled());
    app.stop().await;
}
