//! Server-to-server and operator endpoints (admin token): orders priced by the merchant's own
//! backend, and an order's full history.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use minipay_jobs::OrderEvent;
use serde::Deserialize;
use utoipa::ToSchema;

use super::HttpState;
use super::auth::AdminAuth;
use super::error::{ApiError, AppJson, AppPath};
use super::payer_ip::payer_ip;
use super::views::{Created, ErrorBody, EventView, OrderHistory};
use crate::domain::{self, Draft};
use crate::store::{AttemptRow, EventRow, NotifyRow, OrderRow, RefundRow, RefusedGroup, Store};

/// An order priced by the merchant's backend.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminOrder {
    /// The payer's openid (for this mini-program).
    openid: String,
    /// WeChat's `body`: at most 127 UTF-8 bytes.
    description: String,
    /// Fen.
    #[schema(minimum = 1)]
    total_fee: i64,
    /// Returned unchanged by WeChat.
    #[serde(default)]
    attach: Option<String>,
    /// The merchant's own number; minipay picks one when absent.
    #[serde(default)]
    out_trade_no: Option<String>,
}

/// Create an order priced by the merchant's backend.
#[utoipa::path(post, path = "/v1/admin/orders", operation_id = "admin_create_order", tag = "admin", request_body = AdminOrder,
    responses(
        (status = 202, description = "The order and its prepay job are stored (or the same order under the same out_trade_no)", body = Created),
        (status = 409, description = "OUT_TRADE_NO_TAKEN: the number names a different order", body = ErrorBody),
        (status = 422, description = "INVALID_PARAMETER: a field WeChat would refuse (the message names it)", body = ErrorBody),
    ))]
pub async fn create_order(
    State(state): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    _admin: AdminAuth,
    headers: HeaderMap,
    AppJson(body): AppJson<AdminOrder>,
) -> Result<(StatusCode, AppJson<Created>), ApiError> {
    let services = &state.services;
    let draft = Draft {
        session_id: None,
        openid: body.openid.clone(),
        sku: None,
        quantity: None,
        total_fee: body.total_fee,
        description: body.description.clone(),
        attach: body.attach.unwrap_or_default(),
        payer_ip: payer_ip(peer, &headers, &services.config.http.trusted_proxies).to_string(),
        idempotency_key: None,
        // The merchant's backend is trusted with its own orders: no cap.
        unpaid_cap: None,
    };
    // The merchant's fields are checked before anything else, each named as it was sent.
    domain::check_draft(services, &draft, body.out_trade_no.as_deref()).map_err(|e| {
        ApiError::InvalidParameter {
            field: e.field.into(),
            reason: e.reason,
        }
    })?;
    let attach = draft.attach.clone();
    let order = domain::place_order(services, draft, body.out_trade_no.clone())
        .await?
        .order;
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

/// Everything stored about an order, as the admin view and the console show it.
pub(super) struct History {
    pub order: OrderRow,
    /// Oldest first, creation and readiness included.
    pub events: Vec<EventRow>,
    pub notifies: Vec<NotifyRow>,
    pub refused: Vec<RefusedGroup>,
    /// The merchant events about the order and their delivery attempts.
    pub merchant_events: (Vec<EventView>, Vec<AttemptRow>),
    pub refunds: Vec<RefundRow>,
}

/// Reads the order and its history, as of one moment.
pub(super) async fn history(store: &Store, out_trade_no: &str) -> Result<History, ApiError> {
    let stored = store
        .order_history(out_trade_no)
        .await?
        .ok_or_else(|| ApiError::OrderNotFound(out_trade_no.to_owned()))?;
    let order = stored.order;
    let mut events = stored.lines;
    // Creation and readiness are columns of the order, not event rows.
    events.insert(
        0,
        EventRow {
            at: order.created_at,
            kind: OrderEvent::Created,
            detail: format!("{} fen", order.total_fee),
        },
    );
    if let (Some(at), Some(prepay_id)) = (order.ready_at, &order.prepay_id) {
        events.push(EventRow {
            at,
            kind: OrderEvent::Ready,
            detail: format!("prepay_id {prepay_id}"),
        });
    }
    events.sort_by_key(|e| e.at);
    let merchant_events = stored
        .merchant_events
        .into_iter()
        .map(EventView::from)
        .collect();
    Ok(History {
        order,
        events,
        notifies: stored.notifies,
        refused: stored.refused,
        merchant_events: (merchant_events, stored.attempts),
        refunds: stored.refunds,
    })
}

/// The order with everything that happened to it: status changes, prepay attempts,
/// reconciliation decisions, alerts, every verified notify, and the refused ones naming it
/// (summarised).
#[utoipa::path(get, path = "/v1/admin/orders/{out_trade_no}", operation_id = "admin_get_order", tag = "admin",
    params(("out_trade_no" = String, Path, description = "The order's number")),
    responses(
        (status = 200, description = "The order with its history", body = OrderHistory),
        (status = 404, description = "ORDER_NOT_FOUND", body = ErrorBody),
    ))]
pub async fn order_history(
    State(state): State<Arc<HttpState>>,
    _admin: AdminAuth,
    AppPath(out_trade_no): AppPath<String>,
) -> Result<AppJson<OrderHistory>, ApiError> {
    let h = history(&state.services.store, &out_trade_no).await?;
    Ok(AppJson(OrderHistory::new(
        &h.order,
        h.events,
        h.notifies,
        h.refused,
        h.merchant_events,
        &h.refunds,
    )))
}
