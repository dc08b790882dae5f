//! The payment notify webhook: forgeries are refused with FAIL and change nothing (but are
//! recorded with their verdict, in a bounded summary); genuine notifies are recorded before SUCCESS and applied once,
//! however many copies arrive at once.

use minipay::wechat::simulator::{Forced, PayRequest};
use minipay::wechat::v2::notify::SUCCESS_REPLY;
use minipay::wechat::v2::sign::sign;
use minipay::wechat::v2::{ApiKey, Fields, SignType, xml};
use reqwest::StatusCode;

use minipay_jobs::Job;

use crate::helpers::{Backend, TestApp, eventually, on_both_backends};

/// A `ready` order: (session token, out_trade_no).
async fn ready_order(app: &TestApp, code: &str, sku: &str) -> (String, String) {
    let token = app.login(code).await;
    let otn = app.create_order(&token, sku, 1).await["out_trade_no"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_for_status(&token, &otn, "ready").await;
    (token, otn)
}

fn parse(xml_text: &str) -> Fields {
    xml::parse(xml_text.as_bytes(), xml::DEFAULT_BODY_LIMIT).unwrap()
}

/// `fields` with `changes` applied, signed again with `key` (MD5, as the demo merchant).
fn resigned(fields: &Fields, changes: &[(&str, &str)], key: &ApiKey) -> String {
    let mut fields = fields.clone();
    for (name, value) in changes {
        fields.set(*name, *value);
    }
    fields.remove("sign");
    let signature = sign(fields.iter(), key, SignType::Md5);
    fields.set("sign", signature);
    xml::to_xml(fields.iter())
}

fn return_code(reply: &str) -> String {
    parse(reply)
        .get("return_code")
        .unwrap_or_default()
        .to_owned()
}

on_both_backends! {
    async fn forged_notifies_are_refused_and_change_nothing(backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        let (token, otn) = ready_order(&app, "oscar#1", "sms-100").await;
        let genuine = app.pay(&otn, false).notify_xml;
        let fields = parse(&genuine);
        let key = app.merchant().key.clone();
        let wrong_key = ApiKey::new("0123456789abcdef0123456789abcdef");
        let mut unsigned = fields.clone();
        unsigned.remove("sign");

        let forgeries: Vec<(&str, Vec<u8>)> = vec![
            ("bad_signature", resigned(&fields, &[], &wrong_key).into_bytes()),
            ("bad_signature", xml::to_xml(unsigned.iter()).into_bytes()),
            ("bad_signature", genuine.replace("<total_fee>88</total_fee>", "<total_fee>1</total_fee>").into_bytes()),
            ("amount_mismatch", resigned(&fields, &[("total_fee", "1"), ("cash_fee", "1")], &key).into_bytes()),
            ("foreign_merchant", resigned(&fields, &[("appid", "wx1111111111111111")], &key).into_bytes()),
            ("foreign_merchant", resigned(&fields, &[("mch_id", "1900000109")], &key).into_bytes()),
            ("unknown_order", resigned(&fields, &[("out_trade_no", "MPNOSUCHORDER00001")], &key).into_bytes()),
            ("wrong_currency", resigned(&fields, &[("fee_type", "USD")], &key).into_bytes()),
            ("doctype", format!("<?xml version=\"1.0\"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>{}", genuine.replace("<bank_type><![CDATA[OTHERS]]></bank_type>", "<bank_type>&xxe;</bank_type>")).into_bytes()),
            ("entity", genuine.replace("<bank_type><![CDATA[OTHERS]]></bank_type>", "<bank_type>&xxe;</bank_type>").into_bytes()),
            ("too_large", format!("{}{}", genuine, " ".repeat(70 * 1024)).into_bytes()),
            ("not_utf8", genuine.replace("OTHERS", "OTHER\u{FFFD}").replace('\u{FFFD}', "").into_bytes().into_iter().chain([0xff, 0xfe]).collect()),
            ("nested", genuine.replace("<bank_type><![CDATA[OTHERS]]></bank_type>", "<bank_type><x>1</x></bank_type>").into_bytes()),
            ("repeated_field", genuine.replace("</xml>", "<total_fee>1</total_fee></xml>").into_bytes()),
            ("return_fail", resigned(&fields, &[("return_code", "FAIL")], &key).into_bytes()),
            ("malformed", b"this is not xml".to_vec()),
        ];
        for (verdict, body) in &forgeries {
            let (status, reply) = app.post_notify(body.clone()).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(return_code(&reply), "FAIL", "{verdict}: {reply}");
            assert_eq!(app.order(&token, &otn, None).await["status"], "ready", "{verdict} changed the order");
        }
        // Each forgery is on record with its verdict and client, for an operator to see.
        let refused = forgeries.len() as i64;
        eventually("refused notifies recorded", || async {
            app.scalar("SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM refused_notifies").await == refused
        })
        .await;
        let sql = "SELECT verdict, CAST(SUM(count) AS BIGINT) FROM refused_notifies WHERE peer = '127.0.0.1' GROUP BY verdict ORDER BY verdict";
        let verdicts: Vec<(String, i64)> = match app.store() {
            minipay::store::Store::Sqlite(p) => sqlx::query_as(sql).fetch_all(&p.writer).await.unwrap(),
            minipay::store::Store::Postgres(p) => sqlx::query_as(sql).fetch_all(p).await.unwrap(),
        };
        let mut expected = std::collections::BTreeMap::new();
        for (verdict, _) in &forgeries {
            *expected.entry(verdict.to_string()).or_insert(0i64) += 1;
        }
        assert_eq!(verdicts, expected.into_iter().collect::<Vec<_>>());
        assert_eq!(app.scalar("SELECT COUNT(*) FROM notifies").await, 0, "only verified payments are notifies");

        // the genuine one still works
        let (_, reply) = app.post_notify(genuine).await;
        assert_eq!(reply, SUCCESS_REPLY);
        app.wait_for_status(&token, &otn, "paid").await;
        app.stop().await;
    }
}

on_both_backends! {
    async fn twenty_concurrent_copies_are_applied_once(backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        let (token, otn) = ready_order(&app, "peggy#1", "coffee-latte").await;
        let genuine = app.pay(&otn, false).notify_xml;
        let replies = futures::future::join_all((0..20).map(|_| app.post_notify(genuine.clone()))).await;
        for (status, reply) in &replies {
            assert_eq!(*status, StatusCode::OK);
            assert_eq!(reply, SUCCESS_REPLY);
        }
        let paid = app.wait_for_status(&token, &otn, "paid").await;
        let paid_at = app.history(&otn).await["paid_at"].clone();

        // re-sends after the fact: still SUCCESS, still nothing new
        for _ in 0..3 {
            assert_eq!(app.post_notify(genuine.clone()).await.1, SUCCESS_REPLY);
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let history = app.history(&otn).await;
        assert_eq!(history["paid_at"], paid_at);
        assert_eq!(history["transaction_id"], paid["transaction_id"]);
        let paid_events = history["history"].as_array().unwrap().iter().filter(|e| e["kind"] == "paid").count();
        assert_eq!(paid_events, 1, "exactly one status change");
        assert_eq!(history["notifies"].as_array().unwrap().len(), 1, "one recorded payment");
        assert_eq!(
            app.scalar("SELECT COUNT(*) FROM notifies WHERE applied_at IS NOT NULL").await,
            1,
            "the notify that paid the order is marked applied"
        );
        let jobs = match app.store() {
            minipay::store::Store::Sqlite(_) => app.scalar("SELECT COUNT(*) FROM Jobs WHERE job_type = 'apply_payment'").await,
            minipay::store::Store::Postgres(_) => app.scalar("SELECT COUNT(*) FROM apalis.jobs WHERE job_type = 'apply_payment'").await,
        };
        assert_eq!(jobs, 1, "one status-update job");
        app.stop().await;
    }
}

on_both_backends! {
    async fn coupons_lower_cash_fee_and_the_order_is_still_paid(backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        let (token, otn) = ready_order(&app, "quinn#1", "vip-month").await;
        let paid = app.sim().pay(PayRequest { out_trade_no: otn.clone(), deliver: true, coupon_fee: Some(500) }).unwrap();
        let fields = parse(&paid.notify_xml);
        assert_eq!(fields.get("coupon_fee_0"), Some("500"));
        app.wait_for_status(&token, &otn, "paid").await;
        let history = app.history(&otn).await;
        assert_eq!(history["total_fee"], 2500);
        assert_eq!(history["cash_fee"], 2000);
        app.stop().await;
    }
}

on_both_backends! {
    async fn a_payment_for_a_failed_order_is_recorded_and_raised(backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        // a template notify from a real payment
        let (_, paid_otn) = ready_order(&app, "rita#1", "sms-100").await;
        let template = parse(&app.pay(&paid_otn, false).notify_xml);

        app.force_next(Forced::ErrCode { err_code: "NOAUTH".into(), err_code_des: "商户无此接口权限".into() }, 1);
        let token = app.login("sam#1").await;
        let failed = app.create_order(&token, "sms-100", 1).await["out_trade_no"].as_str().unwrap().to_owned();
        app.wait_for_status(&token, &failed, "failed").await;

        // WeChat says it took money for the failed order anyway.
        let key = app.merchant().key.clone();
        let notify = resigned(&template, &[("out_trade_no", &failed), ("transaction_id", "4200000000000000000000000099")], &key);
        assert_eq!(app.post_notify(notify).await.1, SUCCESS_REPLY, "verified and recorded");
        eventually("alert recorded", || async {
            app.history(&failed).await["history"].as_array().unwrap().iter().any(|e| e["kind"] == "alert")
        })
        .await;
        let history = app.history(&failed).await;
        assert_eq!(history["status"], "failed", "not silently marked paid");
        assert_eq!(history["notifies"].as_array().unwrap().len(), 1);
        app.stop().await;
    }
}

/// Rows and bytes the refused notifies take.
async fn refused_footprint(app: &TestApp) -> (i64, i64, i64) {
    let rows = app.scalar("SELECT COUNT(*) FROM refused_notifies").await;
    let counted = app
        .scalar("SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM refused_notifies")
        .await;
    let bytes = app
        .scalar("SELECT CAST(COALESCE(SUM(LENGTH(body_prefix) + LENGTH(detail) + LENGTH(body_sha256) + LENGTH(peer)), 0) AS BIGINT) FROM refused_notifies")
        .await;
    (rows, counted, bytes)
}

/// `n` forged notifies (a wrong key), 8 KiB each, 50 at a time.
async fn flood(app: &TestApp, n: usize) {
    let fields = parse(
        &app.pay(&ready_order(app, "flood#1", "sms-100").await.1, false)
            .notify_xml,
    );
    let wrong_key = ApiKey::new("0123456789abcdef0123456789abcdef");
    let forged = resigned(&fields, &[("attach", &"x".repeat(8 * 1024))], &wrong_key);
    for _ in 0..n / 50 {
        let replies =
            futures::future::join_all((0..50).map(|_| app.post_notify(forged.clone()))).await;
        assert!(
            replies
                .iter()
                .all(|(_, reply)| return_code(reply) == "FAIL")
        );
    }
}

on_both_backends! {
    async fn a_flood_of_forgeries_is_kept_as_a_few_small_rows(backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        let n = 2_000;
        flood(&app, n).await;
        eventually("every forgery counted", || async { refused_footprint(&app).await.1 == n as i64 }).await;
        let (rows, _, bytes) = refused_footprint(&app).await;
        // One client, one verdict: one row a minute (two if the flood crossed a minute).
        assert!(rows <= 2, "{rows} rows for {n} forgeries");
        assert!(bytes <= 2 * 1024, "{bytes} bytes for {n} forgeries of 8 KiB");
        let sample = app.history(&app.scalar_text("SELECT out_trade_no FROM refused_notifies").await).await["refused_notifies"][0].clone();
        assert_eq!((sample["verdict"].as_str(), sample["peer"].as_str()), (Some("bad_signature"), Some("127.0.0.1")));
        assert_eq!(sample["body_sha256"].as_str().unwrap().len(), 64);
        assert!(sample["body_len"].as_i64().unwrap() > 8 * 1024);
        app.stop().await;
    }
}

on_both_backends! {
    async fn below_the_free_space_floor_refusals_are_only_counted_on_sqlite(backend) {
        // A floor above any disk's free space.
        let Some(app) = TestApp::spawn_with(backend, minipay::app::Role::All, |s| s.http.refused_notify_min_free_mb = u64::MAX / (1 << 21)).await else { return };
        flood(&app, 100).await;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let (_, counted, _) = refused_footprint(&app).await;
        match backend {
            Backend::Sqlite => assert_eq!(counted, 0, "nothing stored under the floor"),
            // PostgreSQL's disk is the server's: the floor does not apply.
            Backend::Postgres => assert_eq!(counted, 100),
        }
        app.stop().await;
    }
}

/// The JSON of the one queued job of `queue`, as apalis stores it.
async fn job_args(app: &TestApp, queue: &str) -> serde_json::Value {
    let bytes: Vec<u8> = match app.store() {
        minipay::store::Store::Sqlite(p) => {
            sqlx::query_scalar("SELECT job FROM Jobs WHERE job_type = $1")
                .bind(queue)
                .fetch_one(&p.writer)
                .await
                .unwrap()
        }
        minipay::store::Store::Postgres(p) => {
            sqlx::query_scalar("SELECT job FROM apalis.jobs WHERE job_type = $1")
                .bind(queue)
                .fetch_one(p)
                .await
                .unwrap()
        }
    };
    serde_json::from_slice(&bytes).unwrap()
}

on_both_backends! {
    async fn the_jobs_carry_what_they_need_so_their_runs_read_nothing(backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        let (token, otn) = ready_order(&app, "petra#1", "sms-100").await;
        // The prepay job was queued with its order's frozen request (on PostgreSQL, written by
        // the order's own statement).
        let prepay: minipay_jobs::PrepayOrder = serde_json::from_value(job_args(&app, "prepay_order").await).unwrap();
        let params: String = match app.store() {
            minipay::store::Store::Sqlite(p) => sqlx::query_scalar("SELECT params FROM orders").fetch_one(&p.writer).await.unwrap(),
            minipay::store::Store::Postgres(p) => sqlx::query_scalar("SELECT params FROM orders").fetch_one(p).await.unwrap(),
        };
        assert_eq!(prepay.created.map(|c| c.params), Some(params));

        // The apply job carries the notify's payment (on PostgreSQL its JSON is written in SQL).
        let notify = parse(&app.pay(&otn, false).notify_xml);
        let (_, reply) = app.post_notify(xml::to_xml(notify.iter())).await;
        assert_eq!(reply, SUCCESS_REPLY);
        app.wait_for_status(&token, &otn, "paid").await;
        let apply: minipay_jobs::ApplyPayment = serde_json::from_value(job_args(&app, "apply_payment").await).unwrap();
        let payment = apply.payment().expect("the apply job carries its payment");
        assert_eq!(payment.out_trade_no, otn);
        assert_eq!(Some(payment.transaction_id.as_str()), notify.get("transaction_id"));
        assert_eq!(payment.total_fee.to_string(), notify.get("total_fee").unwrap());
        assert_eq!(payment.cash_fee.to_string(), notify.get("cash_fee").unwrap());
        assert_eq!(Some(payment.time_end.as_str()), notify.get("time_end"));
        assert_eq!(apply.idempotency_key(), format!("payment:{}", apply.notify_id));
        app.stop().await;
    }
}
