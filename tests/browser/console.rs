//! The operator console as an operator uses it: the dashboard shows today's orders, a search
//! finds an order by its number and by its payer, the order's page tells its story, and every
//! page fits a phone.

use fantoccini::Locator;

use crate::harness::{Browser, PHONE_WIDTH, Viewport};
use crate::helpers::{ADMIN_TOKEN, Backend, TestApp};

/// The price of `sms-100` in the demo catalog, in fen.
const PRICE: i64 = 88;

/// An app where one user has a paid order and a ready one; with the two `out_trade_no`s
/// (paid, ready) and the user's openid.
struct Shop {
    app: TestApp,
    paid: String,
    ready: String,
    openid: String,
}

async fn shop() -> Shop {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let token = app.login("olga#1").await;
    let mut numbers = Vec::new();
    for _ in 0..2 {
        let order = app.create_order(&token, "sms-100", 1).await;
        let otn = order["out_trade_no"].as_str().unwrap().to_owned();
        app.wait_for_status(&token, &otn, "ready").await;
        numbers.push(otn);
    }
    app.pay(&numbers[0], true);
    app.wait_for_status(&token, &numbers[0], "paid").await;
    let openid = app.history(&numbers[0]).await["openid"]
        .as_str()
        .unwrap()
        .to_owned();
    let ready = numbers.pop().unwrap();
    let paid = numbers.pop().unwrap();
    Shop {
        app,
        paid,
        ready,
        openid,
    }
}

