//! Daily bill reconciliation through the service: a day of simulated trades reconciles clean;
//! injected differences come out as their kinds, naming the order; a payment WeChat has and
//! minipay holds as `ready` is healed to `paid`; `Bill Creating` is retried later that day;
//! the schedule runs once across two `work` processes; the CLI prints the summary; CSV.

use std::time::Duration;

use chrono::{NaiveDate, NaiveTime};
use minipay::app::Role;
use minipay::clock::Clock;
use minipay::wechat::simulator::{BillInjection, PayRequest};
use minipay::wechat::v2::bill::{beijing_day, beijing_instant};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, Backend, TestApp, eventually, on_both_backends};
use minipay::config::Settings;

/// Today in Beijing, by the app's clock.
fn today(app: &TestApp) -> NaiveDate {
    beijing_day(app.services.clock.now())
}

/// Moves each clock to `hh:mm` Beijing time on the day after `day` (10 ms past the mark).
fn next_morning(clocks: &[&Clock], day: NaiveDate, hh: u32, mm: u32) {
    let at = beijing_instant(
        day.succ_opt()
            .unwrap()
            .and_time(NaiveTime::from_hms_opt(hh, mm, 0).unwrap()),
    );
    for clock in clocks {
        let by = at - clock.now() + chrono::Duration::milliseconds(10);
        if let Ok(by) = by.to_std() {
            clock.advance(by);
        }
    }
}

/// Creates `n` orders of one user and waits until each is ready; returns their numbers.
async fn ready_orders(app: &TestApp, token: &str, skus: &[(&str, i64)]) -> Vec<String> {
    let mut numbers = Vec::new();
    for (sku, quantity) in skus {
        let order = app.create_order(token, sku, *quantity).await;
        let otn = order["out_trade_no"].as_str().unwrap().to_owned();
        app.wait_for_status(token, &otn, "ready").await;
        numbers.push(otn);
    }
    numbers
}

/// Pays at WeChat and waits until minipay has applied it.
async fn pay_and_wait(app: &TestApp, token: &str, numbers: &[String]) {
    for otn in numbers {
        app.pay(otn, true);
        app.wait_for_status(token, otn, "paid").await;
    }
}

/// `POST …/reconcile`, then the report once the run is no longer pending.
async fn reconcile(app: &TestApp, day: NaiveDate) -> Value {
    let (status, body) = app
        .post_json(
            &format!("/v1/admin/bills/{day}/reconcile"),
            Some(ADMIN_TOKEN),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body, json!({"date": day.to_string(), "status": "pending"}));
    finished(app, day).await
}

