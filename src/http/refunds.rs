//! Refunds (admin token): request one for a paid order, show one, list an order's.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::HttpState;
use super::auth::AdminAuth;
use super::error::{ApiError, AppJson};
use super::orders::idempotency_key;
use super::views::{RefundCreated, RefundList, RefundView};
use crate::domain::{self, RefundError, RefundRequest};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRefundBody {
    refund_fee: i64,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /v1/admin/orders/{out_trade_no}/refunds`: `202` once the refund and its job are
/// stored; `200` with the same body for a replayed Idempotency-Key.
pub async fn create(
    State(state): State<Arc<HttpState>>,
    _admin: AdminAuth,
    Path(out_trade_no): Path<String>,
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
pub async fn show(
    State(state): State<Arc<HttpState>>,
    _admin: AdminAuth,
    Path(out_refund_no): Path<String>,
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
pub async fn list(
    State(state): State<Arc<HttpState>>,
    _admin: AdminAuth,
    Path(out_trade_no): Path<String>,
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
