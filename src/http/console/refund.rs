//! Refunding from an order's page, in two steps so that no single click sends money back: the
//! order page's form (amount in yuan, reason) posts to a review page that states what will
//! happen; its Confirm button posts the refund, under an idempotency key made for that review
//! (a double click or a resent form makes the refund once). Both posts carry the console's
//! form token (`csrf`). The refund itself is the admin API's (`domain::request_refund`): the
//! same checks, the same job, the same errors.

use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use minipay_jobs::OrderStatus;

use super::layout::{self, Section, yuan};
use super::{Failure, Operator};
use crate::domain::{self, RefundRequest};
use crate::http::error::ApiError;
use crate::http::{HttpState, csrf};
use crate::store::{OrderRow, RefundRow};
use crate::wechat::v2::sign::random_alphanumeric;

/// The order page's refund section: its refunds, and the form while something is left.
pub fn section(state: &HttpState, o: &OrderRow, refunds: &[RefundRow]) -> Markup {
    let left = o.total_fee - o.refund_reserved;
    let enabled = state.services.gateway.refunds_enabled();
    html! {
        @if !refunds.is_empty() {
            h2 { "Refunds" }
            table.refunds.cards {
                tr { th { "refund" } th { "amount" } th { "status" } th { "reason" } th { "requested" } }
                @for r in refunds {
                    tr {
                        td.id data-label="refund" { (r.out_refund_no) }
                        td data-label="amount" { (yuan(r.refund_fee)) }
                        td data-label="status" {
                            span class={ "status " (r.status.as_str()) } { (r.status.as_str()) }
                            @if let Some(code) = &r.error_code { " " code { (code) } }
                        }
                        td data-label="reason" { (r.reason) }
                        td data-label="requested" { (layout::time(r.created_at)) }
                    }
                }
            }
        }
        @if o.status == OrderStatus::Paid {
            h2 { "Refund" }
            @if !enabled {
                p.note.refund-off {
                    "Refunds are not configured: set MINIPAY_CLIENT_CERT and MINIPAY_CLIENT_KEY "
                    "(or MINIPAY_CLIENT_P12), the merchant's API certificate."
                }
            } @else if left < 1 {
                p.note { "Everything paid is refunded or being refunded." }
            } @else {
                form.refund method="post" action={ "/admin/orders/" (layout::urlencode(&o.out_trade_no)) "/refund/review" } {
                    input type="hidden" name=(csrf::FIELD) value=(csrf::form_token(state));
                    label { "amount (yuan, at most " (yuan(left)) ") "
                        input type="text" name="amount" inputmode="decimal" required value=(plain_yuan(left));
                    }
                    label { "reason (shown to the buyer) " input type="text" name="reason" maxlength="80"; }
                    button { "Review refund…" }
                }
            }
        }
    }
}

