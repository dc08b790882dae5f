//! The `/sim/` control endpoints: pay an order (and deliver its notify on WeChat's re-send
//! schedule), inject faults, move the clock, and show what the simulator saw.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::Simulator;
use super::delivery::Delivery;
use super::state::{Faults, ForceRule, TradeState, trade_fields, transaction_id};
use crate::wechat::v2::sign::{SignType, nonce, sign};
use crate::wechat::v2::{params::beijing_time, xml};

/// WeChat's notify re-send gaps after the first try, in seconds (docs/wechat-pay-v2.md §6.4).
pub(super) const RESEND_GAPS_SECS: [u64; 15] = [
    15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600,
];

/// `POST /sim/pay`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayRequest {
    pub out_trade_no: String,
    /// POST the notify to the order's notify_url (default). Off: the payment happens but every
    /// notify is lost; the returned XML lets a test deliver it by hand.
    #[serde(default = "yes")]
    pub deliver: bool,
    /// Pay part of the amount with a coupon: `cash_fee` is then lower than `total_fee`.
    #[serde(default)]
    pub coupon_fee: Option<i64>,
}

fn yes() -> bool {
    true
}

/// What `POST /sim/pay` answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PayResult {
    pub transaction_id: String,
    /// The signed notify as WeChat sends it.
    pub notify_xml: String,
}

pub(super) async fn pay(State(sim): State<Simulator>, Json(request): Json<PayRequest>) -> Response {
    match pay_order(&sim, request) {
        Ok(result) => Json(result).into_response(),
        Err(why) => (StatusCode::CONFLICT, why).into_response(),
    }
}

pub(super) fn pay_order(sim: &Simulator, request: PayRequest) -> Result<PayResult, String> {
    let now = sim.clock().now();
    let (notify, notify_url, scale) = {
        let mut state = sim.state();
        state.next_transaction += 1;
        let serial = state.next_transaction;
        let scale = state.faults.notify_time_scale;
        let order = state
            .orders
            .get_mut(&request.out_trade_no)
            .ok_or_else(|| format!("no order {}", request.out_trade_no))?;
        match order.trade_state {
            TradeState::Notpay | TradeState::Userpaying => {}
            other => return Err(format!("order is {}", other.as_str())),
        }
        let total: i64 = order
            .business
            .get("total_fee")
            .and_then(|f| f.parse().ok())
            .unwrap_or(0);
        let coupon = request.coupon_fee.filter(|c| *c > 0 && *c < total);
        order.trade_state = TradeState::Success;
        order.transaction_id = Some(transaction_id(now, serial));
        order.time_end = Some(beijing_time(now));
        order.cash_fee = Some(total - coupon.unwrap_or(0));
        order.coupon_fee = coupon;

        let mut fields = trade_fields(&request.out_trade_no, order);
        for name in ["trade_state", "trade_state_desc", "device_info"] {
            fields.remove(name);
        }
        if fields.get("attach") == Some("") {
            fields.remove("attach");
        }
        fields.set("return_code", "SUCCESS");
        fields.set("result_code", "SUCCESS");
        fields.set("appid", &sim.config().appid);
        fields.set("mch_id", &sim.config().mch_id);
        fields.set("nonce_str", nonce());
        // MD5 notifies name their sign type; HMAC-SHA256 ones come without
        // (docs/wechat-pay-v2.md §1.2).
        if order.sign_type == SignType::Md5 {
            fields.set("sign_type", "MD5");
        }
        let signature = sign(fields.iter(), &sim.config().key, order.sign_type);
        fields.set("sign", signature);
        let url = order
            .business
            .get("notify_url")
            .cloned()
            .unwrap_or_default();
        (xml::to_xml(fields.iter()), url, scale)
    };
    let transaction_id = sim
        .order(&request.out_trade_no)
        .and_then(|o| o.transaction_id)
        .unwrap_or_default();
    if request.deliver {
        let sim = sim.clone();
        let (out_trade_no, body) = (request.out_trade_no.clone(), notify.clone());
        tokio::spawn(async move { deliver(sim, out_trade_no, notify_url, body, scale).await });
    }
    Ok(PayResult {
        transaction_id,
        notify_xml: notify,
    })
}

