//! Prometheus metrics through the `metrics` facade. Counters and histograms are recorded where
//! things happen; gauges that describe the database (orders by status, queue backlog) are read
//! when `/metrics` is scraped.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use minipay_jobs::OrderStatus;
use minipay_jobs::bill::MismatchKind;

use crate::store::Store;
use crate::waiters::Waiters;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Seconds-valued histograms share these buckets: 1 ms to 5 min.
const BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// The metrics rendered as Prometheus histograms.
const HISTOGRAMS: [&str; 3] = [
    "minipay_job_duration_seconds",
    "minipay_ready_to_paid_seconds",
    "minipay_http_request_duration_seconds",
];

/// The process-wide recorder (installed once; later calls share it).
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            // Histograms with buckets; the pickup latency stays a summary, whose quantiles
            // (over the last minute) are what a latency target is stated in.
            let mut builder = PrometheusBuilder::new();
            for name in HISTOGRAMS {
                builder = builder
                    .set_buckets_for_metric(Matcher::Full(name.into()), &BUCKETS)
                    .unwrap_or_else(|_| PrometheusBuilder::new());
            }
            let handle = match builder.install_recorder() {
                Ok(handle) => handle,
                // Another recorder owns the facade (an embedding program): render ours empty.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            };
            describe();
            handle
        })
        .clone()
}

fn describe() {
    describe_gauge!("minipay_orders", "Orders by status.");
    describe_counter!(
        "minipay_orders_created_total",
        "Orders accepted (mini-program and merchant backend)."
    );
    describe_counter!(
        "minipay_prepay_attempts_total",
        "unifiedorder calls by outcome: SUCCESS, WeChat's err_code, RETURN_FAIL, HTTP_5xx, TIMEOUT, CONNECT, UNTRUSTED."
    );
    describe_counter!(
        "minipay_prepay_requeued_total",
        "Pending orders whose lost or dead prepay job the reconciler re-queued."
    );
    describe_histogram!(
        "minipay_job_duration_seconds",
        Unit::Seconds,
        "Job handler duration by queue and result."
    );
    describe_histogram!(
        "minipay_job_pickup_seconds",
        Unit::Seconds,
        "From an order's creation (its prepay job's enqueue) to the prepay handler's start, first run only (summary)."
    );
    describe_gauge!("minipay_queue_depth", "Jobs waiting or running, by queue.");
    describe_gauge!(
        "minipay_queue_oldest_pending_age_seconds",
        Unit::Seconds,
        "Age of the oldest due job not yet started, by queue."
    );
    describe_gauge!(
        "minipay_jobs_dead",
        "Jobs that will not run again (killed, or out of runs), by queue."
    );
    describe_counter!(
        "minipay_notifies_total",
        "Payment notifies by verdict (accepted, duplicate, bad_signature, amount_mismatch, ...)."
    );
    describe_counter!(
        "minipay_notifies_unrecorded_total",
        "Refused notifies counted but not stored (backlog full, database down, or free disk below the floor)."
    );
    describe_histogram!(
        "minipay_ready_to_paid_seconds",
        Unit::Seconds,
        "Time from pay params ready to payment applied."
    );
    describe_gauge!(
        "minipay_orders_ready_overdue",
        "Ready orders past the reconciliation delay with no payment."
    );
    describe_counter!(
        "minipay_reconcile_decisions_total",
        "Reconciliation order-query decisions."
    );
    describe_counter!(
        "minipay_alerts_total",
        "Conditions an operator must act on, by kind."
    );
    describe_histogram!(
        "minipay_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP requests by method, route and status."
    );
    describe_gauge!(
        "minipay_long_poll_waiters",
        "Orders with a long-poll waiting in this process."
    );
    describe_bills();
    describe_gauge!(
        "minipay_database_up",
        "1 when the last scrape could read the database."
    );
}

