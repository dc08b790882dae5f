//! The edge section (`make bench-edge`): a normal client orders and pays in a loop, quiet and
//! then during each of four floods — 5,000 slowloris connections, 20,000 idle connections (as
//! many as this process's file limit allows), a login flood, a metrics-scrape flood. Prints the
//! normal client's p99 during each flood against the quiet run (target ≤ 2×), and the service's
//! RSS before, at the end of, and after each flood (target: back within 20 % of the start).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::db::{Backend, BenchDb};
use crate::load::{Run, closed_loop};
use crate::scenarios::{Service, create_order};

/// Clients of the normal user load, each with one order in flight.
const NORMAL_CLIENTS: usize = 4;
/// How long each flood (and the quiet run) lasts.
const WINDOW: Duration = Duration::from_secs(20);
/// How long after a flood the service's memory is measured again.
const SETTLE: Duration = Duration::from_secs(15);
/// Concurrency of the request floods.
const FLOOD_CLIENTS: usize = 128;
/// File descriptors this process keeps for itself beyond the idle connections.
const FD_HEADROOM: u64 = 1_000;

/// One flood's figures.
struct Row {
    name: String,
    normal: Run,
    attack: String,
    rss_before: f64,
    rss_end: f64,
    rss_after: f64,
}

pub async fn run() -> anyhow::Result<()> {
    let fd_limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let dir = tempfile::tempdir()?;
    let db = BenchDb::create(Backend::Sqlite).await?;
    let settings = vec![
        ("MINIPAY_WORKER_CONCURRENCY", "64".to_owned()),
        ("MINIPAY_LOG", "error".to_owned()),
        // The normal users are not limited; the login flood meets the default login limit.
        ("MINIPAY_LIMIT_LOGINS_PER_IP", "60".to_owned()),
    ];
    let svc = Service::start(&db, dir.path(), &settings, NORMAL_CLIENTS).await?;
    eprintln!("[edge] warming up");
    normal_load(&svc, Duration::from_secs(5)).await;
    tokio::time::sleep(SETTLE).await;
    let rss_start = svc.rss_mib();
    eprintln!("[edge] quiet run ({} s)", WINDOW.as_secs());
    let quiet = normal_load(&svc, WINDOW).await;
    let idle = (fd_limit.saturating_sub(FD_HEADROOM)).min(20_000) as usize;
    let floods: [(&str, Flood); 5] = [
        (
            "no flood (control: the normal load's own growth)",
            Flood::None,
        ),
        ("slowloris, 5,000 connections", Flood::Slowloris(5_000)),
        ("idle connections", Flood::Idle(idle)),
        ("login flood (invalid codes)", Flood::Logins),
        ("metrics-scrape flood", Flood::Scrapes),
    ];
    // `EDGE_FLOODS=idle,logins` runs only those (slowloris, idle, logins, scrapes).
    let only = std::env::var("EDGE_FLOODS").ok();
    let mut rows = Vec::new();
    for (name, flood) in floods {
        if only
            .as_deref()
            .is_some_and(|only| !only.split(',').any(|f| f.trim() == flood.key()))
        {
            continue;
        }
        eprintln!("[edge] {name}");
        rows.push(during(&svc, name, flood).await);
    }
    println!(
        "{}",
        render(&quiet, rss_start, &rows, fd_limit, &svc.service_fd_limit())
    );
    svc.stop().await?;
    db.drop_now().await;
    Ok(())
}

#[derive(Clone, Copy)]
enum Flood {
    None,
    Slowloris(usize),
    Idle(usize),
    Logins,
    Scrapes,
}

impl Flood {
    fn key(self) -> &'static str {
        match self {
            Flood::None => "control",
            Flood::Slowloris(_) => "slowloris",
            Flood::Idle(_) => "idle",
            Flood::Logins => "logins",
            Flood::Scrapes => "scrapes",
        }
    }
}

