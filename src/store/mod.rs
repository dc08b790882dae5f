//! The only module that writes SQL. Each method is one business transaction; jobs are queued
//! inside it (apalis `push_tasks` on the same transaction), never after, so no order or notify
//! exists without its job. Status changes are guarded in SQL (`WHERE status IN (...)`, derived
//! from the core crate's `OrderStatus::can_become`), which makes a job delivered twice
//! harmless. The store speaks the core crate's types (statuses, verdicts, payments, job
//! payloads) and nothing of any protocol; its failures are [`StoreError`].
//!
//! Both backends run the same SQL text (`$1` placeholders work in SQLite too); where dialects
//! differ, the [`Dialect`] trait or a per-backend constant says so.

mod bills;
mod console;
mod deliveries;
mod dialect;
mod error;
mod group_commit;
mod history;
mod insert_signal;
mod jobs;
mod notifies;
mod orders;
pub(crate) mod outbox;
mod process_lock;
mod refunds;
mod refused_notifies;
mod sessions;
mod stats;
mod write_health;

use std::str::FromStr;
use std::time::Duration;

use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use sqlx::Connection;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use bills::{
    BillDay, BillRunRow, BillRunStatus, HealedRow, MismatchRow, RequestedBy, StoredReport,
};
pub use console::{AlertLine, OrderFilter, OrderLine, StatusTotal, Tally};
pub use deliveries::{
    AfterAttempt, AttemptRecord, AttemptRow, EventFilter, EventRecord, EventStats, Redelivery,
};
pub use dialect::{ORDER_CHANNEL, job_task};
pub use error::{StoreError, is_unavailable};
pub use history::StoredHistory;
pub use insert_signal::{InsertSignal, JobWake};
pub use jobs::{JobRow, JobState};
pub use notifies::{NotifyRow, RecordedNotify, VerifiedNotify};
pub use orders::{Applied, CreateOutcome, EventRow, NewOrder, OrderRow};
pub use outbox::{Anomaly, NewEvent, Outbox, rfc3339_ms};
pub use process_lock::{LockError, lock_for_workers};
pub use refunds::{
    ConsoleRefund, CreateRefund, MAX_REFUNDS_PER_ORDER, NewRefund, RefundChange, RefundRefusal,
    RefundRow, Settled,
};
pub use refused_notifies::{RefusedGroup, refusal_window};
pub use sessions::SessionRow;
pub use stats::{QueueStats, StatusCount};
pub use write_health::{WriteHealth, WriteState};

/// The counter of SQLite write transactions committed (the writer connection's commit hook).
pub const DB_COMMITS: &str = "minipay_db_commits_total";

/// The database holding orders and the job queue.
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqlitePools),
    Postgres(PgPool),
}

/// SQLite has one writer at a time. Writes go through a single connection so that they queue
/// in-process, first come first served; with several writing connections SQLite's busy
/// handler makes waiters sleep in steps of up to 100 ms (measured: p99 commit 54 ms and a
/// 1.7 s maximum with 16 writers, 8 ms with one). Reads use their own pool; in WAL they never
/// wait for the writer.
#[derive(Clone, Debug)]
pub struct SqlitePools {
    /// One connection: every write transaction, ours (through `group`) and apalis'.
    pub writer: SqlitePool,
    pub reader: SqlitePool,
    /// Our write transactions, committed in batches.
    pub group: group_commit::GroupCommit,
    /// The outcome of the group commit's batches.
    pub health: WriteHealth,
}

/// How the database is opened, beyond its URL.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// SQLite only: the most pages (of SQLite's default 4 KiB) the database file may grow to;
    /// past it writes fail as on a full disk.
    pub sqlite_max_pages: Option<u64>,
}

/// Runs the same body against the pool that takes writes (on PostgreSQL, the pool). The body
/// is type-checked once per backend, so `sqlx` calls inside it resolve to that backend.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite(pools) => {
                let $pool = &pools.writer;
                $body
            }
            $crate::store::Store::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// Runs `$body` as one write transaction, `$tx` being its connection: on SQLite inside the next
/// group commit, on PostgreSQL in a transaction of its own. The body owns what it captures (on
/// SQLite it runs on the committing task) and ends in `Ok(value)`; an `Err` rolls it back.
macro_rules! write_tx {
    ($store:expr, $tx:ident => $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite(pools) => {
                pools
                    .group
                    .run(move |$tx: &mut sqlx::SqliteConnection| Box::pin(async move { $body }))
                    .await
            }
            // Boxed: a transaction's future is large, and it would otherwise be inlined into
            // every caller's future (a waiting job would carry it for nothing).
            $crate::store::Store::Postgres(pool) => {
                Box::pin(async {
                    let mut transaction = pool.begin().await?;
                    let result = {
                        let $tx: &mut sqlx::PgConnection = &mut transaction;
                        async { $body }.await
                    };
                    if result.is_ok() {
                        transaction.commit().await?;
                    }
                    result
                })
                .await
            }
        }
    };
}
pub(crate) use write_tx;