fn describe_bills() {
    describe_gauge!(
        "minipay_bill_last_reconciled_day",
        Unit::Seconds,
        "Start (Unix seconds, 00:00 Beijing) of the last day whose bill was reconciled."
    );
    describe_gauge!(
        "minipay_bill_mismatches",
        "Mismatches of the last reconciled day, by kind (missing_local, missing_wechat, amount, status); alert when above zero."
    );
    describe_gauge!(
        "minipay_bill_healed_orders",
        "Orders of the last reconciled day WeChat listed as paid while minipay held them pending or ready (an order query was queued)."
    );
    describe_counter!(
        "minipay_bill_runs_total",
        "Bill reconciliation attempts by outcome: done, no_bill, retry, failed."
    );
    describe_counter!(
        "minipay_bill_healed_total",
        "Order queries queued because WeChat's bill lists a payment minipay had not applied."
    );
}

/// What the database-backed gauges are read from, at one scrape.
pub struct Gauges<'a> {
    pub store: &'a Store,
    pub waiters: &'a Waiters,
    /// The queues to report, each even when it has no rows.
    pub queues: &'static [&'static str],
    pub now_ms: i64,
    /// A ready order unpaid for longer than this is overdue.
    pub reconcile_delay: Duration,
}

impl Gauges<'_> {
    /// Reads the database-backed gauges.
    pub async fn refresh(&self) {
        let store = self.store;
        let mut up = true;
        match store.status_counts().await {
            Ok(counts) => {
                for status in OrderStatus::ALL {
                    let n = counts
                        .iter()
                        .find(|c| c.status == status)
                        .map_or(0, |c| c.count);
                    gauge!("minipay_orders", "status" => status.as_str()).set(n as f64);
                }
            }
            Err(_) => up = false,
        }
        match store.queue_stats(chrono::Utc::now().timestamp()).await {
            Ok(stats) => {
                for queue in self.queues {
                    let s = stats
                        .iter()
                        .find(|s| s.queue == *queue)
                        .cloned()
                        .unwrap_or_default();
                    let queue: &'static str = queue;
                    gauge!("minipay_queue_depth", "queue" => queue).set(s.depth as f64);
                    gauge!("minipay_queue_oldest_pending_age_seconds", "queue" => queue)
                        .set(s.oldest_pending_secs as f64);
                    gauge!("minipay_jobs_dead", "queue" => queue).set(s.dead as f64);
                }
            }
            Err(_) => up = false,
        }
        let overdue_before = self.now_ms - self.reconcile_delay.as_millis() as i64;
        match store.ready_overdue(overdue_before).await {
            Ok(n) => gauge!("minipay_orders_ready_overdue").set(n as f64),
            Err(_) => up = false,
        }
        if refresh_bills(store).await.is_err() {
            up = false;
        }
        gauge!("minipay_long_poll_waiters").set(self.waiters.watched() as f64);
        gauge!("minipay_database_up").set(if up { 1.0 } else { 0.0 });
    }
}

/// The last reconciled day: its date, its mismatches by kind, the orders it healed.
async fn refresh_bills(store: &Store) -> Result<(), crate::store::StoreError> {
    let Some(run) = store.last_reconciled_bill().await? else {
        return Ok(());
    };
    let counts = store.bill_mismatch_counts(&run.bill_date).await?;
    let day_start = chrono::NaiveDate::parse_from_str(&run.bill_date, "%Y-%m-%d")
        // 00:00 Beijing is 16:00 UTC the day before.
        .map(|day| day.and_time(chrono::NaiveTime::MIN).and_utc().timestamp() - 8 * 3600)
        .unwrap_or(0);
    gauge!("minipay_bill_last_reconciled_day").set(day_start as f64);
    for kind in MismatchKind::ALL {
        let n = counts
            .iter()
            .find(|(k, _)| k == kind.as_str())
            .map_or(0, |(_, n)| *n);
        gauge!("minipay_bill_mismatches", "kind" => kind.as_str()).set(n as f64);
    }
    gauge!("minipay_bill_healed_orders").set(run.healed as f64);
    Ok(())
}
