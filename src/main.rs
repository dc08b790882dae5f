//! The `minipay` binary: one executable for every role.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use minipay::app::{App, Role};
use minipay::bill_cli;
use minipay::config::Config;
use minipay::events::verify_cli::{self, VerifyRequest};
use minipay::sign_cli::{self, SignRequest};
use minipay::wechat::simulator::{SimConfig, Simulator};
use minipay::wechat::v2::{ApiKey, SignType};

/// jemalloc gives memory back to the system after a burst; the system allocator kept the peak.
/// Its options are compiled in from `.cargo/config.toml` (`JEMALLOC_SYS_WITH_MALLOC_CONF`);
/// `_RJEM_MALLOC_CONF` overrides them at run time.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "minipay",
    version,
    about = "WeChat mini-program payments: login, orders, prepay, notify"
)]
struct Cli {
    /// A TOML file of settings; MINIPAY_* environment variables override it.
    #[arg(long, global = true, env = "MINIPAY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// API, webhook and workers in one process (the default), plus the WeChat simulator when
    /// no merchant credentials are set.
    All(RunArgs),
    /// HTTP API and webhook only; scale out with any number of these on PostgreSQL.
    Serve(RunArgs),
    /// Workers and reconciliation only; scale out with any number of these on PostgreSQL.
    Work(RunArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// A WeChat Pay v2 and login simulator, for demos and load tests.
    Simulator(SimulatorArgs),
    /// Sign fields, or check a document's sign (`--check`), the way WeChat Pay v2 does.
    Sign(SignArgs),
    /// Print the OpenAPI 3.1 document of the JSON API (every endpoint; `make openapi` writes it
    /// to docs/openapi.json).
    Openapi,
    /// Reconcile one Beijing day's WeChat bill now and print the summary (exit 0: no
    /// mismatch, 1: mismatches, 3: no statement yet, 4: failed).
    Bill(BillArgs),
    /// Tools for merchant events (webhooks).
    #[command(subcommand)]
    Webhook(WebhookCommand),
}

#[derive(Subcommand)]
enum WebhookCommand {
    /// Check a captured delivery's signature (body on stdin), or print the expected
    /// `webhook-signature` when --signature is left out. Exit 0 valid, 1 invalid, 2 bad input.
    Verify(WebhookVerifyArgs),
}

#[derive(Args)]
struct WebhookVerifyArgs {
    /// The endpoint's secret(s), `whsec_...`, several separated by spaces.
    #[arg(long, env = "MINIPAY_WEBHOOK_SECRET", hide_env_values = true)]
    secret: String,
    /// The `webhook-id` header.
    #[arg(long)]
    id: String,
    /// The `webhook-timestamp` header.
    #[arg(long)]
    timestamp: String,
    /// The `webhook-signature` header to check.
    #[arg(long)]
    signature: Option<String>,
}

#[derive(Args)]
struct BillArgs {
    /// The Beijing day, YYYY-MM-DD.
    #[arg(long)]
    date: String,
}

#[derive(Args, Default)]
struct RunArgs {
    /// Jobs each queue runs at once in this process (MINIPAY_WORKER_CONCURRENCY).
    #[arg(long)]
    concurrency: Option<usize>,
}

#[derive(Args)]
struct SimulatorArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9090")]
    listen: SocketAddr,
    /// The mini-program appid it plays WeChat for (default: the demo identity).
    #[arg(long, env = "MINIPAY_APPID")]
    appid: Option<String>,
    #[arg(long, env = "MINIPAY_APP_SECRET", hide_env_values = true)]
    app_secret: Option<String>,
    #[arg(long, env = "MINIPAY_MCH_ID")]
    mch_id: Option<String>,
    #[arg(long, env = "MINIPAY_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

#[derive(Args)]
struct SignArgs {
    /// The merchant's APIv2 key.
    #[arg(long)]
    key: String,
    /// MD5 or HMAC-SHA256.
    #[arg(long, default_value = "MD5")]
    sign_type: SignType,
    /// Verify the document's own `sign`; exit 1 when it does not match.
    #[arg(long)]
    check: bool,
    /// Fields as name=value; without any, an XML document is read from stdin.
    pairs: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Sign(args)) => sign(args),
        Some(Command::Openapi) => {
            print!("{}", minipay::http::openapi::document_json());
            ExitCode::SUCCESS
        }
        Some(Command::Bill(args)) => bill(cli.config, args),
        Some(Command::Webhook(WebhookCommand::Verify(args))) => webhook_verify(args),
        Some(Command::Simulator(args)) => serve_simulator(args),
        Some(Command::Migrate) => run_service(cli.config, None, RunArgs::default()),
        Some(Command::Serve(args)) => run_service(cli.config, Some(Role::Serve), args),
        Some(Command::Work(args)) => run_service(cli.config, Some(Role::Work), args),
        Some(Command::All(args)) => run_service(cli.config, Some(Role::All), args),
        None => run_service(cli.config, Some(Role::All), RunArgs::default()),
    }
}

