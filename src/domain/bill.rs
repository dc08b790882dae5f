//! Reconciling one Beijing day (docs/bills.md): minipay's payments and refunds of the day against WeChat's
//! statement, streamed through the comparison of `minipay_jobs::bill` as it downloads; the
//! report stored in place of the day's previous one, with an order query queued for each
//! payment WeChat lists and minipay holds as `pending` or `ready` (healed through the usual
//! path; nothing changes on the statement's word alone). `Bill Creating` and transient
//! failures are tried again later that day (`minipay_jobs::bill::retry`); `No Bill Exist` is
//! a report of its own, whose local payments are `missing_wechat`.
//!
//! The workers' `reconcile_bill` job and `minipay bill` both run a claimed attempt here.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{Days, NaiveDate, NaiveTime};
use minipay_jobs::bill::{BillFailure, BillReport, DayReconciliation, Elsewhere, retry};

use crate::services::Services;
use crate::store::{BillDay, BillRunStatus, StoreError, StoredReport};
use crate::wechat::v2::bill::{beijing_instant, bill_date};

/// How a claimed attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DayOutcome {
    /// The report is stored (`done`, or `no_bill`); `healed` got an order query.
    Reconciled {
        status: BillRunStatus,
        report: BillReport,
        healed: Vec<String>,
    },
    /// No statement yet; the next attempt is due at `at_ms`.
    Retry { at_ms: i64, error: String },
    /// No statement, and no retry: the run is `failed`.
    Failed { error: String },
    /// The run is not pending under this claim any more (another attempt took over).
    Stale,
}

/// Mismatches logged one by one per day; the rest are in the report.
const LOGGED_MISMATCHES: usize = 20;

/// How long a healing order query holds a `ready` order (as the sweep's claims do).
pub fn query_lease(services: &Services) -> Duration {
    (services.config.wechat.timeout * 10).max(Duration::from_secs(60))
}

/// A Beijing day as minipay's trades are placed in it: payments by `time_end`
/// (`yyyyMMdd…`), refunds by when WeChat accepted them.
fn bill_day(day: NaiveDate, next: NaiveDate) -> BillDay {
    let midnight = |d: NaiveDate| beijing_instant(d.and_time(NaiveTime::MIN)).timestamp_millis();
    BillDay {
        yyyymmdd: bill_date(day),
        next_yyyymmdd: bill_date(next),
        from_ms: midnight(day),
        to_ms: midnight(next),
    }
}

/// Runs attempt `claim` of `bill_date`'s run (`YYYY-MM-DD`).
pub async fn reconcile_day(
    services: &Services,
    bill_date: &str,
    claim: u32,
) -> Result<DayOutcome, StoreError> {
    let store = &services.store;
    let Some(run) = store.bill_run(bill_date).await? else {
        return Ok(DayOutcome::Stale);
    };
    if run.status != BillRunStatus::Pending || run.claims != i64::from(claim) {
        return Ok(DayOutcome::Stale);
    }
    let Ok(day) = NaiveDate::parse_from_str(bill_date, "%Y-%m-%d") else {
        return fail(services, bill_date, claim, "not a date (YYYY-MM-DD)".into()).await;
    };
    let next = day.checked_add_days(Days::new(1)).unwrap_or(day);
    let (orders, refunds) = store.local_bill_day(&bill_day(day, next)).await?;
    let mut comparison = DayReconciliation::new(orders, refunds);
    let downloaded = services
        .gateway
        .download_bill(day, |entry| comparison.add(entry))
        .await;
    let (status, statement_rows) = match downloaded {
        Ok(statement) => (BillRunStatus::Done, Some(statement.lines as i64)),
        Err(none) if none.failure == BillFailure::NoBill => (BillRunStatus::NoBill, None),
        Err(none) => {
            let attempts = u32::try_from(run.attempts).unwrap_or(u32::MAX);
            let now_ms = services.clock.unix_ms();
            return match retry::next_attempt_at(none.failure, attempts, now_ms, run.give_up_at) {
                Some(at_ms) => {
                    tracing::info!(bill_date, attempts, error = ?none.detail, "no statement yet; trying again later");
                    metrics::counter!("minipay_bill_runs_total", "outcome" => "retry").increment(1);
                    if store
                        .retry_bill_run(bill_date, claim, at_ms, &none.detail)
                        .await?
                    {
                        Ok(DayOutcome::Retry {
                            at_ms,
                            error: none.detail,
                        })
                    } else {
                        Ok(DayOutcome::Stale)
                    }
                }
                None => fail(services, bill_date, claim, none.detail).await,
            };
        }
    };
    let elsewhere = look_up_unexplained(services, &comparison).await?;
    let report = comparison.finish(&elsewhere);
    store_report(services, bill_date, claim, status, report, statement_rows).await
}