/// The row of `table` whose first cell is `first`.
fn row<'a>(table: &'a [Vec<String>], first: &str) -> &'a [String] {
    table
        .iter()
        .find(|r| r[0] == first)
        .unwrap_or_else(|| panic!("no row {first:?} in {table:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_todays_orders() {
    let Some(mut browser) = Browser::open(Viewport::Desktop).await else {
        return;
    };
    let shop = shop().await;
    browser.sign_in(&shop.app.base, ADMIN_TOKEN).await;
    browser.goto("/admin").await;

    assert_eq!(browser.text("h1").await, "Dashboard");
    let today = browser.table("table.today").await;
    assert_eq!(row(&today, "paid")[1..], ["1", "¥0.88"], "{today:?}");
    assert_eq!(row(&today, "ready")[1..], ["1", "¥0.88"], "{today:?}");
    assert_eq!(row(&today, "failed")[1..], ["0", "¥0.00"], "{today:?}");
    let payments = browser.text(".paid-today").await;
    assert!(
        payments.contains("¥0.88") && payments.contains("1 paid"),
        "{payments}"
    );
    assert!(browser.has(".all-clear").await, "nothing needs a person");
    let queues = browser.table("table.queues").await;
    assert_eq!(row(&queues, "prepay_order")[3], "0", "{queues:?}");
    let latest = browser.table("table.orders").await;
    assert_eq!(latest.len(), 3, "two orders under the header: {latest:?}");
    // Newest first.
    assert_eq!(latest[1][0], shop.ready);
    assert_eq!(latest[2][0], shop.paid);
    assert_eq!(latest[2][1], "paid");
    assert_eq!(latest[2][2], format!("¥0.{PRICE}"));
    browser.screenshot("console-dashboard").await;

    browser.close().await;
    shop.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_searched_and_its_timeline_read() {
    let Some(mut browser) = Browser::open(Viewport::Desktop).await else {
        return;
    };
    let shop = shop().await;
    browser.sign_in(&shop.app.base, ADMIN_TOKEN).await;

    // By its number, from the dashboard's link to the search form.
    browser.goto("/admin").await;
    browser.follow(Locator::LinkText("Search orders →")).await;
    browser.fill("input[name=out_trade_no]", &shop.paid).await;
    browser.follow(Locator::Css("form.search button")).await;
    let found = browser.table("table.orders").await;
    assert_eq!(found.len(), 2, "one order found: {found:?}");
    assert_eq!(found[1][0], shop.paid);

    // By its payer: both of the user's orders; then only the paid one.
    browser.goto("/admin/orders").await;
    browser.fill("input[name=openid]", &shop.openid).await;
    browser.follow(Locator::Css("form.search button")).await;
    let found = browser.table("table.orders").await;
    let numbers: Vec<&str> = found[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        numbers,
        [shop.ready.as_str(), shop.paid.as_str()],
        "{found:?}"
    );
    browser.select("select[name=status]", "paid").await;
    browser.follow(Locator::Css("form.search button")).await;
    let found = browser.table("table.orders").await;
    assert_eq!(found.len(), 2, "the paid one: {found:?}");
    assert!(browser.path().await.contains("status=paid"));
    browser.screenshot("console-search").await;

    // Its page: the order and what happened to it, in order.
    browser.follow(Locator::LinkText(&shop.paid)).await;
    assert_eq!(browser.path().await, format!("/admin/orders/{}", shop.paid));
    assert_eq!(browser.text(".order-status").await, "paid");
    assert!(!browser.text(".transaction").await.is_empty());
    let timeline = browser.table("table.timeline").await;
    let what: Vec<&str> = timeline[1..].iter().map(|r| r[1].as_str()).collect();
    let at = |step: &str| what.iter().position(|w| *w == step);
    for step in ["created", "ready", "notify", "paid"] {
        assert!(
            at(step).is_some(),
            "{step} is on the timeline: {timeline:?}"
        );
    }
    assert!(
        at("created") < at("ready") && at("ready") < at("notify"),
        "{timeline:?}"
    );
    let prepay = &timeline[1 + at("ready").unwrap()];
    assert!(
        prepay[2].starts_with("prepay_id "),
        "WeChat's answer: {prepay:?}"
    );
    let notify = &timeline[1 + at("notify").unwrap()];
    assert!(notify[2].contains("verdict accepted"), "{notify:?}");
    browser.screenshot("console-order").await;

    browser.close().await;
    shop.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_fits_a_phone() {
    let Some(mut browser) = Browser::open(Viewport::Phone).await else {
        return;
    };
    let shop = shop().await;
    browser.sign_in(&shop.app.base, ADMIN_TOKEN).await;
    let pages = [
        ("/admin".to_owned(), "console-dashboard-phone"),
        (
            format!("/admin/orders?openid={}", shop.openid),
            "console-search-phone",
        ),
        (
            format!("/admin/orders/{}", shop.paid),
            "console-order-phone",
        ),
        ("/admin/jobs".to_owned(), "console-jobs-phone"),
    ];
    for (path, picture) in pages {
        browser.goto(&path).await;
        assert!(browser.has("h1").await, "{path} is shown");
        let (overflow, width) = browser.overflow().await;
        assert_eq!(
            width, PHONE_WIDTH,
            "{path} is laid out for the phone's width"
        );
        assert!(
            overflow <= 0,
            "{path} is {overflow} px wider than the phone"
        );
        browser.screenshot(picture).await;
    }
    // On a phone a table row is a card of labelled lines.
    browser
        .goto(&format!("/admin/orders?openid={}", shop.openid))
        .await;
    let cards = browser.texts("table.orders td[data-label=status]").await;
    assert_eq!(cards, ["ready", "paid"]);

    browser.close().await;
    shop.app.stop().await;
}

/// The order's refunds as the admin API lists them.
async fn refunds_of(app: &TestApp, otn: &str) -> Vec<serde_json::Value> {
    let (_, list) = app
        .get_json(
            &format!("/v1/admin/orders/{otn}/refunds"),
            Some(ADMIN_TOKEN),
        )
        .await;
    list["refunds"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_refunded_from_its_page_only_after_confirming() {
    let Some(mut browser) = Browser::open(Viewport::Desktop).await else {
        return;
    };
    let shop = shop().await;
    let app = &shop.app;
    browser.sign_in(&app.base, ADMIN_TOKEN).await;
    let page = format!("/admin/orders/{}", shop.paid);
    browser.goto(&page).await;
    assert!(
        browser.text("form.refund").await.contains("at most ¥0.88"),
        "the form says what is left"
    );

    // Review, then cancel: nothing is refunded.
    browser.fill("form.refund input[name=amount]", "0.30").await;
    browser
        .fill("form.refund input[name=reason]", "damaged")
        .await;
    browser.follow(Locator::Css("form.refund button")).await;
    assert_eq!(browser.text("h1").await, "Confirm the refund");
    let question = browser.text("p.confirm").await;
    assert!(
        question.contains("¥0.30") && question.contains(&shop.paid),
        "{question}"
    );
    browser.screenshot("console-refund-confirm").await;
    browser.follow(Locator::LinkText("Cancel")).await;
    assert_eq!(browser.path().await, page);
    assert!(
        refunds_of(app, &shop.paid).await.is_empty(),
        "a review refunds nothing"
    );

    // Review and confirm: one refund of 30 fen, shown on the order's page.
    browser.fill("form.refund input[name=amount]", "0.30").await;
    browser
        .fill("form.refund input[name=reason]", "damaged")
        .await;
    browser.follow(Locator::Css("form.refund button")).await;
    browser.follow(Locator::Css("form.confirm button")).await;
    assert_eq!(browser.path().await, page, "back on the order's page");
    let refunds = refunds_of(app, &shop.paid).await;
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert_eq!(refunds[0]["refund_fee"], 30);
    assert_eq!(refunds[0]["reason"], "damaged");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let table = browser.table("table.refunds").await;
        assert_eq!(table.len(), 2, "one refund: {table:?}");
        assert_eq!(table[1][1], "¥0.30");
        if table[1][2] == "succeeded" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never succeeded: {table:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        browser.reload().await;
    }
    assert!(
        browser.text("form.refund").await.contains("at most ¥0.58"),
        "what is left shrank"
    );
    let events = browser.table("table.merchant-events").await;
    let kinds: Vec<&str> = events[1..].iter().map(|r| r[1].as_str()).collect();
    assert!(kinds.contains(&"refund.succeeded"), "{events:?}");
    browser.screenshot("console-refunded").await;

    // More than is left is refused with the API's error, and nothing changes.
    browser.fill("form.refund input[name=amount]", "0.59").await;
    browser.follow(Locator::Css("form.refund button")).await;
    browser.follow(Locator::Css("form.confirm button")).await;
    assert!(
        browser.text("p.note").await.contains("REFUND_EXCEEDS_PAID"),
        "the refusal is shown"
    );
    assert_eq!(refunds_of(app, &shop.paid).await.len(), 1);

    browser.close().await;
    shop.app.stop().await;
}
