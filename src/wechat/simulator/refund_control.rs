//! The `/sim/` control endpoints for refunds: show refunds, settle one now, force the result
//! of the next ones, refund in "the merchant console", and hand out the TLS material.
//! Per-call faults of refund calls (SYSTEMERROR, HTTP 500, hangs, an err_code such as
//! FREQUENCY_LIMITED) come from `/sim/force` by the order's `out_trade_no`; NOTENOUGH,
//! the result delay and dropped notifies are `/sim/faults` settings.

use std::collections::VecDeque;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use minipay_jobs::RefundResult;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use super::Simulator;
use super::delivery::Delivery;
use super::refund_book::{NewRefund, SimRefund};
use super::tls::{SimTls, TlsPems, serve_tls};
use crate::wechat::v2::refund::{parse_refund_status, refund_status_name};
use crate::wechat::v2::sign::random_alphanumeric;

/// A refund as `GET /sim/refunds` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimRefundView {
    pub out_refund_no: String,
    pub out_trade_no: String,
    pub refund_id: String,
    pub refund_fee: i64,
    pub total_fee: i64,
    pub refund_desc: String,
    /// WeChat's spelling: `PROCESSING`, `SUCCESS`, `REFUNDCLOSE` or `CHANGE`.
    pub refund_status: String,
    /// `API`, or `VENDOR_PLATFORM` for a console refund.
    pub refund_request_source: String,
    pub notify_url: String,
    /// Simulator clock seconds of the request that created it.
    pub requested_at: i64,
    pub deliveries: Vec<Delivery>,
}

impl SimRefundView {
    fn of(refund: &SimRefund) -> SimRefundView {
        SimRefundView {
            out_refund_no: refund.out_refund_no.clone(),
            out_trade_no: refund.out_trade_no.clone(),
            refund_id: refund.refund_id.clone(),
            refund_fee: refund.refund_fee,
            total_fee: refund.total_fee,
            refund_desc: refund.refund_desc.clone(),
            refund_status: refund_status_name(refund.status).to_owned(),
            refund_request_source: refund.source.to_owned(),
            notify_url: refund.notify_url.clone(),
            requested_at: refund.requested_at,
            deliveries: refund.deliveries.clone(),
        }
    }
}

/// `POST /sim/refunds/outcome`: the next `times` refunds accepted for `out_trade_no` (or any
/// order, with `"*"`) end with `refund_status` (`CHANGE`, `REFUNDCLOSE` or `SUCCESS`) instead
/// of `SUCCESS`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundOutcomeRule {
    pub out_trade_no: String,
    pub refund_status: String,
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

/// `POST /sim/refunds/console`: a refund made by hand in WeChat's merchant console. It follows
/// WeChat's amount rules, gets `refund_request_source=VENDOR_PLATFORM`, and is notified to
/// `notify_url` (default: the order's last refund's URL, else its payment notify_url).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleRefund {
    pub out_trade_no: String,
    pub refund_fee: i64,
    /// Default: a number the merchant's own system never issued.
    #[serde(default)]
    pub out_refund_no: Option<String>,
    #[serde(default)]
    pub notify_url: Option<String>,
}

/// `POST /sim/refunds/{out_refund_no}/settle`: the result to give now (default: the one the
/// refund was due).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettleRequest {
    #[serde(default)]
    pub refund_status: Option<String>,
}

impl Simulator {
    /// Every refund, oldest first.
    pub fn refunds(&self) -> Vec<SimRefundView> {
        let state = self.state();
        let mut refunds: Vec<_> = state.refunds.refunds.values().collect();
        refunds.sort_by_key(|r| (r.requested_at, r.refund_id.clone()));
        refunds.into_iter().map(SimRefundView::of).collect()
    }

    /// One refund by `out_refund_no`.
    pub fn refund(&self, out_refund_no: &str) -> Option<SimRefundView> {
        self.state()
            .refunds
            .refunds
            .get(out_refund_no)
            .map(SimRefundView::of)
    }

