//! Shared test plumbing: the real app on 127.0.0.1:0 (simulator mode, its own SQLite file or
//! PostgreSQL database), servers on loopback, and signed-message builders.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use minipay::app::{App, Role};
use minipay::config::{Config, LimitSettings, Settings};
use minipay::services::Services;
use minipay::store::Store;
use minipay::wechat::Gateway;
use minipay::wechat::simulator::{
    ANY_ORDER, Faults, ForceRule, Forced, PayRequest, PayResult, SimConfig, Simulator,
};
use minipay::wechat::v2::{Merchant, SignType};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection;

/// Serves `router` on a fresh loopback port; returns its base URL.
pub async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    format!("http://{addr}")
}

/// A URL on which nothing listens (connect refused).
pub async fn dead_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// A simulator on loopback, with its base URL.
pub async fn simulator() -> (Simulator, String) {
    let sim = Simulator::new(SimConfig::demo());
    let url = serve(sim.router()).await;
    (sim, url)
}

/// The merchant the demo simulator expects.
pub fn demo_merchant(sign_type: SignType) -> Merchant {
    let demo = SimConfig::demo();
    Merchant {
        appid: demo.appid,
        mch_id: demo.mch_id,
        key: demo.key,
        sign_type,
    }
}

/// A client for the API (long-polls take up to 30 s).
pub fn http() -> reqwest::Client {
    minipay::wechat::http_client(Duration::from_millis(500), Duration::from_secs(40))
}

/// A client for WeChat calls, with the short timeout tests use to see hangs as timeouts.
pub fn wechat_http() -> reqwest::Client {
    minipay::wechat::http_client(Duration::from_millis(500), Duration::from_secs(2))
}

/// Runs a test body once on SQLite and once on PostgreSQL.
macro_rules! on_both_backends {
    ($(#[$meta:meta])* async fn $name:ident($backend:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($backend: $crate::helpers::Backend) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run($crate::helpers::Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                run($crate::helpers::Backend::Postgres).await
            }
        }
    };
}
pub(crate) use on_both_backends;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// Where a test app keeps its data; survives restarts of the app.
pub struct Database {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

impl Database {
    /// A fresh database, or `None` when PostgreSQL is unreachable outside CI.
    pub async fn create(backend: Backend) -> Option<Database> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}/minipay.db", dir.path().display());
                Some(Database {
                    url,
                    _dir: Some(dir),
                    pg_name: None,
                })
            }
            Backend::Postgres => {
                let admin_url = postgres_url();
                let mut admin = match tokio::time::timeout(
                    Duration::from_secs(5),
                    sqlx::PgConnection::connect(&admin_url),
                )
                .await
                {
                    Ok(Ok(conn)) => conn,
                    Ok(Err(e)) => return postgres_unreachable(&admin_url, &e.to_string()),
                    Err(_) => return postgres_unreachable(&admin_url, "connect timed out"),
                };
                drop_abandoned_databases(&mut admin).await;
                let name = format!(
                    "minipay_t_{}_{}",
                    std::process::id(),
                    minipay::wechat::v2::sign::random_alphanumeric(8).to_lowercase()
                );
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await
                    .unwrap();
                let base = admin_url
                    .rsplit_once('/')
                    .map(|(b, _)| b.to_owned())
                    .unwrap();
                Some(Database {
                    url: format!("{base}/{name}"),
                    _dir: None,
                    pg_name: Some(name),
                })
            }
        }
    }

    pub async fn drop_now(&self) {
        if let Some(name) = &self.pg_name
            && let Ok(mut admin) = sqlx::PgConnection::connect(&postgres_url()).await
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await;
        }
    }
}

fn postgres_url() -> String {
    std::env::var("MINIPAY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn postgres_unreachable(url: &str, why: &str) -> Option<Database> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("PostgreSQL is required when CI=true, but {url} is unreachable: {why}");
    }
    eprintln!(
        "\n*** SKIPPED: PostgreSQL test — {url} is unreachable ({why}). \
         Start PostgreSQL or set MINIPAY_TEST_POSTGRES_URL; CI=true makes this a failure. ***\n"
    );
    None
}

/// Databases of test processes that died without cleaning up.
async fn drop_abandoned_databases(admin: &mut sqlx::PgConnection) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'minipay_t_%'")
            .fetch_all(&mut *admin)
            .await
            .unwrap_or_default();
    for name in names {
        let pid = name.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut *admin)
            .await;
        }
    }
}

/// Settings tests start from: fast retries, short timeouts, quick sweeps.
pub fn test_settings(database_url: &str) -> Settings {
    let mut s = Settings::default();
    s.database.database_url = database_url.to_owned();
    s.http.listen = "127.0.0.1:0".into();
    s.http.admin_token = Some(ADMIN_TOKEN.to_owned().into());
    s.workers.prepay_backoff_ms = 20;
    s.workers.prepay_backoff_max_ms = 200;
    s.wechat.wechat_connect_timeout_ms = 500;
    s.wechat.wechat_timeout_ms = 1_000;
    s.workers.reconcile_interval_ms = 200;
    s.workers.heartbeat_secs = 1;
    s.process.shutdown_timeout_secs = 5;
    s.process.log = "warn".into();
    // Tests assert what is stored, whatever the free space of the machine they run on.
    s.http.refused_notify_min_free_mb = 0;
    // Tests create many orders per user quickly; the limits' own tests turn them on.
    s.limits = LimitSettings::off();
    // The database-backed gauges of /metrics, read in the background.
    s.http.metrics_refresh_ms = 200;
    // Tests read counters right after the change; the cache has a test of its own.
    s.http.metrics_cache_ms = 0;
    s
}

