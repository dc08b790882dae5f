//! Reconciliation with the simulator: a paid order whose notifies were all lost becomes `paid`
//! by order query; an unpaid one past its expiry is closed with WeChat, never within 5 minutes
//! of its creation; a user still paying is waited for; a lost prepay job is re-queued.

use std::time::Duration;

use minipay::app::Role;
use minipay::wechat::simulator::TradeState;

use crate::helpers::{Backend, TestApp, eventually, on_both_backends};

/// Checks right after an order becomes ready, sweeping every 100 ms.
async fn reconciling_app(backend: Backend) -> Option<TestApp> {
    TestApp::spawn_with(backend, Role::All, |s| {
        s.workers.reconcile_delay_secs = 0;
        s.workers.reconcile_interval_ms = 100;
    })
    .await
}

async fn ready_order(app: &TestApp, code: &str) -> (String, String) {
    let token = app.login(code).await;
    let otn = app.create_order(&token, "sms-100", 1).await["out_trade_no"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_for_status(&token, &otn, "ready").await;
    (token, otn)
}

/// Moves both clocks, ours and WeChat's, as time passing would.
fn advance(app: &TestApp, by: Duration) {
    app.services.clock.advance(by);
    app.sim().clock().advance(by);
}

fn queries(app: &TestApp, otn: &str, api: &str) -> usize {
    app.sim()
        .order(otn)
        .unwrap()
        .calls
        .iter()
        .filter(|c| c.api == api)
        .count()
}

on_both_backends! {
    async fn a_paid_order_whose_notifies_were_lost_is_found_by_query(backend) {
        let Some(app) = reconciling_app(backend).await else { return };
        let (token, otn) = ready_order(&app, "tom#1").await;
        let paid = app.pay(&otn, false); // every notify dropped
        let order = app.wait_for_status(&token, &otn, "paid").await;
        assert_eq!(order["transaction_id"], paid.transaction_id.as_str());
        let history = app.history(&otn).await;
        let via_query = history["history"].as_array().unwrap().iter()
            .any(|e| e["kind"] == "paid" && e["detail"].as_str().unwrap().contains("orderquery (reconciliation)"));
        assert!(via_query, "{history}");
        assert!(history["notifies"].as_array().unwrap().is_empty());
        assert!(app.sim().close_violations().is_empty());
        app.stop().await;
    }
}

on_both_backends! {
    async fn an_unpaid_order_is_closed_after_expiry_and_not_before(backend) {
        let Some(app) = reconciling_app(backend).await else { return };
        let (token, otn) = ready_order(&app, "uma#1").await;
        // Not expired: the reconciler asks, hears NOTPAY, and waits. No closeorder.
        eventually("a first check", || async { queries(&app, &otn, "orderquery") >= 1 }).await;
        assert_eq!(queries(&app, &otn, "closeorder"), 0);
        assert_eq!(app.order(&token, &otn, None).await["status"], "ready");

        // The user is still paying when the window ends: still no close.
        app.sim().set_trade_state(&otn, TradeState::Userpaying);
        advance(&app, Duration::from_secs(31 * 60));
        let checks = queries(&app, &otn, "orderquery");
        eventually("a check after expiry", || async { queries(&app, &otn, "orderquery") > checks }).await;
        assert_eq!(queries(&app, &otn, "closeorder"), 0);

        // Then gives up: the order is closed with WeChat.
        app.sim().set_trade_state(&otn, TradeState::Notpay);
        advance(&app, Duration::from_secs(30 * 60));
        // The check counted above may still be storing its successor, due a minute after the
        // clock it read: under load that lands after this advance. Minutes pass until the
        // reconciler closes the order.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let closed = loop {
            let order = app.order(&token, &otn, None).await;
            if order["status"] == "closed" {
                break order;
            }
            assert!(tokio::time::Instant::now() < deadline, "order never became closed: {order}");
            tokio::time::sleep(Duration::from_millis(500)).await;
            advance(&app, Duration::from_secs(61));
        };
        assert!(closed.get("pay_params").is_none());
        assert_eq!(app.sim().order(&otn).unwrap().trade_state, TradeState::Closed);
        assert_eq!(queries(&app, &otn, "closeorder"), 1);
        assert!(app.sim().close_violations().is_empty(), "{:?}", app.sim().close_violations());
        app.stop().await;
    }
}

on_both_backends! {
    async fn a_pending_order_whose_job_was_lost_is_requeued(backend) {
        let Some(app) = TestApp::spawn_with(backend, Role::Serve, |s| s.workers.stuck_pending_secs = 1).await else { return };
        let token = app.login("wendy#1").await;
        let otn = app.create_order(&token, "sms-100", 1).await["out_trade_no"].as_str().unwrap().to_owned();
        // The job row is lost (an operator deleted it, a restore without the queue, ...).
        match app.store() {
            minipay::store::Store::Sqlite(p) => { sqlx::query("DELETE FROM Jobs").execute(&p.writer).await.unwrap(); }
            minipay::store::Store::Postgres(p) => { sqlx::query("DELETE FROM apalis.jobs").execute(p).await.unwrap(); }
        }
        let app = app.restart(Role::All).await;
        let ready = app.wait_for_status(&token, &otn, "ready").await;
        assert!(ready["pay_params"].is_object());
        let history = app.history(&otn).await;
        assert!(history["history"].as_array().unwrap().iter().any(|e| e["kind"] == "requeued"), "{history}");
        app.stop().await;
    }
}
