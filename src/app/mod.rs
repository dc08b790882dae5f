//! Wiring only: builds the service in one of its roles — the HTTP API and webhook (`serve`),
//! the workers and reconciler (`work`), or both (`all`, plus the built-in WeChat simulator
//! when no merchant credentials are set) — and runs it until stopped.

use std::fs::File;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod clients;
mod tasks;

use clients::{EmbeddedTls, wechat};
use tasks::{drain, serve_http, serve_simulator, start_workers};

use crate::clock::Clock;
use crate::config::Config;
use crate::events::Deliverer;
use crate::http::{FreeSpaceFloor, HttpState, RateLimits, RefusedNotifies, SessionCache, Snapshot};
use crate::services::Services;
use crate::store::{InsertSignal, Store, StoreOptions, WriteHealth};
use crate::waiters::Waiters;
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

/// How long requests are refused with `Connection: close` before the listener closes.
const HTTP_CLOSE_GRACE: Duration = Duration::from_millis(1000);

/// The HTTP side of a serving process.
struct HttpPart {
    listener: TcpListener,
    /// `MINIPAY_ADMIN_LISTEN`: the operator endpoints' own listener.
    admin_listener: Option<TcpListener>,
    state: Arc<HttpState>,
    refused_writer: JoinHandle<()>,
    refused_stop: CancellationToken,
}

/// The embedded simulator and its own loopback listener: the workers call WeChat through it,
/// and it keeps answering until they have drained at shutdown.
struct SimulatorPart {
    simulator: Simulator,
    listener: TcpListener,
    /// `/secapi/pay/refund` needs TLS with a client certificate: the same router over TLS.
    tls_listener: TcpListener,
}

/// A built service, ready to run.
pub struct App {
    services: Arc<Services>,
    signal: InsertSignal,
    http: Option<HttpPart>,
    simulator: Option<SimulatorPart>,
    /// This process's worker name prefix, when it runs workers.
    worker_node: Option<String>,
    /// Held for the process lifetime: SQLite is single-process for workers.
    _sqlite_lock: Option<File>,
}

impl App {
    /// Connects, migrates, binds, and wires everything; nothing runs until [`App::run`].
    pub async fn build(config: Config, role: Role) -> anyhow::Result<App> {
        let sqlite_lock = match config.database.sqlite_path() {
            Some(path) if role.runs_workers() => Some(crate::store::lock_for_workers(&path)?),
            _ => None,
        };
        let signal = InsertSignal::new();
        let clock = Clock::new();
        let store = open_store(&config, role, &signal, &clock).await?;
        let (listener, admin_listener) = bind(&config, role).await?;
        let local = listener.as_ref().map(TcpListener::local_addr).transpose()?;
        let simulator = simulator_part(&config, role).await?;
        let embedded = match &simulator {
            Some(part) => Some(format!("http://{}", part.listener.local_addr()?)),
            None => None,
        };
        let embedded_tls = match &simulator {
            Some(part) => Some(embedded_tls(part)?),
            None => None,
        };
        let (gateway, login, sealer) = wechat(
            &config,
            local.map(reachable),
            embedded.as_deref(),
            embedded_tls,
        )?;
        let worker_node = role.runs_workers().then(crate::worker::node_name);
        let metrics = crate::metrics::install();
        // SQLite's group commit reports every batch; on PostgreSQL the probe alone does.
        let write_health = match &store {
            Store::Sqlite(pools) => pools.health.clone(),
            Store::Postgres(_) => WriteHealth::new(),
        };
        let floor = FreeSpaceFloor::of(&config);
        let services = Arc::new(Services {
            // Before `config` moves in.
            deliverer: deliverer(&config)?,
            config,
            store,
            gateway,
            clock,
            waiters: Waiters::new(),
            stopping: CancellationToken::new(),
            write_health,
        });
        let http = listener.map(|listener| {
            let refused_stop = CancellationToken::new();
            let (refused, refused_writer) =
                RefusedNotifies::start(services.store.clone(), floor, refused_stop.clone());
            let state = Arc::new(HttpState {
                services: services.clone(),
                login,
                sealer,
                sessions: SessionCache::new(),
                refused,
                metrics,
                metrics_text: Default::default(),
                snapshot: Snapshot::new(),
                limits: RateLimits::new(&services.config.limits),
                worker_node: worker_node.clone(),
                order_reads: tokio::sync::Semaphore::new(
                    services.config.database.pool_size as usize,
                ),
            });
            HttpPart {
                listener,
                admin_listener,
                state,
                refused_writer,
                refused_stop,
            }
        });
        Ok(App {
            services,
            signal,
            http,
            simulator,
            worker_node,
            _sqlite_lock: sqlite_lock,
        })
    }

    pub fn services(&self) -> Arc<Services> {
        self.services.clone()
    }

    /// The built-in WeChat simulator (simulator mode, serving roles).
    pub fn simulator(&self) -> Option<Simulator> {
        self.simulator.as_ref().map(|part| part.simulator.clone())
    }