/// The normal client's load during `flood`, and the service's memory around it.
async fn during(svc: &Service, name: &str, flood: Flood) -> Row {
    let rss_before = svc.rss_mib();
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    // The attacker runs on its own thread and runtime: thousands of its tasks in the normal
    // client's runtime would starve the normal client itself (the trips then measure the load
    // generator, not the service: the simulator's own `/sim/pay` took seconds).
    let attacker = {
        let (api, stop, counter, refused) = (
            svc.api.clone(),
            stop.clone(),
            counter.clone(),
            refused.clone(),
        );
        std::thread::spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(attack(api, flood, stop, counter, refused)),
                Err(e) => eprintln!("[edge] no runtime for the attacker: {e}"),
            }
        })
    };
    // Let the flood build up before measuring.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let normal = normal_load(svc, WINDOW).await;
    let rss_end = svc.rss_mib();
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || attacker.join()).await;
    let attack = match flood {
        Flood::None => "none".to_owned(),
        Flood::Slowloris(n) | Flood::Idle(n) => format!(
            "{n} held; {} connects, {} refused or reset",
            counter.load(Ordering::Relaxed),
            refused.load(Ordering::Relaxed)
        ),
        Flood::Logins | Flood::Scrapes => format!(
            "{} requests answered ({} 2xx/4xx, {} 429/503)",
            counter.load(Ordering::Relaxed),
            counter
                .load(Ordering::Relaxed)
                .saturating_sub(refused.load(Ordering::Relaxed)),
            refused.load(Ordering::Relaxed),
        ),
    };
    tokio::time::sleep(SETTLE).await;
    Row {
        name: name.to_owned(),
        normal,
        attack,
        rss_before,
        rss_end,
        rss_after: svc.rss_mib(),
    }
}

async fn attack(
    api: String,
    flood: Flood,
    stop: Arc<AtomicBool>,
    counter: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
) {
    let addr = api.trim_start_matches("http://").to_owned();
    let mut tasks = Vec::new();
    match flood {
        Flood::None => {}
        Flood::Slowloris(n) | Flood::Idle(n) => {
            let slow = matches!(flood, Flood::Slowloris(_));
            for i in 0..n {
                let (addr, stop, counter, refused) =
                    (addr.clone(), stop.clone(), counter.clone(), refused.clone());
                tasks.push(tokio::spawn(async move {
                    // Spread the connects over the first two seconds.
                    tokio::time::sleep(Duration::from_micros((i as u64 * 2_000_000) / n as u64))
                        .await;
                    hold_connections(&addr, slow, &stop, &counter, &refused).await;
                }));
            }
        }
        Flood::Logins | Flood::Scrapes => {
            let client = crate::scenarios::client();
            for c in 0..FLOOD_CLIENTS {
                let (client, api, stop, counter, refused) = (
                    client.clone(),
                    api.clone(),
                    stop.clone(),
                    counter.clone(),
                    refused.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    let mut i = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let sent = match flood {
                            Flood::Logins => {
                                client
                                    .post(format!("{api}/v1/sessions"))
                                    .json(&json!({ "code": format!("invalid-{c}-{i}") }))
                                    .send()
                                    .await
                            }
                            _ => client.get(format!("{api}/metrics")).send().await,
                        };
                        match sent {
                            Ok(r) => {
                                counter.fetch_add(1, Ordering::Relaxed);
                                let status = r.status().as_u16();
                                if status == 429 || status == 503 {
                                    refused.fetch_add(1, Ordering::Relaxed);
                                }
                                let _ = r.bytes().await;
                            }
                            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                        }
                    }
                }));
            }
        }
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// One attacker connection after another until `stop`: each sends half a request line (and,
/// slowloris, another header line every 2 s) or nothing at all, and is reopened when the
/// service closes it.
async fn hold_connections(
    addr: &str,
    slow: bool,
    stop: &AtomicBool,
    counter: &AtomicUsize,
    refused: &AtomicUsize,
) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            refused.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if slow
            && stream
                .write_all(b"GET /v1/orders/MP1 HTTP/1.1\r\nHost: minipay\r\n")
                .await
                .is_err()
        {
            refused.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let mut buf = [0u8; 512];
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            // Closed by the service (EOF, reset or an answer): reconnect.
            match tokio::time::timeout(Duration::from_secs(2), stream.readable()).await {
                Ok(Ok(())) => match stream.try_read(&mut buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    _ => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                },
                Ok(Err(_)) => break,
                Err(_) if slow => {
                    if stream.write_all(b"X-Slow: a\r\n").await.is_err() {
                        break;
                    }
                }
                Err(_) => {}
            }
        }
    }
}

