//! Merchant events for the operator (admin token): list them by order and delivery state, and
//! send one again with the same id.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use minipay_jobs::DeliveryState;
use serde::Deserialize;
use utoipa::IntoParams;

use super::HttpState;
use super::auth::AdminAuth;
use super::error::{ApiError, AppJson, AppPath, AppQuery};
use super::views::{ErrorBody, EventView, Events, Redelivered};
use crate::store::{EventFilter, Redelivery};

/// Events per page unless `limit` says otherwise, and the most it may say.
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

#[derive(Deserialize, IntoParams)]
pub struct ListQuery {
    /// Only this order's events.
    out_trade_no: Option<String>,
    /// `pending`, `delivered` or `dead`.
    state: Option<String>,
    /// 1 to 1000 (default 100).
    limit: Option<i64>,
}

/// `GET /v1/admin/events?out_trade_no=...&state=pending|delivered|dead&limit=N`, newest first.
#[utoipa::path(get, path = "/v1/admin/events", operation_id = "list_events", tag = "admin", params(ListQuery),
    responses(
        (status = 200, description = "Merchant events, newest first", body = Events),
        (status = 422, description = "INVALID_PARAMETER: an unknown state, or limit out of range; INVALID_BODY: a mistyped query parameter", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<Arc<HttpState>>,
    _admin: AdminAuth,
    AppQuery(query): AppQuery<ListQuery>,
) -> Result<AppJson<Events>, ApiError> {
    let delivery_state = match query.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(name) => {
            Some(
                DeliveryState::parse(name).ok_or_else(|| ApiError::InvalidParameter {
                    field: "state".into(),
                    reason: format!("{name:?} is not one of pending, delivered, dead"),
                })?,
            )
        }
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::InvalidParameter {
            field: "limit".into(),
            reason: format!("must be an integer from 1 to {MAX_LIMIT}"),
        });
    }
    let filter = EventFilter {
        out_trade_no: query.out_trade_no.filter(|n| !n.is_empty()),
        state: delivery_state,
        limit,
    };
    let events = state.services.store.merchant_events(&filter).await?;
    Ok(AppJson(Events {
        events: events.into_iter().map(EventView::from).collect(),
    }))
}

/// `POST /v1/admin/events/{id}/redeliver` → `202`: sent again with the same id, on a fresh
/// schedule; a `dead` event is tried again.
#[utoipa::path(post, path = "/v1/admin/events/{id}/redeliver", operation_id = "redeliver_event", tag = "admin",
    params(("id" = String, Path, description = "The event's id")),
    responses(
        (status = 202, description = "Queued for delivery again, with the same id", body = Redelivered),
        (status = 404, description = "EVENT_NOT_FOUND", body = ErrorBody),
        (status = 409, description = "WEBHOOK_NOT_CONFIGURED: no MINIPAY_WEBHOOK_URL to send to", body = ErrorBody),
    ))]
pub async fn redeliver(
    State(state): State<Arc<HttpState>>,
    _admin: AdminAuth,
    AppPath(id): AppPath<String>,
) -> Result<(StatusCode, AppJson<Redelivered>), ApiError> {
    let services = &state.services;
    let outcome = services
        .store
        .redeliver(&id, &services.outbox(), services.clock.unix_ms())
        .await?;
    match outcome {
        Redelivery::Queued => {
            tracing::info!(event_id = ?id, "event redelivery queued");
            Ok((
                StatusCode::ACCEPTED,
                AppJson(Redelivered {
                    id,
                    state: DeliveryState::Pending.as_str(),
                }),
            ))
        }
        Redelivery::NotFound => Err(ApiError::EventNotFound(id)),
        Redelivery::NoEndpoint => Err(ApiError::WebhookNotConfigured),
    }
}
