//! The processes a benchmark starts: the built `minipay` binary (service and simulator) and this
//! binary's hello-world ceiling. Each logs to a file in the run's directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The `minipay` binary next to this one (both built by `make bench`).
pub fn minipay_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let path = me.with_file_name("minipay");
    if !path.exists() {
        bail!(
            "{} not found: build it with `cargo build --release --bins`",
            path.display()
        );
    }
    Ok(path)
}

/// The rate limits turned off (README, "Rate limits"): a benchmark logs every session in from
/// one IP and places orders per user far faster than any person; it measures the service's
/// capacity, not its limits. Benchmarks of the limits themselves set their own.
pub const NO_RATE_LIMITS: [(&str, &str); 5] = [
    ("MINIPAY_LIMIT_LOGINS_PER_IP", "0"),
    ("MINIPAY_LIMIT_ORDERS_PER_USER", "0"),
    ("MINIPAY_LIMIT_UNPAID_PER_USER", "0"),
    ("MINIPAY_LIMIT_READS_PER_USER", "0"),
    ("MINIPAY_LIMIT_ADMIN_FAILURES_PER_IP", "0"),
];

/// Which `MINIPAY_*` settings `program` knows, read from the names in its binary: an older
/// build (the "before" of a before → after pair) refuses settings added since, so those it
/// lacks are left out. Anything else passes.
/// Whether `program` knows setting `key` (see [`known_settings`]).
pub fn knows_setting(program: &Path, key: &str) -> bool {
    known_settings(program)(key)
}

fn known_settings(program: &Path) -> impl Fn(&str) -> bool {
    let binary = (program.file_name().and_then(|n| n.to_str()) == Some("minipay"))
        .then(|| std::fs::read(program).ok())
        .flatten();
    move |key: &str| match (&binary, key.strip_prefix("MINIPAY_")) {
        (Some(bytes), Some(name)) => {
            let name = name.to_ascii_lowercase();
            bytes.windows(name.len()).any(|w| w == name.as_bytes())
        }
        _ => true,
    }
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub struct Proc {
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    pub fn start(
        program: &Path,
        name: &str,
        args: &[&str],
        env: &[(&str, String)],
        dir: &Path,
    ) -> anyhow::Result<Proc> {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log)?;
        let mut command = Command::new(program);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("MINIPAY_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        // jemalloc's tuning (BENCHMARKS.md, "Before → after the restructuring"), to compare
        // settings without a rebuild.
        if let Ok(conf) = std::env::var("_RJEM_MALLOC_CONF") {
            command.env("_RJEM_MALLOC_CONF", conf);
        }
        let known = known_settings(program);
        for (k, v) in env {
            if known(k) {
                command.env(k, v);
            }
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Proc {
            name: name.to_owned(),
            child,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// CPU seconds (user + system) the process has used so far.
    pub fn cpu_secs(&self) -> f64 {
        cpu_secs(self.pid())
    }

    /// Peak resident set size in KiB (VmHWM), while the process runs.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    }

    /// Resident set size in KiB (VmRSS), now.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    }

    /// The soft limit of open files, as /proc/PID/limits shows it.
    pub fn open_file_limit(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/limits", self.pid()))
            .ok()
            .and_then(|limits| {
                limits
                    .lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| l.split_whitespace().nth(3))
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "?".into())
    }

    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()?;
        if !status.success() {
            bail!("kill -{signal} {} failed", self.name);
        }
        Ok(())
    }

    /// SIGTERM, then wait up to `limit` for a clean exit.
    pub fn stop(&mut self, limit: Duration) -> anyhow::Result<()> {
        let _ = self.signal("TERM");
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("{} exited with {status}", self.name);
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = self.output();
        let tail: Vec<&str> = output.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "{} did not stop within {limit:?}; its last lines:\n{}",
            self.name,
            tail.join("\n")
        )
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `minipay simulator` on a free port and waits until it answers; returns the process
/// and its base URL.
pub async fn start_simulator(
    binary: &Path,
    client: &reqwest::Client,
    dir: &Path,
) -> anyhow::Result<(Proc, String)> {
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let mut simulator = Proc::start(
        binary,
        "simulator",
        &["simulator", "--listen", &listen],
        &[],
        dir,
    )?;
    let base = format!("http://{listen}");
    wait_until_up(client, &format!("{base}/sim/stats"), &mut simulator).await?;
    Ok((simulator, base))
}

/// Replaces the simulator's fault injection (fields left out take their defaults: no fault).
pub async fn set_sim_faults(
    client: &reqwest::Client,
    sim: &str,
    faults: serde_json::Value,
) -> anyhow::Result<()> {
    client
        .post(format!("{sim}/sim/faults"))
        .json(&faults)
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

/// Waits until `url` answers 2xx.
pub async fn wait_until_up(
    client: &reqwest::Client,
    url: &str,
    proc: &mut Proc,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if proc.exited() {
            bail!("{} exited before answering:\n{}", proc.name, proc.output());
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not answer within 60 s:\n{}",
                proc.name,
                proc.output()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// CPU seconds (user + system) used by process `pid`, from /proc/PID/stat.
pub fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds the whole machine has been busy (all cores), from /proc/stat.
pub fn machine_busy_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(line) = stat.lines().next() else {
        return 0.0;
    };
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy: f64 = v
        .iter()
        .enumerate()
        .filter(|(i, _)| !matches!(i, 3 | 4))
        .map(|(_, x)| x)
        .sum();
    busy / 100.0
}

/// Restarts the local PostgreSQL cluster (Debian's `pg_ctlcluster`).
pub fn restart_postgres() -> anyhow::Result<()> {
    let versions = std::fs::read_dir("/etc/postgresql")
        .context("no /etc/postgresql: cannot restart PostgreSQL")?;
    let version = versions
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .context("no PostgreSQL cluster")?;
    let status = std::process::Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", "restart"])
        .status()?;
    if !status.success() {
        bail!("pg_ctlcluster restart failed");
    }
    Ok(())
}
