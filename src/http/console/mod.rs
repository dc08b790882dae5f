//! The operator console: server-rendered pages (maud; no script) behind the admin token, as
//! HTTP Basic credentials (any user name, the token as password) or a bearer token. One file
//! per page: the dashboard, order search, an order with its timeline (and refunding it), the jobs,
//! the bills. Every answer
//! is uncacheable, may not be framed, and loads nothing but the console's own stylesheet.

mod bills;
mod dashboard;
mod jobs;
mod layout;
mod order;
mod orders;
mod refund;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, WWW_AUTHENTICATE,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::map_response;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{Markup, html};

use super::HttpState;
use super::auth::AdminAuth;
use super::error::ApiError;

/// The console's pages, each behind the admin token.
pub fn routes() -> Router<Arc<HttpState>> {
    Router::new()
        .route("/admin", get(dashboard::page))
        .route("/admin/orders", get(orders::page))
        .route("/admin/orders/{out_trade_no}", get(order::page))
        .route("/admin/jobs", get(jobs::page))
        .route("/admin/bills", get(bills::list))
        .route("/admin/bills/{date}", get(bills::day))
        .route("/admin/jobs/{id}/retry", post(jobs::retry))
        .route(
            "/admin/orders/{out_trade_no}/refund/review",
            post(refund::review),
        )
        .route(
            "/admin/orders/{out_trade_no}/refunds",
            post(refund::confirm),
        )
        .route(layout::CSS_PATH, get(stylesheet))
        .layer(map_response(secure))
}

/// Only the console's own stylesheet and forms; no script, no frame, nothing from elsewhere.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// The headers of every console answer, errors and the login challenge included.
async fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (CACHE_CONTROL, "no-store"),
        (X_FRAME_OPTIONS, "DENY"),
        (CONTENT_SECURITY_POLICY, CSP),
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // `no-referrer` would make browsers send `Origin: null` with the console's own forms.
        (REFERRER_POLICY, "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn stylesheet(_operator: Operator) -> Response {
    ([(CONTENT_TYPE, "text/css; charset=utf-8")], layout::CSS).into_response()
}

/// The operator, signed in with the admin token; a browser without it is asked for it.
pub struct Operator;

impl FromRequestParts<Arc<HttpState>> for Operator {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<HttpState>,
    ) -> Result<Self, Response> {
        match AdminAuth::from_request_parts(parts, state).await {
            Ok(AdminAuth) => Ok(Operator),
            Err(e) => Err(challenge(e)),
        }
    }
}

/// Asks a browser for the admin credentials (HTTP Basic).
fn challenge(e: ApiError) -> Response {
    let mut response = e.into_response();
    if response.status() == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"minipay admin\""),
        );
    }
    response
}

/// A page that could not be shown, as a page: the status and what went wrong.
pub struct Failure(pub ApiError);

impl<E: Into<ApiError>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.into())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let (status, code) = self.0.status_and_code();
        if status.is_server_error() {
            tracing::warn!(error = %self.0, "console page failed");
        }
        let body = html! {
            p.alert { (self.0.to_string()) }
            p.note { "Status " (status.as_u16()) ", " (code) "." }
        };
        (
            status,
            layout::page("Not shown", layout::Section::Dashboard, body),
        )
            .into_response()
    }
}

/// What a page handler answers.
pub type Page = Result<Markup, Failure>;
