//! Load shedding: at most `MINIPAY_MAX_IN_FLIGHT` requests are handled at once; one more gets
//! `503` `OVERLOADED` with `Retry-After` at once instead of queueing without bound. Health checks
//! are never shed, and long-polls (`GET /v1/orders/{id}?wait=`) are not counted: they cost
//! almost nothing while they wait, and each holds a connection, which the connection cap bounds.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;

/// The shared budget of requests in flight.
#[derive(Clone)]
pub struct InFlight {
    permits: Arc<Semaphore>,
}

impl InFlight {
    pub fn new(max: usize) -> InFlight {
        InFlight {
            permits: Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS))),
        }
    }
}

/// Counts the request against the budget (the permit is held until its answer is written),
/// lets it through uncounted when it is exempt, or refuses it at once ([`Shed`]).
pub fn admit(budget: &InFlight, request: &Request) -> Result<Option<OwnedSemaphorePermit>, Shed> {
    if exempt(request) {
        return Ok(None);
    }
    let Ok(permit) = budget.permits.clone().try_acquire_owned() else {
        metrics::counter!("minipay_http_shed_total").increment(1);
        return Err(Shed);
    };
    Ok(Some(permit))
}

/// A request refused because the budget is spent: `503` `OVERLOADED` with `Retry-After`.
pub struct Shed;

impl IntoResponse for Shed {
    fn into_response(self) -> Response {
        let mut response = ApiError::Overloaded.into_response();
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        response
    }
}

/// Health checks, and order reads that long-poll.
fn exempt(request: &Request) -> bool {
    let path = request.uri().path();
    if path == "/healthz" || path == "/readyz" {
        return true;
    }
    request.method() == Method::GET
        && path.starts_with("/v1/orders/")
        && request
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|pair| pair.starts_with("wait=")))
}