/// The real app, running in this test's runtime.
pub struct TestApp {
    pub base: String,
    /// The operator endpoints' own base URL, with `MINIPAY_ADMIN_LISTEN` set.
    pub admin_base: Option<String>,
    pub http: reqwest::Client,
    pub services: Arc<Services>,
    /// The embedded WeChat simulator (simulator mode).
    pub simulator: Option<Simulator>,
    pub db: Database,
    settings: Settings,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Option<TestApp> {
        Self::spawn_with(backend, Role::All, |_| {}).await
    }

    pub async fn spawn_with(
        backend: Backend,
        role: Role,
        tweak: impl FnOnce(&mut Settings),
    ) -> Option<TestApp> {
        let db = Database::create(backend).await?;
        let mut settings = test_settings(&db.url);
        tweak(&mut settings);
        Some(Self::start(db, settings, role).await)
    }

    /// Another process in `role` on `other`'s database (which `other` keeps and drops).
    pub async fn spawn_beside(
        other: &TestApp,
        role: Role,
        tweak: impl FnOnce(&mut Settings),
    ) -> TestApp {
        let db = Database {
            url: other.db.url.clone(),
            _dir: None,
            pg_name: None,
        };
        let mut settings = test_settings(&db.url);
        tweak(&mut settings);
        Self::start(db, settings, role).await
    }

