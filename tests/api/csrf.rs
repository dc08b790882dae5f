//! The operator console's forms in a browser's place: the jobs page (`/admin/jobs`) forbids
//! framing and caching, and its retry form works only with the token the page embedded, from
//! its own site.

use reqwest::StatusCode;
use reqwest::redirect::Policy;
use serde_json::Value;

use crate::helpers::{ADMIN_TOKEN, Backend, TestApp};

/// The form token the page embeds.
fn form_token(html: &str) -> String {
    let start = html.find("name=\"csrf\" value=\"").expect("a form token") + 19;
    let end = start + html[start..].find('"').unwrap();
    html[start..end].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_form_needs_the_pages_token_and_the_page_cannot_be_framed() {
    let (app, token, otn) = TestApp::spawn_with_dead_job(Backend::Sqlite).await.unwrap();
    let browser = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let (_, dead) = app
        .get_json(
            "/v1/admin/queues/prepay_order/jobs?state=dead",
            Some(ADMIN_TOKEN),
        )
        .await;
    let id = dead["jobs"][0]["id"].as_str().unwrap().to_owned();

    // Even the credentials challenge is not to be framed or cached.
    let challenge = browser
        .get(format!("{}/admin", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(challenge.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge.headers()["x-frame-options"], "DENY");
    let page = browser
        .get(format!("{}/admin/jobs", app.base))
        .basic_auth("ops", Some(ADMIN_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let headers = page.headers().clone();
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["cache-control"], "no-store");
    let csp = headers["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    let csrf = form_token(&page.text().await.unwrap());

    app.repair_dead_order().await;
    let retry = |form: Option<(&'static str, String)>, extra: Option<(&'static str, String)>| {
        let mut request = browser
            .post(format!("{}/admin/jobs/{id}/retry", app.base))
            .basic_auth("ops", Some(ADMIN_TOKEN));
        if let Some((field, value)) = form {
            request = request.form(&[(field, value)]);
        }
        if let Some((name, value)) = extra {
            request = request.header(name, value);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (
                status,
                body["error"]["code"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        }
    };
    let rejected = (StatusCode::FORBIDDEN, "CSRF_REJECTED".to_owned());
    // A foreign page's form: no token, a made-up one, or the real one from another site.
    assert_eq!(retry(None, None).await, rejected);
    assert_eq!(retry(Some(("csrf", "1.00".into())), None).await, rejected);
    // The last character changed (to '0', or to '1' when it was '0': 1 run in 16 sent the
    // real token as the "forged" one).
    let last = if csrf.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &csrf[..csrf.len() - 1]);
    assert_eq!(retry(Some(("csrf", forged)), None).await, rejected);
    let origin = Some(("origin", "https://evil.example".to_owned()));
    assert_eq!(retry(Some(("csrf", csrf.clone())), origin).await, rejected);
    let site = Some(("sec-fetch-site", "cross-site".to_owned()));
    assert_eq!(retry(Some(("csrf", csrf.clone())), site).await, rejected);
    assert_eq!(app.dead_jobs().await, 1, "nothing was retried");

    // The page's own form, as a browser sends it.
    let own = Some(("origin", app.base.clone()));
    let (status, _) = retry(Some(("csrf", csrf)), own).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    app.wait_for_status(&token, &otn, "ready").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refund_forms_need_the_pages_token_and_the_same_site() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let user = app.login("csrf-refund#1").await;
    let order = app.create_order(&user, "sms-100", 1).await;
    let otn = order["out_trade_no"].as_str().unwrap().to_owned();
    app.wait_for_status(&user, &otn, "ready").await;
    app.pay(&otn, true);
    app.wait_for_status(&user, &otn, "paid").await;
    let browser = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let page = browser
        .get(format!("{}/admin/orders/{otn}", app.base))
        .basic_auth("ops", Some(ADMIN_TOKEN))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = form_token(&page);
    let post = |path: String, form: Vec<(&'static str, String)>, site: &'static str| {
        browser
            .post(format!("{}{path}", app.base))
            .basic_auth("ops", Some(ADMIN_TOKEN))
            .header("sec-fetch-site", site)
            .form(&form)
            .send()
    };
    let confirm = |token: &str| {
        vec![
            ("csrf", token.to_owned()),
            ("refund_fee", "10".to_owned()),
            ("reason", String::new()),
            ("key", "consoleTestKey1".to_owned()),
        ]
    };
    let refunds_path = format!("/admin/orders/{otn}/refunds");
    for (form, site) in [
        (confirm("1.deadbeef"), "same-origin"),
        (confirm(&csrf), "cross-site"),
    ] {
        let answer = post(refunds_path.clone(), form, site).await.unwrap();
        assert_eq!(answer.status(), StatusCode::FORBIDDEN);
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["error"]["code"], "CSRF_REJECTED");
    }
    let review = post(
        format!("/admin/orders/{otn}/refund/review"),
        vec![("csrf", "nope".into()), ("amount", "0.10".into())],
        "same-origin",
    )
    .await
    .unwrap();
    assert_eq!(review.status(), StatusCode::FORBIDDEN);
    let (_, list) = app
        .get_json(
            &format!("/v1/admin/orders/{otn}/refunds"),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(list["refunds"], serde_json::json!([]), "nothing refunded");

    // With the page's token, from the console: one refund, however often it is sent.
    for _ in 0..2 {
        let answer = post(refunds_path.clone(), confirm(&csrf), "same-origin")
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::SEE_OTHER);
        assert_eq!(answer.headers()["location"], format!("/admin/orders/{otn}"));
    }
    let (_, list) = app
        .get_json(
            &format!("/v1/admin/orders/{otn}/refunds"),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(list["refunds"].as_array().unwrap().len(), 1, "{list}");
    app.stop().await;
}
