//! The status-update job: applies a recorded, verified notify to its order.

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::{AbortError, BoxDynError, Data};
use minipay_jobs::{ApplyPayment, Job};
use tracing::Instrument;

use super::guard::guarded;
use crate::domain;
use crate::services::Services;

pub async fn run(job: ApplyPayment, services: Data<Arc<Services>>) -> Result<(), BoxDynError> {
    let services = Arc::clone(&services);
    let span = tracing::error_span!("apply_payment", out_trade_no = %job.out_trade_no, notify_id = job.notify_id);
    guarded(
        ApplyPayment::QUEUE,
        Duration::from_secs(30),
        apply(services, job).instrument(span),
    )
    .await
}

async fn apply(services: Arc<Services>, job: ApplyPayment) -> Result<(), BoxDynError> {
    // Jobs queued since the payment rode along read nothing; older ones read their notify.
    let payment = match job.payment() {
        Some(payment) => Some(payment),
        None => services.store.notify_payment(job.notify_id).await?,
    };
    let Some(payment) = payment else {
        return Err(AbortError::new(format!(
            "notify {} is not a recorded verified payment",
            job.notify_id
        ))
        .into());
    };
    let source = format!("notify {}", job.notify_id);
    domain::apply_payment(&services, &payment, &source, Some(job.notify_id)).await?;
    Ok(())
}
