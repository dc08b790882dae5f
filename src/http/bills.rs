//! Bill reconciliation (admin token): ask for a day to be reconciled, read a day's report (as
//! JSON, or as CSV for finance with `?format=csv`), list the recent days. The runs themselves
//! happen in the workers (`domain::bill`); docs/bills.md says what each mismatch means.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use minipay_jobs::bill::{Totals, retry};
use serde::{Deserialize, Serialize};

use super::HttpState;
use super::auth::AdminAuth;
use super::error::{ApiError, AppJson};
use crate::store::{BillRunRow, BillRunStatus, HealedRow, MismatchRow, RequestedBy};
use crate::wechat::v2::bill::beijing_day;

/// `POST /v1/admin/bills/{date}/reconcile`'s answer.
#[derive(Debug, Serialize)]
pub struct Requested {
    pub date: String,
    pub status: BillRunStatus,
}

/// One day's run and report (`GET /v1/admin/bills/{date}`).
#[derive(Debug, Serialize)]
pub struct BillView {
    pub date: String,
    pub status: BillRunStatus,
    pub wechat: Totals,
    pub local: Totals,
    pub mismatches: Vec<MismatchView>,
    /// Orders WeChat's statement lists as paid that minipay held as `pending` or `ready`: an
    /// order query was queued for each (`status` is where the order stands now).
    pub healed: Vec<HealedView>,
    #[serde(flatten)]
    pub run: RunView,
}

/// A day in the list (`GET /v1/admin/bills`): the totals and the number of mismatches.
#[derive(Debug, Serialize)]
pub struct BillSummary {
    pub date: String,
    pub status: BillRunStatus,
    pub wechat: Totals,
    pub local: Totals,
    pub mismatch_count: i64,
    pub healed_count: i64,
    #[serde(flatten)]
    pub run: RunView,
}

/// How the run went.
#[derive(Debug, Serialize)]
pub struct RunView {
    /// `schedule`, `admin` or `cli`.
    pub requested_by: String,
    pub requested_at: String,
    /// Downloads tried in the current run.
    pub attempts: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// `pending` only: when the next attempt is due.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Lines of WeChat's statement (absent when WeChat had no bill).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement_rows: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct MismatchView {
    pub kind: String,
    pub out_trade_no: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_refund_no: Option<String>,
    pub wechat: String,
    pub local: String,
    /// WeChat lists the payment and minipay held the order as `pending` or `ready`.
    pub healable: bool,
}

#[derive(Debug, Serialize)]
pub struct HealedView {
    pub out_trade_no: String,
    /// `pending` or `ready` when the order query was queued.
    pub status_before: String,
    /// Where the order stands now (`paid` once the query settled it).
    pub status: Option<String>,
    pub queued_at: String,
}

#[derive(Debug, Serialize)]
pub struct BillList {
    pub bills: Vec<BillSummary>,
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn totals(payments: i64, payment_fee: i64, refunds: i64, refund_fee: i64) -> Totals {
    Totals {
        payments: u64::try_from(payments).unwrap_or(0),
        payment_fee,
        refunds: u64::try_from(refunds).unwrap_or(0),
        refund_fee,
    }
}

impl From<&BillRunRow> for RunView {
    fn from(run: &BillRunRow) -> Self {
        RunView {
            requested_by: run.requested_by.clone(),
            requested_at: rfc3339(run.requested_at),
            attempts: run.attempts,
            last_error: run.last_error.clone(),
            next_attempt_at: (run.status == BillRunStatus::Pending)
                .then_some(run.next_attempt_at)
                .flatten()
                .map(rfc3339),
            finished_at: run.finished_at.map(rfc3339),
            statement_rows: run.statement_rows,
        }
    }
}

fn sides(run: &BillRunRow) -> (Totals, Totals) {
    (
        totals(
            run.wechat_payments,
            run.wechat_payment_fee,
            run.wechat_refunds,
            run.wechat_refund_fee,
        ),
        totals(
            run.local_payments,
            run.local_payment_fee,
            run.local_refunds,
            run.local_refund_fee,
        ),
    )
}

impl From<MismatchRow> for MismatchView {
    fn from(m: MismatchRow) -> Self {
        MismatchView {
            kind: m.kind,
            out_trade_no: m.out_trade_no,
            out_refund_no: m.out_refund_no,
            wechat: m.wechat,
            local: m.local,
            healable: m.healable,
        }
    }
}

impl From<HealedRow> for HealedView {
    fn from(h: HealedRow) -> Self {
        HealedView {
            out_trade_no: h.out_trade_no,
            status_before: h.status_before,
            status: h.status_now,
            queued_at: rfc3339(h.queued_at),
        }
    }
}

/// The day in the path: `YYYY-MM-DD`, a real date.
fn bill_date(text: &str) -> Result<NaiveDate, ApiError> {
    match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(day) if text.len() == 10 => Ok(day),
        _ => Err(ApiError::InvalidParameter {
            field: "date".into(),
            reason: format!(
                "{:?} is not a day as YYYY-MM-DD",
                text.escape_debug().to_string()
            ),
        }),
    }
}