/// `NORMAL_CLIENTS` users ordering and paying for `window`: each trip is order → ready (long
/// poll) → pay (the simulator notifies) → paid (long poll).
async fn normal_load(svc: &Service, window: Duration) -> Run {
    let (client, api, sim, tokens) = (
        svc.client.clone(),
        svc.api.clone(),
        svc.sim.clone(),
        svc.tokens.clone(),
    );
    closed_loop(NORMAL_CLIENTS, None, Some(window), move |i| {
        let (client, api, sim, tokens) = (client.clone(), api.clone(), sim.clone(), tokens.clone());
        async move {
            let token = &tokens[i % tokens.len()];
            let otn = create_order(&client, &api, token).await?;
            wait_for(&client, &api, token, &otn, "ready").await?;
            client
                .post(format!("{sim}/sim/pay"))
                .json(&json!({ "out_trade_no": otn }))
                .send()
                .await?
                .error_for_status()?;
            wait_for(&client, &api, token, &otn, "paid").await
        }
    })
    .await
}

async fn wait_for(
    client: &reqwest::Client,
    api: &str,
    token: &str,
    otn: &str,
    want: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let order: Value = client
            .get(format!("{api}/v1/orders/{otn}?wait=10"))
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        match order["status"].as_str() {
            Some(s) if s == want => return Ok(()),
            Some("pending" | "ready") => continue,
            other => bail!("order {otn} ended {other:?}"),
        }
    }
    bail!("order {otn} not {want} within 30 s")
}

fn render(quiet: &Run, rss_start: f64, rows: &[Row], fd_limit: u64, service_fds: &str) -> String {
    let p99 = |r: &Run| r.latencies.ms(0.99);
    let mut out = String::new();
    out.push_str(&format!(
        "Edge (SQLite, release build, simulator in its own process; normal load: {NORMAL_CLIENTS} clients ordering and paying in a loop; each flood {} s, memory measured {} s after it). Open-file limit: load generator {fd_limit}, service {service_fds}.\n\n",
        WINDOW.as_secs(),
        SETTLE.as_secs()
    ));
    out.push_str("| run | normal trips/s | normal p50 / p99 ms | p99 vs quiet (≤ 2×) | errors | service RSS MiB before → end → after | after vs start (≤ 1.2×) | after vs before | flood |\n");
    out.push_str("|---|---:|---:|---:|---:|---|---:|---:|---|\n");
    out.push_str(&format!(
        "| quiet | {:.1} | {:.1} / {:.1} | 1.00× | {} | {:.1} (start) |  |  |  |\n",
        quiet.rate(),
        quiet.latencies.ms(0.5),
        p99(quiet),
        quiet.errors,
        rss_start
    ));
    for r in rows {
        let ratio = p99(&r.normal) / p99(quiet).max(1e-9);
        let rss_ratio = r.rss_after / rss_start.max(1e-9);
        out.push_str(&format!(
            "| {} | {:.1} | {:.1} / {:.1} | {:.2}× {} | {} | {:.1} → {:.1} → {:.1} | {:.2}× {} | {:.2}× | {} |\n",
            r.name,
            r.normal.rate(),
            r.normal.latencies.ms(0.5),
            p99(&r.normal),
            ratio,
            if ratio <= 2.0 { "met" } else { "**not met**" },
            r.normal.errors,
            r.rss_before,
            r.rss_end,
            r.rss_after,
            rss_ratio,
            if rss_ratio <= 1.2 { "met" } else { "**not met**" },
            r.rss_after / r.rss_before.max(1e-9),
            r.attack,
        ));
    }
    out
}
