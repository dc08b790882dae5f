//! `minipay bill --date 2026-11-29`: reconciles one Beijing day from the command line against
//! the configured database and WeChat, as the workers would (the same run row, so the report
//! is the one `GET /v1/admin/bills/{date}` serves), and prints the summary. It does not retry:
//! when WeChat has no statement yet the run stays pending and the workers try again.
//!
//! Exit codes: 0 reconciled without a mismatch, 1 reconciled with mismatches, 2 bad input or
//! an error, 3 no statement yet (`Bill Creating`, a transient failure), 4 the run failed.

use std::io::Write;
use std::time::Duration;

use chrono::NaiveDate;
use minipay_jobs::bill::{BillReport, Totals, retry};

use crate::domain::bill::{DayOutcome, reconcile_day};
use crate::services::Services;
use crate::store::{BillRunStatus, RequestedBy};

/// How long the CLI's attempt holds the run (as a worker's would).
const LEASE: Duration = Duration::from_secs(10 * 60);

/// Why the command could not run.
#[derive(Debug, thiserror::Error)]
pub enum BillCliError {
    #[error("--date {0:?}: expected a day as YYYY-MM-DD")]
    Date(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("writing the summary: {0}")]
    Io(#[from] std::io::Error),
}

/// The day of `--date`.
pub fn parse_date(text: &str) -> Result<NaiveDate, BillCliError> {
    match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(day) if text.len() == 10 => Ok(day),
        _ => Err(BillCliError::Date(text.to_owned())),
    }
}

/// Runs `day` now and writes the summary to `out`; returns the exit code.
pub async fn run(
    services: &Services,
    day: NaiveDate,
    out: &mut impl Write,
) -> Result<u8, BillCliError> {
    let bill_date = day.to_string();
    let store = &services.store;
    let now_ms = services.clock.unix_ms();
    store
        .request_bill_run(
            &bill_date,
            RequestedBy::Cli,
            now_ms,
            // Run here: the workers take it only if this process dies before claiming it.
            now_ms + LEASE.as_millis() as i64,
            retry::give_up_at(now_ms),
        )
        .await?;
    let Some(claim) = store
        .claim_bill_run(&bill_date, now_ms, LEASE.as_millis() as i64)
        .await?
    else {
        writeln!(
            out,
            "bill {bill_date}: another process is running this day; see GET /v1/admin/bills/{bill_date}"
        )?;
        return Ok(2);
    };
    let code = match reconcile_day(services, &bill_date, claim).await? {
        DayOutcome::Reconciled {
            status,
            report,
            healed,
        } => {
            summary(out, &bill_date, status, &report, &healed)?;
            u8::from(!report.mismatches.is_empty())
        }
        DayOutcome::Retry { at_ms, error } => {
            let at = chrono::DateTime::from_timestamp_millis(at_ms).unwrap_or_default();
            writeln!(
                out,
                "bill {bill_date}: pending: no statement yet ({error}); the workers try again at {at}"
            )?;
            3
        }
        DayOutcome::Failed { error } => {
            writeln!(out, "bill {bill_date}: failed: {error}")?;
            4
        }
        DayOutcome::Stale => {
            writeln!(
                out,
                "bill {bill_date}: another process took the run over; see GET /v1/admin/bills/{bill_date}"
            )?;
            2
        }
    };
    Ok(code)
}

fn summary(
    out: &mut impl Write,
    bill_date: &str,
    status: BillRunStatus,
    report: &BillReport,
    healed: &[String],
) -> std::io::Result<()> {
    writeln!(out, "bill {bill_date}: {}", status.as_str())?;
    writeln!(
        out,
        "{:<8}{:>10}{:>14}{:>10}{:>14}",
        "", "payments", "payment_fee", "refunds", "refund_fee"
    )?;
    let side = |out: &mut dyn Write, name: &str, t: &Totals| {
        writeln!(
            out,
            "{name:<8}{:>10}{:>14}{:>10}{:>14}",
            t.payments, t.payment_fee, t.refunds, t.refund_fee
        )
    };
    side(out, "wechat", &report.wechat)?;
    side(out, "local", &report.local)?;
    writeln!(out, "mismatches: {}", report.mismatches.len())?;
    for m in &report.mismatches {
        let refund = m
            .out_refund_no
            .as_deref()
            .map(|r| format!(" refund {r}"))
            .unwrap_or_default();
        writeln!(
            out,
            "  {:<15} {}{refund}  wechat: {}  local: {}",
            m.kind.as_str(),
            m.out_trade_no.escape_debug(),
            m.wechat.escape_debug(),
            m.local.escape_debug()
        )?;
    }
    for out_trade_no in healed {
        writeln!(out, "healed: {out_trade_no} (order query queued)")?;
    }
    Ok(())
}