    /// Queues the result of the next `times` refunds accepted for `out_trade_no` (or `"*"`).
    pub fn force_refund_outcome(&self, out_trade_no: &str, result: RefundResult, times: u32) {
        let mut state = self.state();
        let queue: &mut VecDeque<_> = state
            .refunds
            .outcomes
            .entry(out_trade_no.to_owned())
            .or_default();
        queue.extend(std::iter::repeat_n(result, times as usize));
    }

    /// Refunds a paid order "in the merchant console" (see [`ConsoleRefund`]).
    pub fn console_refund(&self, request: ConsoleRefund) -> Result<SimRefundView, String> {
        let out_refund_no = request
            .out_refund_no
            .unwrap_or_else(|| format!("console{}", random_alphanumeric(16)));
        let notify_url = request
            .notify_url
            .unwrap_or_else(|| self.default_refund_notify_url(&request.out_trade_no));
        self.create_refund(NewRefund {
            out_trade_no: &request.out_trade_no,
            out_refund_no: &out_refund_no,
            refund_fee: request.refund_fee,
            refund_desc: "",
            notify_url: &notify_url,
            source: "VENDOR_PLATFORM",
        })
        .map(|refund| SimRefundView::of(&refund))
        .map_err(|(code, description)| format!("{code}: {description}"))
    }

    /// The simulator's CA and certificates, made on first use.
    pub fn tls(&self) -> Result<&SimTls, String> {
        self.inner
            .tls
            .get_or_init(|| SimTls::generate(&self.config().mch_id))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Serves every endpoint over TLS on `listener` (the `/secapi/` endpoints need it), with
    /// the certificates of [`Simulator::tls`], until the task is dropped. Fails at once only
    /// when the certificates could not be made.
    pub async fn serve_tls(&self, listener: TcpListener) -> std::io::Result<()> {
        let tls = self.tls().map_err(std::io::Error::other)?;
        serve_tls(listener, tls, self.router()).await
    }
}

pub(super) async fn list(State(sim): State<Simulator>) -> Json<Vec<SimRefundView>> {
    Json(sim.refunds())
}

pub(super) async fn show(
    State(sim): State<Simulator>,
    Path(out_refund_no): Path<String>,
) -> Response {
    match sim.refund(&out_refund_no) {
        Some(view) => Json(view).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

pub(super) async fn settle(
    State(sim): State<Simulator>,
    Path(out_refund_no): Path<String>,
    Json(request): Json<SettleRequest>,
) -> Response {
    let result = match request.refund_status.as_deref().map(parse_refund_status) {
        Some(Err(e)) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        Some(Ok(result)) => Some(result),
        None => None,
    };
    if sim.settle_refund(&out_refund_no, result) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (StatusCode::CONFLICT, "no processing refund by that number").into_response()
    }
}

pub(super) async fn outcome(
    State(sim): State<Simulator>,
    Json(rule): Json<RefundOutcomeRule>,
) -> Response {
    match parse_refund_status(&rule.refund_status) {
        Ok(RefundResult::Processing) | Err(_) => (
            StatusCode::BAD_REQUEST,
            "refund_status must be SUCCESS, REFUNDCLOSE or CHANGE",
        )
            .into_response(),
        Ok(result) => {
            sim.force_refund_outcome(&rule.out_trade_no, result, rule.times);
            StatusCode::NO_CONTENT.into_response()
        }
    }
}

pub(super) async fn console(
    State(sim): State<Simulator>,
    Json(request): Json<ConsoleRefund>,
) -> Response {
    match sim.console_refund(request) {
        Ok(view) => Json(view).into_response(),
        Err(why) => (StatusCode::CONFLICT, why).into_response(),
    }
}

pub(super) async fn tls(State(sim): State<Simulator>) -> Response {
    match sim.tls() {
        Ok(tls) => Json::<TlsPems>(tls.pems().clone()).into_response(),
        Err(why) => (StatusCode::INTERNAL_SERVER_ERROR, why).into_response(),
    }
}
