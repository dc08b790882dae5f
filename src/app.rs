//! Builds and runs the service in one of its roles: the HTTP API and webhook (`serve`), the
//! workers and reconciler (`work`), or both (`all`, plus the built-in WeChat simulator when no
//! merchant credentials are set).

use std::fs::File;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{Config, Mode, WECHAT_LOGIN_HOSTS, WECHAT_PAY_HOSTS};
use crate::http::{FreeSpaceFloor, RefusedNotifies};
use crate::sealed::Sealer;
use crate::store::{InsertSignal, Store, StoreOptions, WriteHealth};
use crate::waiters::Waiters;
use crate::wechat::Merchant;
use crate::wechat::client::{LoginClient, PayClient, http_client};
use crate::wechat::simulator::{SimConfig, Simulator};

/// Which parts of the service this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// HTTP API and webhook, plus the simulator in simulator mode.
    Serve,
    /// Workers and the reconciler.
    Work,
    /// Both.
    All,
}

impl Role {
    pub fn serves_http(self) -> bool {
        matches!(self, Role::Serve | Role::All)
    }

    pub fn runs_workers(self) -> bool {
        matches!(self, Role::Work | Role::All)
    }
}

/// Everything request handlers and jobs share.
pub struct Services {
    pub config: Config,
    pub store: Store,
    pub pay: PayClient,
    pub login: LoginClient,
    pub clock: Clock,
    pub waiters: Waiters,
    /// Where WeChat posts payment results for orders created by this process.
    pub notify_url: String,
    pub refused: RefusedNotifies,
    /// Sessions already looked up.
    pub sessions: crate::http::SessionCache,
    pub metrics: PrometheusHandle,
    /// This process's worker name prefix, when it runs workers.
    pub worker_node: Option<String>,
    /// The built-in WeChat simulator, mounted at `/simulator` (simulator mode).
    pub simulator: Option<Simulator>,
    /// Fires when shutdown starts: long-polls answer at once.
    pub stopping: CancellationToken,
    /// Whether writes commit (for `/readyz`), kept current without a request.
    pub write_health: WriteHealth,
    /// Seals each session's `session_key` before it is stored.
    pub sealer: Sealer,
}

impl Services {
    /// The longest a prepay job may take: every attempt timing out plus every backoff.
    pub fn prepay_deadline(&self) -> Duration {
        let c = &self.config;
        (c.wechat_timeout * 2 + c.prepay_backoff_max) * (c.prepay_max_attempts + 1) * 2
            + Duration::from_secs(30)
    }
}

/// How long requests are refused with `Connection: close` before the listener closes.
const HTTP_CLOSE_GRACE: Duration = Duration::from_millis(1000);

/// A built service, ready to run.
pub struct App {
    services: Arc<Services>,
    role: Role,
    listener: Option<TcpListener>,
    signal: InsertSignal,
    /// The embedded simulator's own loopback listener: the workers call WeChat through it,
    /// and it keeps answering until they have drained at shutdown.
    simulator_listener: Option<TcpListener>,
    refused_writer: tokio::task::JoinHandle<()>,
    refused_stop: CancellationToken,
    /// Held for the process lifetime: SQLite is single-process for workers.
    _sqlite_lock: Option<File>,
}