/// Reconciles the day (again) as soon as a worker sweeps; a day in progress is left alone.
pub async fn reconcile(
    State(state): State<Arc<HttpState>>,
    _admin: AdminAuth,
    Path(date): Path<String>,
) -> Result<(StatusCode, AppJson<Requested>), ApiError> {
    let services = &state.services;
    let day = bill_date(&date)?;
    let now = services.clock.now();
    if day >= beijing_day(now) {
        return Err(ApiError::InvalidParameter {
            field: "date".into(),
            reason: format!(
                "{day} is not over yet (Beijing time); WeChat bills a day the morning after"
            ),
        });
    }
    let now_ms = now.timestamp_millis();
    let run = services
        .store
        .request_bill_run(
            &day.to_string(),
            RequestedBy::Admin,
            now_ms,
            retry::give_up_at(now_ms),
        )
        .await?;
    tracing::info!(bill_date = %day, "bill reconciliation requested");
    Ok((
        StatusCode::ACCEPTED,
        AppJson(Requested {
            date: run.bill_date,
            status: run.status,
        }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Format {
    #[serde(default)]
    format: Option<String>,
}

/// One day's report, as JSON or (`?format=csv`) its mismatches as CSV.
pub async fn show(
    State(state): State<Arc<HttpState>>,
    _admin: AdminAuth,
    Path(date): Path<String>,
    Query(format): Query<Format>,
) -> Result<Response, ApiError> {
    let csv = match format.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => {
            return Err(ApiError::InvalidParameter {
                field: "format".into(),
                reason: "json or csv".into(),
            });
        }
    };
    let day = bill_date(&date)?.to_string();
    let store = &state.services.store;
    let run = store
        .bill_run(&day)
        .await?
        .ok_or_else(|| ApiError::BillNotFound(day.clone()))?;
    let mismatches = store.bill_mismatches(&day).await?;
    if csv {
        return Ok(csv_response(&day, mismatches));
    }
    let healed = store.bill_healed(&day).await?;
    let (wechat, local) = sides(&run);
    let view = BillView {
        date: day,
        status: run.status,
        wechat,
        local,
        mismatches: mismatches.into_iter().map(MismatchView::from).collect(),
        healed: healed.into_iter().map(HealedView::from).collect(),
        run: RunView::from(&run),
    };
    Ok(AppJson(view).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    limit: Option<i64>,
}

/// The most recent days (`?limit=`, 1..=366, default 31), newest first.
pub async fn list(
    State(state): State<Arc<HttpState>>,
    _admin: AdminAuth,
    Query(query): Query<ListQuery>,
) -> Result<AppJson<BillList>, ApiError> {
    let limit = query.limit.unwrap_or(31);
    if !(1..=366).contains(&limit) {
        return Err(ApiError::InvalidParameter {
            field: "limit".into(),
            reason: "an integer from 1 to 366".into(),
        });
    }
    let runs = state.services.store.bill_runs(limit).await?;
    let bills = runs
        .iter()
        .map(|run| {
            let (wechat, local) = sides(run);
            BillSummary {
                date: run.bill_date.clone(),
                status: run.status,
                wechat,
                local,
                mismatch_count: run.mismatches,
                healed_count: run.healed,
                run: RunView::from(run),
            }
        })
        .collect();
    Ok(AppJson(BillList { bills }))
}

/// The columns of the CSV, one mismatch per line.
const CSV_HEADER: &str = "date,kind,out_trade_no,out_refund_no,wechat,local,healable\r\n";

fn csv_response(day: &str, mismatches: Vec<MismatchRow>) -> Response {
    let mut text = String::from(CSV_HEADER);
    for m in mismatches {
        let fields = [
            day,
            &m.kind,
            &m.out_trade_no,
            m.out_refund_no.as_deref().unwrap_or(""),
            &m.wechat,
            &m.local,
            if m.healable { "true" } else { "false" },
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        text.push_str(&line.join(","));
        text.push_str("\r\n");
    }
    let disposition = format!("attachment; filename=\"bill-{day}.csv\"");
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        text,
    )
        .into_response()
}

/// One CSV field (RFC 4180): quoted when it holds a comma, quote or line break. A value a
/// spreadsheet would read as a formula (`=`, `+`, `-`, `@` first) is prefixed with `'`: the
/// numbers in it come from outside (WeChat's statement).
fn csv_field(value: &str) -> String {
    let value = match value.chars().next() {
        Some('=' | '+' | '-' | '@') => format!("'{value}"),
        _ => value.to_owned(),
    };
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("MP1"), "MP1");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(csv_field("-1,0"), "\"'-1,0\"");
    }

    #[test]
    fn dates_are_days_as_yyyy_mm_dd() {
        assert!(bill_date("2026-11-29").is_ok());
        for bad in ["2026-11-31", "20261129", "2026-1-29", "2026-11-29x", ""] {
            assert!(bill_date(bad).is_err(), "{bad}");
        }
    }
}
