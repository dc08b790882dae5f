//! Applying a verified payment to its order — the one path for notifies, order queries after
//! `ORDERPAID`, and reconciliation — with the alerts a payment system owes its operators (the
//! ones that involve money are also `payment.anomaly` events, recorded by the store).

use minipay_jobs::Payment;

use super::alert;
use crate::services::Services;
use crate::store::{Applied, StoreError};

/// Applies `payment`, logs and counts the outcome, and wakes long-polls on the order.
pub async fn apply_payment(
    services: &Services,
    payment: &Payment,
    source: &str,
    notify_id: Option<i64>,
) -> Result<Applied, StoreError> {
    let now_ms = services.clock.unix_ms();
    let applied = services
        .store
        .apply_payment(payment, source, notify_id, &services.outbox(), now_ms)
        .await?;
    let out_trade_no = payment.out_trade_no.as_str();
    match &applied {
        Applied::Paid { ready_at } => {
            tracing::info!(out_trade_no, transaction_id = ?payment.transaction_id, source, "order paid");
            if let Some(ready_at) = ready_at {
                metrics::histogram!("minipay_ready_to_paid_seconds")
                    .record((now_ms - ready_at).max(0) as f64 / 1000.0);
            }
            services.waiters.wake(out_trade_no);
        }
        Applied::AlreadyPaid => {
            tracing::debug!(out_trade_no, source, "payment already applied");
        }
        Applied::NotPayable(_) | Applied::PaidTwice { .. } | Applied::AmountMismatch { .. } => {
            if let Some(anomaly) = applied.anomaly(payment) {
                alert(out_trade_no, anomaly.kind, &anomaly.message);
            }
        }
        Applied::UnknownOrder => alert(
            out_trade_no,
            "unknown_order",
            "payment for an order we do not have",
        ),
    }
    Ok(applied)
}