    /// The address the HTTP server is bound to (with 0.0.0.0 shown as 127.0.0.1).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        let listener = &self.http.as_ref()?.listener;
        listener.local_addr().ok().map(reachable)
    }

    /// The operator endpoints' own address (`MINIPAY_ADMIN_LISTEN`), when they have one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        let listener = self.http.as_ref()?.admin_listener.as_ref()?;
        listener.local_addr().ok().map(reachable)
    }

    /// Runs until `shutdown` completes, then stops taking requests and jobs, lets in-flight
    /// ones finish within the configured deadline, and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let App {
            services,
            signal,
            http,
            simulator,
            worker_node,
            _sqlite_lock,
        } = self;
        let stop = services.stopping.clone();
        let deadline = services.config.process.shutdown_timeout;

        // HTTP stops in two steps: at the signal, requests get 503 with `Connection: close`
        // (so clients drop their keep-alive connections); after a short grace the listener
        // closes and idle connections with it. Closing idle keep-alive connections at once
        // races clients that are just sending on them, which they see as a reset.
        let http_close = CancellationToken::new();
        let (server, refused) = match http {
            Some(part) => {
                let simulator_router = simulator.as_ref().map(|s| s.simulator.router());
                let server = serve_http(
                    part.listener,
                    part.admin_listener,
                    part.state,
                    simulator_router,
                    http_close.clone(),
                );
                (Some(server), Some((part.refused_writer, part.refused_stop)))
            }
            None => (None, None),
        };
        let simulator_stop = CancellationToken::new();
        if simulator.is_some() {
            tracing::info!(
                pay_base_url = %services.gateway.base_urls().join(","),
                "simulator mode: WeChat Pay and login are simulated in this process (no money moves)"
            );
        }
        let simulator_server = simulator.map(|part| serve_simulator(part, &simulator_stop));
        let workers = worker_node.map(|node| start_workers(&services, signal, node));

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
        drain(server, workers, deadline).await;
        simulator_stop.cancel();
        if let Some(server) = simulator_server {
            let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
        }
        if let Some((writer, writer_stop)) = refused {
            writer_stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
        }
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

/// The services alone, for a one-off command (`minipay bill`): connected and migrated, with
/// the configured WeChat (in simulator mode `MINIPAY_PAY_BASE_URL` must name a simulator);
/// no HTTP server, no workers.
pub async fn services_for_command(mut config: Config) -> anyhow::Result<Arc<Services>> {
    // A command calls WeChat Pay only: the login API may be left unset.
    let wechat_config = &mut config.wechat;
    if wechat_config.auth_base_urls.is_none() {
        wechat_config.auth_base_urls = wechat_config.pay_base_urls.clone();
    }
    let signal = InsertSignal::new();
    let clock = Clock::new();
    let store = open_store(&config, Role::Work, &signal, &clock).await?;
    let (gateway, _login, _sealer) = wechat(&config, None, None, None)?;
    let write_health = match &store {
        Store::Sqlite(pools) => pools.health.clone(),
        Store::Postgres(_) => WriteHealth::new(),
    };
    Ok(Arc::new(Services {
        config,
        store,
        gateway,
        clock,
        waiters: Waiters::new(),
        stopping: CancellationToken::new(),
        write_health,
        // Events this command records are queued for the workers, which deliver them.
        deliverer: None,
    }))
}

/// The serving roles' listeners: the API's, and the operator endpoints' own when
/// `MINIPAY_ADMIN_LISTEN` is set.
async fn bind(
    config: &Config,
    role: Role,
) -> anyhow::Result<(Option<TcpListener>, Option<TcpListener>)> {
    if !role.serves_http() {
        return Ok((None, None));
    }
    let listen = config.http.listen;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("MINIPAY_LISTEN: cannot listen on {listen}"))?;
    let admin = match config.http.admin_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("MINIPAY_ADMIN_LISTEN: cannot listen on {addr}"))?,
        ),
        None => None,
    };
    Ok((Some(listener), admin))
}

/// Connects, migrates, and (serving roles) records the catalog on sale.
async fn open_store(
    config: &Config,
    role: Role,
    signal: &InsertSignal,
    clock: &Clock,
) -> anyhow::Result<Store> {
    let database = &config.database;
    let options = StoreOptions {
        sqlite_max_pages: database.sqlite_max_pages,
    };
    let store = Store::connect_with(&database.url, database.pool_size, signal, &options)
        .await
        .with_context(|| "MINIPAY_DATABASE_URL: cannot open the database".to_string())?;
    store.migrate().await.context("migrating the database")?;
    if role.serves_http() {
        store
            .sync_products(&config.orders.catalog, clock.unix_ms())
            .await
            .context("writing the catalog")?;
    }
    Ok(store)
}

/// The merchant events sender, when a webhook endpoint is configured.
fn deliverer(config: &Config) -> anyhow::Result<Option<Deliverer>> {
    match (&config.events.url, &config.events.secrets) {
        (Some(_), Some(secrets)) => Ok(Some(
            Deliverer::new(secrets.clone(), config.events.timeout)
                .context("building the webhook client")?,
        )),
        _ => Ok(None),
    }
}

/// The embedded simulator (simulator mode, serving roles) with its listeners.
async fn simulator_part(config: &Config, role: Role) -> anyhow::Result<Option<SimulatorPart>> {
    if !(config.wechat.simulator_mode() && role.serves_http()) {
        return Ok(None);
    }
    Ok(Some(SimulatorPart {
        simulator: Simulator::new(SimConfig::demo()),
        listener: TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the simulator")?,
        tls_listener: TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the simulator's TLS listener")?,
    }))
}

/// The embedded simulator's HTTPS base URL, CA and merchant certificate.
fn embedded_tls(part: &SimulatorPart) -> anyhow::Result<EmbeddedTls> {
    let sim = &part.simulator;
    let tls = sim.tls().map_err(anyhow::Error::msg)?;
    let pems = tls.pems();
    let identity = crate::wechat::v2::tls::ClientIdentity::from_pem(
        pems.client_cert_pem.as_bytes(),
        pems.client_key_pem.as_bytes(),
        &sim.config().mch_id,
    )?;
    Ok(EmbeddedTls {
        base: format!("https://{}", part.tls_listener.local_addr()?),
        ca: tls.ca_certificates(),
        identity,
    })
}

/// An address clients can dial: a wildcard bind is reached on loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
    } else {
        addr
    }
}
