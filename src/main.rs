//! The `minipay` binary: one executable for every role.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use minipay::sign_cli::{self, SignRequest};
use minipay::wechat::simulator::{SimConfig, Simulator};
use minipay::wechat::{ApiKey, SignType};

#[derive(Parser)]
#[command(
    name = "minipay",
    version,
    about = "WeChat mini-program payments: login, orders, prepay, notify"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// A WeChat Pay v2 and login simulator, for demos and load tests.
    Simulator(SimulatorArgs),
    /// Sign fields, or check a document's sign (`--check`), the way WeChat Pay v2 does.
    Sign(SignArgs),
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
        Some(Command::Simulator(args)) => serve_simulator(args),
        None => {
            eprintln!("minipay: choose a command; see `minipay --help`");
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
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
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