impl App {
    /// Connects, migrates, binds, and wires everything; nothing runs until [`App::run`].
    pub async fn build(config: Config, role: Role) -> anyhow::Result<App> {
        let sqlite_lock = if config.is_sqlite() && role.runs_workers() {
            lock_sqlite(&config)?
        } else {
            None
        };
        let signal = InsertSignal::new();
        let options = StoreOptions {
            sqlite_max_pages: config.sqlite_max_pages,
        };
        let store =
            Store::connect_with(&config.database_url, config.db_pool_size, &signal, &options)
                .await
                .with_context(|| "MINIPAY_DATABASE_URL: cannot open the database".to_string())?;
        store.migrate().await.context("migrating the database")?;
        let clock = Clock::new();
        if role.serves_http() {
            store
                .sync_products(&config.catalog, clock.unix_ms())
                .await
                .context("writing the catalog")?;
        }

        let listener =
            if role.serves_http() {
                Some(TcpListener::bind(config.listen).await.with_context(|| {
                    format!("MINIPAY_LISTEN: cannot listen on {}", config.listen)
                })?)
            } else {
                None
            };
        let local = match &listener {
            Some(l) => Some(reachable(l.local_addr()?)),
            None => None,
        };

        let (merchant, app_secret, simulator) = match &config.mode {
            Mode::Live(creds) => (
                Merchant {
                    appid: creds.appid.clone(),
                    mch_id: creds.mch_id.clone(),
                    key: creds.api_key.clone(),
                    sign_type: config.sign_type,
                },
                creds.app_secret.clone(),
                None,
            ),
            Mode::Simulator => {
                let demo = SimConfig::demo();
                let merchant = Merchant {
                    appid: demo.appid.clone(),
                    mch_id: demo.mch_id.clone(),
                    key: demo.key.clone(),
                    sign_type: config.sign_type,
                };
                let secret = demo.app_secret.clone().into();
                let simulator = role.serves_http().then(|| Simulator::new(demo));
                (merchant, secret, simulator)
            }
        };
        let simulator_listener = match &simulator {
            Some(_) => Some(
                TcpListener::bind("127.0.0.1:0")
                    .await
                    .context("binding the simulator")?,
            ),
            None => None,
        };
        let embedded = match &simulator_listener {
            Some(l) => Some(format!("http://{}", l.local_addr()?)),
            None => None,
        };
        let pay_bases = base_urls(
            &config,
            config.pay_base_urls.clone(),
            &WECHAT_PAY_HOSTS,
            embedded.as_deref(),
            "MINIPAY_PAY_BASE_URL",
        )?;
        let auth_bases = base_urls(
            &config,
            config.auth_base_urls.clone(),
            &WECHAT_LOGIN_HOSTS,
            embedded.as_deref(),
            "MINIPAY_AUTH_BASE_URL",
        )?;
        let notify_url = match (&config.notify_url, local) {
            (Some(url), _) => url.clone(),
            (None, Some(addr)) => format!("http://{addr}/v1/wechat/notify"),
            // A worker-only process creates no orders, so it never hands out a notify_url.
            (None, None) => String::new(),
        };
        let sealer = Sealer::new(&merchant.key).context("deriving the session_key sealing key")?;
        let http = http_client(config.wechat_connect_timeout, config.wechat_timeout);
        let pay = PayClient::new(http.clone(), pay_bases, merchant.clone());
        let login = LoginClient::new(http, auth_bases, merchant.appid.clone(), app_secret);

        let refused_stop = CancellationToken::new();
        let floor = FreeSpaceFloor::of(&config);
        let (refused, refused_writer) =
            RefusedNotifies::start(store.clone(), floor, refused_stop.clone());
        let worker_node = role.runs_workers().then(crate::worker::node_name);
        // SQLite's group commit reports every batch; on PostgreSQL the probe alone does.
        let write_health = match &store {
            Store::Sqlite(pools) => pools.health.clone(),
            Store::Postgres(_) => WriteHealth::new(),
        };
        let services = Arc::new(Services {
            config,
            store,
            pay,
            login,
            clock,
            waiters: Waiters::new(),
            notify_url,
            refused,
            sessions: crate::http::SessionCache::new(),
            metrics: crate::metrics::install(),
            worker_node,
            simulator,
            stopping: CancellationToken::new(),
            write_health,
            sealer,
        });
        Ok(App {
            services,
            role,
            listener,
            signal,
            simulator_listener,
            refused_writer,
            refused_stop,
            _sqlite_lock: sqlite_lock,
        })
    }

    pub fn services(&self) -> Arc<Services> {
        self.services.clone()
    }

