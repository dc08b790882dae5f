//! `minipay-bench`: minipay measured against its ceilings in one run (`make bench`,
//! `make bench-quick`), and the fault soak (`make soak`).

// A tool, not the service: its scenario and report functions read top to bottom as one run,
// so the 80-line limit of the service's functions is not applied here.
#![allow(clippy::too_many_lines)]

mod bill;
mod bill_full;
mod ceilings;
mod counts;
mod db;
mod edge;
mod embedded;
mod events;
mod load;
mod procs;
mod refunds;
mod report;
mod scenarios;
mod soak;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::db::{Backend, BenchDb};
use crate::report::Figures;
use crate::scenarios::Service;

#[derive(Parser)]
#[command(name = "minipay-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the benchmarks and print the table (and write it with --write).
    Run {
        /// Smaller counts and shorter windows (under 2 minutes).
        #[arg(long)]
        quick: bool,
        /// Backends to measure.
        #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
        backends: Vec<String>,
        /// Write the report to this file (BENCHMARKS.md).
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// The edge section: a normal client's latency and the service's memory during slowloris,
    /// idle-connection, login and metrics-scrape floods (SQLite).
    Edge,
    /// The hello-world ceiling server.
    Hello {
        #[arg(long)]
        listen: String,
    },
    /// Parse and reconcile a generated statement: time and peak RSS growth per phase.
    Bill {
        #[arg(long, default_value_t = 100_000)]
        rows: usize,
    },
    /// Merchant events: delivered per second to a local receiver, payments while every delivery
    /// hangs against no webhook, and RSS with a backlog for a dead endpoint.
    Events {
        /// Backends to measure.
        #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
        backends: Vec<String>,
        #[arg(long, default_value_t = 2_000)]
        orders: usize,
        #[arg(long, default_value_t = 10_000)]
        backlog: usize,
    },
    /// Refunds: requests accepted per second and refunds settled per second, one full refund
    /// of each of `orders` paid orders.
    Refunds {
        /// Backends to measure.
        #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
        backends: Vec<String>,
        #[arg(long, default_value_t = 2_000)]
        orders: usize,
    },
    /// Database work per order, payment and refund (statements, round trips, commits), counted.
    Counts {
        /// Backends to measure.
        #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
        backends: Vec<String>,
    },
    /// The service's peak RSS with about 1,000 orders in flight (the 200 ms phase alone).
    Memory {
        /// Backends to measure.
        #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
        backends: Vec<String>,
        /// As the full run measures it: its light-load phase first, then its 10,000 orders.
        #[arg(long)]
        full: bool,
    },
    /// Orders and notifies under injected faults, a PostgreSQL restart and a killed worker.
    Soak {
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
    },
}

/// Counts and windows of one run.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub orders_fast: usize,
    pub orders_slow: usize,
    pub window: Duration,
    pub drain_jobs: usize,
    pub notify_rate: f64,
    pub notify_open: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                orders_fast: 1_500,
                orders_slow: 3_000,
                window: Duration::from_secs(3),
                drain_jobs: 5_000,
                notify_rate: 1_000.0,
                notify_open: 1_000,
            }
        } else {
            Plan {
                orders_fast: 5_000,
                orders_slow: 10_000,
                window: Duration::from_secs(8),
                drain_jobs: 20_000,
                notify_rate: 1_000.0,
                notify_open: 3_000,
            }
        }
    }
}

/// Service settings for the runs: minipay's defaults, with enough concurrency for hundreds of
/// WeChat calls in flight.
fn service_settings() -> Vec<(&'static str, String)> {
    let mut settings = vec![
        ("MINIPAY_WORKER_CONCURRENCY", "1024".into()),
        ("MINIPAY_LOG", "error".into()),
    ];
    // `MINIPAY_BENCH_SETTINGS="MINIPAY_X=1,MINIPAY_Y=2"`: a variant to compare in the same run.
    if let Ok(extra) = std::env::var("MINIPAY_BENCH_SETTINGS") {
        for pair in extra.split(',').filter(|p| !p.is_empty()) {
            if let Some((key, value)) = pair.split_once('=') {
                settings.retain(|(k, _)| *k != key);
                settings.push((Box::leak(key.to_owned().into_boxed_str()), value.to_owned()));
            }
        }
    }
    settings
}

