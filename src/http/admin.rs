//! Server-to-server and operator endpoints (admin token): orders priced by the merchant's own
//! backend, and an order's full history.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::AdminAuth;
use super::orders::{Created, Draft, place, view};
use super::payer_ip::payer_ip;
use crate::app::Services;
use crate::error::{ApiError, AppJson};
use crate::store::EventRow;
use crate::wechat::params::{
    ParamError, check_openid, check_out_trade_no, check_text, check_total_fee,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminOrder {
    openid: String,
    description: String,
    total_fee: i64,
    #[serde(default)]
    attach: Option<String>,
    #[serde(default)]
    out_trade_no: Option<String>,
}

fn invalid(e: ParamError) -> ApiError {
    ApiError::InvalidParameter {
        field: e.field.into(),
        reason: e.reason,
    }
}

pub async fn create_order(
    State(services): State<Arc<Services>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    _admin: AdminAuth,
    headers: HeaderMap,
    AppJson(body): AppJson<AdminOrder>,
) -> Result<(StatusCode, AppJson<Created>), ApiError> {
    check_openid(&body.openid).map_err(invalid)?;
    check_text("description", &body.description, true).map_err(invalid)?;
    let attach = body.attach.unwrap_or_default();
    check_text("attach", &attach, false).map_err(invalid)?;
    check_total_fee(body.total_fee).map_err(invalid)?;
    if let Some(number) = &body.out_trade_no {
        check_out_trade_no(number).map_err(invalid)?;
    }
    let draft = Draft {
        session_id: None,
        openid: body.openid.clone(),
        sku: None,
        quantity: None,
        total_fee: body.total_fee,
        description: body.description.clone(),
        attach: attach.clone(),
        payer_ip: payer_ip(peer, &headers, &services.config.trusted_proxies).to_string(),
        idempotency_key: None,
    };
    let (order, _) = place(&services, draft, body.out_trade_no.clone()).await?;
    // The same number for a different order is a conflict, not a replay.
    if order.openid != body.openid
        || order.description != body.description
        || order.total_fee != body.total_fee
        || order.attach != attach
    {
        return Err(ApiError::OutTradeNoTaken(order.out_trade_no));
    }
    Ok((StatusCode::ACCEPTED, AppJson(Created::from(&order))))
}

/// The order with everything that happened to it: status changes, prepay attempts,
/// reconciliation decisions, alerts, every verified notify, and the refused ones naming it
/// (summarised).
pub async fn order_history(
    State(services): State<Arc<Services>>,
    _admin: AdminAuth,
    Path(out_trade_no): Path<String>,
) -> Result<AppJson<Value>, ApiError> {
    let order = services
        .store
        .order(&out_trade_no)
        .await?
        .ok_or_else(|| ApiError::OrderNotFound(out_trade_no.clone()))?;
    let mut events = services.store.events(&out_trade_no).await?;
    // Creation and readiness are columns of the order, not event rows.
    events.insert(
        0,
        EventRow {
            at: order.created_at,
            kind: "created".into(),
            detail: format!("{} fen", order.total_fee),
        },
    );
    if let (Some(at), Some(prepay_id)) = (order.ready_at, &order.prepay_id) {
        events.push(EventRow {
            at,
            kind: "ready".into(),
            detail: format!("prepay_id {prepay_id}"),
        });
    }
    events.sort_by_key(|e| e.at);
    let notifies = services.store.notifies_for(&out_trade_no).await?;
    let refused = services.store.refused_notifies_for(&out_trade_no).await?;
    let mut body = view(&order);
    body["openid"] = json!(order.openid);
    body["sku"] = json!(order.sku);
    body["quantity"] = json!(order.quantity);
    body["payer_ip"] = json!(order.payer_ip);
    body["prepay_id"] = json!(order.prepay_id);
    body["prepay_attempts"] = json!(order.prepay_attempts);
    body["reconcile_checks"] = json!(order.reconcile_checks);
    body["params"] = serde_json::from_str(&order.params).unwrap_or(Value::Null);
    body["created_at"] = json!(order.created_at);
    body["ready_at"] = json!(order.ready_at);
    body["paid_at"] = json!(order.paid_at);
    body["time_end"] = json!(order.time_end);
    body["cash_fee"] = json!(order.cash_fee);
    body["history"] = json!(events);
    body["notifies"] = json!(notifies);
    body["refused_notifies"] = json!(refused);
    Ok(AppJson(body))
}
