//! The report: every minipay figure next to the ceiling it is judged against, as ratios measured
//! in the same run.

use std::fmt::Write;

use crate::counts::{Counts, PerOp};
use crate::db::Backend;
use crate::load::{Run, Samples};

/// Everything measured on one backend.
pub struct Figures {
    pub backend: Backend,
    pub commit_rate: f64,
    pub drain_rate: f64,
    pub hello: f64,
    pub fast: Option<Run>,
    pub slow: Option<Run>,
    pub pickup_ms: Option<(f64, f64, f64)>,
    pub wake: Option<Samples>,
    pub light_pickup_ms: Option<(f64, f64, f64)>,
    pub light_wake: Option<Samples>,
    pub light_errors: usize,
    pub light: Option<Samples>,
    pub notify_closed: Option<Run>,
    pub notify_open: Option<Run>,
    pub forged: f64,
    pub rss_mib: f64,
    pub counts: Option<Counts>,
}

impl Figures {
    pub fn new(backend: Backend) -> Figures {
        Figures {
            backend,
            commit_rate: 0.0,
            drain_rate: 0.0,
            hello: 0.0,
            fast: None,
            slow: None,
            pickup_ms: None,
            wake: None,
            light_pickup_ms: None,
            light_wake: None,
            light_errors: 0,
            light: None,
            notify_closed: None,
            notify_open: None,
            forged: 0.0,
            rss_mib: 0.0,
            counts: None,
        }
    }
}

