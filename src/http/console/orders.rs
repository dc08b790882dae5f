//! `/admin/orders`: order search by out_trade_no, WeChat's transaction_id, the payer's openid,
//! status and Beijing day, newest first, a page at a time.

use std::sync::Arc;

use axum::extract::{Query, State};
use chrono::NaiveDate;
use maud::{Markup, html};
use minipay_jobs::OrderStatus;
use serde::Deserialize;

use super::layout::{self, Section, order_link, status, urlencode, yuan};
use super::{Operator, Page};
use crate::http::HttpState;
use crate::http::error::ApiError;
use crate::store::{OrderFilter, OrderLine};

/// Orders per page.
const PAGE: i64 = 50;

/// The search form's fields, as the browser sends them (empty fields are no filter).
#[derive(Debug, Default, Deserialize)]
pub struct Search {
    #[serde(default)]
    out_trade_no: String,
    #[serde(default)]
    transaction_id: String,
    #[serde(default)]
    openid: String,
    #[serde(default)]
    status: String,
    /// `YYYY-MM-DD`, a Beijing day.
    #[serde(default)]
    date: String,
    /// The next page: `created_at.out_trade_no` of the last order shown.
    #[serde(default)]
    before: String,
}

fn filled(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

fn invalid(field: &str, reason: &str) -> ApiError {
    ApiError::InvalidParameter {
        field: field.into(),
        reason: reason.into(),
    }
}

impl Search {
    fn filter(&self) -> Result<OrderFilter, ApiError> {
        let status = match filled(&self.status) {
            None => None,
            Some(name) => Some(
                OrderStatus::parse(&name)
                    .ok_or_else(|| invalid("status", "not an order status"))?,
            ),
        };
        let created = match filled(&self.date) {
            None => None,
            Some(date) => Some(
                NaiveDate::parse_from_str(&date, "%Y-%m-%d")
                    .ok()
                    .and_then(layout::day_bounds)
                    .ok_or_else(|| invalid("date", "must be a day as YYYY-MM-DD"))?,
            ),
        };
        let before = match filled(&self.before) {
            None => None,
            Some(cursor) => Some(
                cursor
                    .split_once('.')
                    .and_then(|(at, otn)| Some((at.parse().ok()?, otn.to_owned())))
                    .ok_or_else(|| invalid("before", "not a page of this search"))?,
            ),
        };
        Ok(OrderFilter {
            out_trade_no: filled(&self.out_trade_no),
            transaction_id: filled(&self.transaction_id),
            openid: filled(&self.openid),
            status,
            created,
            before,
        })
    }

    /// This search's query string for the page after `last`.
    fn next_page(&self, last: &OrderLine) -> String {
        let fields = [
            ("out_trade_no", &self.out_trade_no),
            ("transaction_id", &self.transaction_id),
            ("openid", &self.openid),
            ("status", &self.status),
            ("date", &self.date),
        ];
        let mut query: Vec<String> = fields
            .iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(k, v)| format!("{k}={}", urlencode(v.trim())))
            .collect();
        let cursor = format!("{}.{}", last.created_at, last.out_trade_no);
        query.push(format!("before={}", urlencode(&cursor)));
        format!("/admin/orders?{}", query.join("&"))
    }
}

pub async fn page(
    State(state): State<Arc<HttpState>>,
    _operator: Operator,
    Query(search): Query<Search>,
) -> Page {
    let filter = search.filter()?;
    let orders = state.services.store.search_orders(&filter, PAGE).await?;
    let body = html! {
        (form(&search))
        @if orders.is_empty() {
            p.note.no-orders { "No order matches." }
        } @else {
            p.note { "Newest first; " (orders.len()) " shown." }
            (order_table(&orders))
            @if orders.len() as i64 == PAGE {
                @if let Some(last) = orders.last() {
                    p { a.next href=(search.next_page(last)) { "Older orders →" } }
                }
            }
        }
    };
    Ok(layout::page("Orders", Section::Orders, body))
}

fn form(search: &Search) -> Markup {
    let field = |name: &str, label: &str, value: &str| {
        html! { label { (label) input type="search" name=(name) value=(value); } }
    };
    html! {
        form.search method="get" action="/admin/orders" {
            (field("out_trade_no", "out_trade_no", &search.out_trade_no))
            (field("transaction_id", "transaction_id", &search.transaction_id))
            (field("openid", "openid", &search.openid))
            label { "status"
                select name="status" {
                    option value="" { "any" }
                    @for s in OrderStatus::ALL {
                        option value=(s.as_str()) selected[search.status == s.as_str()] { (s.as_str()) }
                    }
                }
            }
            label { "created on" input type="date" name="date" value=(search.date); }
            button type="submit" { "Search" }
        }
    }
}

/// Orders as a table (cards on a phone), each linking to its page.
pub fn order_table(orders: &[OrderLine]) -> Markup {
    html! {
        table.orders.cards {
            tr {
                th { "out_trade_no" } th { "status" } th.n { "amount" } th { "description" }
                th { "openid" } th { "created" }
            }
            @for o in orders {
                tr {
                    td data-label="out_trade_no" { (order_link(&o.out_trade_no)) }
                    td data-label="status" { (status(o.status)) }
                    td.n data-label="amount" { (yuan(o.total_fee)) }
                    td data-label="description" { (o.description) }
                    td.id data-label="openid" { (o.openid) }
                    td data-label="created" { (layout::time(o.created_at)) }
                }
            }
        }
    }
}