/// POSTs the notify until the merchant answers `return_code` SUCCESS or the schedule ends.
async fn deliver(sim: Simulator, out_trade_no: String, url: String, body: String, scale: f64) {
    let gaps = std::iter::once(0).chain(RESEND_GAPS_SECS);
    for gap in gaps {
        let wait = Duration::from_secs_f64(gap as f64 * scale.max(0.0));
        tokio::time::sleep(wait).await;
        let sent = sim
            .inner
            .http
            .post(&url)
            .header("content-type", "text/xml")
            .body(body.clone())
            .send()
            .await;
        let (http_status, reply) = match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                (Some(status), response.text().await.unwrap_or_default())
            }
            Err(e) => (None, e.to_string()),
        };
        let acknowledged = xml::parse(reply.as_bytes(), xml::DEFAULT_BODY_LIMIT)
            .map(|f| f.get("return_code") == Some("SUCCESS"))
            .unwrap_or(false);
        if let Some(order) = sim.state().orders.get_mut(&out_trade_no) {
            order.deliveries.push(Delivery {
                at_ms: chrono::Utc::now().timestamp_millis(),
                http_status,
                reply,
                acknowledged,
            });
        }
        if acknowledged {
            return;
        }
    }
}

pub(super) async fn set_faults(
    State(sim): State<Simulator>,
    Json(faults): Json<Faults>,
) -> StatusCode {
    sim.set_faults(faults);
    StatusCode::NO_CONTENT
}

pub(super) async fn get_faults(State(sim): State<Simulator>) -> Json<Faults> {
    Json(sim.state().faults.clone())
}

pub(super) async fn force(State(sim): State<Simulator>, Json(rule): Json<ForceRule>) -> StatusCode {
    sim.force(rule);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Advance {
    advance_secs: u64,
}

pub(super) async fn advance_clock(
    State(sim): State<Simulator>,
    Json(by): Json<Advance>,
) -> StatusCode {
    sim.clock().advance(Duration::from_secs(by.advance_secs));
    StatusCode::NO_CONTENT
}

pub(super) async fn order(
    State(sim): State<Simulator>,
    Path(out_trade_no): Path<String>,
) -> Response {
    match sim.order(&out_trade_no) {
        Some(view) => Json(view).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SetTradeState {
    trade_state: TradeState,
}

pub(super) async fn set_trade_state(
    State(sim): State<Simulator>,
    Path(out_trade_no): Path<String>,
    Json(set): Json<SetTradeState>,
) -> StatusCode {
    if sim.set_trade_state(&out_trade_no, set.trade_state) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

pub(super) async fn calls(State(sim): State<Simulator>) -> Response {
    Json(sim.calls()).into_response()
}

/// Counts for dashboards and soak tests.
#[derive(Debug, Serialize, Deserialize)]
pub struct Stats {
    pub orders: usize,
    pub paid: usize,
    /// Every call received (`/sim/calls` keeps only the most recent).
    pub calls: usize,
    pub close_violations: Vec<String>,
}

pub(super) async fn stats(State(sim): State<Simulator>) -> Json<Stats> {
    let state = sim.state();
    Json(Stats {
        orders: state.orders.len(),
        paid: state
            .orders
            .values()
            .filter(|o| o.trade_state == TradeState::Success)
            .count(),
        calls: state.calls_total,
        close_violations: state.close_violations.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::simulator::Forced;

    #[test]
    fn force_rules_read_as_documented() {
        for (kind, expected) in [
            ("http_500", Forced::Http500),
            ("hang", Forced::Hang),
            ("system_error", Forced::SystemError),
            ("bad_signature", Forced::BadSignature),
            ("paid_elsewhere", Forced::PaidElsewhere),
        ] {
            let rule: ForceRule = serde_json::from_str(&format!(
                r#"{{"out_trade_no":"*","kind":"{kind}","times":2}}"#
            ))
            .unwrap();
            assert_eq!(rule.outcome, expected);
            assert_eq!(rule.times, 2);
        }
        let rule: ForceRule = serde_json::from_str(
            r#"{"out_trade_no":"MP1","kind":"err_code","err_code":"NOAUTH","err_code_des":"x"}"#,
        )
        .unwrap();
        assert_eq!(rule.times, 1);
        assert!(matches!(rule.outcome, Forced::ErrCode { .. }));
    }
}
