//! The operator's queue view: dead jobs are visible, and retrying one runs it again.

use reqwest::StatusCode;

use crate::helpers::{ADMIN_TOKEN, TestApp, on_both_backends};

on_both_backends! {
    async fn dead_jobs_are_listed_and_can_be_retried(backend) {
        let Some((app, token, otn)) = TestApp::spawn_with_dead_job(backend).await else { return };

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
        app.repair_dead_order().await;
        let (status, retried) = app.post_json(&format!("/v1/admin/jobs/{id}/retry"), Some(ADMIN_TOKEN), serde_json::json!({})).await;
        assert_eq!(status, StatusCode::OK, "{retried}");
        app.wait_for_status(&token, &otn, "ready").await;
        assert_eq!(app.dead_jobs().await, 0);
        let (status, _) = app.post_json(&format!("/v1/admin/jobs/{id}/retry"), Some(ADMIN_TOKEN), serde_json::json!({})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a live job is not retried");
        app.stop().await;
    }
}

on_both_backends! {
    async fn the_admin_order_view_gives_times_in_rfc_3339(backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        let token = app.login("erin#1").await;
        let created = app.create_order(&token, "sms-100", 1).await;
        let otn = created["out_trade_no"].as_str().unwrap().to_owned();
        app.wait_for_status(&token, &otn, "ready").await;

        let history = app.history(&otn).await;
        for field in ["created_at", "ready_at"] {
            let text = history[field].as_str().unwrap_or_else(|| panic!("{field} is a string: {history}"));
            let at = chrono::DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{field} {text:?}: {e}"));
            let age = chrono::Utc::now().signed_duration_since(at);
            assert!(age.num_seconds().abs() < 600, "{field} is about now: {text}");
        }
        assert!(history.get("paid_at").is_none_or(serde_json::Value::is_null), "{history}");
        app.stop().await;
    }
}
