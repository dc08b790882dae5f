//! Database work per business operation, counted (issue 15): statements and write commits per
//! order from creation to `ready`, per payment from its notify to `paid`, and per refund from
//! its request to `succeeded`. These do not depend on the machine's speed.
//!
//! Where the numbers come from:
//! - PostgreSQL's own counters: statements are `pg_stat_statements` calls in the bench's
//!   database (BEGIN and COMMIT included); write commits are transaction ids assigned
//!   (`pg_current_snapshot()`'s xmax moves once per transaction that wrote, read-only ones take
//!   none). The server is set up for `pg_stat_statements` if it is not (a restart).
//!   Each statement is one round trip: sqlx sends one at a time and waits for its answer.
//! - SQLite has no statement counters of its own: the service counts the statements it sends
//!   (`MINIPAY_COUNT_DB_STATEMENTS`, `minipay_db_statements_total`, one per sqlx query) and its
//!   writer connection's commit hook counts commits (`minipay_db_commits_total`). Each count is
//!   one round trip to the connection's thread: the group commit's savepoint bookkeeping sends
//!   the statements that end one write and start the next as one query, counted once.
//!
//! The idle background (heartbeats, safety polls, gauges) is measured for 5 s before the
//! operations and subtracted in proportion to each phase's length.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::Connection;

use crate::db::{Backend, BenchDb, postgres_admin_url};
use crate::embedded::{Embedded, wait_for};
use crate::procs::minipay_binary;
/// Orders (then payments, then refunds) counted.
const OPERATIONS: usize = 500;
/// Marks the bench's own queries, which the statement count leaves out.
const MARK: &str = "/* minipay-bench */";

/// Work per operation: statements (on PostgreSQL each a round trip) and write commits.
#[derive(Debug, Clone, Copy, Default)]
pub struct PerOp {
    pub statements: f64,
    pub commits: f64,
}

/// The three operations' work on one backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub order: PerOp,
    pub payment: PerOp,
    pub refund: PerOp,
}

/// The counters at one instant.
#[derive(Debug, Clone, Copy, Default)]
struct Reading {
    at: Option<Instant>,
    /// Statements the service sent (its own count).
    sent: f64,
    /// SQLite commits (the service's commit hook).
    sqlite_commits: f64,
    /// PostgreSQL: `pg_stat_statements` calls in the bench's database.
    pg_statements: f64,
    /// PostgreSQL: transaction ids assigned, cluster-wide.
    pg_xids: f64,
}

struct Counter {
    /// Whether the service counts its statements and SQLite commits.
    counted: bool,
    backend: Backend,
    http: reqwest::Client,
    api: String,
    admin: Option<sqlx::PgConnection>,
    db_name: String,
}

impl Counter {
    async fn read(&mut self) -> anyhow::Result<Reading> {
        let text = self
            .http
            .get(format!("{}/metrics", self.api))
            .send()
            .await?
            .text()
            .await?;
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let mut reading = Reading {
            at: Some(Instant::now()),
            sent: value("minipay_db_statements_total"),
            sqlite_commits: value("minipay_db_commits_total"),
            ..Reading::default()
        };
        if let Some(admin) = self.admin.as_mut() {
            let (statements, xids): (i64, i64) = sqlx::query_as(
                "SELECT (SELECT COALESCE(SUM(s.calls), 0)::bigint FROM pg_stat_statements s \
                   JOIN pg_database d ON d.oid = s.dbid \
                   WHERE d.datname = $1 AND s.query NOT LIKE '%minipay-bench%'), \
                 pg_snapshot_xmax(pg_current_snapshot())::text::bigint",
            )
            .bind(&self.db_name)
            .fetch_one(admin)
            .await?;
            reading.pg_statements = statements as f64;
            reading.pg_xids = xids as f64;
        }
        Ok(reading)
    }