fn pct(samples: Option<&Samples>) -> String {
    match samples {
        Some(s) if !s.is_empty() => {
            format!("{:.1} / {:.1} / {:.1}", s.ms(0.5), s.ms(0.95), s.ms(0.99))
        }
        _ => "—".into(),
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**not met**" }
}

/// One verdict per backend, so that a target met on SQLite and missed on PostgreSQL says so.
fn verdicts(all: &[Figures], ok: impl Fn(&Figures) -> bool) -> String {
    match all {
        [only] => verdict(ok(only)).to_string(),
        _ => all
            .iter()
            .map(|f| format!("{} {}", f.backend.name(), verdict(ok(f))))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The markdown table (also what is printed).
pub fn render(all: &[Figures], quick: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "minipay benchmark ({} run)\n",
        if quick { "quick" } else { "full" }
    );
    let mut header = String::from("| measure |");
    let mut rule = String::from("|---|");
    for f in all {
        let _ = write!(header, " {} | ratio |", f.backend.name());
        rule.push_str("---:|---:|");
    }
    header.push_str(" target |");
    rule.push_str("---|");
    let _ = writeln!(out, "{header}\n{rule}");
    let row = |out: &mut String,
               name: &str,
               cells: &dyn Fn(&Figures) -> (String, String),
               target: &dyn Fn(&[Figures]) -> String| {
        let mut line = format!("| {name} |");
        for f in all {
            let (value, ratio) = cells(f);
            let _ = write!(line, " {value} | {ratio} |");
        }
        let _ = writeln!(out, "{line} {} |", target(all));
    };
    let none = |_: &[Figures]| String::new();
    row(
        &mut out,
        "**ceiling:** raw DB commits/s (1 INSERT per tx, 16 connections)",
        &|f| (format!("{:.0}", f.commit_rate), String::new()),
        &none,
    );
    row(
        &mut out,
        "**ceiling:** apalis no-op drain, jobs/s (minipay's wiring)",
        &|f| {
            (
                format!("{:.0}", f.drain_rate),
                format!("{:.2}× commits", f.drain_rate / f.commit_rate),
            )
        },
        &none,
    );
    row(
        &mut out,
        "**ceiling:** axum hello-world, req/s (same load)",
        &|f| (format!("{:.0}", f.hello), String::new()),
        &none,
    );
    row(
        &mut out,
        "submit → ready, orders/s (simulator 0 ms)",
        &|f| {
            let rate = f.fast.as_ref().map_or(0.0, Run::rate);
            (
                format!("{rate:.0}"),
                format!("{:.2}× commits", rate / f.commit_rate),
            )
        },
        &|all| {
            format!(
                "≥ 0.3× commits: {}",
                verdicts(all, |f| f.fast.as_ref().map_or(0.0, Run::rate)
                    / f.commit_rate
                    >= 0.3)
            )
        },
    );
    row(
        &mut out,
        "submit → ready p50 / p95 / p99 ms (0 ms)",
        &|f| (pct(f.fast.as_ref().map(|r| &r.latencies)), String::new()),
        &none,
    );
    row(
        &mut out,
        "submit → ready, orders/s (simulator 200 ms)",
        &|f| {
            (
                format!("{:.0}", f.slow.as_ref().map_or(0.0, Run::rate)),
                String::new(),
            )
        },
        &|all| {
            let sqlite = all.iter().find(|f| f.backend == Backend::Sqlite);
            match sqlite {
                Some(f) => format!(
                    "≥ 1,000 on SQLite: {}",
                    verdict(f.slow.as_ref().map_or(0.0, Run::rate) >= 1000.0)
                ),
                None => "≥ 1,000 on SQLite".into(),
            }
        },
    );
    row(
        &mut out,
        "submit → ready p50 / p95 / p99 ms (200 ms)",
        &|f| (pct(f.slow.as_ref().map(|r| &r.latencies)), String::new()),
        &none,
    );
    let triple = |p: Option<(f64, f64, f64)>| match p {
        Some((a, b, c)) => format!("{a:.1} / {b:.1} / {c:.1}"),
        None => "—".into(),
    };
    row(
        &mut out,
        "one order, submit → ready p50 / p95 / p99 ms, light load (100 orders/s)",
        &|f| (pct(f.light.as_ref()), String::new()),
        &none,
    );
    row(
        &mut out,
        "enqueue → handler start p50 / p95 / p99 ms, light load (100 orders/s)",
        &|f| (triple(f.light_pickup_ms), String::new()),
        &|all| {
            format!(
                "p95 ≤ 10 ms: {}",
                verdicts(all, |f| f.light_pickup_ms.is_some_and(|p| p.1 <= 10.0))
            )
        },
    );
    row(
        &mut out,
        "enqueue → handler start p50 / p95 / p99 ms, saturated (0 ms run)",
        &|f| (triple(f.pickup_ms), String::new()),
        &none,
    );
    row(
        &mut out,
        "long-poll wake-up p50 / p95 / p99 ms, light load",
        &|f| (pct(f.light_wake.as_ref()), String::new()),
        &|all| {
            format!(
                "p95 ≤ 20 ms: {}",
                verdicts(all, |f| f
                    .light_wake
                    .as_ref()
                    .is_some_and(|w| w.ms(0.95) <= 20.0))
            )
        },
    );
    row(
        &mut out,
        "long-poll wake-up p50 / p95 / p99 ms, saturated",
        &|f| (pct(f.wake.as_ref()), String::new()),
        &none,
    );
    row(
        &mut out,
        "notify ingest, notifies/s (verify + record + enqueue + reply)",
        &|f| {
            let rate = f.notify_closed.as_ref().map_or(0.0, Run::rate);
            (
                format!("{rate:.0}"),
                format!("{:.2}× commits", rate / f.commit_rate),
            )
        },
        &|all| {
            format!(
                "≥ 0.5× commits: {}",
                verdicts(all, |f| f.notify_closed.as_ref().map_or(0.0, Run::rate)
                    / f.commit_rate
                    >= 0.5)
            )
        },
    );
    row(
        &mut out,
        "notify p50 / p95 / p99 ms at 1,000/s",
        &|f| {
            let r = f.notify_open.as_ref();
            let errors = r.map_or(0, |r| r.errors);
            (
                pct(r.map(|r| &r.latencies)),
                if errors > 0 {
                    format!("{errors} errors")
                } else {
                    String::new()
                },
            )
        },
        &|all| {
            format!(
                "p99 ≤ 20 ms: {}",
                verdicts(all, |f| {
                    f.notify_open
                        .as_ref()
                        .is_some_and(|r| r.errors == 0 && r.latencies.ms(0.99) <= 20.0)
                })
            )
        },
    );
    row(
        &mut out,
        "forged-notify rejections/s (no DB write)",
        &|f| {
            (
                format!("{:.0}", f.forged),
                format!("{:.2}× hello", f.forged / f.hello),
            )
        },
        &|all| {
            format!(
                "≥ 0.4× hello: {}",
                verdicts(all, |f| f.forged / f.hello >= 0.4)
            )
        },
    );
    row(
        &mut out,
        "peak RSS of the service, MiB (≈1,000 orders in flight)",
        &|f| (format!("{:.1}", f.rss_mib), String::new()),
        &|all| {
            format!(
                "≤ 64 MiB: {}",
                verdicts(all, |f| f.rss_mib > 0.0 && f.rss_mib <= 64.0)
            )
        },
    );
    count_rows(&mut out, &row);
    let _ = writeln!(out);
    for f in all {
        let errors: usize = [&f.fast, &f.slow, &f.notify_closed, &f.notify_open]
            .iter()
            .filter_map(|r| r.as_ref())
            .map(|r| r.errors)
            .sum();
        let _ = writeln!(
            out,
            "{}: {} failed requests across the minipay runs.",
            f.backend.name(),
            errors
        );
    }
    out
}

/// One operation's counted work.
fn work(op: Option<PerOp>) -> String {
    op.map_or_else(String::new, |op| {
        if op.statements.is_nan() {
            "n/a (not counted by this build)".to_owned()
        } else {
            format!("{:.1} stmts, {:.2} commits", op.statements, op.commits)
        }
    })
}

type Row<'a> = dyn Fn(&mut String, &str, &dyn Fn(&Figures) -> (String, String), &dyn Fn(&[Figures]) -> String)
    + 'a;

/// The database work rows (issue 15's bar applies to PostgreSQL).
fn count_rows(out: &mut String, row: &Row<'_>) {
    let bar = |pick: fn(&Counts) -> PerOp, statements: f64, commits: f64| {
        move |all: &[Figures]| {
            let met = all
                .iter()
                .filter(|f| f.backend == Backend::Postgres)
                .filter_map(|f| f.counts.as_ref())
                .all(|c| pick(c).statements <= statements && pick(c).commits <= commits);
            format!(
                "PostgreSQL ≤ {statements} stmts, ≤ {commits} commits: {}",
                verdict(met)
            )
        }
    };
    row(
        out,
        "database work per order, creation → ready (counted, 500 orders; PostgreSQL: each statement a round trip)",
        &|f| (work(f.counts.map(|c| c.order)), String::new()),
        &bar(|c| c.order, 5.0, 2.2),
    );
    row(
        out,
        "database work per payment, notify → paid (counted)",
        &|f| (work(f.counts.map(|c| c.payment)), String::new()),
        &bar(|c| c.payment, 6.0, 2.2),
    );
    row(
        out,
        "database work per refund, request → succeeded (counted)",
        &|f| (work(f.counts.map(|c| c.refund)), String::new()),
        &|_: &[Figures]| String::new(),
    );
}

/// The criterion medians of `make bench`'s protocol micro-benchmarks, if they were run.
fn criterion_medians() -> String {
    let mut out = String::new();
    let Ok(entries) = std::fs::read_dir("target/criterion") else {
        return out;
    };
    let mut rows = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path().join("new/estimates.json");
        let (Ok(text), Ok(name)) = (
            std::fs::read_to_string(&path),
            std::fs::read_to_string(entry.path().join("new/benchmark.json")),
        ) else {
            continue;
        };
        let (Ok(estimates), Ok(meta)) = (
            serde_json::from_str::<serde_json::Value>(&text),
            serde_json::from_str::<serde_json::Value>(&name),
        ) else {
            continue;
        };
        let median_ns = estimates["median"]["point_estimate"]
            .as_f64()
            .unwrap_or(0.0);
        rows.push((meta["title"].as_str().unwrap_or("?").to_owned(), median_ns));
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    if rows.is_empty() {
        return out;
    }
    out.push_str("\n## Protocol micro-benchmarks (criterion, median)\n\n| benchmark | median |\n|---|---:|\n");
    for (name, ns) in rows {
        let _ = writeln!(out, "| {name} | {:.2} µs |", ns / 1000.0);
    }
    out
}

fn command_line(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Everything after this line in BENCHMARKS.md is written by hand (analysis, soak and fuzz
/// results) and kept when the tables are regenerated.
const KEPT_BELOW: &str = "<!-- Written by hand below this line; `make bench` keeps it. -->";

/// BENCHMARKS.md: the table with the date and the machine, then the kept hand-written part of
/// the `previous` file.
pub fn document(table: &str, previous: &str) -> String {
    let kept = previous.find(KEPT_BELOW).map_or("", |at| &previous[at..]);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().next().map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
                    .unwrap_or(0.0)
                    / 1024.0
                    / 1024.0
            })
        })
        .unwrap_or(0.0);
    format!(
        "# minipay benchmarks\n\nGenerated by `make bench` on {date}. Machine: {cores} cores ({cpu}), {memory:.0} GiB, {kernel}; {rustc}; {pg}.\n\
         Everything runs on this one machine over loopback: the load generator, the service\n\
         (`minipay all`, release build, simulator mode), a separate `minipay simulator` process, and\n\
         the database. Each ratio divides a minipay figure by its ceiling measured in the same run.\n\n{table}{criterion}\n{kept}",
        date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        kernel = command_line("uname", &["-sr"]),
        rustc = command_line("rustc", &["--version"]),
        pg = command_line("psql", &["--version"]),
        criterion = criterion_medians(),
    )
}
