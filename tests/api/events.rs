//! Merchant events end to end, on both backends: recorded with the change, delivered signed to a
//! real receiver on loopback, retried on the (scaled) schedule, `dead` after it, redelivered with
//! the same id, not sent without an endpoint, absent when the change rolled back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use minipay::events::{Envelope, WebhookSecrets};
use minipay::store::{Applied, Outbox};
use minipay_jobs::{EventType, Payment};
use reqwest::StatusCode as Status;
use secrecy::SecretString;
use serde_json::Value;

use crate::helpers::{ADMIN_TOKEN, Backend, TestApp, eventually, on_both_backends, serve};

pub const CURRENT: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
pub const PREVIOUS: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// What a receiver does with the n-th request (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// Never answers.
    Hang,
}

/// One request as the merchant's endpoint got it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Delivery {
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    pub fn envelope(&self) -> Envelope {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// The merchant's check, with one secret.
    pub fn verifies_with(&self, secret: &str) -> bool {
        WebhookSecrets::from_setting(secret)
            .unwrap()
            .verify(
                &self.header("webhook-id"),
                &self.header("webhook-timestamp"),
                &self.body,
                &self.header("webhook-signature"),
                chrono::Utc::now().timestamp(),
            )
            .is_ok()
    }
}

type Script = Arc<dyn Fn(usize) -> Answer + Send + Sync>;

/// A merchant endpoint on loopback that records every request and answers per its script.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    got: Arc<Mutex<Vec<Delivery>>>,
}

impl Receiver {
    pub async fn start(script: impl Fn(usize) -> Answer + Send + Sync + 'static) -> Receiver {
        let got = Arc::new(Mutex::new(Vec::new()));
        let state: (Arc<Mutex<Vec<Delivery>>>, Script) = (got.clone(), Arc::new(script));
        let router = Router::new()
            .route("/hooks", post(receive))
            .with_state(state);
        let url = format!("{}/hooks", serve(router).await);
        Receiver { url, got }
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.got.lock().unwrap().clone()
    }

    pub async fn wait_for(&self, count: usize) -> Vec<Delivery> {
        eventually(&format!("{count} deliveries"), || async {
            self.got.lock().unwrap().len() >= count
        })
        .await;
        self.deliveries()
    }
}

async fn receive(
    State((got, script)): State<(Arc<Mutex<Vec<Delivery>>>, Script)>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let n = {
        let mut got = got.lock().unwrap();
        got.push(Delivery { headers, body });
        got.len() - 1
    };
    match script(n) {
        Answer::Status(code) => StatusCode::from_u16(code).unwrap(),
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK
        }
    }
}

/// An app sending events to `url`, signed with `secrets`, its retry pauses times `scale`.
async fn app_with_webhook(
    backend: Backend,
    url: &str,
    secrets: &str,
    scale: &str,
    timeout_secs: u64,
) -> Option<TestApp> {
    let (url, secrets, scale) = (url.to_owned(), secrets.to_owned(), scale.to_owned());
    TestApp::spawn_with(backend, minipay::app::Role::All, move |s| {
        s.events.webhook_url = Some(url);
        s.events.webhook_secret = Some(SecretString::from(secrets));
        s.events.webhook_retry_scale = scale;
        s.events.webhook_timeout_secs = timeout_secs;
    })
    .await
}

/// A paid order's number.
async fn paid_order(app: &TestApp) -> String {
    let token = app.login("merchant-events#1").await;
    let order = app.create_order(&token, "sms-100", 1).await;
    let out_trade_no = order["out_trade_no"].as_str().unwrap().to_owned();
    app.wait_for_status(&token, &out_trade_no, "ready").await;
    app.pay(&out_trade_no, true);
    app.wait_for_status(&token, &out_trade_no, "paid").await;
    out_trade_no
}

