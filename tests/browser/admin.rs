//! The console's jobs page as the operator sees it: `/admin` asks for credentials, `/admin/jobs`
//! lists the queues and the dead jobs, and a dead job's Retry button makes it run again.

use fantoccini::Locator;
use minipay::worker::QUEUES;

use crate::harness::{Browser, PHONE_WIDTH, Viewport};
use crate::helpers::{ADMIN_TOKEN, Backend, TestApp, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_page_asks_for_the_admin_token() {
    let Some(mut browser) = Browser::open(Viewport::Desktop).await else {
        return;
    };
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    browser.visit(&app.base);

    // The answer, as a script of the same origin sees it (asking without credentials: with
    // them, Chromium would wait for a person to type into its login dialog).
    browser.goto("/healthz").await;
    let (status, challenge) = browser.fetch_status("/admin").await;
    assert_eq!(status, 401);
    assert_eq!(challenge.as_deref(), Some("Basic realm=\"minipay admin\""));
    // What a person sees: nothing of the page behind the login dialog.
    browser.goto("/admin").await;
    assert_eq!(
        browser.text("body").await,
        "",
        "the page shows nothing without the token"
    );
    assert!(
        !browser.has("table").await,
        "no queue table without the token"
    );

    browser.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_job_is_shown_and_retried_from_the_page() {
    let Some((browser, app, token, otn)) = dead_job_page(Viewport::Desktop).await else {
        return;
    };
    assert_eq!(browser.text("h1").await, "Jobs");
    let queues = browser.table("table.queues").await;
    let names: Vec<&str> = queues[1..].iter().map(|row| row[0].as_str()).collect();
    assert_eq!(names, QUEUES, "{queues:?}");
    let prepay = queues.iter().find(|row| row[0] == "prepay_order").unwrap();
    assert_eq!(prepay[3], "1", "one dead prepay job: {queues:?}");
    let dead = browser.table("table.jobs").await;
    assert_eq!(dead.len(), 2, "one dead job under the header: {dead:?}");
    assert_eq!(dead[1][0], "prepay_order");
    assert!(dead[1][3].contains(&otn), "{dead:?}");
    assert!(dead[1][4].contains("unreadable"), "{dead:?}");
    browser.screenshot("admin-dead-job").await;

    retry(&browser, &app, &otn).await;
    app.wait_for_status(&token, &otn, "ready").await;
    eventually("the page shows the queue drained", || async {
        browser.reload().await;
        let queues = browser.table("table.queues").await;
        let prepay = queues.iter().find(|row| row[0] == "prepay_order").unwrap();
        prepay[1] == "0" && prepay[3] == "0"
    })
    .await;

    browser.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_page_fits_a_phone() {
    let Some((browser, app, token, otn)) = dead_job_page(Viewport::Phone).await else {
        return;
    };
    let dead = browser.table("table.jobs").await;
    assert!(dead[1][3].contains(&otn), "{dead:?}");
    let (overflow, width) = browser.overflow().await;
    assert_eq!(
        width, PHONE_WIDTH,
        "the page is laid out for the phone's width"
    );
    assert!(
        overflow <= 0,
        "the page is {overflow} px wider than the phone"
    );
    browser.screenshot("admin-phone").await;

    retry(&browser, &app, &otn).await; // the button works in the phone's layout too
    app.wait_for_status(&token, &otn, "ready").await;
    browser.close().await;
    app.stop().await;
}

/// The operator's browser on `/admin` of an app with one dead prepay job; with the app, the
/// user's session token and the job's `out_trade_no`.
async fn dead_job_page(viewport: Viewport) -> Option<(Browser, TestApp, String, String)> {
    // The browser first: without one the test is skipped before any setup.
    let mut browser = Browser::open(viewport).await?;
    let (app, token, otn) = TestApp::spawn_with_dead_job(Backend::Sqlite).await.unwrap();
    browser.sign_in(&app.base, ADMIN_TOKEN).await;
    browser.goto("/admin/jobs").await;
    Some((browser, app, token, otn))
}

/// Repairs the job's order and presses its Retry button: the page comes back without it.
async fn retry(browser: &Browser, app: &TestApp, otn: &str) {
    app.repair_dead_order().await;
    let button = Browser::button_in_row(otn, "retry");
    browser.follow(Locator::XPath(&button)).await;
    assert_eq!(
        browser.path().await,
        "/admin/jobs",
        "the form leads back to the page"
    );
    let dead = browser.table("table.jobs").await;
    assert_eq!(
        dead.len(),
        1,
        "the retried job left the dead list: {dead:?}"
    );
}
