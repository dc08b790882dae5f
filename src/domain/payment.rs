//! Applying a verified payment to its order — the one path for notifies, order queries after
//! `ORDERPAID`, and reconciliation — with the alerts a payment system owes its operators.

use minipay_jobs::{OrderStatus, Payment};

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
        .apply_payment(payment, source, notify_id, now_ms)
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
        Applied::NotPayable(status) => alert(
            out_trade_no,
            match status {
                OrderStatus::Closed => "paid_after_close",
                _ => "paid_after_failure",
            },
            &format!(
                "WeChat took payment {} for a {status} order: refund or reopen it",
                payment.transaction_id
            ),
        ),
        Applied::PaidTwice { existing } => alert(
            out_trade_no,
            "paid_twice",
            &format!(
                "second payment {} after {existing}: refund one",
                payment.transaction_id
            ),
        ),
        Applied::AmountMismatch { expected } => alert(
            out_trade_no,
            "amount_mismatch",
            &format!(
                "payment of {} fen for an order of {expected} fen",
                payment.total_fee
            ),
        ),
        Applied::UnknownOrder => alert(
            out_trade_no,
            "unknown_order",
            "payment for an order we do not have",
        ),
    }
    Ok(applied)
}
