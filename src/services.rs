//! What request handlers and jobs share: the configuration, the store, the payment gateway,
//! the clock, the long-poll waiters and the shutdown signal. No HTTP types: the HTTP layer
//! keeps its own state (`http::HttpState`) on top of this, and helpers take only what they use.

use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Config;
use crate::events::Deliverer;
use crate::store::{Outbox, Store, WriteHealth};
use crate::waiters::Waiters;
use crate::wechat::Gateway;

/// The parts of the service every business operation may need.
pub struct Services {
    pub config: Config,
    pub store: Store,
    /// The payment provider, behind the protocol seam.
    pub gateway: Gateway,
    pub clock: Clock,
    /// Long-polls waiting on orders in this process.
    pub waiters: Waiters,
    /// Fires when shutdown starts: long-polls answer at once, jobs hand their work back.
    pub stopping: CancellationToken,
    /// Whether writes commit (for `/readyz`), kept current without a request.
    pub write_health: WriteHealth,
    /// Sends merchant events (signed, bounded); `None` when no webhook endpoint is configured.
    pub deliverer: Option<Deliverer>,
}

impl Services {
    /// Where the events recorded by a change are sent: the configured webhook endpoint, if any.
    pub fn outbox(&self) -> Outbox {
        Outbox::new(self.config.events.url.clone())
    }
}
