//! The process-wide Prometheus recorder: installed once, its metrics described, its histogram
//! samples folded into buckets in the background.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

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
            spawn_upkeep(handle.clone());
            handle
        })
        .clone()
}

/// How often the recorder folds recorded histogram samples into its buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The recorder keeps every histogram sample until its upkeep folds them into the buckets; a
/// scrape runs it, but `install_recorder` leaves it to us otherwise, so a process nobody
/// scrapes grew by every request it served (600,000 refused logins kept ~15 MiB). A thread,
/// not a task: the recorder is process-wide and outlives any one runtime.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the metrics upkeep thread; histograms drain only when scraped");
    }
}

fn describe() {
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
    describe_counter!(
        "minipay_bill_runs_total",
        "Bill reconciliation attempts by outcome: done, no_bill, retry, failed."
    );
    describe_counter!(
        "minipay_bill_healed_total",
        "Order queries queued because WeChat's bill lists a payment minipay had not applied."
    );
    describe_counter!(
        crate::store::DB_COMMITS,
        "SQLite write transactions committed (a group commit counts once)."
    );
    describe_counter!(
        crate::telemetry::DB_STATEMENTS,
        "SQL statements sent to the database, with MINIPAY_COUNT_DB_STATEMENTS."
    );
    describe_events();
    describe_refunds();
}

fn describe_refunds() {
    describe_counter!(
        "minipay_refund_attempts_total",
        "Refund requests sent, by WeChat's answer."
    );
    describe_counter!(
        "minipay_refund_queries_total",
        "Refund queries made, by WeChat's answer."
    );
    describe_counter!(
        "minipay_refunded_fen_total",
        "Fen refunded (refunds that succeeded, console refunds included)."
    );
    describe_counter!(
        "minipay_refund_notifies_total",
        "Refund notifies received, by verdict."
    );
}

fn describe_events() {
    describe_counter!(
        "minipay_event_deliveries_total",
        "Merchant event delivery attempts by result: delivered, failed (retried), dead."
    );
    describe_gauge!(
        "minipay_events_pending",
        "Merchant events not delivered yet (refreshed in the background)."
    );
    describe_gauge!(
        "minipay_events_oldest_pending_age_seconds",
        Unit::Seconds,
        "Age of the oldest merchant event not delivered yet; 0 when none."
    );
    describe_gauge!(
        "minipay_events_dead",
        "Merchant events whose every attempt failed: redeliver them once the endpoint is back."
    );
}

#[cfg(test)]
mod tests {
    /// Without a running upkeep every histogram sample stays in memory until a scrape.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_recorders_upkeep_runs_without_any_scrape() {
        let _handle = super::install();
        let threads = || -> Vec<String> {
            std::fs::read_dir("/proc/self/task")
                .unwrap()
                .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
                .map(|name| name.trim().to_owned())
                .collect()
        };
        // A new thread carries its parent's name until it has set its own.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !threads().iter().any(|name| name == "metrics-upkeep") {
            assert!(
                std::time::Instant::now() < deadline,
                "no upkeep thread among {:?}",
                threads()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
