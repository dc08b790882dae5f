//! The bill schedule, run by every worker process's sweep: from `MINIPAY_BILL_AT` (Beijing
//! time) each day, yesterday gets a bill run — inserted once across all processes, the day's
//! primary key being the claim — and every run whose attempt is due gets a `reconcile_bill`
//! job, claimed with a guarded update so that only one process queues it.

use std::time::Duration;

use chrono::{Days, NaiveDate};
use minipay_jobs::bill::retry;

use crate::services::Services;
use crate::store::StoreError;
use crate::wechat::v2::bill::beijing_day;

/// How long a claimed attempt holds its run: the job's own limit, and a margin. A lost job's
/// run comes due again after it.
const ATTEMPT_LEASE: Duration = Duration::from_secs(10 * 60);

/// The day this process last scheduled, so that it asks the database once a day.
#[derive(Debug, Default)]
pub struct BillSchedule {
    scheduled: Option<NaiveDate>,
}

impl BillSchedule {
    /// Schedules yesterday once `MINIPAY_BILL_AT` has passed today, and queues due attempts.
    pub async fn tick(&mut self, services: &Services) -> Result<(), StoreError> {
        let now = services.clock.now();
        let now_ms = now.timestamp_millis();
        let store = &services.store;
        if let Some(day) = self.due_day(services) {
            let bill_date = day.to_string();
            if store
                .schedule_bill_run(&bill_date, now_ms, retry::give_up_at(now_ms))
                .await?
            {
                tracing::info!(%bill_date, "bill reconciliation scheduled");
            }
            self.scheduled = Some(day);
        }
        let lease_ms = ATTEMPT_LEASE.as_millis() as i64;
        for job in store.claim_due_bill_runs(now_ms, lease_ms).await? {
            tracing::info!(bill_date = %job.bill_date, claim = job.claim, "bill attempt queued");
        }
        Ok(())
    }

    /// Yesterday (Beijing), once today's `MINIPAY_BILL_AT` has passed and it is not scheduled yet.
    fn due_day(&self, services: &Services) -> Option<NaiveDate> {
        let now = services.clock.now();
        let today = beijing_day(now);
        let at = crate::wechat::v2::bill::beijing_instant(today.and_time(services.config.bills.at));
        let yesterday = today.checked_sub_days(Days::new(1))?;
        (now >= at && self.scheduled != Some(yesterday)).then_some(yesterday)
    }
}