/// The orders of the statement lines the day's trades did not explain, of any day and status.
async fn look_up_unexplained(
    services: &Services,
    comparison: &DayReconciliation,
) -> Result<Elsewhere, StoreError> {
    let unresolved = comparison.unresolved();
    let store = &services.store;
    let orders = store.local_orders(&unresolved.out_trade_nos).await?;
    let refunds = store.local_refunds(&unresolved.out_refund_nos).await?;
    Ok(Elsewhere {
        orders: orders
            .into_iter()
            .map(|o| (o.out_trade_no.clone(), o))
            .collect::<HashMap<_, _>>(),
        refunds: refunds
            .into_iter()
            .map(|r| (r.out_refund_no.clone(), r))
            .collect::<HashMap<_, _>>(),
    })
}

async fn store_report(
    services: &Services,
    bill_date: &str,
    claim: u32,
    status: BillRunStatus,
    report: BillReport,
    statement_rows: Option<i64>,
) -> Result<DayOutcome, StoreError> {
    let now_ms = services.clock.unix_ms();
    let lease_ms = query_lease(services).as_millis() as i64;
    let stored = StoredReport {
        bill_date: bill_date.to_owned(),
        claim,
        status,
        report: report.clone(),
        statement_rows,
    };
    let Some(healed) = services
        .store
        .store_bill_report(stored, now_ms, lease_ms)
        .await?
    else {
        return Ok(DayOutcome::Stale);
    };
    for m in report.mismatches.iter().take(LOGGED_MISMATCHES) {
        tracing::warn!(
            bill_date,
            out_trade_no = ?m.out_trade_no,
            out_refund_no = ?m.out_refund_no,
            kind = m.kind.as_str(),
            wechat = ?m.wechat,
            local = ?m.local,
            "bill mismatch"
        );
    }
    for out_trade_no in &healed {
        tracing::info!(bill_date, out_trade_no = ?out_trade_no, "WeChat's statement lists a payment minipay has not applied; order query queued");
        metrics::counter!("minipay_bill_healed_total").increment(1);
    }
    tracing::info!(
        bill_date,
        status = status.as_str(),
        mismatches = report.mismatches.len(),
        healed = healed.len(),
        wechat_payment_fee = report.wechat.payment_fee,
        local_payment_fee = report.local.payment_fee,
        "bill reconciled"
    );
    metrics::counter!("minipay_bill_runs_total", "outcome" => status.as_str()).increment(1);
    Ok(DayOutcome::Reconciled {
        status,
        report,
        healed,
    })
}

async fn fail(
    services: &Services,
    bill_date: &str,
    claim: u32,
    error: String,
) -> Result<DayOutcome, StoreError> {
    let now_ms = services.clock.unix_ms();
    if !services
        .store
        .fail_bill_run(bill_date, claim, &error, now_ms)
        .await?
    {
        return Ok(DayOutcome::Stale);
    }
    // Not about one order: the alert names the day instead.
    tracing::error!(
        bill_date,
        alert = "bill_failed",
        "bill reconciliation failed: {}",
        error.escape_debug()
    );
    metrics::counter!("minipay_alerts_total", "kind" => "bill_failed").increment(1);
    metrics::counter!("minipay_bill_runs_total", "outcome" => "failed").increment(1);
    Ok(DayOutcome::Failed { error })
}
