//! Bill reconciliation (admin token): ask for a day to be reconciled, read a day's report (as
//! JSON, or as CSV for finance with `?format=csv`), list the recent days. The runs themselves
//! happen in the workers (`domain::bill`); docs/bills.md says what each mismatch means.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use minipay_jobs::bill::retry;
use serde::Deserialize;
use utoipa::IntoParams;

use super::HttpState;
use super::auth::AdminAuth;
use super::error::{ApiError, AppJson, AppPath, AppQuery};
use super::views::ErrorBody;
use crate::store::{MismatchRow, RequestedBy};
use crate::wechat::v2::bill::beijing_day;

use views::sides;
use views::{BillList, BillSummary, BillView, HealedView, MismatchView, Requested, RunView};

mod views;

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
#[utoipa::path(post, path = "/v1/admin/bills/{date}/reconcile", operation_id = "reconcile_bill", tag = "admin",
    params(("date" = String, Path, description = "A Beijing day, YYYY-MM-DD, already over")),
    responses(
        (status = 202, description = "The day's run, queued (or already under way)", body = Requested),
        (status = 422, description = "INVALID_PARAMETER: not a day, or not over yet", body = ErrorBody),
    ))]
pub async fn reconcile(
    State(state): State<Arc<HttpState>>,
    _admin: AdminAuth,
    AppPath(date): AppPath<String>,
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

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Format {
    /// `json` (the default) or `csv` (the mismatches, one a line, for finance).
    #[serde(default)]
    format: Option<String>,
}

/// One day's report, as JSON or (`?format=csv`) its mismatches as CSV.
#[utoipa::path(get, path = "/v1/admin/bills/{date}", operation_id = "show_bill", tag = "admin",
    params(("date" = String, Path, description = "A Beijing day, YYYY-MM-DD"), Format),
    responses(
        (status = 200, description = "The day's report (JSON), or its mismatches (CSV)", content(
            (BillView = "application/json"),
            (String = "text/csv", example = "date,kind,out_trade_no,out_refund_no,wechat,local,healable\r\n"),
        )),
        (status = 404, description = "BILL_NOT_FOUND: the day was never reconciled", body = ErrorBody),
        (status = 422, description = "INVALID_PARAMETER: not a day, or an unknown format; INVALID_BODY: an unknown query parameter", body = ErrorBody),
    ))]
pub async fn show(
    State(state): State<Arc<HttpState>>,
    _admin: AdminAuth,
    AppPath(date): AppPath<String>,
    AppQuery(format): AppQuery<Format>,
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

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// 1 to 366 (default 31).
    #[serde(default)]
    limit: Option<i64>,
}

/// The most recent days (`?limit=`, 1..=366, default 31), newest first.
#[utoipa::path(get, path = "/v1/admin/bills", operation_id = "list_bills", tag = "admin", params(ListQuery),
    responses(
        (status = 200, description = "The days, newest first", body = BillList),
        (status = 422, description = "INVALID_PARAMETER: limit out of range; INVALID_BODY: an unknown or mistyped query parameter", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<Arc<HttpState>>,
    _admin: AdminAuth,
    AppQuery(query): AppQuery<ListQuery>,
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