/// The day's report once its run is no longer pending.
async fn finished(app: &TestApp, day: NaiveDate) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = app
            .get_json(&format!("/v1/admin/bills/{day}"), Some(ADMIN_TOKEN))
            .await;
        if status == StatusCode::OK && body["status"] != "pending" {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bill run of {day} never finished: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The kinds and orders of a report's mismatches.
fn kinds(report: &Value) -> Vec<(String, String)> {
    report["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["kind"].as_str().unwrap().to_owned(),
                m["out_trade_no"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Apps whose schedule stays out of the way (23:59 Beijing) unless a test wants it.
async fn app(backend: Backend) -> Option<TestApp> {
    TestApp::spawn_with(backend, Role::All, |s| {
        bill_day_settings(s);
        // No order query of its own before the bill's: a lost notify stays `ready`.
        s.workers.reconcile_delay_secs = 10 * 24 * 3600;
    })
    .await
}

/// The schedule out of the way (23:59 Beijing), and sessions that outlive the move to the next
/// morning: from just after midnight Beijing time that move is 34 hours, past the default
/// 24-hour session (these tests failed when run between 16:00 and 02:00 UTC).
fn bill_day_settings(s: &mut Settings) {
    s.bills.bill_at = "23:59".into();
    s.http.session_ttl_secs = 3 * 24 * 3600;
}

on_both_backends! {
    async fn a_day_of_trades_reconciles_with_no_mismatch(backend) {
        // The reconciler's own order queries run as usual here: they close the unpaid order.
        let Some(app) = TestApp::spawn_with(backend, Role::All, bill_day_settings).await else { return };
        let token = app.login("bill-user#1").await;
        let day = today(&app);
        let numbers = ready_orders(&app, &token, &[("sms-100", 1), ("sms-100", 2), ("sms-100", 1)]).await;
        pay_and_wait(&app, &token, &numbers[..2]).await;
        // A partial refund of the first: a refund line of its own.
        let first_fee = app.order(&token, &numbers[0], None).await["total_fee"].as_i64().unwrap();
        refund_and_wait(&app, &numbers[0], first_fee / 2).await;
        // The third is never paid and expires: closed with WeChat, it is on no statement,
        // and it is no difference.
        next_morning(&[&app.services.clock, app.sim().clock()], day, 10, 1);
        app.wait_for_status(&token, &numbers[2], "closed").await;

        let report = reconcile(&app, day).await;
        assert_eq!(report["status"], "done", "{report}");
        assert_eq!(report["mismatches"], json!([]), "{report}");
        assert_eq!(report["healed"], json!([]));
        let fee = app.scalar("SELECT CAST(SUM(total_fee) AS BIGINT) FROM orders WHERE status = 'paid'").await;
        assert_eq!(
            report["wechat"],
            json!({"payments": 2, "payment_fee": fee, "refunds": 1, "refund_fee": first_fee / 2})
        );
        assert_eq!(report["local"], report["wechat"]);
        assert_eq!(report["statement_rows"], 3);
        assert_eq!(report["requested_by"], "admin");

        // The list shows the day; the CSV has its header and no line.
        let (status, list) = app.get_json("/v1/admin/bills", Some(ADMIN_TOKEN)).await;
        assert_eq!(status, StatusCode::OK);
        let listed = list["bills"].as_array().unwrap().iter().find(|b| b["date"] == day.to_string()).unwrap().clone();
        assert_eq!((listed["status"].clone(), listed["mismatch_count"].clone()), (json!("done"), json!(0)));
        let csv = app.http.get(format!("{}/v1/admin/bills/{day}?format=csv", app.base)).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
        assert_eq!(csv.text().await.unwrap(), "date,kind,out_trade_no,out_refund_no,wechat,local,healable\r\n");

        // The metrics show the day and no mismatch.
        // (read in the background, every 200 ms in tests)
        eventually("the metrics show the day", || async {
            let metrics = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
            metrics.contains("minipay_bill_mismatches{kind=\"amount\"} 0")
        })
        .await;
        app.stop().await;
    }
}

/// Refunds `fee` fen of `otn` through the admin API and waits until it succeeded.
async fn refund_and_wait(app: &TestApp, otn: &str, fee: i64) -> String {
    let (status, body) = app
        .post_json(
            &format!("/v1/admin/orders/{otn}/refunds"),
            Some(ADMIN_TOKEN),
            json!({"refund_fee": fee}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let no = body["out_refund_no"].as_str().unwrap().to_owned();
    eventually("the refund succeeded", || async {
        let (_, view) = app
            .get_json(&format!("/v1/admin/refunds/{no}"), Some(ADMIN_TOKEN))
            .await;
        view["status"] == "succeeded"
    })
    .await;
    no
}

on_both_backends! {
    /// minipay's refunds of the day are compared with WeChat's refund lines: a partial refund
    /// and a full one reconcile clean; a refund line WeChat lists with another amount is an
    /// `amount` mismatch naming both numbers.
    async fn refunds_of_the_day_reconcile_with_wechats_refund_lines(backend) {
        let Some(app) = app(backend).await else { return };
        let token = app.login("bill-user#refunds").await;
        let day = today(&app);
        let numbers = ready_orders(&app, &token, &[("sms-100", 2), ("sms-100", 1), ("sms-100", 3)]).await;
        pay_and_wait(&app, &token, &numbers).await;
        let fee = |i: usize| {
            let otn = numbers[i].clone();
            let token = token.clone();
            let app = &app;
            async move { app.order(&token, &otn, None).await["total_fee"].as_i64().unwrap() }
        };
        let (partial_of, full_of) = (fee(0).await, fee(1).await);
        let partial = refund_and_wait(&app, &numbers[0], partial_of / 2).await;
        let full = refund_and_wait(&app, &numbers[1], full_of).await;
        app.wait_for_status(&token, &numbers[1], "refunded").await;
        next_morning(&[&app.services.clock, app.sim().clock()], day, 10, 1);

        let report = reconcile(&app, day).await;
        assert_eq!(report["status"], "done", "{report}");
        assert_eq!(report["mismatches"], json!([]), "{report}");
        assert_eq!(report["wechat"]["refunds"], 2, "{report}");
        assert_eq!(report["wechat"]["refund_fee"], partial_of / 2 + full_of, "{report}");
        assert_eq!(report["local"], report["wechat"]);
        assert_eq!(report["statement_rows"], 5, "three payments, two refunds");

        // The partial refund's line with another amount: a mismatch on the refund.
        app.sim().inject_bill(BillInjection::Amount { out_trade_no: numbers[0].clone(), out_refund_no: Some(partial.clone()), fee: 1 }).unwrap();
        let report = reconcile(&app, day).await;
        let mismatches = report["mismatches"].as_array().unwrap();
        assert_eq!(mismatches.len(), 1, "{report}");
        assert_eq!(mismatches[0]["kind"], "amount");
        assert_eq!(mismatches[0]["out_trade_no"], numbers[0].as_str());
        assert_eq!(mismatches[0]["out_refund_no"], partial.as_str());
        assert_eq!(mismatches[0]["local"], format!("succeeded {}", partial_of / 2));
        assert!(!full.is_empty());
        app.stop().await;
    }
}

on_both_backends! {
    async fn differences_name_their_orders_and_a_lost_payment_is_healed(backend) {
        let Some(app) = app(backend).await else { return };
        let token = app.login("bill-user#2").await;
        let day = today(&app);
        let numbers = ready_orders(&app, &token, &[("sms-100", 1), ("sms-100", 2), ("sms-100", 3), ("sms-100", 4)]).await;
        let (dropped, amount, revoked, lost) = (&numbers[0], &numbers[1], &numbers[2], &numbers[3]);
        pay_and_wait(&app, &token, &numbers[..3]).await;
        // Paid at WeChat, the notify never comes: minipay holds it as ready.
        app.sim().pay(PayRequest { out_trade_no: lost.clone(), deliver: false, coupon_fee: None }).unwrap();
        let sim = app.sim();
        sim.inject_bill(BillInjection::Drop { out_trade_no: dropped.clone(), out_refund_no: None }).unwrap();
        sim.inject_bill(BillInjection::Amount { out_trade_no: amount.clone(), out_refund_no: None, fee: 1 }).unwrap();
        sim.inject_bill(BillInjection::Status { out_trade_no: revoked.clone(), out_refund_no: None, status: "REVOKED".into() }).unwrap();
        sim.inject_bill(BillInjection::Extra { date: day.to_string(), out_trade_no: "MPGHOST00001".into(), total_fee: 5 }).unwrap();
        next_morning(&[&app.services.clock, sim.clock()], day, 10, 1);

        let report = reconcile(&app, day).await;
        assert_eq!(report["status"], "done", "{report}");
        let mut found = kinds(&report);
        found.sort();
        let mut expected = vec![
            ("missing_wechat".to_owned(), dropped.clone()),
            ("amount".to_owned(), amount.clone()),
            ("status".to_owned(), revoked.clone()),
            ("status".to_owned(), lost.clone()),
            ("missing_local".to_owned(), "MPGHOST00001".to_owned()),
        ];
        expected.sort();
        assert_eq!(found, expected, "{report}");
        let healable: Vec<&Value> = report["mismatches"].as_array().unwrap().iter().filter(|m| m["healable"] == true).collect();
        assert_eq!(healable.len(), 1);
        assert_eq!(healable[0]["out_trade_no"], lost.as_str());
        let fee = app.order(&token, lost, None).await["total_fee"].clone();
        assert_eq!(healable[0]["local"], format!("ready {fee}"));

        // The order query queued for it applies the payment through the usual path.
        app.wait_for_status(&token, lost, "paid").await;
        let report = finished(&app, day).await;
        assert_eq!(report["healed"].as_array().unwrap().len(), 1, "{report}");
        assert_eq!(report["healed"][0]["out_trade_no"], lost.as_str());
        assert_eq!(report["healed"][0]["status_before"], "ready");
        assert_eq!(report["healed"][0]["status"], "paid");
        let history = app.history(lost).await;
        assert!(history.to_string().contains("order query queued"), "{history}");

        // Finance's CSV: one line per mismatch, naming the order.
        let csv = app.http.get(format!("{}/v1/admin/bills/{day}?format=csv", app.base)).bearer_auth(ADMIN_TOKEN).send().await.unwrap().text().await.unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 6, "{csv}");
        assert!(lines.iter().any(|l| l.starts_with(&format!("{day},amount,{amount},,SUCCESS 1,paid "))), "{csv}");
        assert!(lines.iter().any(|l| l.starts_with(&format!("{day},missing_local,MPGHOST00001,,SUCCESS 5,absent,false"))), "{csv}");

        // Re-running the day replaces its report: the healed order is now paid on both sides.
        let report = reconcile(&app, day).await;
        let mut found = kinds(&report);
        found.sort();
        expected.retain(|(_, otn)| otn != lost);
        assert_eq!(found, expected, "{report}");
        assert_eq!(report["healed"], json!([]));

        // The metrics show the last day's mismatches by kind.
        // (read in the background, every 200 ms in tests)
        eventually("the metrics show the day", || async {
            let metrics = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
            metrics.contains("minipay_bill_mismatches{kind=\"missing_local\"} 1")
        })
        .await;
        app.stop().await;
    }
}

on_both_backends! {
    async fn bill_creating_is_retried_later_that_day(backend) {
        let Some(app) = app(backend).await else { return };
        let token = app.login("bill-user#3").await;
        let day = today(&app);
        let numbers = ready_orders(&app, &token, &[("sms-100", 1)]).await;
        pay_and_wait(&app, &token, &numbers).await;
        next_morning(&[&app.services.clock, app.sim().clock()], day, 10, 1);
        app.sim().force_bill("Bill Creating", 1);

        let (status, _) = app
            .post_json(&format!("/v1/admin/bills/{day}/reconcile"), Some(ADMIN_TOKEN), json!({}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let path = format!("/v1/admin/bills/{day}");
        eventually("the first attempt meets Bill Creating", || async {
            let (_, body) = app.get_json(&path, Some(ADMIN_TOKEN)).await;
            body["last_error"].as_str().is_some_and(|e| e.contains("Bill Creating"))
        })
        .await;
        let (_, waiting) = app.get_json(&path, Some(ADMIN_TOKEN)).await;
        assert_eq!(waiting["status"], "pending", "{waiting}");
        assert_eq!(waiting["attempts"], 1);
        assert_eq!(waiting["mismatches"], json!([]));
        assert_eq!(waiting["wechat"]["payments"], 0, "no report yet: {waiting}");
        assert!(waiting["next_attempt_at"].is_string(), "{waiting}");

        // Nothing happens until the retry is due (half an hour later).
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(app.get_json(&path, Some(ADMIN_TOKEN)).await.1["attempts"], 1);
        app.services.clock.advance(Duration::from_secs(31 * 60));
        app.sim().clock().advance(Duration::from_secs(31 * 60));
        let report = finished(&app, day).await;
        assert_eq!(report["status"], "done", "{report}");
        assert_eq!(report["attempts"], 2);
        assert_eq!(report["wechat"]["payments"], 1);
        assert_eq!(report["mismatches"], json!([]));
        assert!(report.get("last_error").is_none(), "{report}");
        let downloads = app
            .sim()
            .calls()
            .into_iter()
            .filter(|c| c.api == "downloadbill" && c.business.get("bill_date") == Some(&day.format("%Y%m%d").to_string()))
            .count();
        assert_eq!(downloads, 2, "one refusal, one statement");
        app.stop().await;
    }
}

on_both_backends! {
    async fn no_bill_with_local_payments_is_missing_wechat_and_bad_days_are_refused(backend) {
        let Some(app) = app(backend).await else { return };
        let token = app.login("bill-user#4").await;
        let day = today(&app);
        let numbers = ready_orders(&app, &token, &[("sms-100", 1)]).await;
        pay_and_wait(&app, &token, &numbers).await;
        // WeChat's statement of the day says nothing of it.
        app.sim().inject_bill(BillInjection::Drop { out_trade_no: numbers[0].clone(), out_refund_no: None }).unwrap();
        next_morning(&[&app.services.clock, app.sim().clock()], day, 10, 1);
        let report = reconcile(&app, day).await;
        assert_eq!(report["status"], "no_bill", "{report}");
        assert_eq!(kinds(&report), [("missing_wechat".to_owned(), numbers[0].clone())]);
        assert_eq!(report["local"]["payments"], 1);
        assert_eq!(report["wechat"]["payments"], 0);

        // A day with no trade on either side: an empty clean report.
        let before = day.pred_opt().unwrap();
        let report = reconcile(&app, before).await;
        assert_eq!(report["status"], "no_bill", "{report}");
        assert_eq!(report["mismatches"], json!([]));

        for (path, status, code) in [
            ("/v1/admin/bills/2026-02-30", StatusCode::UNPROCESSABLE_ENTITY, "INVALID_PARAMETER"),
            ("/v1/admin/bills/1999-01-01", StatusCode::NOT_FOUND, "BILL_NOT_FOUND"),
            ("/v1/admin/bills?limit=0", StatusCode::UNPROCESSABLE_ENTITY, "INVALID_PARAMETER"),
        ] {
            let (got, body) = app.get_json(path, Some(ADMIN_TOKEN)).await;
            assert_eq!((got, body["error"]["code"].as_str()), (status, Some(code)), "{path}: {body}");
        }
        let (got, _) = app.get_json(&format!("/v1/admin/bills/{day}"), None).await;
        assert_eq!(got, StatusCode::UNAUTHORIZED);
        let tomorrow = today(&app);
        let (got, body) = app.post_json(&format!("/v1/admin/bills/{tomorrow}/reconcile"), Some(ADMIN_TOKEN), json!({})).await;
        assert_eq!((got, body["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("INVALID_PARAMETER")), "today is not over: {body}");
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_work_processes_run_the_scheduled_day_once() {
    let Some(serve) = TestApp::spawn_with(Backend::Postgres, Role::Serve, |_| {}).await else {
        return;
    };
    let sim_url = format!("{}/simulator", serve.base);
    let worker = |s: &mut Settings| {
        s.wechat.pay_base_url = Some(sim_url.clone());
        s.wechat.auth_base_url = Some(sim_url.clone());
        s.workers.reconcile_delay_secs = 10 * 24 * 3600;
    };
    let first = TestApp::spawn_beside(&serve, Role::Work, worker).await;
    let second = TestApp::spawn_beside(&serve, Role::Work, worker).await;
    let token = serve.login("bill-user#5").await;
    let day = today(&serve);
    let numbers = ready_orders(&serve, &token, &[("sms-100", 1), ("sms-100", 2)]).await;
    pay_and_wait(&serve, &token, &numbers).await;

    // 10:01 the next morning for both workers (MINIPAY_BILL_AT is 10:00) and for WeChat.
    next_morning(
        &[
            &first.services.clock,
            &second.services.clock,
            serve.sim().clock(),
        ],
        day,
        10,
        1,
    );
    let report = finished(&serve, day).await;
    assert_eq!(report["status"], "done", "{report}");
    assert_eq!(report["requested_by"], "schedule");
    assert_eq!(report["wechat"]["payments"], 2);
    assert_eq!(report["mismatches"], json!([]));
    // A few more sweeps of both: still one attempt, one download.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let report = finished(&serve, day).await;
    assert_eq!(report["attempts"], 1, "{report}");
    let bill_date = day.format("%Y%m%d").to_string();
    let downloads = serve
        .sim()
        .calls()
        .into_iter()
        .filter(|c| c.api == "downloadbill" && c.business.get("bill_date") == Some(&bill_date))
        .count();
    assert_eq!(downloads, 1, "the scheduled day is reconciled once");
    first.stop().await;
    second.stop().await;
    serve.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reconciles_a_day_and_prints_the_summary() {
    let app = app(Backend::Sqlite).await.unwrap();
    let token = app.login("bill-user#6").await;
    let day = today(&app);
    let numbers = ready_orders(&app, &token, &[("sms-100", 3)]).await;
    pay_and_wait(&app, &token, &numbers).await;
    // WeChat's clock: the bill is ready. (The CLI's own clock is the real one.)
    next_morning(&[app.sim().clock()], day, 10, 1);
    let fee = app.order(&token, &numbers[0], None).await["total_fee"]
        .as_i64()
        .unwrap();

    let sim_url = format!("{}/simulator", app.base);
    let run = |date: String| {
        let (db, sim_url) = (app.db.url.clone(), sim_url.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_minipay"))
                .args(["bill", "--date", &date])
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("MINIPAY_DATABASE_URL", db)
                .env("MINIPAY_PAY_BASE_URL", &sim_url)
                .env("MINIPAY_LOG", "warn")
                .output()
                .unwrap()
        })
    };
    let output = run(day.to_string()).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.starts_with(&format!("bill {day}: done\n")),
        "{stdout}"
    );
    let wechat = stdout.lines().find(|l| l.starts_with("wechat")).unwrap();
    let local = stdout.lines().find(|l| l.starts_with("local")).unwrap();
    assert_eq!(
        wechat.split_whitespace().collect::<Vec<_>>(),
        ["wechat", "1", &fee.to_string(), "0", "0"]
    );
    assert_eq!(local.replacen("local ", "wechat", 1), wechat);
    assert!(stdout.contains("mismatches: 0"), "{stdout}");
    // The same report the admin endpoint serves.
    let (_, report) = app
        .get_json(&format!("/v1/admin/bills/{day}"), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(
        (report["status"].clone(), report["requested_by"].clone()),
        (json!("done"), json!("cli"))
    );

    let bad = run("2026-13-01".into()).await.unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--date"));
    app.stop().await;
}

on_both_backends! {
    async fn a_pending_order_paid_at_wechat_is_healed_by_its_query(backend) {
        let Some(app) = TestApp::spawn_with(backend, Role::All, |s| {
            bill_day_settings(s);
            s.workers.reconcile_delay_secs = 10 * 24 * 3600;
            s.workers.stuck_pending_secs = 10 * 24 * 3600;
        })
        .await else { return };
        let token = app.login("bill-user#7").await;
        let day = today(&app);
        let numbers = ready_orders(&app, &token, &[("sms-100", 1)]).await;
        let otn = &numbers[0];
        app.sim().pay(PayRequest { out_trade_no: otn.clone(), deliver: false, coupon_fee: None }).unwrap();
        // As if the prepay's answer had been lost after WeChat made the order.
        app.execute("UPDATE orders SET status = 'pending', prepay_id = NULL, pay_params = NULL, ready_at = NULL, next_check_at = NULL").await;
        next_morning(&[&app.services.clock, app.sim().clock()], day, 10, 1);

        let report = reconcile(&app, day).await;
        assert_eq!(kinds(&report), [("status".to_owned(), otn.clone())], "{report}");
        assert_eq!(report["mismatches"][0]["healable"], true);
        app.wait_for_status(&token, otn, "paid").await;
        let report = finished(&app, day).await;
        assert_eq!(report["healed"][0]["status_before"], "pending", "{report}");
        assert_eq!(report["healed"][0]["status"], "paid");
        app.stop().await;
    }
}
