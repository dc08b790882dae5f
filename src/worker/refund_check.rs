//! What WeChat says about a refund, applied: refundquery for a `processing` refund whose
//! notify has not come (on the schedule of `minipay_jobs::refund`), and the status change a
//! query or a send leads to.

use apalis::prelude::BoxDynError;
use minipay_jobs::refund::next_refund_query_at;
use minipay_jobs::{Failure, RefundQueryDecision, RefundResult, RefundStatus};

use crate::domain::{self, refund_alert};
use crate::services::Services;
use crate::store::{RefundChange, RefundRow, StoreError};

/// refundquery about a `processing` refund whose notify has not come.
pub(super) async fn query_processing(
    services: &Services,
    refund: &RefundRow,
) -> Result<(), BoxDynError> {
    let query = services
        .gateway
        .query_refund(&refund.out_refund_no, RefundStatus::Processing)
        .await;
    metrics::counter!("minipay_refund_queries_total", "outcome" => query.label.clone())
        .increment(1);
    let now = services.clock.unix();
    let check = u32::try_from(refund.queries).unwrap_or(u32::MAX);
    let next_ms = next_refund_query_at(now, check) * 1000;
    tracing::info!(decision = ?query.decision, "refund query");
    let why = match query.decision {
        RefundQueryDecision::Result(RefundResult::Processing) => {
            "refundquery: still processing".into()
        }
        RefundQueryDecision::Result(result) => {
            apply_result(services, refund, result, query.refund_id, next_ms).await?;
            return Ok(());
        }
        RefundQueryDecision::Retry { reason } => format!("refundquery gave no answer: {reason}"),
        RefundQueryDecision::Resend => "refundquery: WeChat has no such refund".into(),
        RefundQueryDecision::Alarm(failure) => {
            refund_alert(
                &refund.out_trade_no,
                &refund.out_refund_no,
                "refund_query",
                &format!("{}: {}", failure.code, failure.message),
            );
            format!("refundquery: {} {}", failure.code, failure.message)
        }
    };
    services
        .store
        .park_refund(&refund.out_refund_no, next_ms, &why, true, now * 1000)
        .await?;
    Ok(())
}

/// WeChat's word on a refund, applied: processing (next query at `next_ms`), succeeded,
/// failed (`REFUNDCLOSE`) or abnormal (`CHANGE`, alerted).
pub(super) async fn apply_result(
    services: &Services,
    refund: &RefundRow,
    result: RefundResult,
    refund_id: Option<String>,
    next_ms: i64,
) -> Result<(), StoreError> {
    let to = result.status();
    if to == RefundStatus::Processing && refund.status == RefundStatus::Processing {
        let now_ms = services.clock.unix_ms();
        services
            .store
            .park_refund(&refund.out_refund_no, next_ms, "", true, now_ms)
            .await?;
        return Ok(());
    }
    let next = (to == RefundStatus::Processing).then_some(next_ms);
    change(services, refund, to, refund_id, result.failure(), next).await?;
    Ok(())
}

pub(super) async fn change(
    services: &Services,
    refund: &RefundRow,
    to: RefundStatus,
    refund_id: Option<String>,
    failure: Option<Failure>,
    next_check_at: Option<i64>,
) -> Result<bool, StoreError> {
    let change = RefundChange {
        out_refund_no: refund.out_refund_no.clone(),
        to,
        refund_id,
        error: failure.map(|f| (f.code, f.message)),
        next_check_at,
        source: "refund job".into(),
        now_ms: services.clock.unix_ms(),
    };
    domain::settle_refund(services, change).await
}