/// Loads and checks the configuration, then runs `role` (or only migrates) until SIGTERM or
/// SIGINT. Exit code 0 after a clean shutdown, 1 on a runtime failure, 78 on bad configuration.
fn run_service(file: Option<PathBuf>, role: Option<Role>, args: RunArgs) -> ExitCode {
    let mut config = match Config::load(file.as_deref(), std::env::vars()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("minipay: configuration error: {e}");
            return ExitCode::from(78);
        }
    };
    if let Some(n) = args.concurrency {
        if n == 0 {
            eprintln!("minipay: configuration error: --concurrency must be at least 1");
            return ExitCode::from(78);
        }
        config.workers.concurrency = n;
    }
    minipay::telemetry::init(
        &config.process.log_filter,
        config.process.log_json,
        config.process.count_db_statements,
    );
    raise_file_limit(config.edge.max_connections);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("minipay: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = run_role(&runtime, config, role);
    // Work cut off at the shutdown deadline must not hold the process: bound the runtime's own
    // wait for its remaining tasks.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = ?e, "minipay stopped");
            eprintln!("minipay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft limit of open files to the hard limit: every connection is a file
/// descriptor, and so is every database connection.
fn raise_file_limit(max_connections: usize) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < max_connections as u64 + 256 => tracing::warn!(
            limit,
            max_connections,
            "the open-file limit is below MINIPAY_MAX_CONNECTIONS plus room for the database; raise the hard limit (ulimit -Hn, LimitNOFILE=) or lower MINIPAY_MAX_CONNECTIONS"
        ),
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}

fn run_role(
    runtime: &tokio::runtime::Runtime,
    config: Config,
    role: Option<Role>,
) -> anyhow::Result<()> {
    runtime.block_on(async move {
        let Some(role) = role else {
            let store = minipay::store::Store::connect(
                &config.database.url,
                1,
                &minipay::store::InsertSignal::new(),
            )
            .await?;
            store.migrate().await?;
            tracing::info!("migrations applied");
            return Ok(());
        };
        let app = App::build(config, role).await?;
        if let Some(addr) = app.local_addr() {
            tracing::info!(%addr, ?role, "minipay listening");
        }
        app.run(shutdown_signal()).await
    })
}

/// SIGTERM (systemd, Kubernetes) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// `minipay bill --date D`: the configured database and WeChat, logs on stderr, the
/// summary on stdout.
fn bill(file: Option<PathBuf>, args: BillArgs) -> ExitCode {
    let day = match bill_cli::parse_date(&args.date) {
        Ok(day) => day,
        Err(e) => {
            eprintln!("minipay bill: {e}");
            return ExitCode::from(2);
        }
    };
    let config = match Config::load(file.as_deref(), std::env::vars()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("minipay: configuration error: {e}");
            return ExitCode::from(78);
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&config.process.log_filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("minipay bill: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async move {
        let services = minipay::app::services_for_command(config).await?;
        let mut stdout = std::io::stdout().lock();
        let code = bill_cli::run(&services, day, &mut stdout).await?;
        stdout.flush()?;
        services.store.close().await;
        anyhow::Ok(code)
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("minipay bill: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn sign(args: SignArgs) -> ExitCode {
    let request = SignRequest {
        key: ApiKey::new(args.key),
        sign_type: args.sign_type,
        check: args.check,
        pairs: args.pairs,
    };
    let mut stdout = std::io::stdout().lock();
    match sign_cli::run(&request, &mut std::io::stdin().lock(), &mut stdout) {
        Ok(code) => {
            let _ = stdout.flush();
            ExitCode::from(code)
        }
        Err(e) => {
            eprintln!("minipay sign: {e}");
            ExitCode::from(2)
        }
    }
}

fn webhook_verify(args: WebhookVerifyArgs) -> ExitCode {
    let request = VerifyRequest {
        secret: args.secret.into(),
        id: args.id,
        timestamp: args.timestamp,
        signature: args.signature,
        now: chrono::Utc::now().timestamp(),
    };
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    match verify_cli::run(
        &request,
        &mut std::io::stdin().lock(),
        &mut stdout,
        &mut stderr,
    ) {
        Ok(code) => {
            let _ = stdout.flush();
            ExitCode::from(code)
        }
        Err(e) => {
            eprintln!("minipay webhook verify: {e}");
            ExitCode::from(2)
        }
    }
}

fn serve_simulator(args: SimulatorArgs) -> ExitCode {
    let demo = SimConfig::demo();
    let config = SimConfig {
        appid: args.appid.unwrap_or(demo.appid),
        app_secret: args.app_secret.unwrap_or(demo.app_secret),
        mch_id: args.mch_id.unwrap_or(demo.mch_id),
        key: args.api_key.map(ApiKey::new).unwrap_or(demo.key),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("minipay simulator: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        eprintln!(
            "minipay simulator listening on http://{}",
            listener.local_addr()?
        );
        axum::serve(listener, Simulator::new(config).router())
            .with_graceful_shutdown(shutdown_signal())
            .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("minipay simulator: {e}");
            ExitCode::FAILURE
        }
    }
}
