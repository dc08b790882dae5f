//! The views of the bill endpoints (their JSON, documented in the OpenAPI document).

use minipay_jobs::bill::Totals;
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::{BillRunRow, BillRunStatus, HealedRow, MismatchRow};

/// `POST /v1/admin/bills/{date}/reconcile`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Requested {
    pub date: String,
    pub status: BillRunStatus,
}

/// One day's run and report (`GET /v1/admin/bills/{date}`).
#[derive(Debug, Serialize, ToSchema)]
pub struct BillView {
    pub date: String,
    pub status: BillRunStatus,
    #[schema(value_type = TotalsView)]
    pub wechat: Totals,
    #[schema(value_type = TotalsView)]
    pub local: Totals,
    pub mismatches: Vec<MismatchView>,
    /// Orders WeChat's statement lists as paid that minipay held as `pending` or `ready`: an
    /// order query was queued for each (`status` is where the order stands now).
    pub healed: Vec<HealedView>,
    #[serde(flatten)]
    pub run: RunView,
}

/// A day in the list (`GET /v1/admin/bills`): the totals and the number of mismatches.
#[derive(Debug, Serialize, ToSchema)]
pub struct BillSummary {
    pub date: String,
    pub status: BillRunStatus,
    #[schema(value_type = TotalsView)]
    pub wechat: Totals,
    #[schema(value_type = TotalsView)]
    pub local: Totals,
    pub mismatch_count: i64,
    pub healed_count: i64,
    #[serde(flatten)]
    pub run: RunView,
}

/// How the run went.
#[derive(Debug, Serialize, ToSchema)]
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

#[derive(Debug, Serialize, ToSchema)]
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

#[derive(Debug, Serialize, ToSchema)]
pub struct HealedView {
    pub out_trade_no: String,
    /// `pending` or `ready` when the order query was queued.
    pub status_before: String,
    /// Where the order stands now (`paid` once the query settled it).
    pub status: Option<String>,
    pub queued_at: String,
}

/// The document's shape of [`Totals`] (a `minipay-jobs` type), as serialized.
#[derive(ToSchema)]
#[schema(as = Totals)]
#[allow(dead_code)]
struct TotalsView {
    /// Paid orders (WeChat: lines in state `SUCCESS`).
    payments: u64,
    /// Fen.
    payment_fee: i64,
    /// Refunds that count as refunded.
    refunds: u64,
    /// Fen.
    refund_fee: i64,
}

#[derive(Debug, Serialize, ToSchema)]
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

pub(super) fn sides(run: &BillRunRow) -> (Totals, Totals) {
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
