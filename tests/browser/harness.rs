//! A real headless Chromium for tests of the pages a person uses, and the steps such a test
//! takes: go to a page as the operator, click, read text and tables, measure the layout, take a
//! screenshot. Missing tools skip the test loudly, or fail it with `CI=true`.

use std::path::Path;
use std::time::Duration;

use axum::http::Method;
use base64::Engine;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::driver::{Driver, capabilities, find_program, missing};

/// The window a test looks through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewport {
    /// A phone held upright, emulated as Chromium's device mode does it (mobile layout rules,
    /// touch, device pixel ratio 2): [`PHONE_WIDTH`] × 844 CSS pixels.
    Phone,
    /// A laptop screen: 1280 × 800 CSS pixels.
    Desktop,
}

/// The CSS width of [`Viewport::Phone`].
pub const PHONE_WIDTH: i64 = 390;

/// Set to write screenshots to `docs/screenshots/` (`make screenshots`).
const SCREENSHOTS_ENV: &str = "MINIPAY_SCREENSHOTS";

/// How long a page load, a script or a wait for an element may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// A headless Chromium with its own profile, driven through its own chromedriver.
pub struct Browser {
    // Dropped in this order: the session, then the processes, then their files.
    client: Client,
    base: String,
    _driver: Driver,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Opens a browser, or returns `None` after a loud `SKIPPED` line when Chromium or
    /// chromedriver is missing (with `CI=true` that panics instead: CI must run these tests).
    pub async fn open(viewport: Viewport) -> Option<Browser> {
        let Some(chromium) = find_program("MINIPAY_CHROMIUM", &["chromium", "chromium-browser"])
        else {
            return missing("chromium was not found ($MINIPAY_CHROMIUM, PATH, /usr/bin)");
        };
        let Some(chromedriver) = find_program("MINIPAY_CHROMEDRIVER", &["chromedriver"]) else {
            return missing("chromedriver was not found ($MINIPAY_CHROMEDRIVER, PATH, /usr/bin)");
        };
        let profile = tempfile::tempdir().unwrap();
        let driver = Driver::start(&chromedriver, profile.path()).await;
        let capabilities = capabilities(&chromium, &profile.path().join("chromium"), viewport);
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver.url)
            .await
            .unwrap_or_else(|e| {
                let log = std::fs::read_to_string(driver.log()).unwrap_or_default();
                panic!(
                    "chromedriver could not start {}: {e}\n{log}",
                    chromium.display()
                )
            });
        Some(Browser {
            client,
            base: String::new(),
            _driver: driver,
            _profile: profile,
        })
    }

    /// From now on every request of this browser carries the operator's credentials (HTTP
    /// Basic, the admin token as password), and [`Browser::goto`] paths are below `base`.
    pub async fn sign_in(&mut self, base: &str, admin_token: &str) {
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("ops:{admin_token}"));
        self.cdp("Network.enable", json!({})).await;
        self.cdp(
            "Network.setExtraHTTPHeaders",
            json!({ "headers": { "Authorization": format!("Basic {credentials}") } }),
        )
        .await;
        self.base = base.to_owned();
    }

    /// Lets paths of [`Browser::goto`] be below `base`, without credentials.
    pub fn visit(&mut self, base: &str) {
        self.base = base.to_owned();
    }

    /// Loads `path` (below the base URL) and waits for the page to load.
    pub async fn goto(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        self.client
            .goto(&url)
            .await
            .unwrap_or_else(|e| panic!("loading {url}: {e}"));
    }

    /// Loads the current page again.
    pub async fn reload(&self) {
        self.client.refresh().await.unwrap();
    }

    /// The path (and query) of the page shown.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// The text a person sees in the first element matching `css` (waits for it to appear).
    pub async fn text(&self, css: &str) -> String {
        let element = self.find(Locator::Css(css)).await;
        element.text().await.unwrap()
    }

    /// Whether an element matches `css` now.
    pub async fn has(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap()
            .is_empty()
    }

    /// The rows of the table matching `css`, each as the text a person sees in its cells; the
    /// header row (`th` cells) included.
    pub async fn table(&self, css: &str) -> Vec<Vec<String>> {
        self.find(Locator::Css(css)).await;
        let rows = self
            .eval_with(
                "return [...document.querySelector(arguments[0]).rows]\
                 .map(r => [...r.cells].map(c => c.innerText.trim()));",
                vec![json!(css)],
            )
            .await;
        serde_json::from_value(rows).unwrap()
    }

    /// Clicks a link or a form's button (a real click: the form is posted) and waits until the
    /// page it leads to has loaded.
    pub async fn follow(&self, locator: Locator<'_>) {
        let element = self.find(locator).await;
        // chromedriver waits for the navigation a click starts, but not for a tap (phone
        // emulation), so this waits until the marked document is gone and its successor loaded.
        self.eval("window.minipayLeaving = true; return null;")
            .await;
        element.click().await.unwrap();
        self.wait_until(
            "the next page to load",
            "return window.minipayLeaving === undefined && document.readyState === 'complete';",
        )
        .await;
    }

    /// Types `text` into the form field matching `css`, replacing what it held.
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.find(Locator::Css(css)).await;
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// Picks the option whose value is `value` in the `select` matching `css`.
    pub async fn select(&self, css: &str, value: &str) {
        let field = self.find(Locator::Css(css)).await;
        field.select_by_value(value).await.unwrap();
    }

    /// The text of every element matching `css`, in page order.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let all = self
            .eval_with(
                "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText.trim());",
                vec![json!(css)],
            )
            .await;
        serde_json::from_value(all).unwrap()
    }

    /// Waits until `script` (run in the page) returns `true`, for changes a script makes in
    /// place; `what` names it in the panic.
    pub async fn wait_until(&self, what: &str, script: &str) {
        let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
        // Between two pages a script can fail to run: that is "not yet".
        while !matches!(
            self.client.execute(script, vec![]).await,
            Ok(Value::Bool(true))
        ) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "waited {STEP_TIMEOUT:?} for {what} on {}",
                self.path().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// An XPath to the button labelled `label` in the table row that shows `row_text`.
    pub fn button_in_row(row_text: &str, label: &str) -> String {
        format!(
            "//tr[td[contains(normalize-space(.), '{row_text}')]]//button[normalize-space(.) = '{label}']"
        )
    }

    /// How many CSS pixels the page is wider than the window (a person scrolls sideways when
    /// this is positive), and the window's width.
    pub async fn overflow(&self) -> (i64, i64) {
        let sizes = self
            .eval("return [document.documentElement.scrollWidth, window.innerWidth];")
            .await;
        let (scroll, inner) = (sizes[0].as_i64().unwrap(), sizes[1].as_i64().unwrap());
        (scroll - inner, inner)
    }

    /// The HTTP status and `WWW-Authenticate` header the base URL's server answers for `path`
    /// to a script of the page shown (WebDriver does not show statuses). The script asks
    /// without the browser's credentials, so Chromium opens no login dialog; it must run on a
    /// page of the same origin that is not itself waiting at that dialog.
    pub async fn fetch_status(&self, path: &str) -> (u16, Option<String>) {
        let answer = self
            .eval_with(
                "return fetch(arguments[0], { credentials: 'omit' }).then(r => [r.status, r.headers.get('www-authenticate')]);",
                vec![json!(format!("{}{path}", self.base))],
            )
            .await;
        let status = answer[0].as_u64().unwrap();
        (
            u16::try_from(status).unwrap(),
            answer[1].as_str().map(str::to_owned),
        )
    }

    /// Runs `script` in the page and returns its value (a returned promise is awaited).
    pub async fn eval(&self, script: &str) -> Value {
        self.eval_with(script, vec![]).await
    }

    async fn eval_with(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("running {script:?}: {e}"))
    }

    /// Captures the window as a PNG. With `MINIPAY_SCREENSHOTS` set (`make screenshots`) it is
    /// written to `docs/screenshots/<name>.png`; otherwise it is only checked to be a PNG.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n"),
            "the screenshot is not a PNG"
        );
        if std::env::var_os(SCREENSHOTS_ENV).is_some() {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
        }
    }

    /// Ends the session: Chromium quits and chromedriver is stopped.
    pub async fn close(self) {
        self.client.clone().close().await.unwrap();
    }

    async fn find(&self, locator: Locator<'_>) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(STEP_TIMEOUT)
            .for_element(locator)
            .await
        {
            Ok(element) => element,
            Err(e) => {
                let page = self.client.source().await.unwrap_or_default();
                panic!(
                    "no element {locator:?} on {}: {e}\n{page}",
                    self.path().await
                )
            }
        }
    }

    /// A Chrome DevTools Protocol command, through chromedriver's `goog/cdp/execute`.
    async fn cdp(&self, cmd: &'static str, params: Value) -> Value {
        self.client
            .issue_cmd(Cdp { cmd, params })
            .await
            .unwrap_or_else(|e| panic!("CDP {cmd}: {e}"))
    }
}

#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _url: &url::Url) -> (Method, Option<String>) {
        let body = json!({ "cmd": self.cmd, "params": self.params });
        (Method::POST, Some(body.to_string()))
    }
}
