//! Refunds (admin token): request one for a paid order, show one, list an order's.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use utoipa::ToSchema;

use super::HttpState;
use super::auth::AdminAuth;
use super::error::{ApiError, AppJson, AppPath};
use super::orders::idempotency_key;
use super::views::{ErrorBody, RefundCreated, RefundList, RefundView};
use crate::domain::{self, RefundError, RefundRequest};

/// A refund of part or all of a paid order.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRefundBody {
    /// Fen, at most what is left of the payment.
    refund_fee: i64,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /v1/admin/orders/{out_trade_no}/refunds`: `202` once the refund and its job are
/// stored; `200` with the same body for a replayed Idempotency-Key.
#[utoipa::path(post, path = "/v1/admin/orders/{out_trade_no}/refunds", operation_id = "create_refund", tag = "admin",
    params(("out_trade_no" = String, Path, description = "The paid order"),
        ("Idempotency-Key" = Option<String>, Header, description = "The same key answers the same refund again")),
    request_body = NewRefundBody,
    responses(
        (status = 200, description = "A replayed Idempotency-Key: the refund it made", body = RefundCreated),
        (status = 202, description = "The refund and its job are stored", body = RefundCreated),
        (status = 400, description = "INVALID_IDEMPOTENCY_KEY", body = ErrorBody),
        (status = 404, description = "ORDER_NOT_FOUND", body = ErrorBody),
        (status = 409, description = "ORDER_NOT_PAID; REFUND_LIMIT_REACHED; REFUND_WINDOW_CLOSED; REFUNDS_NOT_CONFIGURED; IDEMPOTENCY_KEY_REUSED", body = ErrorBody),
        (status = 422, description = "REFUND_EXCEEDS_PAID; INVALID_PARAMETER: a field WeChat would refuse", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<Arc<HttpState>>,
    _admin: AdminAuth,
    AppPath(out_trade_no): AppPath<String>,
    headers: HeaderMap,
    AppJson(body): AppJson<NewRefundBody>,
) -> Result<(StatusCode, AppJson<RefundCreated>), ApiError> {
    let request = RefundRequest {
        out_trade_no,
        refund_fee: body.refund_fee,
        reason: body.reason.unwrap_or_default(),
        idempotency_key: idempotency_key(&headers)?,
    };
    let requested = domain::request_refund(&state.services, request).await?;
    let status = if requested.created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, AppJson(RefundCreated::from(&requested.refund))))
}

/// `GET /v1/admin/refunds/{out_refund_no}`.
#[utoipa::path(get, path = "/v1/admin/refunds/{out_refund_no}", operation_id = "show_refund", tag = "admin",
    params(("out_refund_no" = String, Path, description = "The refund")),
    responses(
        (status = 200, description = "The refund", body = RefundView),
        (status = 404, description = "REFUND_NOT_FOUND", body = ErrorBody),
    ))]
pub async fn show(
    State(state): State<Arc<HttpState>>,
    _admin: AdminAuth,
    AppPath(out_refund_no): AppPath<String>,
) -> Result<AppJson<RefundView>, ApiError> {
    let refund = state
        .services
        .store
        .refund(&out_refund_no)
        .await?
        .ok_or(ApiError::RefundNotFound(out_refund_no))?;
    Ok(AppJson(RefundView::from(&refund)))
}

/// `GET /v1/admin/orders/{out_trade_no}/refunds`, oldest first.
#[utoipa::path(get, path = "/v1/admin/orders/{out_trade_no}/refunds", operation_id = "list_order_refunds", tag = "admin",
    params(("out_trade_no" = String, Path, description = "The order")),
    responses(
        (status = 200, description = "The order's refunds, oldest first", body = RefundList),
        (status = 404, description = "ORDER_NOT_FOUND", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<Arc<HttpState>>,
    _admin: AdminAuth,
    AppPath(out_trade_no): AppPath<String>,
) -> Result<AppJson<RefundList>, ApiError> {
    let store = &state.services.store;
    if store.order(&out_trade_no).await?.is_none() {
        return Err(ApiError::OrderNotFound(out_trade_no));
    }
    let refunds = store.refunds_of(&out_trade_no).await?;
    Ok(AppJson(RefundList {
        refunds: refunds.iter().map(RefundView::from).collect(),
    }))
}

impl From<RefundError> for ApiError {
    fn from(e: RefundError) -> Self {
        match e {
            RefundError::NotConfigured => ApiError::RefundsNotConfigured,
            RefundError::Invalid(e) => ApiError::InvalidParameter {
                field: e.field.into(),
                reason: e.reason,
            },
            RefundError::OrderNotFound(number) => ApiError::OrderNotFound(number),
            RefundError::Store(e) => ApiError::from(e),
            other @ RefundError::NotPaid(_) => ApiError::OrderNotPaid(other.to_string()),
            other @ RefundError::Exceeds { .. } => ApiError::RefundExceedsPaid(other.to_string()),
            RefundError::LimitReached => ApiError::RefundLimitReached,
            RefundError::WindowClosed => ApiError::RefundWindowClosed,
            RefundError::KeyReused => ApiError::RefundKeyReused,
        }
    }
}