    async fn start(db: Database, settings: Settings, role: Role) -> TestApp {
        // Logs go through the test harness, so passing tests stay quiet.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(&settings.process.log))
            .with_test_writer()
            .try_init();
        let config = Config::from_settings(settings.clone()).unwrap();
        let app = App::build(config, role).await.unwrap();
        let services = app.services();
        let simulator = app.simulator();
        // A worker-only process serves no HTTP.
        let base = app
            .local_addr()
            .map(|addr| format!("http://{addr}"))
            .unwrap_or_default();
        let admin_base = app.admin_addr().map(|addr| format!("http://{addr}"));
        if let Some(sim) = &simulator {
            sim.set_faults(Faults {
                notify_time_scale: 0.001,
                ..Faults::default()
            });
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run(async move {
            let _ = stopped.await;
        }));
        TestApp {
            base,
            admin_base,
            http: http(),
            services,
            simulator,
            db,
            settings,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// An app (all roles) with one dead `prepay_order` job: its order was damaged before any
    /// worker ran, so the job could not read it. Returns the app, the user's session token and
    /// the order's `out_trade_no`; [`TestApp::repair_dead_order`] undoes the damage.
    pub async fn spawn_with_dead_job(backend: Backend) -> Option<(TestApp, String, String)> {
        let app = Self::spawn_with(backend, Role::Serve, |s| {
            s.workers.stuck_pending_secs = 3600
        })
        .await?;
        let token = app.login("yara#1").await;
        let order = app.create_order(&token, "sms-100", 1).await;
        let out_trade_no = order["out_trade_no"].as_str().unwrap().to_owned();
        app.execute("UPDATE orders SET params = 'not json', openid = params")
            .await;
        // The job queued with the order carries the order's request: make it an older row,
        // which reads the (now unreadable) order instead.
        match app.store() {
            Store::Sqlite(_) => {
                app.execute(
                    "UPDATE Jobs SET job = CAST(json_object('out_trade_no', \
                     (SELECT out_trade_no FROM orders)) AS BLOB) WHERE job_type = 'prepay_order'",
                )
                .await
            }
            Store::Postgres(_) => {
                app.execute(
                    "UPDATE apalis.jobs SET job = convert_to(json_build_object('out_trade_no', \
                     (SELECT out_trade_no FROM orders))::text, 'UTF8') \
                     WHERE job_type = 'prepay_order'",
                )
                .await
            }
        }
        let app = app.restart(Role::All).await;
        eventually("the job is dead", || async { app.dead_jobs().await == 1 }).await;
        Some((app, token, out_trade_no))
    }

    /// Puts back the order [`TestApp::spawn_with_dead_job`] damaged (the openid goes back to
    /// the user's: orders are visible to their user).
    pub async fn repair_dead_order(&self) {
        self.execute(
            "UPDATE orders SET params = openid, openid = (SELECT openid FROM sessions LIMIT 1)",
        )
        .await;
    }

    /// Runs a statement on either backend.
    pub async fn execute(&self, sql: &'static str) {
        match self.store() {
            Store::Sqlite(pools) => {
                sqlx::query(sql).execute(&pools.writer).await.unwrap();
            }
            Store::Postgres(pool) => {
                sqlx::query(sql).execute(pool).await.unwrap();
            }
        }
    }

    /// Stops the app (as a crash would, from the queue's point of view: no job runs after
    /// this) and starts a new one on the same database in `role`.
    pub async fn restart(mut self, role: Role) -> TestApp {
        self.shutdown().await;
        let db = std::mem::replace(
            &mut self.db,
            Database {
                url: String::new(),
                _dir: None,
                pg_name: None,
            },
        );
        Self::start(db, self.settings.clone(), role).await
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
    }

    /// Stops the app, checks that no job died, and drops the database.
    pub async fn stop(mut self) {
        let dead = self.dead_jobs().await;
        self.shutdown().await;
        self.db.drop_now().await;
        assert_eq!(dead, 0, "jobs died during the test");
    }

    /// Stops the app and drops the database, checking nothing (its database may be gone).
    pub async fn stop_unchecked(mut self) {
        self.shutdown().await;
        self.db.drop_now().await;
    }

    pub fn store(&self) -> &Store {
        &self.services.store
    }

    pub fn sim(&self) -> &Simulator {
        self.simulator.as_ref().expect("simulator mode")
    }

    pub fn merchant(&self) -> &Merchant {
        let Gateway::V2(v2) = &self.services.gateway;
        v2.merchant()
    }

    pub async fn dead_jobs(&self) -> i64 {
        let stats = self
            .store()
            .queue_stats(chrono::Utc::now().timestamp())
            .await
            .unwrap();
        stats.iter().map(|s| s.dead).sum()
    }

    /// Runs a `SELECT COUNT(*) ...`-style scalar query on either backend.
    pub async fn scalar(&self, sql: &'static str) -> i64 {
        match self.store() {
            Store::Sqlite(pools) => sqlx::query_scalar(sql)
                .fetch_one(&pools.writer)
                .await
                .unwrap(),
            Store::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        }
    }

    /// Runs a query returning one text value on either backend.
    pub async fn scalar_text(&self, sql: &'static str) -> String {
        match self.store() {
            Store::Sqlite(pools) => sqlx::query_scalar(sql)
                .fetch_one(&pools.writer)
                .await
                .unwrap(),
            Store::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        }
    }

    pub async fn login(&self, code: &str) -> String {
        let (status, body) = self
            .post_json("/v1/sessions", None, json!({ "code": code }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    pub async fn post_json(
        &self,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value) {
        let mut request = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Self::checked("POST", path, request).await
    }

    pub async fn get_json(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Self::checked("GET", path, request).await
    }

    /// Sends `request` (`method path` on this app) and checks the answer against the OpenAPI
    /// document (`crate::schema`): its status must be documented and its JSON body match.
    pub async fn checked(
        method: &str,
        path: &str,
        request: reqwest::RequestBuilder,
    ) -> (StatusCode, Value) {
        let response = request.send().await.unwrap();
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        crate::schema::check(method, path, status.as_u16(), &body);
        (status, body)
    }

    /// `POST /v1/orders`, expecting 202.
    pub async fn create_order(&self, token: &str, sku: &str, quantity: i64) -> Value {
        let (status, body) = self
            .post_json(
                "/v1/orders",
                Some(token),
                json!({ "sku": sku, "quantity": quantity }),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body
    }

    /// `GET /v1/orders/{out_trade_no}`, expecting 200.
    pub async fn order(&self, token: &str, out_trade_no: &str, wait: Option<u64>) -> Value {
        let query = wait.map(|w| format!("?wait={w}")).unwrap_or_default();
        let (status, body) = self
            .get_json(&format!("/v1/orders/{out_trade_no}{query}"), Some(token))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Polls the order until `status` (long-polls cover `pending`; later changes are polled).
    pub async fn wait_for_status(&self, token: &str, out_trade_no: &str, status: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let order = self.order(token, out_trade_no, Some(5)).await;
            if order["status"] == status {
                return order;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "order never became {status}: {order}"
            );
            if order["status"] != "pending" {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// The order's admin view with its history.
    pub async fn history(&self, out_trade_no: &str) -> Value {
        let (status, body) = self
            .get_json(
                &format!("/v1/admin/orders/{out_trade_no}"),
                Some(ADMIN_TOKEN),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// POSTs a raw notify body; returns the HTTP status and the reply text.
    pub async fn post_notify(&self, body: impl Into<reqwest::Body>) -> (StatusCode, String) {
        let response = self
            .http
            .post(format!("{}/v1/wechat/notify", self.base))
            .header("content-type", "text/xml")
            .body(body)
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }

    /// Pays an order in the simulator.
    pub fn pay(&self, out_trade_no: &str, deliver: bool) -> PayResult {
        self.sim()
            .pay(PayRequest {
                out_trade_no: out_trade_no.into(),
                deliver,
                coupon_fee: None,
            })
            .unwrap()
    }

    /// Forces the next `times` WeChat Pay calls of any order.
    pub fn force_next(&self, outcome: Forced, times: u32) {
        self.sim().force(ForceRule {
            out_trade_no: ANY_ORDER.into(),
            outcome,
            times,
        });
    }
}

/// Waits until `check` holds, polling.
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
