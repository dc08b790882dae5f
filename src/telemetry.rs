//! Structured logs: text for people, JSON for log pipelines (`MINIPAY_LOG_FORMAT=json`). Order
//! work runs inside spans carrying `out_trade_no`, so every line about an order names it. Text
//! from outside (a notify body, WeChat's messages) is logged with `?`, which escapes control
//! characters: one event is one line, whatever it quotes.

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt};

/// Installs the global subscriber (a second call is a no-op).
pub fn init(filter: &str, json: bool) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let result = if json {
        fmt()
            .json()
            .with_env_filter(filter)
            .with_current_span(true)
            .with_span_list(true)
            .with_target(true)
            .try_init()
    } else {
        // Colours only on a terminal: in a file or a pipe they are escape bytes in the way.
        fmt()
            .with_env_filter(filter)
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
    let _ = result;
}