    /// The address the HTTP server is bound to (with 0.0.0.0 shown as 127.0.0.1).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(reachable)
    }

    /// Runs until `shutdown` completes, then stops taking requests and jobs, lets in-flight
    /// ones finish within the configured deadline, and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let App {
            services,
            role,
            listener,
            signal,
            simulator_listener,
            refused_writer,
            refused_stop,
            _sqlite_lock,
        } = self;
        let stop = services.stopping.clone();
        let deadline = services.config.shutdown_timeout;

        // HTTP stops in two steps: at the signal, requests get 503 with `Connection: close`
        // (so clients drop their keep-alive connections); after a short grace the listener
        // closes and idle connections with it. Closing idle keep-alive connections at once
        // races clients that are just sending on them, which they see as a reset.
        let http_close = CancellationToken::new();
        let server = listener.map(|listener| {
            services
                .waiters
                .spawn_listener(&services.store, stop.clone());
            services
                .write_health
                .spawn_probe(services.store.clone(), stop.clone());
            let router = crate::http::router(services.clone());
            let close = http_close.clone();
            tokio::spawn(async move {
                axum::serve(
                    listener,
                    router.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(async move { close.cancelled().await })
                .await
            })
        });
        let simulator_stop = CancellationToken::new();
        let simulator_server = match (&services.simulator, simulator_listener) {
            (Some(sim), Some(listener)) => {
                let (router, stop) = (sim.router(), simulator_stop.clone());
                Some(tokio::spawn(async move {
                    axum::serve(listener, router)
                        .with_graceful_shutdown(async move { stop.cancelled().await })
                        .await
                }))
            }
            _ => None,
        };
        let (workers, reconciler) = if role.runs_workers() {
            let node = services
                .worker_node
                .clone()
                .unwrap_or_else(crate::worker::node_name);
            tracing::info!(%node, "starting workers");
            let workers = tokio::spawn(crate::worker::run(
                services.clone(),
                signal,
                node,
                stop.clone(),
            ));
            let reconciler = tokio::spawn(crate::worker::reconciler::run(
                services.clone(),
                stop.clone(),
            ));
            (Some(workers), Some(reconciler))
        } else {
            (None, None)
        };
        if services.simulator.is_some() {
            tracing::info!(
                pay_base_url = %services.pay.base_urls().join(","),
                "simulator mode: WeChat Pay and login are simulated in this process (no money moves)"
            );
        }

        shutdown.await;
        tracing::info!(
            deadline_secs = deadline.as_secs(),
            "shutting down: no new requests or jobs"
        );
        stop.cancel();
        if server.is_some() {
            tokio::time::sleep(HTTP_CLOSE_GRACE.min(deadline / 2)).await;
        }
        http_close.cancel();
        let drained = async {
            if let Some(server) = server {
                report_end("HTTP server", server.await);
            }
            if let Some(workers) = workers {
                report_end("workers", workers.await);
            }
            if let Some(reconciler) = reconciler {
                let _ = reconciler.await;
            }
        };
        if tokio::time::timeout(deadline + Duration::from_secs(1), drained)
            .await
            .is_err()
        {
            tracing::warn!("shutdown deadline passed with work still in flight");
        }
        simulator_stop.cancel();
        if let Some(server) = simulator_server {
            let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
        }
        refused_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), refused_writer).await;
        // A connection still held by work cut off at the deadline would make close wait forever.
        if tokio::time::timeout(Duration::from_secs(2), services.store.close())
            .await
            .is_err()
        {
            tracing::warn!("database connections still busy at exit; closing anyway");
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Logs how a part of the service ended, if not cleanly.
fn report_end<E: std::fmt::Display>(
    part: &str,
    ended: Result<Result<(), E>, tokio::task::JoinError>,
) {
    match ended {
        Ok(Ok(())) => tracing::debug!(part, "drained"),
        Ok(Err(e)) => tracing::error!(part, error = %e, "stopped with an error"),
        Err(e) => tracing::error!(part, error = %e, "task failed"),
    }
}

/// An address clients can dial: a wildcard bind is reached on loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
    } else {
        addr
    }
}

fn base_urls(
    config: &Config,
    configured: Option<Vec<String>>,
    live: &[&str],
    embedded: Option<&str>,
    setting: &str,
) -> anyhow::Result<Vec<String>> {
    if let Some(urls) = configured {
        return Ok(urls);
    }
    match (&config.mode, embedded) {
        (Mode::Live(_), _) => Ok(live.iter().map(|u| (*u).to_owned()).collect()),
        (Mode::Simulator, Some(url)) => Ok(vec![url.to_owned()]),
        (Mode::Simulator, None) => bail!(
            "{setting}: in simulator mode a worker-only process needs the URL of a simulator \
             (run `minipay simulator`, or the /simulator path of a `minipay serve`)"
        ),
    }
}

/// SQLite runs workers in one process only: a second process on the same file would run the
/// same jobs without apalis' cross-process guarantees. The lock is an OS file lock next to the
/// database, released when the process exits (even by kill -9).
fn lock_sqlite(config: &Config) -> anyhow::Result<Option<File>> {
    let Some(path) = config.sqlite_path() else {
        return Ok(None);
    };
    let path = path.display();
    let lock_path = PathBuf::from(format!("{path}.lock"));
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| {
            format!(
                "MINIPAY_DATABASE_URL: cannot create {}",
                lock_path.display()
            )
        })?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "MINIPAY_DATABASE_URL: another minipay process already runs workers on {path}. \
             SQLite supports one worker process; run `minipay all` once, or use PostgreSQL \
             to scale out (see README, \"Scaling out\")"
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(anyhow::Error::new(e).context(format!("locking {}", lock_path.display())))
        }
    }
}
