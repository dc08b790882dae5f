//! `POST /v1/orders` (priced from the catalog, placed with its prepay job) and
//! `GET /v1/orders/{out_trade_no}` (with `?wait=` long-poll).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use minipay_jobs::OrderStatus;
use serde::Deserialize;
use utoipa::ToSchema;

use super::HttpState;
use super::auth::{Caller, SessionAuth};
use super::error::{ApiError, AppJson, AppPath};
use super::payer_ip::payer_ip;
use super::views::{Created, ErrorBody, OrderView};
use crate::domain::{self, Draft};
use crate::store::OrderRow;

/// Most units of one product in one order.
pub const MAX_QUANTITY: i64 = 9_999;

/// Longest `?wait=` in seconds (docs/http-api.md).
const MAX_WAIT_SECS: u64 = 30;

/// An order of a catalog product; the price comes from the catalog.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrder {
    /// A sku of the catalog.
    sku: String,
    #[schema(minimum = 1, maximum = 9999)]
    quantity: i64,
}

/// Create an order; its prepay with WeChat happens in the background.
#[utoipa::path(post, path = "/v1/orders", operation_id = "create_order", tag = "mini-program", request_body = CreateOrder,
    security(("session" = [])),
    params(("Idempotency-Key" = Option<String>, Header,
        description = "1 to 128 visible ASCII characters: the same key from the same user returns the same order")),
    responses(
        (status = 202, description = "The order and its prepay job are stored", body = Created),
        (status = 400, description = "INVALID_IDEMPOTENCY_KEY", body = ErrorBody),
        (status = 401, description = "SESSION_REQUIRED: no, unknown or expired session", body = ErrorBody),
        (status = 404, description = "UNKNOWN_SKU", body = ErrorBody),
        (status = 422, description = "INVALID_QUANTITY (1..9999); AMOUNT_TOO_LARGE; IDEMPOTENCY_KEY_REUSED: the key named a different order", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED; TOO_MANY_UNPAID_ORDERS", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    SessionAuth(session): SessionAuth,
    headers: HeaderMap,
    AppJson(body): AppJson<CreateOrder>,
) -> Result<(StatusCode, AppJson<Created>), ApiError> {
    let services = &state.services;
    if !(1..=MAX_QUANTITY).contains(&body.quantity) {
        return Err(ApiError::InvalidQuantity { max: MAX_QUANTITY });
    }
    let product = services
        .config
        .orders
        .catalog
        .get(&body.sku)
        .ok_or_else(|| ApiError::unknown_sku(&body.sku))?;
    let total_fee = product
        .price
        .checked_mul(body.quantity)
        .filter(|total| services.gateway.check_total_fee(*total).is_ok())
        .ok_or(ApiError::AmountTooLarge)?;
    let idempotency_key = idempotency_key(&headers)?;
    if let Err(limited) = state.limits.order(&session.openid) {
        // A replay (the same Idempotency-Key) creates nothing, so it is answered anyway.
        let replay = match &idempotency_key {
            Some(key) => {
                Box::pin(
                    services
                        .store
                        .order_by_idempotency_key(&session.openid, key),
                )
                .await?
            }
            None => None,
        };
        let Some(order) = replay else {
            return Err(limited.answer());
        };
        return replayed(&order, &body);
    }
    let ip = payer_ip(peer, &headers, &services.config.http.trusted_proxies);
    let draft = Draft {
        session_id: Some(session.id),
        openid: session.openid,
        sku: Some(product.sku.clone()),
        quantity: Some(body.quantity),
        total_fee,
        description: product.description.clone(),
        attach: String::new(),
        payer_ip: ip.to_string(),
        idempotency_key,
        unpaid_cap: state.limits.unpaid_per_user,
    };
    // Boxed, like every store call a request waits on here: inline, the placement's large
    // future (both backends' statements) would be part of each request's future from its start.
    let order = Box::pin(domain::place_order(services, draft, None))
        .await?
        .order;
    replayed(&order, &body)
}

/// The answer for `order`, placed now or earlier under the same Idempotency-Key (which must
/// then have been for the same product and quantity).
fn replayed(
    order: &OrderRow,
    body: &CreateOrder,
) -> Result<(StatusCode, AppJson<Created>), ApiError> {
    if order.sku.as_deref() != Some(body.sku.as_str()) || order.quantity != Some(body.quantity) {
        return Err(ApiError::IdempotencyKeyReused);
    }
    Ok((StatusCode::ACCEPTED, AppJson(Created::from(order))))
}

pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::InvalidIdempotencyKey)?;
    if key.is_empty() || key.len() > 128 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::InvalidIdempotencyKey);
    }
    Ok(Some(key.to_owned()))
}

