//! A WeChat Pay v2 and login simulator, as strict as WeChat: an axum [`Router`] that tests
//! use in-process and `minipay simulator` serves standalone. Besides WeChat's own endpoints it
//! has control endpoints under `/sim/` to pay orders (POSTing signed notifies on WeChat's
//! re-send schedule), settle and force refunds, inject faults and inspect every call it
//! received. [`Simulator::serve_tls`] serves the same router over TLS with client
//! certificates, as `/secapi/pay/refund` needs.

mod api;
mod bill;
mod bill_control;
mod control;
mod delivery;
mod login;
mod orders;
mod refund;
mod refund_book;
mod refund_control;
mod refund_result;
mod state;
mod tls;
mod trades;
mod wire;

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};

pub use bill_control::{Backdate, BillForce, BillLayout};
pub use control::{PayRequest, PayResult};
pub use delivery::Delivery;
pub use refund::NO_CLIENT_CERT;
pub use refund_control::{ConsoleRefund, RefundOutcomeRule, SettleRequest, SimRefundView};
pub use state::{ANY_ORDER, Call, Faults, ForceRule, Forced, SimOrderView, TradeState};
pub use tls::{ClientCert, SimTls, TlsPems};
pub use trades::{BillInjection, Trade, TradeRefund};

use super::v2::ApiKey;
use crate::clock::Clock;
use state::SimState;

/// The merchant and mini-program the simulator plays WeChat for.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub appid: String,
    pub app_secret: String,
    pub mch_id: String,
    pub key: ApiKey,
}

impl SimConfig {
    /// The fixed demo identity of simulator mode (the key of the vectors in
    /// docs/wechat-pay-v2.md §1.4).
    pub fn demo() -> Self {
        SimConfig {
            appid: "wxd930ea5d5a258f4f".into(),
            app_secret: "minipay-simulator-app-secret".into(),
            mch_id: "10000100".into(),
            key: ApiKey::new("192006250b4c09247ec02edce69f6a2d"),
        }
    }
}

/// A running simulator's shared state; clones share it.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

struct Inner {
    config: SimConfig,
    clock: Clock,
    http: reqwest::Client,
    state: Mutex<SimState>,
    tls: OnceLock<Result<SimTls, String>>,
}

impl Simulator {
    pub fn new(config: SimConfig) -> Self {
        Simulator {
            inner: Arc::new(Inner {
                config,
                clock: Clock::new(),
                http: super::http_client(Duration::from_secs(2), Duration::from_secs(5)),
                state: Mutex::new(SimState::default()),
                tls: OnceLock::new(),
            }),
        }
    }

    /// WeChat's endpoints plus the `/sim/` control endpoints.
    pub fn router(&self) -> Router {
        Router::new()
            .merge(bill_control::routes())
            .route("/pay/unifiedorder", post(api::unified_order))
            .route("/pay/orderquery", post(api::order_query))
            .route("/pay/closeorder", post(api::close_order))
            .route("/secapi/pay/refund", post(refund::secapi_refund))
            .route("/pay/refundquery", post(refund::refund_query))
            .route("/sns/jscode2session", get(login::code_to_session))
            .route("/sim/pay", post(control::pay))
            .route(
                "/sim/faults",
                post(control::set_faults).get(control::get_faults),
            )
            .route("/sim/force", post(control::force))
            .route("/sim/clock", post(control::advance_clock))
            .route("/sim/orders/{out_trade_no}", get(control::order))
            .route(
                "/sim/orders/{out_trade_no}/trade_state",
                post(control::set_trade_state),
            )
            .route("/sim/calls", get(control::calls))
            .route("/sim/stats", get(control::stats))
            .route("/sim/refunds", get(refund_control::list))
            .route("/sim/refunds/outcome", post(refund_control::outcome))
            .route("/sim/refunds/console", post(refund_control::console))
            .route("/sim/refunds/{out_refund_no}", get(refund_control::show))
            .route(
                "/sim/refunds/{out_refund_no}/settle",
                post(refund_control::settle),
            )
            .route("/sim/tls", get(refund_control::tls))
            .with_state(self.clone())
    }

    pub fn config(&self) -> &SimConfig {
        &self.inner.config
    }

    /// The simulator's own clock (tests advance it to pass WeChat's time rules).
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    fn state(&self) -> MutexGuard<'_, SimState> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters to a simulator; keep serving.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Replaces the fault settings.
    pub fn set_faults(&self, faults: Faults) {
        self.state().faults = faults;
    }

    /// Queues forced outcomes for one order's calls.
    pub fn force(&self, rule: ForceRule) {
        self.state().force(rule);
    }

    /// Everything the simulator knows about one order, `None` if it never saw it.
    pub fn order(&self, out_trade_no: &str) -> Option<SimOrderView> {
        self.state().view(out_trade_no)
    }

    /// Every call received, oldest first.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// `closeorder` calls that came within 5 minutes of the order's creation.
    pub fn close_violations(&self) -> Vec<String> {
        self.state().close_violations.clone()
    }

    /// Sets an order's trade state (e.g. USERPAYING while the user enters the password).
    pub fn set_trade_state(&self, out_trade_no: &str, trade_state: TradeState) -> bool {
        match self.state().orders.get_mut(out_trade_no) {
            Some(order) => {
                order.trade_state = trade_state;
                true
            }
            None => false,
        }
    }

    /// Marks an order paid and, unless `deliver` is off, POSTs its notify to the order's
    /// notify_url until answered SUCCESS.
    pub fn pay(&self, request: PayRequest) -> Result<PayResult, String> {
        control::pay_order(self, request)
    }
}
