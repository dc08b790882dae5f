//! Every non-success answer of the JSON endpoints: `{"error": {"code", "message"}}` with a
//! fitting status (docs/http-api.md). The variant picks status and code.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::header::{CONNECTION, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::views::{ErrorBody, ErrorDetail};
use crate::domain::PlaceError;
use crate::store::StoreError;

/// `Retry-After` of a 503 for storage that cannot take writes: the write-health probe
/// notices recovery within about a second, so a client retrying after this finds it.
const STORAGE_RETRY_AFTER_SECS: &str = "5";

/// Every non-success answer of the JSON endpoints.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "a valid session token is required (Authorization: Bearer <token> from POST /v1/sessions)"
    )]
    SessionRequired,
    #[error("the admin token is required (Authorization: Bearer <MINIPAY_ADMIN_TOKEN>)")]
    AdminRequired,
    #[error("admin endpoints are off: set MINIPAY_ADMIN_TOKEN to turn them on")]
    AdminOff,
    #[error("the form is stale or was sent from another site; reload /admin and try again")]
    CsrfRejected,
    #[error("no order {0:?}")]
    OrderNotFound(String),
    #[error("no bill run for {0}: POST /v1/admin/bills/{0}/reconcile to run it")]
    BillNotFound(String),
    #[error("no product with sku {0:?}")]
    UnknownSku(String),
    #[error("no event {0:?}")]
    EventNotFound(String),
    #[error("no webhook endpoint is configured (MINIPAY_WEBHOOK_URL): there is nowhere to send it")]
    WebhookNotConfigured,
    #[error("no such endpoint")]
    NoRoute,
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    #[error("WeChat refused the login code ({0}); call wx.login again")]
    WechatLoginFailed(String),
    #[error("WeChat is unavailable right now; try again shortly")]
    WechatUnavailable,
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("the body is too large")]
    PayloadTooLarge,
    #[error("invalid body: {0}")]
    InvalidBody(String),
    #[error("quantity must be an integer from 1 to {max}")]
    InvalidQuantity { max: i64 },
    #[error("the order total is larger than WeChat Pay accepts")]
    AmountTooLarge,
    #[error("{field}: {reason}")]
    InvalidParameter { field: String, reason: String },
    #[error("Idempotency-Key must be 1 to 128 visible ASCII characters")]
    InvalidIdempotencyKey,
    #[error("this Idempotency-Key was used for a different order")]
    IdempotencyKeyReused,
    #[error("out_trade_no {0:?} is already used by a different order")]
    OutTradeNoTaken(String),
    #[error("no refund {0:?}")]
    RefundNotFound(String),
    #[error("{0}")]
    OrderNotPaid(String),
    #[error("{0}")]
    RefundExceedsPaid(String),
    #[error("the order already has the 50 refunds WeChat allows")]
    RefundLimitReached,
    #[error("the order was paid over 365 days ago: WeChat no longer refunds it")]
    RefundWindowClosed,
    #[error(
        "refunds are not configured: set MINIPAY_CLIENT_CERT and MINIPAY_CLIENT_KEY (or MINIPAY_CLIENT_P12)"
    )]
    RefundsNotConfigured,
    #[error("this Idempotency-Key was used for a different refund of this order")]
    RefundKeyReused,
    #[error("wait must be an integer number of seconds from 0 to 30")]
    InvalidWait,
    #[error("the path is not valid: {0}")]
    InvalidPath(String),
    #[error("storage is temporarily unavailable; nothing was changed, try again shortly")]
    StorageUnavailable(#[source] StoreError),
    #[error("this instance is shutting down; retry (another instance will answer)")]
    ShuttingDown,
    #[error("too many requests; try again in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error(
        "this user already holds {limit} unpaid orders, the most allowed; pay one, or try again in {retry_after_secs} s"
    )]
    TooManyUnpaidOrders { limit: u32, retry_after_secs: u64 },
    #[error("the service is busy; retry in a moment")]
    Overloaded,
    #[error("something went wrong on our side")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::SessionRequired => (StatusCode::UNAUTHORIZED, "SESSION_REQUIRED"),
            ApiError::AdminRequired => (StatusCode::UNAUTHORIZED, "ADMIN_TOKEN_REQUIRED"),
            ApiError::AdminOff => (StatusCode::NOT_FOUND, "ADMIN_DISABLED"),
            ApiError::CsrfRejected => (StatusCode::FORBIDDEN, "CSRF_REJECTED"),
            ApiError::OrderNotFound(_) => (StatusCode::NOT_FOUND, "ORDER_NOT_FOUND"),
            ApiError::BillNotFound(_) => (StatusCode::NOT_FOUND, "BILL_NOT_FOUND"),
            ApiError::UnknownSku(_) => (StatusCode::NOT_FOUND, "UNKNOWN_SKU"),
            ApiError::EventNotFound(_) => (StatusCode::NOT_FOUND, "EVENT_NOT_FOUND"),
            ApiError::WebhookNotConfigured => (StatusCode::CONFLICT, "WEBHOOK_NOT_CONFIGURED"),
            ApiError::NoRoute => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"),
            ApiError::WechatLoginFailed(_) => (StatusCode::UNAUTHORIZED, "WECHAT_LOGIN_FAILED"),
            ApiError::WechatUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "WECHAT_UNAVAILABLE"),
            ApiError::MalformedJson(_) => (StatusCode::BAD_REQUEST, "MALFORMED_JSON"),
            ApiError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE")
            }
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"),
            ApiError::InvalidBody(_) => (StatusCode::UNPROCESSABLE_ENTITY, "INVALID_BODY"),
            ApiError::InvalidQuantity { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "INVALID_QUANTITY")
            }
            ApiError::AmountTooLarge => (StatusCode::UNPROCESSABLE_ENTITY, "AMOUNT_TOO_LARGE"),
            ApiError::InvalidParameter { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "INVALID_PARAMETER")
            }
            ApiError::InvalidIdempotencyKey => (StatusCode::BAD_REQUEST, "INVALID_IDEMPOTENCY_KEY"),
            ApiError::IdempotencyKeyReused => {
                (StatusCode::UNPROCESSABLE_ENTITY, "IDEMPOTENCY_KEY_REUSED")
            }
            ApiError::OutTradeNoTaken(_) => (StatusCode::CONFLICT, "OUT_TRADE_NO_TAKEN"),
            ApiError::InvalidWait => (StatusCode::BAD_REQUEST, "INVALID_WAIT"),
            ApiError::RefundNotFound(_) => (StatusCode::NOT_FOUND, "REFUND_NOT_FOUND"),
            ApiError::OrderNotPaid(_) => (StatusCode::CONFLICT, "ORDER_NOT_PAID"),
            ApiError::RefundExceedsPaid(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "REFUND_EXCEEDS_PAID")
            }
            ApiError::RefundLimitReached => (StatusCode::CONFLICT, "REFUND_LIMIT_REACHED"),
            ApiError::RefundWindowClosed => (StatusCode::CONFLICT, "REFUND_WINDOW_CLOSED"),
            ApiError::RefundsNotConfigured => (StatusCode::CONFLICT, "REFUNDS_NOT_CONFIGURED"),
            ApiError::RefundKeyReused => (StatusCode::CONFLICT, "IDEMPOTENCY_KEY_REUSED"),
            ApiError::InvalidPath(_) => (StatusCode::BAD_REQUEST, "INVALID_PATH"),
            ApiError::StorageUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "STORAGE_UNAVAILABLE")
            }
            ApiError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "SHUTTING_DOWN"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED"),
            ApiError::TooManyUnpaidOrders { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_UNPAID_ORDERS")
            }
            ApiError::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "OVERLOADED"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            ApiError::StorageUnavailable(e)
        } else {
            ApiError::Internal(anyhow::Error::new(e).context("database"))
        }
    }
}