#[derive(Deserialize)]
pub struct Wait {
    wait: Option<String>,
}

/// One of the caller's orders; `?wait=` long-polls while it is `pending`.
#[utoipa::path(get, path = "/v1/orders/{out_trade_no}", operation_id = "get_order", tag = "mini-program",
    security(("session" = []), ("admin_token" = [])),
    params(
        ("out_trade_no" = String, Path, description = "The order's number"),
        ("wait" = Option<u32>, Query, minimum = 0, maximum = 30,
            description = "Seconds to hold the request while the order is pending"),
    ),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 400, description = "INVALID_WAIT: not an integer from 0 to 30", body = ErrorBody),
        (status = 401, description = "SESSION_REQUIRED", body = ErrorBody),
        (status = 404, description = "ORDER_NOT_FOUND: no such order, or another user's", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: too many reads", body = ErrorBody),
    ))]
pub async fn show(
    State(state): State<Arc<HttpState>>,
    caller: Caller,
    AppPath(out_trade_no): AppPath<String>,
    query: Result<Query<Wait>, QueryRejection>,
) -> Result<([(HeaderName, HeaderValue); 1], AppJson<OrderView>), ApiError> {
    // The view may carry pay_params: no cache keeps it.
    let no_store = [(CACHE_CONTROL, HeaderValue::from_static("no-store"))];
    let view = show_view(&state, caller, out_trade_no, query).await?;
    Ok((no_store, AppJson(view)))
}

async fn show_view(
    state: &HttpState,
    caller: Caller,
    out_trade_no: String,
    query: Result<Query<Wait>, QueryRejection>,
) -> Result<OrderView, ApiError> {
    let services = &state.services;
    // `?wait=1&wait=2` and the like.
    let Query(query) = query.map_err(|_| ApiError::InvalidWait)?;
    if let Caller::Session(session) = &caller {
        // One read, however long it waits.
        state.limits.read(&session.openid)?;
    }
    let wait = match query.wait.as_deref() {
        None | Some("") => 0,
        Some(text) => text
            .parse::<u64>()
            .ok()
            .filter(|s| *s <= MAX_WAIT_SECS)
            .ok_or(ApiError::InvalidWait)?,
    };
    let visible = |order: Option<OrderRow>| -> Result<OrderRow, ApiError> {
        match (order, &caller) {
            (Some(order), Caller::Admin) => Ok(order),
            // An order belongs to the user, so it survives a new wx.login.
            (Some(order), Caller::Session(s)) if order.openid == s.openid => Ok(order),
            // Another user's order looks exactly like a missing one.
            _ => Err(ApiError::OrderNotFound(out_trade_no.clone())),
        }
    };
    // A turn first, then the read, boxed: the read's future is large, and inline it would sit
    // in every parked long-poll.
    let read = || async {
        let _turn = state.order_reads.acquire().await;
        Box::pin(services.store.order(&out_trade_no)).await
    };
    if wait == 0 {
        let order = visible(read().await?)?;
        return Ok(OrderView::from(&order));
    }
    // Long-poll: register for the wake-up before each read, so that a change between the read
    // and the wait is not missed. Re-read on a timer as well: a wake-up from another process can
    // be lost while the listener reconnects, and SQLite has no cross-process signal.
    const RECHECK: Duration = Duration::from_millis(1000);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    let watch = services.waiters.watch(&out_trade_no);
    loop {
        let notified = watch.notify().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let order = visible(read().await?)?;
        let now = tokio::time::Instant::now();
        if order.status != OrderStatus::Pending
            || now >= deadline
            || services.stopping.is_cancelled()
        {
            return Ok(OrderView::from(&order));
        }
        // Not kept while waiting: a thousand parked long-polls would hold a thousand rows.
        drop(order);
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep(RECHECK.min(deadline - now)) => {}
            // Shutting down: answer with the order as it stands now.
            () = services.stopping.cancelled() => {}
        }
    }
}
