//! The operator console over HTTP: private, uncacheable, unframeable pages; search by every
//! filter on both backends, a page at a time; outside text shown as text.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{ADMIN_TOKEN, Backend, TestApp, on_both_backends};

impl TestApp {
    /// A console page as the operator's browser gets it: status and HTML.
    async fn console(&self, path: &str) -> (StatusCode, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .basic_auth("ops", Some(ADMIN_TOKEN))
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }

    /// An order the merchant's backend creates, with its own number.
    async fn merchant_order(&self, out_trade_no: &str, openid: &str, description: &str) {
        let (status, body) = self
            .post_json(
                "/v1/admin/orders",
                Some(ADMIN_TOKEN),
                json!({ "openid": openid, "description": description, "total_fee": 1999,
                        "out_trade_no": out_trade_no }),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
}

/// The order numbers a result page links to, in page order.
fn listed(html: &str) -> Vec<String> {
    html.split("<a class=\"id\" href=\"/admin/orders/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_console_page_is_private_uncacheable_and_unframeable() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    app.merchant_order("console-1", "o-anna", "tea").await;
    let pages = [
        ("/admin", StatusCode::OK),
        ("/admin/orders?status=ready", StatusCode::OK),
        ("/admin/orders/console-1", StatusCode::OK),
        ("/admin/orders/no-such-order", StatusCode::NOT_FOUND),
        (
            "/admin/orders?date=yesterday",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("/admin/jobs", StatusCode::OK),
        ("/admin/bills", StatusCode::OK),
        ("/admin/bills/2020-01-01", StatusCode::NOT_FOUND),
        ("/admin/console.css", StatusCode::OK),
    ];
    for (path, expected) in pages {
        let url = format!("{}{path}", app.base);
        let stranger = app.http.get(&url).send().await.unwrap();
        assert_eq!(stranger.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(
            stranger.headers()["www-authenticate"],
            "Basic realm=\"minipay admin\"",
            "{path}"
        );
        let wrong = app
            .http
            .get(&url)
            .basic_auth("ops", Some("guess"))
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED, "{path}");
        let bearer = app
            .http
            .get(&url)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(bearer.status(), expected, "{path} with the bearer token");
        let page = app
            .http
            .get(&url)
            .basic_auth("ops", Some(ADMIN_TOKEN))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), expected, "{path}");
        for response in [&stranger, &page] {
            let headers = response.headers();
            assert_eq!(headers["cache-control"], "no-store", "{path}");
            assert_eq!(headers["x-frame-options"], "DENY", "{path}");
            let csp = headers["content-security-policy"].to_str().unwrap();
            assert!(csp.starts_with("default-src 'none'"), "{path}: {csp}");
            assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        }
        let kind = page.headers()["content-type"].to_str().unwrap().to_owned();
        let body = page.text().await.unwrap();
        if path.ends_with(".css") {
            assert!(kind.starts_with("text/css"), "{kind}");
        } else {
            assert!(kind.starts_with("text/html"), "{path}: {kind}");
            assert!(body.starts_with("<!DOCTYPE html>"), "{path}: {body}");
            assert!(!body.contains("<script"), "{path} has no script");
        }
    }
    app.stop().await;
}

on_both_backends! {
    async fn the_search_finds_orders_by_each_filter(backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        app.merchant_order("c-anna-1", "o-anna", "tea").await;
        app.merchant_order("c-anna-2", "o-anna", "cake").await;
        app.merchant_order("c-bob-1", "o-bob", "<script>alert('x')</script> & co").await;
        crate::helpers::eventually("the orders are ready", || async {
            app.history("c-anna-2").await["status"] == "ready" && app.history("c-bob-1").await["status"] == "ready"
        }).await;
        app.pay("c-anna-2", true);
        crate::helpers::eventually("c-anna-2 is paid", || async {
            app.history("c-anna-2").await["status"] == "paid"
        }).await;
        let transaction_id = app.history("c-anna-2").await["transaction_id"].as_str().unwrap().to_owned();

        let search = |query: String| {
            let app = &app;
            async move {
                let (status, html) = app.console(&format!("/admin/orders?{query}")).await;
                assert_eq!(status, StatusCode::OK, "{query}: {html}");
                listed(&html)
            }
        };
        assert_eq!(search("out_trade_no=c-anna-1".into()).await, ["c-anna-1"]);
        assert_eq!(search("openid=o-anna".into()).await, ["c-anna-2", "c-anna-1"], "newest first");
        assert_eq!(search(format!("transaction_id={transaction_id}")).await, ["c-anna-2"]);
        assert_eq!(search("status=paid".into()).await, ["c-anna-2"]);
        assert_eq!(search("openid=o-anna&status=ready".into()).await, ["c-anna-1"]);
        assert_eq!(search("openid=o-nobody".into()).await, Vec::<String>::new());
        // Empty fields are no filter; a day is a Beijing day.
        assert_eq!(search("out_trade_no=&openid=&status=&date=".into()).await.len(), 3);
        let today = chrono::Utc::now()
            .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
            .date_naive();
        assert_eq!(search(format!("date={today}")).await.len(), 3);
        let yesterday = today.pred_opt().unwrap();
        assert_eq!(search(format!("date={yesterday}")).await.len(), 0);
        // The next page starts after the last order shown.
        let (_, first) = app.console("/admin/orders?openid=o-anna").await;
        assert!(!first.contains("Older orders"), "one page holds them");
        let created: i64 = app.scalar("SELECT created_at FROM orders WHERE out_trade_no = 'c-anna-2'").await;
        assert_eq!(search(format!("openid=o-anna&before={created}.c-anna-2")).await, ["c-anna-1"]);

        // What a payer or merchant wrote is shown as text, never as markup.
        let (_, page) = app.console("/admin/orders/c-bob-1").await;
        assert!(page.contains("&lt;script&gt;alert('x')&lt;/script&gt; &amp; co"), "{page}");
        assert!(!page.contains("<script>"), "{page}");
        let (_, dashboard) = app.console("/admin").await;
        assert!(dashboard.contains("&lt;script&gt;"), "{dashboard}");
        assert!(!dashboard.contains("<script>"));
        app.stop().await;
    }
}

on_both_backends! {
    async fn the_dashboard_counts_today_and_pages_long_searches(backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        for n in 0..51 {
            app.merchant_order(&format!("many-{n:02}"), "o-many", "tea").await;
        }
        let (_, first) = app.console("/admin/orders?openid=o-many").await;
        let page_one = listed(&first);
        assert_eq!(page_one.len(), 50);
        let next = first.split("<a class=\"next\" href=\"").nth(1).unwrap().split('"').next().unwrap().replace("&amp;", "&");
        let (_, second) = app.console(&next).await;
        let page_two = listed(&second);
        assert_eq!(page_two.len(), 1, "{next}");
        assert!(!page_one.contains(&page_two[0]), "{page_two:?} was on page one");
        assert!(!second.contains("Older orders"));

        let (status, dashboard) = app.console("/admin").await;
        assert_eq!(status, StatusCode::OK);
        // 51 orders of ¥19.99 created today, whatever status the workers have them in.
        assert!(dashboard.contains("<b>51</b>"), "{dashboard}");
        assert_eq!(listed(&dashboard).len(), 10, "the latest ten");
        app.stop().await;
    }
}