impl From<PlaceError> for ApiError {
    fn from(e: PlaceError) -> Self {
        match e {
            PlaceError::Invalid(e) => ApiError::InvalidParameter {
                field: e.field.into(),
                reason: e.reason,
            },
            PlaceError::NumberTaken(number) => ApiError::OutTradeNoTaken(number),
            PlaceError::Store(e) => ApiError::from(e),
            PlaceError::TooManyUnpaid { limit, retry_after } => ApiError::TooManyUnpaidOrders {
                limit,
                retry_after_secs: retry_after.as_secs().max(1),
            },
            PlaceError::NoNumber => {
                ApiError::Internal(anyhow::anyhow!("could not allocate an out_trade_no"))
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            ApiError::Internal(cause) => tracing::error!(error = ?cause, "request failed"),
            ApiError::StorageUnavailable(cause) => {
                tracing::warn!(error = %cause, "storage unavailable")
            }
            _ => {}
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message: self.to_string(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        let retry_after = match self {
            ApiError::StorageUnavailable(_) => {
                Some(HeaderValue::from_static(STORAGE_RETRY_AFTER_SECS))
            }
            ApiError::RateLimited { retry_after_secs }
            | ApiError::TooManyUnpaidOrders {
                retry_after_secs, ..
            } => Some(HeaderValue::from(retry_after_secs.max(1))),
            ApiError::Overloaded => Some(HeaderValue::from_static("1")),
            _ => None,
        };
        if let Some(value) = retry_after {
            response.headers_mut().insert(RETRY_AFTER, value);
        }
        // The rest of the body is not read: the connection cannot be reused.
        if matches!(self, ApiError::PayloadTooLarge) {
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// Longest text from the request that an error message repeats.
const ECHO_MAX_CHARS: usize = 64;

impl ApiError {
    /// An unknown sku, repeated back at most [`ECHO_MAX_CHARS`] characters long.
    pub fn unknown_sku(sku: &str) -> ApiError {
        ApiError::UnknownSku(echo(sku))
    }
}

/// `text` cut to [`ECHO_MAX_CHARS`] characters (with `…` when cut).
fn echo(text: &str) -> String {
    match text.char_indices().nth(ECHO_MAX_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => ApiError::InvalidBody(e.body_text()),
            JsonRejection::JsonSyntaxError(e) => ApiError::MalformedJson(e.body_text()),
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
            JsonRejection::BytesRejection(_) => ApiError::PayloadTooLarge,
            other => ApiError::InvalidBody(other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::InvalidBody(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::InvalidPath(echo(&rejection.body_text()))
    }
}

/// `axum::extract::Path` whose rejections (a segment that is not UTF-8, say) answer in the
/// contract's error shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct AppPath<T>(pub T);

/// `axum::extract::Query` whose rejections answer in the contract's error shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct AppQuery<T>(pub T);

/// `axum::Json` whose rejections answer in the contract's error shape.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct AppJson<T>(pub T);

impl<T: serde::Serialize> IntoResponse for AppJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}
