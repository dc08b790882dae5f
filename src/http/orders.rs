//! `POST /v1/orders` (priced from the catalog, stored with its prepay job) and
//! `GET /v1/orders/{out_trade_no}` (with `?wait=` long-poll).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::auth::{Caller, SessionAuth};
use super::payer_ip::payer_ip;
use crate::app::Services;
use crate::error::{ApiError, AppJson};
use crate::store::{CreateOutcome, NewOrder, OrderRow};
use crate::wechat::UnifiedOrderParams;
use crate::wechat::params::beijing_time;
use crate::wechat::sign::random_alphanumeric;
use minipay_jobs::OrderStatus;

/// Most units of one product in one order.
pub const MAX_QUANTITY: i64 = 9_999;

/// Longest `?wait=` in seconds (docs/http-api.md).
const MAX_WAIT_SECS: u64 = 30;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrder {
    sku: String,
    quantity: i64,
}

/// What order creation answers (docs/http-api.md).
#[derive(Serialize)]
pub struct Created {
    pub out_trade_no: String,
    pub status: String,
    pub total_fee: i64,
}

impl From<&OrderRow> for Created {
    fn from(order: &OrderRow) -> Self {
        Created {
            out_trade_no: order.out_trade_no.clone(),
            status: order.status.clone(),
            total_fee: order.total_fee,
        }
    }
}

pub async fn create(
    State(services): State<Arc<Services>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    SessionAuth(session): SessionAuth,
    headers: HeaderMap,
    AppJson(body): AppJson<CreateOrder>,
) -> Result<(StatusCode, AppJson<Created>), ApiError> {
    if !(1..=MAX_QUANTITY).contains(&body.quantity) {
        return Err(ApiError::InvalidQuantity { max: MAX_QUANTITY });
    }
    let product = services
        .config
        .catalog
        .get(&body.sku)
        .ok_or_else(|| ApiError::UnknownSku(body.sku.clone()))?;
    let total_fee = product
        .price
        .checked_mul(body.quantity)
        .filter(|total| crate::wechat::params::check_total_fee(*total).is_ok())
        .ok_or(ApiError::AmountTooLarge)?;
    let idempotency_key = idempotency_key(&headers)?;
    let ip = payer_ip(peer, &headers, &services.config.trusted_proxies);
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
    };
    let (order, _) = place(&services, draft, None).await?;
    if order.sku.as_deref() != Some(body.sku.as_str()) || order.quantity != Some(body.quantity) {
        return Err(ApiError::IdempotencyKeyReused);
    }
    Ok((StatusCode::ACCEPTED, AppJson(Created::from(&order))))
}

/// An order about to be placed, before its number and frozen parameters exist.
pub struct Draft {
    pub session_id: Option<i64>,
    pub openid: String,
    pub sku: Option<String>,
    pub quantity: Option<i64>,
    pub total_fee: i64,
    pub description: String,
    pub attach: String,
    pub payer_ip: String,
    pub idempotency_key: Option<String>,
}

