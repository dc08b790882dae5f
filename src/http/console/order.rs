//! `/admin/orders/{out_trade_no}`: the order and its whole timeline, the same history the
//! admin API answers (`GET /v1/admin/orders/{out_trade_no}`): status changes, each prepay call
//! and WeChat's answer, reconciliation decisions (order queries), alerts, verified notifies
//! with their verdicts and the refused ones naming the order; its refunds (and the form that
//! makes one) and the merchant events about it.

use std::sync::Arc;

use axum::extract::{Path, State};
use maud::{Markup, html};
use minipay_jobs::OrderStatus;

use super::layout::{self, Section, status, yuan};
use super::refund;
use super::{Operator, Page};
use crate::http::HttpState;
use crate::http::admin::{History, history};
use crate::store::OrderRow;

pub async fn page(
    State(state): State<Arc<HttpState>>,
    _operator: Operator,
    Path(out_trade_no): Path<String>,
) -> Page {
    let h = history(&state.services.store, &out_trade_no).await?;
    let body = html! {
        (summary(&h.order))
        (refund::section(&state, &h.order, &h.refunds))
        h2 { "Timeline" }
        (timeline(&h))
        (merchant_events(&h))
    };
    Ok(layout::page(
        &format!("Order {out_trade_no}"),
        Section::Orders,
        body,
    ))
}

fn summary(o: &OrderRow) -> Markup {
    let optional = |value: &Option<String>| value.clone().unwrap_or_else(|| "—".to_owned());
    html! {
        dl.order {
            dt { "status" } dd.order-status { (status(o.status)) }
            dt { "amount" } dd.amount { (yuan(o.total_fee)) " (" (o.total_fee) " fen)" }
            dt { "description" } dd { (o.description) }
            @if let (Some(sku), Some(quantity)) = (&o.sku, o.quantity) {
                dt { "sku" } dd { (sku) " × " (quantity) }
            }
            dt { "openid" } dd.id { (o.openid) }
            dt { "transaction_id" } dd.id.transaction { (optional(&o.transaction_id)) }
            dt { "prepay_id" } dd.id { (optional(&o.prepay_id)) }
            @if let Some(cash_fee) = o.cash_fee {
                dt { "paid in cash" } dd { (yuan(cash_fee)) }
            }
            @if o.status == OrderStatus::Failed {
                dt { "error" } dd.alert {
                    (optional(&o.error_code)) ": " (optional(&o.error_message))
                }
            }
            dt { "created" } dd { (layout::time(o.created_at)) }
            dt { "pay before" } dd { (layout::time(o.expires_at)) }
            @if let Some(at) = o.paid_at { dt { "paid" } dd { (layout::time(at)) } }
            dt { "prepay calls" } dd { (o.prepay_attempts) }
            dt { "order queries" } dd { (o.reconcile_checks) }
            dt { "payer IP" } dd { (o.payer_ip) }
        }
    }
}

/// The merchant events about the order and how their deliveries went.
fn merchant_events(h: &History) -> Markup {
    let (events, attempts) = &h.merchant_events;
    if events.is_empty() {
        return html! {};
    }
    html! {
        h2 { "Merchant events" }
        table.merchant-events.cards {
            tr { th { "event" } th { "type" } th { "state" } th { "attempts" } th { "last answer" } }
            @for e in events {
                @let last = attempts.iter().filter(|a| a.event_id == e.id).max_by_key(|a| a.at);
                tr {
                    td.id data-label="event" { (e.id) }
                    td data-label="type" { (e.kind) }
                    td data-label="state" { (e.state) }
                    td data-label="attempts" { (e.attempts) }
                    td data-label="last answer" {
                        @if let Some(a) = last {
                            @if let Some(status) = a.status { "HTTP " (status) } @else { (a.error.as_deref().unwrap_or("")) }
                            " at " (layout::time(a.at))
                        } @else { "not sent" }
                    }
                }
            }
        }
    }
}

/// One line of the timeline.
struct Line {
    at: i64,
    what: String,
    detail: Markup,
}

fn lines(h: &History) -> Vec<Line> {
    let mut lines: Vec<Line> = h
        .events
        .iter()
        .map(|e| Line {
            at: e.at,
            what: e.kind.as_str().replace('_', " "),
            detail: html! { (e.detail) },
        })
        .collect();
    lines.extend(h.notifies.iter().map(|n| Line {
        at: n.received_at,
        what: "notify".to_owned(),
        detail: html! {
            "verdict " b { (n.verdict.as_str()) }
            @if let Some(t) = &n.transaction_id { ", transaction_id " span.id { (t) } }
            @if let Some(fee) = n.total_fee { ", " (yuan(fee)) }
            @if let Some(at) = n.applied_at { ", applied " (layout::time(at)) }
            @if !n.detail.is_empty() { "; " (n.detail) }
        },
    }));
    lines.extend(h.refused.iter().map(|r| Line {
        at: r.first_at,
        what: "refused notify".to_owned(),
        detail: html! {
            b { (r.verdict.as_str()) } " × " (r.count) " from " (r.peer)
            @if r.last_at != r.first_at { " (last " (layout::time(r.last_at)) ")" }
            @if !r.detail.is_empty() { "; " (r.detail) }
        },
    }));
    // Stable: lines of the same moment keep the order they were recorded in.
    lines.sort_by_key(|l| l.at);
    lines
}

fn timeline(h: &History) -> Markup {
    html! {
        table.timeline.cards {
            tr { th { "when" } th { "what" } th { "detail" } }
            @for line in lines(h) {
                tr class=(line.what.replace(' ', "-")) {
                    td data-label="when" { (layout::time(line.at)) }
                    td data-label="what" { (line.what) }
                    td data-label="detail" { (line.detail) }
                }
            }
        }
    }
}
