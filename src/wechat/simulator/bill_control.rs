//! Control endpoints for statements: move a payment to another day, inject differences
//! between the statement and the simulator's own trades, force `downloadbill` failures, and
//! pick the column layout. Injections last until cleared, so re-running a day sees them too.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Simulator;
use super::bill::download_bill;
use super::state::TradeState;
use super::trades::{BillInjection, extra_day};
use crate::wechat::v2::bill::Layout;
use crate::wechat::v2::params::{beijing_time, parse_beijing_time};

/// `POST /sim/bill/force`: answer the next `times` downloads with `return_code=FAIL` and this
/// `return_msg` (`Bill Creating`, `SYSTEMERROR`, `CompressGZip Error`, ...).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillForce {
    pub return_msg: String,
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

/// `POST /sim/bill/layout`: 24 or 27 columns.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillLayout {
    pub columns: u32,
}

/// `POST /sim/orders/{out_trade_no}/backdate`: the payment time, `yyyyMMddHHmmss` Beijing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backdate {
    pub time_end: String,
}

/// The statement endpoint and its control endpoints, merged into the simulator's router.
pub(super) fn routes() -> Router<Simulator> {
    Router::new()
        .route("/pay/downloadbill", post(download_bill))
        .route(
            "/sim/bill/injections",
            post(inject).delete(clear_injections),
        )
        .route("/sim/bill/force", post(force))
        .route("/sim/bill/layout", post(layout))
        .route("/sim/orders/{out_trade_no}/backdate", post(backdate))
}

impl Simulator {
    /// Adds a difference to every statement from now on.
    pub fn inject_bill(&self, injection: BillInjection) -> Result<(), String> {
        match &injection {
            BillInjection::Status { status, .. } if status == "REFUND" || status.is_empty() => {
                return Err("status: not REFUND, not empty".into());
            }
            BillInjection::Extra { date, .. } if extra_day(date).is_none() => {
                return Err("date: YYYY-MM-DD".into());
            }
            _ => {}
        }
        self.state().bills.injections.push(injection);
        Ok(())
    }

    /// Removes every injected difference.
    pub fn clear_bill_injections(&self) {
        self.state().bills.injections.clear();
    }

    /// Answers the next `times` downloads with `return_msg`.
    pub fn force_bill(&self, return_msg: &str, times: u32) {
        let forced = &mut self.state().bills.forced;
        forced.extend(std::iter::repeat_n(return_msg.to_owned(), times as usize));
    }

    /// Statements from now on use `layout`.
    pub fn set_bill_layout(&self, layout: Layout) {
        self.state().bills.layout = Some(layout);
    }

    /// Moves a paid order's payment time (`time_end`, and so its statement day) to `at`.
    pub fn backdate(&self, out_trade_no: &str, at: DateTime<Utc>) -> Result<(), String> {
        let mut state = self.state();
        let order = state
            .orders
            .get_mut(out_trade_no)
            .ok_or_else(|| format!("no order {out_trade_no}"))?;
        if !matches!(order.trade_state, TradeState::Success | TradeState::Refund) {
            return Err(format!("order is {}", order.trade_state.as_str()));
        }
        order.time_end = Some(beijing_time(at));
        Ok(())
    }
}

async fn inject(State(sim): State<Simulator>, Json(injection): Json<BillInjection>) -> Response {
    match sim.inject_bill(injection) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(why) => (StatusCode::UNPROCESSABLE_ENTITY, why).into_response(),
    }
}

async fn clear_injections(State(sim): State<Simulator>) -> StatusCode {
    sim.clear_bill_injections();
    StatusCode::NO_CONTENT
}

async fn force(State(sim): State<Simulator>, Json(rule): Json<BillForce>) -> StatusCode {
    sim.force_bill(&rule.return_msg, rule.times);
    StatusCode::NO_CONTENT
}

async fn layout(State(sim): State<Simulator>, Json(layout): Json<BillLayout>) -> Response {
    match layout.columns {
        24 => sim.set_bill_layout(Layout::Columns24),
        27 => sim.set_bill_layout(Layout::Columns27),
        _ => return (StatusCode::UNPROCESSABLE_ENTITY, "columns: 24 or 27").into_response(),
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn backdate(
    State(sim): State<Simulator>,
    Path(out_trade_no): Path<String>,
    Json(to): Json<Backdate>,
) -> Response {
    let Some(at) = parse_beijing_time(&to.time_end) else {
        return (StatusCode::UNPROCESSABLE_ENTITY, "time_end: yyyyMMddHHmmss").into_response();
    };
    match sim.backdate(&out_trade_no, at) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(why) => (StatusCode::CONFLICT, why).into_response(),
    }
}