const POOL_SIZE: u32 = 16;
const BATCH: usize = 64;
const CLIENTS: usize = 64;
/// Clients of the 200 ms scenario, each with one order in flight.
const SLOW_CLIENTS: usize = 1_000;

async fn measure(backend: Backend, plan: Plan, dir: &std::path::Path) -> anyhow::Result<Figures> {
    let mut f = Figures::new(backend);
    eprintln!("[{}] ceilings: raw commits", backend.name());
    let db = BenchDb::create(backend).await?;
    f.commit_rate = ceilings::raw_commit_rate(&db.url, POOL_SIZE, plan.window).await?;
    db.drop_now().await;

    eprintln!("[{}] ceilings: apalis no-op drain", backend.name());
    let db = BenchDb::create(backend).await?;
    f.drain_rate = ceilings::apalis_drain(&db.url, plan.drain_jobs, POOL_SIZE, BATCH, 1024).await?;
    db.drop_now().await;

    eprintln!("[{}] ceilings: hello-world", backend.name());
    let port = procs::free_port()?;
    let me = std::env::current_exe()?;
    let mut hello = procs::Proc::start(
        &me,
        "hello",
        &["hello", "--listen", &format!("127.0.0.1:{port}")],
        &[],
        dir,
    )?;
    let client = scenarios::client();
    let hello_url = format!("http://127.0.0.1:{port}/");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let forged_body = scenarios::notify_body(
        &scenarios::Trip {
            out_trade_no: "MPBENCHFORGED000000000000000001".into(),
            total_fee: 88,
            received_ms: 0,
        },
        0,
        true,
    );
    f.hello = scenarios::hammer(
        hello_url,
        client.clone(),
        forged_body.clone(),
        CLIENTS,
        plan.window,
        |r| r == "hello",
    )
    .await
    .rate();
    hello.stop(Duration::from_secs(5))?;

    eprintln!(
        "[{}] minipay: submit → ready, simulator at 0 ms",
        backend.name()
    );
    let db = BenchDb::create(backend).await?;
    let svc = Service::start(&db, dir, &service_settings(), CLIENTS).await?;
    let before = svc.cpu();
    let (run, trips) = scenarios::submit_to_ready(&svc, plan.orders_fast, CLIENTS).await;
    let after = svc.cpu();
    eprintln!(
        "    {:.0} orders/s in {:.1} s; CPU s: service {:.1}, simulator {:.1}, load generator {:.1}, whole machine {:.1} of {:.1}",
        run.rate(),
        run.elapsed.as_secs_f64(),
        after[0] - before[0],
        after[1] - before[1],
        after[2] - before[2],
        after[3] - before[3],
        run.elapsed.as_secs_f64()
            * std::thread::available_parallelism()
                .map(|n| n.get() as f64)
                .unwrap_or(1.0),
    );
    f.fast = Some(run);
    f.pickup_ms = svc.pickup_ms().await.ok();
    f.wake = Some(scenarios::wake_latencies(&db, &trips).await?);

    eprintln!("[{}] minipay: notify ingest", backend.name());
    let (open, closed) = trips.split_at(plan.notify_open.min(trips.len() / 2));
    f.notify_closed =
        Some(scenarios::notify_closed(&svc, Arc::new(closed.to_vec()), CLIENTS).await);
    f.notify_open = Some(
        scenarios::notify_open(
            &svc,
            Arc::new(open.to_vec()),
            plan.notify_rate,
            closed.len(),
        )
        .await,
    );
    f.forged = scenarios::hammer(
        format!("{}/v1/wechat/notify", svc.api),
        client.clone(),
        forged_body,
        CLIENTS,
        plan.window,
        |r| r.contains("FAIL"),
    )
    .await
    .rate();

    eprintln!(
        "[{}] minipay: submit → ready, simulator at 200 ms",
        backend.name()
    );
    svc.stop().await?;
    db.drop_now().await;

    // A fresh process: first light load (nothing queues) for pickup and wake-up latency as
    // docs/apalis.md §3 measured them; then the 200 ms scenario, whose peak RSS is the process's.
    let db = BenchDb::create(backend).await?;
    let svc = Service::start(&db, dir, &service_settings(), CLIENTS).await?;
    eprintln!("[{}] minipay: light load, 100 orders/s", backend.name());
    let (light, trips) = scenarios::submit_to_ready_at(&svc, 100.0, plan.window).await;
    f.light_errors = light.errors;
    f.light = Some(light.latencies.clone());
    f.light_pickup_ms = svc.pickup_ms().await.ok();
    f.light_wake = Some(scenarios::wake_latencies(&db, &trips).await?);
    eprintln!(
        "[{}] minipay: submit → ready, simulator at 200 ms",
        backend.name()
    );
    svc.sim_latency(200).await?;
    let (run, _) = scenarios::submit_to_ready(&svc, plan.orders_slow, SLOW_CLIENTS).await;
    f.slow = Some(run);
    f.rss_mib = svc.peak_rss_mib();
    svc.stop().await?;
    db.drop_now().await;

    eprintln!(
        "[{}] minipay: database work per order, payment and refund, counted",
        backend.name()
    );
    // A build that refuses the counting settings (a before → after pair) leaves this empty.
    f.counts = counts::measure(backend, dir)
        .await
        .map_err(|e| eprintln!("    counts not available: {e:#}"))
        .ok();
    Ok(f)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("minipay-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Hello { listen } => {
                let listener = tokio::net::TcpListener::bind(&listen).await?;
                axum::serve(listener, ceilings::hello_router())
                    .with_graceful_shutdown(async {
                        let mut term = tokio::signal::unix::signal(
                            tokio::signal::unix::SignalKind::terminate(),
                        )
                        .ok();
                        match term.as_mut() {
                            Some(t) => {
                                t.recv().await;
                            }
                            None => std::future::pending::<()>().await,
                        }
                    })
                    .await?;
                Ok(())
            }
            Command::Bill { rows } => bill::run_in_temp(rows).await,
            Command::Edge => edge::run().await,
            Command::Events {
                backends,
                orders,
                backlog,
            } => events::run(&parse_backends(&backends)?, orders, backlog).await,
            Command::Refunds { backends, orders } => {
                refunds::run(&parse_backends(&backends)?, orders).await
            }
            Command::Counts { backends } => {
                let dir = tempfile::tempdir()?;
                for backend in parse_backends(&backends)? {
                    let c = counts::measure(backend, dir.path()).await?;
                    println!("{}: {c:?}", backend.name());
                }
                Ok(())
            }
            Command::Memory { backends, full } => {
                let dir = tempfile::tempdir()?;
                let plan = Plan::new(!full);
                for backend in parse_backends(&backends)? {
                    let db = BenchDb::create(backend).await?;
                    let svc = Service::start(&db, dir.path(), &service_settings(), CLIENTS).await?;
                    if full {
                        scenarios::submit_to_ready_at(&svc, 100.0, plan.window).await;
                    }
                    svc.sim_latency(200).await?;
                    let (run, _) =
                        scenarios::submit_to_ready(&svc, plan.orders_slow, SLOW_CLIENTS).await;
                    println!(
                        "{}: peak RSS {:.1} MiB, {:.0} orders/s, {} errors",
                        backend.name(),
                        svc.peak_rss_mib(),
                        run.rate(),
                        run.errors
                    );
                    svc.stop().await?;
                    db.drop_now().await;
                }
                Ok(())
            }
            Command::Soak { minutes } => soak::run(Duration::from_secs_f64(minutes * 60.0)).await,
            Command::Run {
                quick,
                backends,
                write,
            } => {
                let plan = Plan::new(quick);
                let dir = tempfile::tempdir()?;
                let mut all = Vec::new();
                for name in backends {
                    let backend = match name.as_str() {
                        "sqlite" => Backend::Sqlite,
                        "postgres" => Backend::Postgres,
                        other => anyhow::bail!("unknown backend {other}"),
                    };
                    all.push(measure(backend, plan, dir.path()).await?);
                }
                let text = report::render(&all, quick);
                println!("{text}");
                if let Some(path) = write {
                    let previous = std::fs::read_to_string(&path).unwrap_or_default();
                    std::fs::write(&path, report::document(&text, &previous))?;
                    eprintln!("written to {}", path.display());
                }
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("minipay-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `sqlite`, `postgres` as the backends they name.
fn parse_backends(names: &[String]) -> anyhow::Result<Vec<Backend>> {
    names
        .iter()
        .map(|name| match name.as_str() {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" => Ok(Backend::Postgres),
            other => Err(anyhow::anyhow!("unknown backend {other}")),
        })
        .collect()
}