/// Freezes the unifiedorder parameters and stores the order with its prepay job. With a
/// merchant-chosen `out_trade_no`, an existing order under it is returned when it is the same
/// order. Returns the order and whether it was created now.
pub async fn place(
    services: &Services,
    draft: Draft,
    out_trade_no: Option<String>,
) -> Result<(OrderRow, bool), ApiError> {
    let merchant = services.pay.merchant();
    for _ in 0..3 {
        let now = services.clock.now();
        let number = out_trade_no
            .clone()
            .unwrap_or_else(|| new_out_trade_no(now));
        let expires =
            now + chrono::Duration::from_std(services.config.order_ttl).unwrap_or_default();
        let params = UnifiedOrderParams {
            appid: merchant.appid.clone(),
            mch_id: merchant.mch_id.clone(),
            sign_type: merchant.sign_type,
            body: draft.description.clone(),
            attach: draft.attach.clone(),
            out_trade_no: number.clone(),
            total_fee: draft.total_fee,
            spbill_create_ip: draft.payer_ip.clone(),
            notify_url: services.notify_url.clone(),
            trade_type: "JSAPI".into(),
            openid: draft.openid.clone(),
            time_start: beijing_time(now),
            time_expire: beijing_time(expires),
        };
        params
            .validate(now)
            .map_err(|e| ApiError::InvalidParameter {
                field: e.field.into(),
                reason: e.reason,
            })?;
        let new = NewOrder {
            out_trade_no: number.clone(),
            session_id: draft.session_id,
            openid: draft.openid.clone(),
            sku: draft.sku.clone(),
            quantity: draft.quantity,
            total_fee: draft.total_fee,
            description: draft.description.clone(),
            attach: draft.attach.clone(),
            payer_ip: draft.payer_ip.clone(),
            idempotency_key: draft.idempotency_key.clone(),
            params: serde_json::to_string(&params).map_err(anyhow::Error::from)?,
            created_at: now.timestamp_millis(),
            expires_at: expires.timestamp_millis(),
        };
        match services.store.create_order(&new).await? {
            CreateOutcome::Created(order) => {
                tracing::info!(out_trade_no = %order.out_trade_no, total_fee = order.total_fee, "order created");
                metrics::counter!("minipay_orders_created_total").increment(1);
                return Ok((order, true));
            }
            CreateOutcome::Existing(order) => return Ok((order, false)),
            CreateOutcome::NumberTaken if out_trade_no.is_some() => {
                return Err(ApiError::OutTradeNoTaken(number));
            }
            // A generated number collided (30 random-ish characters: practically never).
            CreateOutcome::NumberTaken => continue,
        }
    }
    Err(ApiError::Internal(anyhow::anyhow!(
        "could not allocate an out_trade_no"
    )))
}

/// `MP` + Beijing `yyMMddHHmmss` + 16 random characters: 30 of WeChat's allowed 32, sortable
/// by time, unguessable.
fn new_out_trade_no(now: chrono::DateTime<chrono::Utc>) -> String {
    format!("MP{}{}", &beijing_time(now)[2..], random_alphanumeric(16))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
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

pub async fn show(
    State(services): State<Arc<Services>>,
    caller: Caller,
    Path(out_trade_no): Path<String>,
    Query(query): Query<Wait>,
) -> Result<AppJson<Value>, ApiError> {
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
    if wait == 0 {
        return Ok(AppJson(view(&visible(
            services.store.order(&out_trade_no).await?,
        )?)));
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
        let order = visible(services.store.order(&out_trade_no).await?)?;
        let now = tokio::time::Instant::now();
        if order.status() != OrderStatus::Pending || now >= deadline {
            return Ok(AppJson(view(&order)));
        }
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep(RECHECK.min(deadline - now)) => {}
            () = services.stopping.cancelled() => return Ok(AppJson(view(&order))),
        }
    }
}

/// The order as the mini-program sees it (docs/http-api.md).
pub fn view(order: &OrderRow) -> Value {
    let mut body = serde_json::json!({
        "out_trade_no": order.out_trade_no,
        "status": order.status,
        "total_fee": order.total_fee,
        "description": order.description,
        "expires_at": order.expires_at / 1000,
    });
    match order.status() {
        OrderStatus::Ready => {
            if let Some(params) = order
                .pay_params
                .as_deref()
                .and_then(|p| serde_json::from_str::<Value>(p).ok())
            {
                body["pay_params"] = params;
            }
        }
        OrderStatus::Paid => {
            body["transaction_id"] = Value::from(order.transaction_id.clone().unwrap_or_default());
        }
        OrderStatus::Failed => {
            body["error"] = serde_json::json!({
                "code": order.error_code.clone().unwrap_or_default(),
                "message": order.error_message.clone().unwrap_or_default(),
            });
        }
        OrderStatus::Pending | OrderStatus::Closed => {}
    }
    body
}
