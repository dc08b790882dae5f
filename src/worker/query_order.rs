//! The reconciliation job: asks WeChat about a `ready` order whose notify has not come.
//! SUCCESS → paid (the notify path); expired and unpaid → closeorder (never within 5 minutes
//! of creation) → closed; USERPAYING and not-yet-expired → check again later. A `pending`
//! order is queried only when the daily bill lists its payment (healing), and only a paid
//! answer changes it.

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::{AbortError, BoxDynError, Data};
use minipay_jobs::decide::{OrderClock, after_close_order, after_order_query};
use minipay_jobs::schedule::next_check_at;
use minipay_jobs::{CloseDecision, Job, OrderStatus, QueryDecision, QueryOrder, QueryOutcome};
use tracing::Instrument;

use super::guard::guarded;
use crate::domain::{self, alert};
use crate::services::Services;
use crate::store::OrderRow;

pub async fn run(job: QueryOrder, services: Data<Arc<Services>>) -> Result<(), BoxDynError> {
    let services = Arc::clone(&services);
    let span =
        tracing::error_span!("reconcile", out_trade_no = %job.out_trade_no, check = job.check);
    let limit = services.config.wechat.timeout * 6 + Duration::from_secs(10);
    guarded(
        QueryOrder::QUEUE,
        limit,
        reconcile(services, job).instrument(span),
    )
    .await
}

async fn reconcile(services: Arc<Services>, job: QueryOrder) -> Result<(), BoxDynError> {
    let Some(order) = services.store.order(&job.out_trade_no).await? else {
        return Err(AbortError::new(format!("no order {}", job.out_trade_no)).into());
    };
    match order.status {
        OrderStatus::Ready => {}
        OrderStatus::Pending => return settle_pending(&services, &order).await,
        _ => return Ok(()),
    }
    let outcome = services.gateway.query_order(&order.out_trade_no).await;
    let trade_state = outcome.trade_state.as_deref();
    let decision = after_order_query(&outcome.reply, trade_state, clock(&services, &order));
    tracing::info!(decision = ?decision, trade_state = trade_state.unwrap_or("-"), "order query");
    metrics::counter!("minipay_reconcile_decisions_total", "decision" => decision_name(&decision))
        .increment(1);
    match decision {
        QueryDecision::Paid => pay(&services, outcome, "orderquery (reconciliation)").await,
        QueryDecision::Closed => {
            close_locally(&services, &order, "WeChat reports the order CLOSED").await
        }
        QueryDecision::Close => close(&services, &order, job.check).await,
        QueryDecision::Wait => {
            schedule(
                &services,
                &order,
                job.check,
                "still unpaid; checking again later",
            )
            .await
        }
        QueryDecision::Retry { reason } => {
            schedule(
                &services,
                &order,
                job.check,
                &format!("no answer ({reason}); checking again later"),
            )
            .await
        }
        QueryDecision::Alarm(failure) => {
            alert(
                &order.out_trade_no,
                "reconcile",
                &format!("{}: {}", failure.code, failure.message),
            );
            schedule(
                &services,
                &order,
                job.check,
                &format!("alert {}: {}", failure.code, failure.message),
            )
            .await
        }
    }
}

/// A `pending` order is asked about only when WeChat's bill lists its payment (the prepay
/// reached WeChat and was paid while its answer was lost): a paid answer settles it; anything
/// else leaves the order to its prepay job.
async fn settle_pending(services: &Services, order: &OrderRow) -> Result<(), BoxDynError> {
    let outcome = services.gateway.query_order(&order.out_trade_no).await;
    let trade_state = outcome.trade_state.as_deref();
    match after_order_query(&outcome.reply, trade_state, clock(services, order)) {
        QueryDecision::Paid => pay(services, outcome, "orderquery (bill)").await,
        decision => {
            tracing::info!(decision = ?decision, trade_state = trade_state.unwrap_or("-"), "pending order not paid at WeChat; left to its prepay job");
            Ok(())
        }
    }
}

fn clock(services: &Services, order: &OrderRow) -> OrderClock {
    OrderClock {
        created_at: order.created_at / 1000,
        expires_at: order.expires_at / 1000,
        now: services.clock.unix(),
    }
}

async fn pay(services: &Services, outcome: QueryOutcome, source: &str) -> Result<(), BoxDynError> {
    let payment = outcome
        .payment
        .ok_or("orderquery reply without a complete payment")?;
    domain::apply_payment(services, &payment, source, None).await?;
    Ok(())
}

async fn close(services: &Services, order: &OrderRow, check: u32) -> Result<(), BoxDynError> {
    let reply = services.gateway.close_order(&order.out_trade_no).await;
    let decision = after_close_order(&reply);
    tracing::info!(decision = ?decision, "close order");
    match decision {
        CloseDecision::Closed => {
            close_locally(services, order, "expired unpaid; closed with WeChat").await
        }
        CloseDecision::ConfirmPaid => {
            // Paid at the last moment: the payment is real; fetch and apply it.
            let query = services.gateway.query_order(&order.out_trade_no).await;
            match after_order_query(
                &query.reply,
                query.trade_state.as_deref(),
                clock(services, order),
            ) {
                QueryDecision::Paid => {
                    pay(services, query, "orderquery after closeorder ORDERPAID").await
                }
                _ => {
                    schedule(
                        services,
                        order,
                        check,
                        "closeorder says ORDERPAID; confirming at the next check",
                    )
                    .await
                }
            }
        }
        CloseDecision::Retry { reason } => {
            schedule(
                services,
                order,
                check,
                &format!("closeorder not answered ({reason})"),
            )
            .await
        }
        CloseDecision::Alarm(failure) => {
            alert(
                &order.out_trade_no,
                "close_refused",
                &format!("{}: {}", failure.code, failure.message),
            );
            schedule(
                services,
                order,
                check,
                &format!("closeorder refused: {} {}", failure.code, failure.message),
            )
            .await
        }
    }
}

async fn close_locally(
    services: &Services,
    order: &OrderRow,
    detail: &str,
) -> Result<(), BoxDynError> {
    domain::close_order(services, &order.out_trade_no, detail).await?;
    Ok(())
}

async fn schedule(
    services: &Services,
    order: &OrderRow,
    check: u32,
    decision: &str,
) -> Result<(), BoxDynError> {
    let now = services.clock.unix();
    let next = next_check_at(now, check, order.expires_at / 1000);
    services
        .store
        .schedule_check(
            &order.out_trade_no,
            next * 1000,
            &format!("check {check}: {decision}"),
            now * 1000,
        )
        .await?;
    Ok(())
}

fn decision_name(decision: &QueryDecision) -> &'static str {
    match decision {
        QueryDecision::Paid => "paid",
        QueryDecision::Close => "close",
        QueryDecision::Closed => "closed",
        QueryDecision::Wait => "wait",
        QueryDecision::Retry { .. } => "retry",
        QueryDecision::Alarm(_) => "alarm",
    }
}
