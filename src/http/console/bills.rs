//! `/admin/bills`: the days reconciled against WeChat's statement (the latest first), and
//! `/admin/bills/{date}`: one day's totals on both sides, its mismatches and the orders it
//! healed (docs/bills.md says what each mismatch means).

use std::sync::Arc;

use axum::extract::{Path, State};
use maud::{Markup, html};

use super::layout::{self, Section, order_link, yuan};
use super::{Failure, Operator, Page};
use crate::http::HttpState;
use crate::http::error::ApiError;
use crate::store::{BillRunRow, BillRunStatus};

/// Days listed.
const DAYS: i64 = 60;

pub async fn list(State(state): State<Arc<HttpState>>, _operator: Operator) -> Page {
    let runs = state.services.store.bill_runs(DAYS).await?;
    let body = html! {
        @if runs.is_empty() {
            p.note.no-bills { "No day reconciled yet." }
        } @else {
            table.bills.cards {
                tr {
                    th { "day" } th { "status" } th.n { "WeChat payments" } th.n { "our payments" }
                    th.n { "mismatches" } th.n { "healed" }
                }
                @for run in &runs {
                    tr {
                        td data-label="day" {
                            a href={ "/admin/bills/" (run.bill_date) } { (run.bill_date) }
                        }
                        td data-label="status" { (run_status(run)) }
                        td.n data-label="WeChat payments" {
                            (run.wechat_payments) " · " (yuan(run.wechat_payment_fee))
                        }
                        td.n data-label="our payments" {
                            (run.local_payments) " · " (yuan(run.local_payment_fee))
                        }
                        td.n data-label="mismatches" { (run.mismatches) }
                        td.n data-label="healed" { (run.healed) }
                    }
                }
            }
        }
    };
    Ok(layout::page("Bills", Section::Bills, body))
}

/// A run's status, marked when a person must look.
fn run_status(run: &BillRunRow) -> Markup {
    let alarming = run.status == BillRunStatus::Failed || run.mismatches > 0;
    html! { span class=[alarming.then_some("alert")] { (run.status.as_str()) } }
}

pub async fn day(
    State(state): State<Arc<HttpState>>,
    _operator: Operator,
    Path(date): Path<String>,
) -> Page {
    let store = &state.services.store;
    let run = store
        .bill_run(&date)
        .await?
        .ok_or_else(|| Failure(ApiError::BillNotFound(date.clone())))?;
    let mismatches = store.bill_mismatches(&date).await?;
    let healed = store.bill_healed(&date).await?;
    let body = html! {
        dl.order {
            dt { "status" } dd.bill-status { (run_status(&run)) }
            dt { "WeChat's statement" } dd {
                (run.wechat_payments) " payments, " (yuan(run.wechat_payment_fee)) "; "
                (run.wechat_refunds) " refunds, " (yuan(run.wechat_refund_fee))
            }
            dt { "our records" } dd {
                (run.local_payments) " payments, " (yuan(run.local_payment_fee)) "; "
                (run.local_refunds) " refunds, " (yuan(run.local_refund_fee))
            }
            dt { "attempts" } dd { (run.attempts) }
            @if let Some(error) = &run.last_error { dt { "last error" } dd.alert { (error) } }
            @if let Some(at) = run.finished_at { dt { "finished" } dd { (layout::time(at)) } }
        }
        h2 { "Mismatches" }
        @if mismatches.is_empty() {
            p.note.no-mismatch { "None." }
        } @else {
            table.mismatches.cards {
                tr { th { "kind" } th { "order" } th { "refund" } th { "WeChat" } th { "ours" } }
                @for m in &mismatches {
                    tr {
                        td data-label="kind" { (m.kind) }
                        td data-label="order" { (order_link(&m.out_trade_no)) }
                        td.id data-label="refund" { (m.out_refund_no.as_deref().unwrap_or("—")) }
                        td data-label="WeChat" { (m.wechat) }
                        td data-label="ours" { (m.local) }
                    }
                }
            }
        }
        @if !healed.is_empty() {
            h2 { "Healed" }
            p.note { "Paid in WeChat's statement while we held them unpaid: an order query was queued." }
            table.healed.cards {
                tr { th { "order" } th { "was" } th { "now" } th { "queued" } }
                @for h in &healed {
                    tr {
                        td data-label="order" { (order_link(&h.out_trade_no)) }
                        td data-label="was" { (h.status_before) }
                        td data-label="now" { (h.status_now.as_deref().unwrap_or("—")) }
                        td data-label="queued" { (layout::time(h.queued_at)) }
                    }
                }
            }
        }
    };
    Ok(layout::page(&format!("Bill {date}"), Section::Bills, body))
}