    /// Work per operation between two readings, less the background for that long.
    fn per_op(&self, from: Reading, to: Reading, idle: &(Reading, Reading), ops: usize) -> PerOp {
        let secs = |a: Reading, b: Reading| match (a.at, b.at) {
            (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
            _ => 0.0,
        };
        let share = secs(from, to) / secs(idle.0, idle.1).max(1e-9);
        let net = |f: fn(&Reading) -> f64| {
            let background = (f(&idle.1) - f(&idle.0)) * share;
            ((f(&to) - f(&from)) - background).max(0.0) / ops as f64
        };
        match self.backend {
            Backend::Sqlite if !self.counted => PerOp {
                statements: f64::NAN,
                commits: f64::NAN,
            },
            Backend::Sqlite => PerOp {
                statements: net(|r| r.sent),
                commits: net(|r| r.sqlite_commits),
            },
            Backend::Postgres => PerOp {
                statements: net(|r| r.pg_statements),
                commits: net(|r| r.pg_xids),
            },
        }
    }
}

/// Makes sure the server loads `pg_stat_statements` (a one-time restart) and that the admin
/// database has the extension.
async fn pg_stat_statements() -> anyhow::Result<sqlx::PgConnection> {
    let mut admin = sqlx::PgConnection::connect(&postgres_admin_url()).await?;
    let loaded: String = sqlx::query_scalar("SELECT current_setting('shared_preload_libraries')")
        .fetch_one(&mut admin)
        .await?;
    if !loaded.contains("pg_stat_statements") {
        eprintln!("counts: PostgreSQL does not load pg_stat_statements; adding it and restarting");
        let libraries = if loaded.trim().is_empty() {
            "pg_stat_statements".to_owned()
        } else {
            format!("{loaded},pg_stat_statements")
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER SYSTEM SET shared_preload_libraries = '{libraries}'"
        )))
        .execute(&mut admin)
        .await?;
        drop(admin);
        crate::procs::restart_postgres()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        admin = loop {
            match sqlx::PgConnection::connect(&postgres_admin_url()).await {
                Ok(conn) => break conn,
                Err(e) if Instant::now() > deadline => return Err(e.into()),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
    }
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(&mut admin)
        .await?;
    Ok(admin)
}

/// Counts the work of `OPERATIONS` orders, payments and refunds on a fresh database.
pub async fn measure(backend: Backend, dir: &std::path::Path) -> anyhow::Result<Counts> {
    let admin = match backend {
        Backend::Postgres => Some(pg_stat_statements().await?),
        Backend::Sqlite => None,
    };
    let db = BenchDb::create(backend).await?;
    // A build from before the counters (a before → after pair) lacks the setting and is
    // started without it: there, SQLite's figures are not available and PostgreSQL's come
    // from the server alone.
    let counted = crate::procs::knows_setting(&minipay_binary()?, "MINIPAY_COUNT_DB_STATEMENTS");
    let settings = [
        ("MINIPAY_COUNT_DB_STATEMENTS", "true".to_owned()),
        // Every scrape renders (the counters are read between phases), and the database-backed
        // gauges are read once an hour rather than every 10 s, so the background is even.
        ("MINIPAY_METRICS_CACHE_MS", "0".to_owned()),
        ("MINIPAY_METRICS_REFRESH_MS", "3600000".to_owned()),
    ];
    let svc = Embedded::start(&db, dir, "minipay-counts", &settings, 100).await?;
    let db_name = db.url.rsplit('/').next().unwrap_or_default().to_owned();
    let mut counter = Counter {
        counted,
        backend,
        http: svc.http.clone(),
        api: svc.api.clone(),
        admin,
        db_name,
    };

    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = (counter.read().await?, {
        tokio::time::sleep(Duration::from_secs(5)).await;
        counter.read().await?
    });

    // Orders: created and long-polled until ready; paid (WeChat posts its notify); fully
    // refunded by the merchant and settled by WeChat's notify.
    let start = counter.read().await?;
    let numbers = Arc::new(svc.ready_orders(OPERATIONS).await?);
    let ready = counter.read().await?;
    let n = numbers.len() as i64;
    svc.pay_each(&numbers).await?;
    wait_for(
        &db.url,
        MARK,
        "SELECT COUNT(*) FROM orders WHERE status = 'paid'",
        n,
    )
    .await?;
    let paid = counter.read().await?;
    svc.refund_each(&numbers).await?;
    let succeeded = "SELECT COUNT(*) FROM refunds WHERE status = 'succeeded'";
    wait_for(&db.url, MARK, succeeded, n).await?;
    let refunded = counter.read().await?;

    let counts = Counts {
        order: counter.per_op(start, ready, &idle, numbers.len()),
        payment: counter.per_op(ready, paid, &idle, numbers.len()),
        refund: counter.per_op(paid, refunded, &idle, numbers.len()),
    };
    eprintln!("    {counts:?}");
    let mut service = svc.service;
    service.stop(Duration::from_secs(10))?;
    drop(counter);
    db.drop_now().await;
    Ok(counts)
}
