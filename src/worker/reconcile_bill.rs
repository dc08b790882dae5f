//! The bill job: runs one claimed attempt of a day's reconciliation (`domain::bill`). The
//! day's retries are the run's own (its row says when the next attempt is due and the sweep
//! claims it), so apalis re-runs this only after an infrastructure error.

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::{BoxDynError, Data};
use minipay_jobs::{Job, ReconcileBill};
use tracing::Instrument;

use super::guard::guarded;
use crate::domain::bill::{DayOutcome, reconcile_day};
use crate::services::Services;

/// A day's statement can be tens of megabytes: the download's own limit plus the comparison.
const LIMIT: Duration = Duration::from_secs(300 + 120);

pub async fn run(job: ReconcileBill, services: Data<Arc<Services>>) -> Result<(), BoxDynError> {
    let services = Arc::clone(&services);
    let span =
        tracing::error_span!("reconcile_bill", bill_date = %job.bill_date, claim = job.claim);
    guarded(
        ReconcileBill::QUEUE,
        LIMIT,
        async move {
            match reconcile_day(&services, &job.bill_date, job.claim).await? {
                DayOutcome::Stale => tracing::debug!("the run moved on; nothing to do"),
                DayOutcome::Reconciled { .. }
                | DayOutcome::Retry { .. }
                | DayOutcome::Failed { .. } => {}
            }
            Ok(())
        }
        .instrument(span),
    )
    .await
}