/// `12.30` for 1,230 fen: what the form's field holds.
fn plain_yuan(fen: i64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

/// Yuan as an operator types it (`12`, `12.3`, `12.30`, `0.01`) in fen, without floats.
pub fn parse_yuan(text: &str) -> Option<i64> {
    let text = text.trim().trim_start_matches('¥');
    let (whole, cents) = match text.split_once('.') {
        Some((_, "")) => return None,
        Some(parts) => parts,
        None => (text, ""),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (!cents.is_empty() && !digits(cents)) || cents.len() > 2 || whole.len() > 9
    {
        return None;
    }
    let cents = format!("{cents:0<2}");
    Some(whole.parse::<i64>().ok()? * 100 + cents.parse::<i64>().ok()?)
}

/// The order page's form.
#[derive(serde::Deserialize)]
pub struct ReviewForm {
    csrf: String,
    /// Missing reads as empty: refused as not an amount.
    #[serde(default)]
    amount: String,
    #[serde(default)]
    reason: String,
}

/// The review page's form: what was reviewed, and the key that makes it one refund.
#[derive(serde::Deserialize)]
pub struct ConfirmForm {
    csrf: String,
    refund_fee: i64,
    #[serde(default)]
    reason: String,
    key: String,
}

/// `POST /admin/orders/{out_trade_no}/refund/review`: what the refund will do, and Confirm.
pub async fn review(
    State(state): State<Arc<HttpState>>,
    _operator: Operator,
    Path(out_trade_no): Path<String>,
    headers: HeaderMap,
    form: Result<Form<ReviewForm>, FormRejection>,
) -> Response {
    let Some(form) = verified(&state, &headers, &out_trade_no, form, |f| &f.csrf) else {
        return ApiError::CsrfRejected.into_response();
    };
    let order = match state.services.store.order(&out_trade_no).await {
        Ok(Some(order)) => order,
        Ok(None) => return Failure(ApiError::OrderNotFound(out_trade_no)).into_response(),
        Err(e) => return Failure::from(e).into_response(),
    };
    let Some(refund_fee) = parse_yuan(&form.amount).filter(|fen| *fen >= 1) else {
        return Failure(ApiError::InvalidParameter {
            field: "amount".into(),
            reason: format!("{:?} is not an amount in yuan (like 12.30)", form.amount),
        })
        .into_response();
    };
    let action = format!("/admin/orders/{}/refunds", layout::urlencode(&out_trade_no));
    let back = format!("/admin/orders/{}", layout::urlencode(&out_trade_no));
    let body = html! {
        p.confirm {
            "Refund " b.amount { (yuan(refund_fee)) } " of order " span.id { (out_trade_no) }
            " (paid " (yuan(order.total_fee)) ") to the buyer?"
        }
        @if !form.reason.is_empty() { p { "Reason: " (form.reason) } }
        p.note { "WeChat sends the money back to the buyer's account; it cannot be taken back." }
        form.confirm method="post" action=(action) {
            input type="hidden" name=(csrf::FIELD) value=(form.csrf);
            input type="hidden" name="refund_fee" value=(refund_fee);
            input type="hidden" name="reason" value=(form.reason);
            input type="hidden" name="key" value={ "console" (random_alphanumeric(24)) };
            button { "Confirm refund" }
            " " a href=(back) { "Cancel" }
        }
    };
    layout::page("Confirm the refund", Section::Orders, body).into_response()
}

/// `POST /admin/orders/{out_trade_no}/refunds`: the refund, then back to the order's page.
pub async fn confirm(
    State(state): State<Arc<HttpState>>,
    _operator: Operator,
    Path(out_trade_no): Path<String>,
    headers: HeaderMap,
    form: Result<Form<ConfirmForm>, FormRejection>,
) -> Response {
    let Some(form) = verified(&state, &headers, &out_trade_no, form, |f| &f.csrf) else {
        return ApiError::CsrfRejected.into_response();
    };
    let request = RefundRequest {
        out_trade_no: out_trade_no.clone(),
        refund_fee: form.refund_fee,
        reason: form.reason,
        idempotency_key: Some(form.key),
    };
    match domain::request_refund(&state.services, request).await {
        Ok(requested) => {
            if requested.created {
                tracing::info!(out_trade_no, out_refund_no = %requested.refund.out_refund_no, refund_fee = requested.refund.refund_fee, "refund requested from the console");
            }
            let back = format!("/admin/orders/{}", layout::urlencode(&out_trade_no));
            (StatusCode::SEE_OTHER, [(LOCATION, back)]).into_response()
        }
        Err(e) => Failure(ApiError::from(e)).into_response(),
    }
}

/// The posted form, if it parses, carries the page's token and comes from the console's own
/// site; `None` (answered `403 CSRF_REJECTED`, nothing else happens) otherwise.
fn verified<T>(
    state: &HttpState,
    headers: &HeaderMap,
    out_trade_no: &str,
    form: Result<Form<T>, FormRejection>,
    token: impl Fn(&T) -> &str,
) -> Option<T> {
    match form {
        Ok(Form(form)) if csrf::form_ok(state, headers, Some(token(&form))) => Some(form),
        _ => {
            tracing::warn!(
                out_trade_no,
                "admin console: a refund form without a valid token or from another site was refused"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_as_typed_becomes_fen() {
        for (text, fen) in [
            ("12", 1200),
            ("12.3", 1230),
            ("12.30", 1230),
            ("0.01", 1),
            (" ¥0.88 ", 88),
        ] {
            assert_eq!(parse_yuan(text), Some(fen), "{text}");
        }
        for text in [
            "",
            ".5",
            "1.234",
            "-1",
            "1e3",
            "1,5",
            "abc",
            "1.",
            "9999999999",
        ] {
            assert_eq!(parse_yuan(text), None, "{text}");
        }
        assert_eq!(plain_yuan(1230), "12.30");
    }
}
