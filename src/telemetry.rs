//! Structured logs: text for people, JSON for log pipelines (`MINIPAY_LOG_FORMAT=json`). Order
//! work runs inside spans carrying `out_trade_no`, so every line about an order names it. Text
//! from outside (a notify body, WeChat's messages) is logged with `?`, which escapes control
//! characters: one event is one line, whatever it quotes.
//!
//! With `MINIPAY_COUNT_DB_STATEMENTS` a second layer counts sqlx's per-statement events
//! (target `sqlx::query`, one per statement sent) into `minipay_db_statements_total`, whatever
//! the log filter prints: the benchmarks read database work per order from it.

use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, fmt};

/// The counter of SQL statements sent (with `MINIPAY_COUNT_DB_STATEMENTS`).
pub const DB_STATEMENTS: &str = "minipay_db_statements_total";

/// Installs the global subscriber (a second call is a no-op).
pub fn init(filter: &str, json: bool, count_db_statements: bool) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let printed = if json {
        fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_target(true)
            .with_filter(filter)
            .boxed()
    } else {
        // Colours only on a terminal: in a file or a pipe they are escape bytes in the way.
        fmt::layer()
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed()
    };
    let counted = count_db_statements.then(|| {
        // sqlx logs each statement at DEBUG (slow ones at WARN).
        StatementCounter.with_filter(Targets::new().with_target("sqlx::query", LevelFilter::DEBUG))
    });
    let _ = tracing_subscriber::registry()
        .with(printed)
        .with(counted)
        .try_init();
}

/// Counts sqlx's statement events.
struct StatementCounter;

impl<S: Subscriber> Layer<S> for StatementCounter {
    fn on_event(&self, _event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        metrics::counter!(DB_STATEMENTS).increment(1);
    }
}
