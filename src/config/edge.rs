//! Edge settings: how many connections and requests the HTTP listener takes at once, and how
//! long a connection may sit without sending a request.

use std::time::Duration;

use super::ConfigError;
use super::settings::{positive, settings};

settings! {
    /// The edge settings as read.
    pub struct EdgeSettings {
        /// open client connections at most; more are closed at once with a `503` (the process's file limit is raised to its hard limit at start)
        max_connections: usize = 10_000, check |n: &usize| positive(*n as u64);
        /// seconds a connection has to send a request's headers, counted from its opening or its previous response (so also how long an idle keep-alive connection is kept)
        header_timeout_secs: u64 = 10, check |n: &u64| positive(*n);
        /// bytes of request line and headers at most (`431` beyond)
        max_header_bytes: usize = 16 * 1024, check |n: &usize| {
            if *n < 1024 { Err("must be at least 1024".into()) } else { Ok(()) }
        };
        /// requests handled at once (long-polls and health checks not counted); more get `503` `OVERLOADED` with `Retry-After`
        max_in_flight: usize = 1024, check |n: &usize| positive(*n as u64);
    }
}

/// The limits of the public listener.
#[derive(Debug, Clone, Copy)]
pub struct Edge {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_in_flight: usize,
}

impl EdgeSettings {
    pub fn config(self) -> Result<Edge, ConfigError> {
        self.check()?;
        Ok(Edge {
            max_connections: self.max_connections,
            header_timeout: Duration::from_secs(self.header_timeout_secs),
            max_header_bytes: self.max_header_bytes,
            max_in_flight: self.max_in_flight,
        })
    }
}

impl Default for Edge {
    fn default() -> Self {
        // The declared defaults are valid.
        EdgeSettings::default().config().unwrap_or(Edge {
            max_connections: 10_000,
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_in_flight: 1024,
        })
    }
}