/// `GET /v1/admin/events?...`'s list.
pub async fn events(app: &TestApp, query: &str) -> Vec<Value> {
    let (status, body) = app
        .get_json(&format!("/v1/admin/events?{query}"), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(status, Status::OK, "{body}");
    body["events"].as_array().unwrap().clone()
}

async fn event_state(app: &TestApp, out_trade_no: &str) -> (String, i64) {
    let list = events(app, &format!("out_trade_no={out_trade_no}")).await;
    assert_eq!(list.len(), 1, "{list:?}");
    (
        list[0]["state"].as_str().unwrap().to_owned(),
        list[0]["attempts"].as_i64().unwrap(),
    )
}

async fn redeliver(app: &TestApp, id: &str) -> (Status, Value) {
    app.post_json(
        &format!("/v1/admin/events/{id}/redeliver"),
        Some(ADMIN_TOKEN),
        Value::Null,
    )
    .await
}

on_both_backends! {
    /// One paid order → exactly one `order.paid`, signed once per secret, each signature
    /// verifiable alone; the attempt is in the order's history; redeliver sends the same id.
    async fn a_paid_order_is_delivered_once_signed_per_secret(backend) {
        let receiver = Receiver::start(|_| Answer::Status(204)).await;
        let secrets = format!("{CURRENT} {PREVIOUS}");
        let Some(app) = app_with_webhook(backend, &receiver.url, &secrets, "1", 10).await else {
            return;
        };
        let out_trade_no = paid_order(&app).await;
        let got = receiver.wait_for(1).await;
        let delivery = &got[0];
        let envelope = delivery.envelope();
        assert_eq!(envelope.kind, EventType::OrderPaid);
        assert_eq!(delivery.header("webhook-id"), envelope.id.as_str());
        assert_eq!(envelope.data["out_trade_no"], out_trade_no.as_str());
        assert_eq!(envelope.data["status"], "paid");
        assert_eq!(envelope.data["total_fee"], 88);
        assert!(envelope.data["openid"].as_str().is_some_and(|o| !o.is_empty()));
        assert!(envelope.data["transaction_id"].as_str().is_some());
        assert_eq!(delivery.header("webhook-signature").split(' ').count(), 2);
        assert!(delivery.verifies_with(CURRENT), "the current secret verifies");
        assert!(delivery.verifies_with(PREVIOUS), "the previous secret verifies");
        let raw = String::from_utf8(delivery.body.to_vec()).unwrap();
        assert!(raw.starts_with(&format!(r#"{{"id":"{}","type":"order.paid","created_at":""#, envelope.id)), "{raw}");
        let raw: Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(raw.as_object().unwrap().len(), 4, "id, type, created_at, data: {raw}");

        eventually("delivered", || async {
            event_state(&app, &out_trade_no).await == ("delivered".to_owned(), 1)
        })
        .await;
        let history = app.history(&out_trade_no).await;
        let attempts = history["event_attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1, "{history}");
        assert_eq!(attempts[0]["status"], 204);
        assert_eq!(attempts[0]["event_id"], envelope.id.as_str());
        assert!(attempts[0]["duration_ms"].as_i64().is_some());
        assert_eq!(history["events"][0]["type"], "order.paid");

        let (status, body) = redeliver(&app, envelope.id.as_str()).await;
        assert_eq!(status, Status::ACCEPTED, "{body}");
        let again = receiver.wait_for(2).await;
        assert_eq!(again[1].header("webhook-id"), envelope.id.as_str());
        assert_eq!(again[1].body, delivery.body, "the same body");
        assert!(again[1].verifies_with(CURRENT));
        eventually("delivered again", || async {
            event_state(&app, &out_trade_no).await == ("delivered".to_owned(), 2)
        })
        .await;
        assert_eq!(receiver.deliveries().len(), 2, "exactly one order.paid, sent twice");
        let (status, body) = redeliver(&app, "evt_00000000000000000000000000000000").await;
        assert_eq!(status, Status::NOT_FOUND);
        assert_eq!(body["error"]["code"], "EVENT_NOT_FOUND");
        app.stop().await;
    }
}

on_both_backends! {
    /// A full refund sends `refund.succeeded` (the refund) and `order.refunded` (the order with
    /// `refunded_fee`), each once, signed, after `order.paid`.
    async fn a_refund_sends_refund_succeeded_and_order_refunded(backend) {
        let receiver = Receiver::start(|_| Answer::Status(200)).await;
        let Some(app) = app_with_webhook(backend, &receiver.url, CURRENT, "1", 10).await else {
            return;
        };
        let out_trade_no = paid_order(&app).await;
        let (status, body) = app
            .post_json(
                &format!("/v1/admin/orders/{out_trade_no}/refunds"),
                Some(ADMIN_TOKEN),
                serde_json::json!({"refund_fee": 88, "reason": "缺货"}),
            )
            .await;
        assert_eq!(status, Status::ACCEPTED, "{body}");
        let out_refund_no = body["out_refund_no"].as_str().unwrap().to_owned();
        let got = receiver.wait_for(3).await;
        let by_kind = |kind: EventType| {
            let found: Vec<Envelope> =
                got.iter().map(Delivery::envelope).filter(|e| e.kind == kind).collect();
            assert_eq!(found.len(), 1, "one {kind}: {got:?}");
            found[0].clone()
        };
        assert!(got.iter().all(|d| d.verifies_with(CURRENT)));
        let refund = by_kind(EventType::RefundSucceeded).data;
        assert_eq!(refund["out_refund_no"], out_refund_no.as_str());
        assert_eq!(refund["out_trade_no"], out_trade_no.as_str());
        assert_eq!((refund["refund_fee"].as_i64(), refund["status"].as_str()), (Some(88), Some("succeeded")));
        assert_eq!(refund["reason"], "缺货");
        assert!(refund["refund_id"].as_str().is_some_and(|id| !id.is_empty()), "{refund}");
        assert!(refund["succeeded_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{refund}");
        assert!(refund.get("error").is_none() && refund.get("external").is_none(), "{refund}");
        let order = by_kind(EventType::OrderRefunded).data;
        assert_eq!((order["status"].as_str(), order["refunded_fee"].as_i64()), (Some("refunded"), Some(88)), "{order}");
        let paid = by_kind(EventType::OrderPaid).data;
        assert!(paid.get("refunded_fee").is_none(), "absent before a refund: {paid}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(receiver.deliveries().len(), 3, "nothing sent twice");
        app.stop().await;
    }
}

on_both_backends! {
    /// A 500 is retried with the same `webhook-id`, after the schedule's first pause (5 s ±20 %,
    /// scaled by 0.1 here: 400 to 600 ms, as recorded).
    async fn a_failed_delivery_is_retried_with_the_same_id(backend) {
        let receiver = Receiver::start(|n| Answer::Status(if n == 0 { 500 } else { 200 })).await;
        let Some(app) = app_with_webhook(backend, &receiver.url, CURRENT, "0.1", 10).await else {
            return;
        };
        let out_trade_no = paid_order(&app).await;
        let got = receiver.wait_for(2).await;
        assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
        assert_eq!(got[0].body, got[1].body);
        assert!(got[1].verifies_with(CURRENT));
        eventually("delivered on the second attempt", || async {
            event_state(&app, &out_trade_no).await == ("delivered".to_owned(), 2)
        })
        .await;
        let history = app.history(&out_trade_no).await;
        let attempts = history["event_attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 2, "{history}");
        assert_eq!(attempts[0]["status"], 500);
        assert_eq!(attempts[0]["error"], "HTTP 500");
        assert_eq!(attempts[1]["status"], 200);
        let pause = attempts[1]["at"].as_i64().unwrap() - attempts[0]["at"].as_i64().unwrap();
        assert!(pause >= 400, "retried after the schedule's pause, not at once: {pause} ms");
        app.stop().await;
    }
}

on_both_backends! {
    /// An endpoint that never answers: eight attempts on the (scaled) schedule, then `dead`,
    /// listed as such, with the alert; redeliver tries a dead event again.
    async fn a_silent_endpoint_makes_the_event_dead(backend) {
        let receiver = Receiver::start(|_| Answer::Hang).await;
        // 27.6 hours × 0.00005 ≈ 5 s of pauses, plus eight 1 s timeouts.
        let Some(app) = app_with_webhook(backend, &receiver.url, CURRENT, "0.00005", 1).await
        else {
            return;
        };
        let out_trade_no = paid_order(&app).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            if event_state(&app, &out_trade_no).await.0 == "dead" {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "never dead");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(event_state(&app, &out_trade_no).await, ("dead".to_owned(), 8));
        assert_eq!(receiver.deliveries().len(), 8);
        let ids: std::collections::BTreeSet<String> =
            receiver.deliveries().iter().map(|d| d.header("webhook-id")).collect();
        assert_eq!(ids.len(), 1, "one id on every attempt");
        let dead = events(&app, "state=dead").await;
        assert_eq!(dead.len(), 1);
        assert!(dead[0]["last_error"].as_str().unwrap().contains("no answer"), "{dead:?}");
        assert!(events(&app, "state=pending").await.is_empty());
        let (status, _) = app.get_json("/v1/admin/events?state=lost", Some(ADMIN_TOKEN)).await;
        assert_eq!(status, Status::UNPROCESSABLE_ENTITY);
        let metrics = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap();
        let metrics = metrics.text().await.unwrap();
        assert!(metrics.contains("kind=\"event_dead\""), "the alert is counted");

        let id = dead[0]["id"].as_str().unwrap().to_owned();
        let (status, _) = redeliver(&app, &id).await;
        assert_eq!(status, Status::ACCEPTED);
        receiver.wait_for(9).await;
        assert_eq!(receiver.deliveries()[8].header("webhook-id"), id);
        app.stop().await;
    }
}

on_both_backends! {
    /// Without an endpoint, events are recorded (listed, pending) and nothing is queued.
    async fn without_an_endpoint_events_are_recorded_not_sent(backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        let out_trade_no = paid_order(&app).await;
        let list = events(&app, &format!("out_trade_no={out_trade_no}")).await;
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0]["type"], "order.paid");
        assert_eq!(list[0]["state"], "pending");
        assert_eq!(list[0]["attempts"], 0);
        assert!(list[0]["created_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(deliver_jobs(&app).await, 0);
        let id = list[0]["id"].as_str().unwrap().to_owned();
        let (status, body) = redeliver(&app, &id).await;
        assert_eq!(status, Status::CONFLICT);
        assert_eq!(body["error"]["code"], "WEBHOOK_NOT_CONFIGURED");
        app.stop().await;
    }
}

async fn deliver_jobs(app: &TestApp) -> i64 {
    match app.store() {
        minipay::store::Store::Sqlite(_) => {
            app.scalar("SELECT COUNT(*) FROM Jobs WHERE job_type = 'deliver_event'")
                .await
        }
        minipay::store::Store::Postgres(_) => {
            app.scalar("SELECT COUNT(*) FROM apalis.jobs WHERE job_type = 'deliver_event'")
                .await
        }
    }
}

on_both_backends! {
    /// A change that rolls back (here: queueing its delivery fails) leaves no event and no
    /// job; the same change committed leaves exactly one of each.
    async fn a_rolled_back_change_leaves_no_event(backend) {
        let receiver = Receiver::start(|_| Answer::Status(200)).await;
        let Some(app) = app_with_webhook(backend, &receiver.url, CURRENT, "1", 10).await else {
            return;
        };
        let token = app.login("rollback#1").await;
        let order = app.create_order(&token, "sms-100", 1).await;
        let out_trade_no = order["out_trade_no"].as_str().unwrap().to_owned();
        app.wait_for_status(&token, &out_trade_no, "ready").await;
        match backend {
            Backend::Sqlite => {
                app.execute(
                    "CREATE TRIGGER no_deliveries BEFORE INSERT ON Jobs \
                     WHEN NEW.job_type = 'deliver_event' BEGIN SELECT RAISE(ABORT, 'refused'); END",
                )
                .await;
            }
            Backend::Postgres => {
                app.execute(
                    "CREATE FUNCTION no_deliveries() RETURNS trigger LANGUAGE plpgsql AS \
                     $$ BEGIN RAISE EXCEPTION 'refused'; END $$",
                )
                .await;
                app.execute(
                    "CREATE TRIGGER no_deliveries BEFORE INSERT ON apalis.jobs FOR EACH ROW \
                     WHEN (NEW.job_type = 'deliver_event') EXECUTE FUNCTION no_deliveries()",
                )
                .await;
            }
        }
        let payment = Payment {
            out_trade_no: out_trade_no.clone(),
            transaction_id: "4200000000202611300000000001".into(),
            total_fee: 88,
            cash_fee: 88,
            time_end: "20261130120000".into(),
        };
        let outbox = Outbox::new(Some(receiver.url.clone()));
        let now = app.services.clock.unix_ms();
        let failed = app.store().apply_payment(&payment, "test", None, &outbox, now).await;
        assert!(failed.is_err(), "{failed:?}");
        assert_eq!(app.order(&token, &out_trade_no, None).await["status"], "ready");
        assert!(events(&app, "").await.is_empty(), "no event for a rolled-back change");
        assert_eq!(deliver_jobs(&app).await, 0);

        match backend {
            Backend::Sqlite => app.execute("DROP TRIGGER no_deliveries").await,
            Backend::Postgres => app.execute("DROP TRIGGER no_deliveries ON apalis.jobs").await,
        }
        let applied = app.store().apply_payment(&payment, "test", None, &outbox, now).await;
        assert!(matches!(applied, Ok(Applied::Paid { .. })), "{applied:?}");
        // A second application of the same payment records nothing more.
        let again = app.store().apply_payment(&payment, "test", None, &outbox, now).await;
        assert!(matches!(again, Ok(Applied::AlreadyPaid)), "{again:?}");
        assert_eq!(events(&app, "").await.len(), 1);
        receiver.wait_for(1).await;
        app.stop().await;
    }
}

on_both_backends! {
    /// Money that could not be applied is a `payment.anomaly` event (once per payment), and a
    /// closed order's close is an `order.closed`.
    async fn a_payment_after_close_is_an_anomaly_event(backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        let token = app.login("anomaly#1").await;
        let order = app.create_order(&token, "sms-100", 1).await;
        let out_trade_no = order["out_trade_no"].as_str().unwrap().to_owned();
        app.wait_for_status(&token, &out_trade_no, "ready").await;
        let outbox = Outbox::default();
        let now = app.services.clock.unix_ms();
        assert!(app.store().mark_closed(&out_trade_no, "test", &outbox, now).await.unwrap());
        let payment = Payment {
            out_trade_no: out_trade_no.clone(),
            transaction_id: "4200000000202611300000000002".into(),
            total_fee: 88,
            cash_fee: 88,
            time_end: "20261130120000".into(),
        };
        for later in 1..=2 {
            let applied = app.store().apply_payment(&payment, "test", None, &outbox, now + later).await;
            assert!(matches!(applied, Ok(Applied::NotPayable(_))), "{applied:?}");
        }
        let mut list = events(&app, &format!("out_trade_no={out_trade_no}")).await;
        list.reverse();
        let types: Vec<&str> = list.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["order.closed", "payment.anomaly"]);
        let id = list[1]["id"].as_str().unwrap();
        let data: Value = serde_json::from_str(&app.event_data(id).await).unwrap();
        assert_eq!(data["status"], "closed");
        assert_eq!(data["anomaly"]["kind"], "paid_after_close");
        assert_eq!(data["anomaly"]["transaction_id"], payment.transaction_id.as_str());
        app.stop().await;
    }
}

impl TestApp {
    /// An event's stored `data`.
    pub async fn event_data(&self, id: &str) -> String {
        self.store().merchant_event(id).await.unwrap().unwrap().data
    }
}

on_both_backends! {
    /// While the merchant's endpoint hangs on every delivery (one delivery slot, a long
    /// timeout), payments keep flowing: every order is paid, its event waits.
    async fn a_hanging_endpoint_does_not_hold_payments(backend) {
        let receiver = Receiver::start(|_| Answer::Hang).await;
        let (url, secret) = (receiver.url.clone(), CURRENT.to_owned());
        let Some(app) = TestApp::spawn_with(backend, minipay::app::Role::All, move |s| {
            s.events.webhook_url = Some(url);
            s.events.webhook_secret = Some(SecretString::from(secret));
            s.events.webhook_timeout_secs = 600;
            s.events.webhook_concurrency = 1;
        })
        .await
        else {
            return;
        };
        let token = app.login("isolation#1").await;
        let mut numbers = Vec::new();
        for _ in 0..5 {
            let order = app.create_order(&token, "sms-100", 1).await;
            numbers.push(order["out_trade_no"].as_str().unwrap().to_owned());
        }
        for n in &numbers {
            app.wait_for_status(&token, n, "ready").await;
            app.pay(n, true);
        }
        for n in &numbers {
            app.wait_for_status(&token, n, "paid").await;
        }
        receiver.wait_for(1).await;
        let pending = events(&app, "state=pending").await;
        assert_eq!(pending.len(), 5, "every paid order has its event, waiting: {pending:?}");
        assert_eq!(receiver.deliveries().len(), 1, "one delivery slot, held by the hang");
        app.stop().await;
    }
}
