//! `/admin`: today at a glance (orders by status, payments), what needs a person (alerts, dead
//! jobs, bill days that failed or disagree with WeChat), queue health, and the latest orders.

use std::sync::Arc;

use axum::extract::State;
use maud::{Markup, html};
use minipay_jobs::OrderStatus;

use super::layout::{self, Section, order_link, status, yuan};
use super::{Operator, Page};
use crate::http::HttpState;
use crate::http::queues::stats;
use crate::store::{AlertLine, BillRunRow, BillRunStatus, QueueStats, StatusTotal, Tally};

/// How many of the latest orders and alerts the dashboard lists.
const LATEST: i64 = 10;

/// How many of the latest bill days are checked for failures and mismatches.
const BILL_DAYS: i64 = 7;

pub async fn page(State(state): State<Arc<HttpState>>, _operator: Operator) -> Page {
    let services = &state.services;
    let store = &services.store;
    let now_ms = services.clock.unix_ms();
    let today = layout::day_of(now_ms).and_then(layout::day_bounds);
    let since = today.map_or(now_ms, |(start, _)| start);
    let created = store.created_since(since).await?;
    let paid = store.paid_since(since).await?;
    let alerts = store.latest_alerts(LATEST).await?;
    let bills: Vec<BillRunRow> = store
        .bill_runs(BILL_DAYS)
        .await?
        .into_iter()
        .filter(|run| run.status == BillRunStatus::Failed || run.mismatches > 0)
        .collect();
    let queues = stats(services).await?;
    let latest = store
        .search_orders(&crate::store::OrderFilter::default(), LATEST)
        .await?;
    let body = html! {
        (today_figures(&created, paid))
        (needs_a_person(&alerts, &queues, &bills))
        h2 { "Queue health" }
        (queue_table(&queues))
        h2 { "Latest orders" }
        (super::orders::order_table(&latest))
        p { a href="/admin/orders" { "Search orders →" } }
    };
    Ok(layout::page("Dashboard", Section::Dashboard, body))
}

/// Orders created today by status (every status, zeros included), and today's payments.
fn today_figures(created: &[StatusTotal], paid: Tally) -> Markup {
    let of = |s: OrderStatus| created.iter().find(|t| t.status == s);
    let total: i64 = created.iter().map(|t| t.count).sum();
    html! {
        h2 { "Today" }
        div.figures {
            div.figure.paid-today { "Payments" b { (yuan(paid.fee)) } (paid.count) " paid" }
            div.figure { "Orders created" b { (total) } }
        }
        table.today {
            tr { th { "status" } th.n { "orders" } th.n { "amount" } }
            @for s in OrderStatus::ALL {
                tr {
                    td { (status(s)) }
                    td.n { (of(s).map_or(0, |t| t.count)) }
                    td.n { (yuan(of(s).map_or(0, |t| t.fee))) }
                }
            }
        }
    }
}

/// Alerts raised by orders, dead jobs, and bill days that failed or disagree with WeChat:
/// what a person must look at.
fn needs_a_person(alerts: &[AlertLine], queues: &[QueueStats], bills: &[BillRunRow]) -> Markup {
    let dead: i64 = queues.iter().map(|q| q.dead).sum();
    html! {
        h2 { "Needs a person" }
        @if alerts.is_empty() && dead == 0 && bills.is_empty() {
            p.note.all-clear { "Nothing: no alerts, no dead jobs, no bill mismatches." }
        }
        @for run in bills {
            p.alert.bill-alert {
                "Bill of " a href={ "/admin/bills/" (run.bill_date) } { (run.bill_date) } ": "
                @if run.status == BillRunStatus::Failed { "the reconciliation failed." }
                @else { (run.mismatches) " mismatch(es) with WeChat's statement." }
            }
        }
        @if dead > 0 {
            p.alert.dead-jobs {
                (dead) " dead job" @if dead > 1 { "s" } " will not run again. "
                a href="/admin/jobs" { "Review and retry" }
            }
        }
        @if !alerts.is_empty() {
            table.alerts.cards {
                tr { th { "when" } th { "order" } th { "alert" } }
                @for a in alerts {
                    tr {
                        td data-label="when" { (layout::time(a.at)) }
                        td data-label="order" { (order_link(&a.out_trade_no)) }
                        td.alert data-label="alert" { (a.detail) }
                    }
                }
            }
        }
    }
}

/// Depth, age and dead jobs of each queue.
pub fn queue_table(queues: &[QueueStats]) -> Markup {
    html! {
        table.queues {
            tr { th { "queue" } th.n { "depth" } th.n { "oldest pending (s)" } th.n { "dead" } }
            @for q in queues {
                tr {
                    td { (q.queue) }
                    td.n { (q.depth) }
                    td.n { (q.oldest_pending_secs) }
                    td.n { (q.dead) }
                }
            }
        }
    }
}
