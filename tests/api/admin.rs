//! The operator's queue view: dead jobs are visible, and retrying one runs it again.

use minipay::app::Role;
use reqwest::StatusCode;

use crate::helpers::{ADMIN_TOKEN, TestApp, eventually, on_both_backends};

async fn exec(app: &TestApp, sql: &'static str) {
    match app.store() {
        minipay::store::Store::Sqlite(p) => {
            sqlx::query(sql).execute(&p.writer).await.unwrap();
        }
        minipay::store::Store::Postgres(p) => {
            sqlx::query(sql).execute(p).await.unwrap();
        }
    }
}

on_both_backends! {
    async fn dead_jobs_are_listed_and_can_be_retried(backend) {
        let Some(app) = TestApp::spawn_with(backend, Role::Serve, |s| s.workers.stuck_pending_secs = 3600).await else { return };
        let token = app.login("yara#1").await;
        let otn = app.create_order(&token, "sms-100", 1).await["out_trade_no"].as_str().unwrap().to_owned();
        // Damage the order so that its prepay job cannot make sense of it.
        exec(&app, "UPDATE orders SET params = 'not json', openid = params").await;
        let app = app.restart(Role::All).await;
        eventually("the job is dead", || async { app.dead_jobs().await == 1 }).await;

        let (status, queues) = app.get_json("/v1/admin/queues", Some(ADMIN_TOKEN)).await;
        assert_eq!(status, StatusCode::OK);
        let prepay = queues["queues"].as_array().unwrap().iter().find(|q| q["queue"] == "prepay_order").unwrap().clone();
        assert_eq!(prepay["dead"], 1, "{queues}");
        let (status, _) = app.get_json("/v1/admin/queues", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        let (_, dead) = app.get_json("/v1/admin/queues/prepay_order/jobs?state=dead", Some(ADMIN_TOKEN)).await;
        let jobs = dead["jobs"].as_array().unwrap();
        assert_eq!(jobs.len(), 1, "{dead}");
        assert!(jobs[0]["args"].as_str().unwrap().contains(&otn));
        assert!(jobs[0]["last_result"].as_str().unwrap_or_default().contains("unreadable"), "{dead}");
        let id = jobs[0]["id"].as_str().unwrap().to_owned();

        // the browser page asks for credentials, then shows the dead job
        let page = app.http.get(format!("{}/admin", app.base)).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::UNAUTHORIZED);
        assert!(page.headers().get("www-authenticate").is_some());
        let page = app.http.get(format!("{}/admin", app.base)).basic_auth("ops", Some(ADMIN_TOKEN)).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        assert!(page.text().await.unwrap().contains(&id));

        // repair the order, retry the job: it runs again and the order becomes ready
        // (The openid goes back to the user's: orders are visible to their user.)
        exec(&app, "UPDATE orders SET params = openid, openid = (SELECT openid FROM sessions LIMIT 1)").await;
        let (status, retried) = app.post_json(&format!("/v1/admin/jobs/{id}/retry"), Some(ADMIN_TOKEN), serde_json::json!({})).await;
        assert_eq!(status, StatusCode::OK, "{retried}");
        app.wait_for_status(&token, &otn, "ready").await;
        assert_eq!(app.dead_jobs().await, 0);
        let (status, _) = app.post_json(&format!("/v1/admin/jobs/{id}/retry"), Some(ADMIN_TOKEN), serde_json::json!({})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a live job is not retried");
        app.stop().await;
    }
}