/// Like `on_pool!`, for statements that only read.
macro_rules! on_reader {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite(pools) => {
                let $pool = &pools.reader;
                $body
            }
            $crate::store::Store::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_reader;

/// Our migrations, per backend; apalis migrates its own tables after ours.
fn our_migrations(store: &Store) -> sqlx::migrate::Migrator {
    match store {
        Store::Sqlite(_) => sqlx::migrate!("./migrations/sqlite"),
        Store::Postgres(_) => sqlx::migrate!("./migrations/postgres"),
    }
}

impl Store {
    /// Opens the database. SQLite runs in WAL with `synchronous=FULL` (this is money) and,
    /// once a write that queued jobs has committed, tells `signal` their queues, which wakes
    /// those queues' idle workers.
    pub async fn connect(
        url: &str,
        pool_size: u32,
        signal: &InsertSignal,
    ) -> Result<Store, StoreError> {
        Self::connect_with(url, pool_size, signal, &StoreOptions::default()).await
    }

    /// [`Store::connect`] with options.
    pub async fn connect_with(
        url: &str,
        pool_size: u32,
        signal: &InsertSignal,
        store_options: &StoreOptions,
    ) -> Result<Store, StoreError> {
        if url.starts_with("sqlite:") {
            let mut options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            if let Some(pages) = store_options.sqlite_max_pages {
                options = options.pragma("max_page_count", pages.to_string());
            }
            let writer = SqlitePoolOptions::new()
                .max_connections(1)
                // A write waits for the one connection; the wait is the queue.
                .acquire_timeout(Duration::from_secs(30))
                // A connection handed back while sqlx still counts a transaction open is one
                // whose COMMIT or ROLLBACK failed (a full disk makes SQLite roll back by
                // itself, and sqlx's ROLLBACK then fails): sqlx would next open a SAVEPOINT
                // instead of a transaction, and a ROLLBACK TO would leave SQLite inside a
                // transaction that nothing commits. Such a connection is closed, not reused.
                .after_release(|conn, _| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        let mut handle = conn.lock_handle().await?;
                        // Every write reaches the database through this one connection,
                        // so its commits are the process's (read-only ones do not call it).
                        handle.set_commit_hook(|| {
                            metrics::counter!(DB_COMMITS).increment(1);
                            true
                        });
                        Ok(())
                    })
                })
                .connect_with(options.clone())
                .await?;
            // Readers connect on first use, after `migrate`: a connection opened before a
            // migration that rebuilds a table keeps the old schema when it prepares a
            // statement, and sqlx then reads rows with the old column count (an upgrade that
            // adds columns would panic on the first read).
            //
            // Each reader keeps a small page cache (512 KiB instead of SQLite's 2 MiB): with
            // writes going on, a reader's cache is discarded at the start of nearly every read
            // transaction anyway (WAL), so a larger one only holds memory as the database grows
            // (BENCHMARKS.md, "Memory, 2026-12-01"); the pages stay in the OS's file cache.
            let reader = SqlitePoolOptions::new()
                .max_connections(pool_size.min(4))
                .connect_lazy_with(options.pragma("cache_size", "-512"));
            let health = WriteHealth::new();
            let group =
                group_commit::GroupCommit::start(writer.clone(), health.clone(), signal.clone());
            Ok(Store::Sqlite(SqlitePools {
                writer,
                reader,
                group,
                health,
            }))
        } else {
            let pool = PgPoolOptions::new()
                .max_connections(pool_size)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await?;
            Ok(Store::Postgres(pool))
        }
    }

    /// Applies our migrations, then apalis'. On SQLite both share `_sqlx_migrations`, so each
    /// migrator ignores the other's rows (docs/apalis.md §6.9).
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        match self {
            Store::Sqlite(SqlitePools { writer: pool, .. }) => {
                let mut ours = our_migrations(self);
                ours.set_ignore_missing(true);
                ours.run(pool).await?;
                let mut apalis = SqliteStorage::migrations();
                apalis.set_ignore_missing(true);
                apalis.run(pool).await?;
                // apalis-sqlite acks through an index on lock_by that finished rows keep
                // filling, so acks slow down as history grows (docs/apalis.md §6.7).
                sqlx::query("DROP INDEX IF EXISTS LIdx")
                    .execute(pool)
                    .await?;
                sqlx::query(
                    "CREATE INDEX IF NOT EXISTS jobs_active_lock_by ON Jobs (lock_by) \
                     WHERE status IN ('Queued', 'Running')",
                )
                .execute(pool)
                .await?;
            }
            Store::Postgres(pool) => {
                our_migrations(self).run(pool).await?;
                PostgresStorage::migrations().run(pool).await?;
            }
        }
        Ok(())
    }

    /// Whether every migration of ours is applied (for `/readyz`).
    pub async fn migrations_applied(&self) -> Result<bool, StoreError> {
        let expected: Vec<i64> = our_migrations(self).iter().map(|m| m.version).collect();
        let applied: Vec<i64> = on_reader!(self, pool => {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(pool)
                .await?
        });
        Ok(expected.iter().all(|v| applied.contains(v)))
    }

    /// A round trip to the database.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_reader!(self, pool => { sqlx::query("SELECT 1").execute(pool).await?; });
        Ok(())
    }

    /// Writes the catalog into `products` (a record of what was on sale; prices are read from
    /// the in-memory catalog).
    pub async fn sync_products(
        &self,
        catalog: &crate::catalog::Catalog,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for p in catalog.products() {
                sqlx::query(
                    "INSERT INTO products (sku, description, price, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (sku) DO UPDATE SET description = excluded.description, \
                     price = excluded.price, updated_at = excluded.updated_at",
                )
                .bind(&p.sku)
                .bind(&p.description)
                .bind(p.price)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    pub fn is_sqlite(&self) -> bool {
        matches!(self, Store::Sqlite(_))
    }

    pub async fn close(&self) {
        match self {
            Store::Sqlite(pools) => {
                pools.writer.close().await;
                pools.reader.close().await;
            }
            Store::Postgres(pool) => pool.close().await,
        }
    }
}
