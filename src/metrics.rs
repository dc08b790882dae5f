//! Prometheus metrics through the `metrics` facade. Counters and histograms are recorded where
//! things happen; gauges that describe the database (orders by status, queue backlog) are read
//! in the background ([`DbGauges`]) and rendered from memory at a scrape.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use minipay_jobs::bill::MismatchKind;
use minipay_jobs::{OrderStatus, RefundStatus};

use crate::store::{QueueStats, Store, StoreError};

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

/// How often the merchant events gauges are read from the database.
pub const EVENT_GAUGES_EVERY: Duration = Duration::from_secs(5);

/// Keeps the merchant events gauges current in the background (one small aggregate query per
/// period, on the `events_state` index), so that a scrape costs nothing.
pub fn spawn_event_gauges(
    store: Store,
    clock: crate::clock::Clock,
    stop: tokio_util::sync::CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            if let Ok(stats) = store.event_stats().await {
                gauge!("minipay_events_pending").set(stats.pending as f64);
                gauge!("minipay_events_dead").set(stats.dead as f64);
                let age_ms = stats
                    .oldest_pending
                    .map_or(0, |at| (clock.unix_ms() - at).max(0));
                gauge!("minipay_events_oldest_pending_age_seconds").set(age_ms as f64 / 1000.0);
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(EVENT_GAUGES_EVERY) => {}
            }
        }
    });
}

/// The database-backed gauges, read in the background (`http::Snapshot`) and rendered by
/// `/metrics` from memory: a scrape costs no query.
#[derive(Debug, Clone, Default)]
pub struct DbGauges {
    /// Orders of each status (every status, zeros included).
    pub orders: Vec<(OrderStatus, i64)>,
    /// Each queue's backlog (every queue, even with no rows).
    pub queues: Vec<QueueStats>,
    pub ready_overdue: i64,
    /// Refunds of each status (every status, zeros included), and those held by `NOTENOUGH`.
    pub refunds: Vec<(RefundStatus, i64)>,
    pub refunds_held: i64,
    /// The last reconciled day's bill, once there is one.
    pub bill: Option<BillGauges>,
}

/// The last reconciled day: its start, its mismatches by kind, the orders it healed.
#[derive(Debug, Clone, Default)]
pub struct BillGauges {
    /// Unix seconds of 00:00 Beijing of the day.
    pub day_start: i64,
    pub mismatches: Vec<(MismatchKind, i64)>,
    pub healed: i64,
}

impl BillGauges {
    async fn read(store: &Store) -> Result<Option<BillGauges>, StoreError> {
        let Some(run) = store.last_reconciled_bill().await? else {
            return Ok(None);
        };
        let counts = store.bill_mismatch_counts(&run.bill_date).await?;
        let day_start = chrono::NaiveDate::parse_from_str(&run.bill_date, "%Y-%m-%d")
            // 00:00 Beijing is 16:00 UTC the day before.
            .map(|day| day.and_time(chrono::NaiveTime::MIN).and_utc().timestamp() - 8 * 3600)
            .unwrap_or(0);
        let mismatches = MismatchKind::ALL
            .iter()
            .map(|kind| {
                let n = counts
                    .iter()
                    .find(|(k, _)| k == kind.as_str())
                    .map_or(0, |(_, n)| *n);
                (*kind, n)
            })
            .collect();
        Ok(Some(BillGauges {
            day_start,
            mismatches,
            healed: run.healed,
        }))
    }

    fn render(&self, out: &mut String) {
        gauge_line(
            out,
            "minipay_bill_last_reconciled_day",
            "Start (Unix seconds, 00:00 Beijing) of the last day whose bill was reconciled.",
            self.day_start as f64,
        );
        header(
            out,
            "minipay_bill_mismatches",
            "Mismatches of the last reconciled day, by kind (missing_local, missing_wechat, amount, status); alert when above zero.",
        );
        for (kind, n) in &self.mismatches {
            sample(
                out,
                "minipay_bill_mismatches",
                Some(("kind", kind.as_str())),
                *n as f64,
            );
        }
        gauge_line(
            out,
            "minipay_bill_healed_orders",
            "Orders of the last reconciled day WeChat listed as paid while minipay held them pending or ready (an order query was queued).",
            self.healed as f64,
        );
    }
}

impl DbGauges {
    /// Reads the gauges: three aggregate queries on the reader pool.
    pub async fn read(
        store: &Store,
        queues: &[&str],
        now_ms: i64,
        reconcile_delay: Duration,
    ) -> Result<DbGauges, StoreError> {
        let counts = store.status_counts().await?;
        let orders = OrderStatus::ALL
            .iter()
            .map(|status| {
                let n = counts
                    .iter()
                    .find(|c| c.status == *status)
                    .map_or(0, |c| c.count);
                (*status, n)
            })
            .collect();
        let stats = store.queue_stats(now_ms.div_euclid(1000)).await?;
        let queues = queues
            .iter()
            .map(|queue| {
                stats
                    .iter()
                    .find(|s| s.queue == *queue)
                    .cloned()
                    .unwrap_or_else(|| QueueStats {
                        queue: (*queue).to_owned(),
                        ..QueueStats::default()
                    })
            })
            .collect();
        let overdue_before = now_ms - reconcile_delay.as_millis() as i64;
        let ready_overdue = store.ready_overdue(overdue_before).await?;
        let (refund_counts, refunds_held) = store.refund_status_counts().await?;
        let refunds = RefundStatus::ALL
            .iter()
            .map(|status| {
                let n = refund_counts
                    .iter()
                    .find(|(name, _)| name == status.as_str())
                    .map_or(0, |(_, n)| *n);
                (*status, n)
            })
            .collect();
        Ok(DbGauges {
            orders,
            queues,
            ready_overdue,
            refunds,
            refunds_held,
            bill: BillGauges::read(store).await?,
        })
    }

    /// Appends the gauges in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        header(out, "minipay_refunds", "Refunds by status.");
        for (status, n) in &self.refunds {
            sample(
                out,
                "minipay_refunds",
                Some(("status", status.as_str())),
                *n as f64,
            );
        }
        gauge_line(
            out,
            "minipay_refunds_held",
            "Pending refunds held by NOTENOUGH (the merchant's balance), retried slowly.",
            self.refunds_held as f64,
        );
        header(out, "minipay_orders", "Orders by status.");
        for (status, n) in &self.orders {
            sample(
                out,
                "minipay_orders",
                Some(("status", status.as_str())),
                *n as f64,
            );
        }
        let per_queue: [PerQueue; 3] = [
            (
                "minipay_queue_depth",
                "Jobs waiting or running, by queue.",
                |s| s.depth,
            ),
            (
                "minipay_queue_oldest_pending_age_seconds",
                "Age of the oldest due job not yet started, by queue.",
                |s| s.oldest_pending_secs,
            ),
            (
                "minipay_jobs_dead",
                "Jobs that will not run again (killed, or out of runs), by queue.",
                |s| s.dead,
            ),
        ];
        for (name, help, value) in per_queue {
            header(out, name, help);
            for s in &self.queues {
                sample(out, name, Some(("queue", &s.queue)), value(s) as f64);
            }
        }
        gauge_line(
            out,
            "minipay_orders_ready_overdue",
            "Ready orders past the reconciliation delay with no payment.",
            self.ready_overdue as f64,
        );
        if let Some(bill) = &self.bill {
            bill.render(out);
        }
    }
}

/// A per-queue gauge: its name, its help, and its value of a queue's stats.
type PerQueue = (&'static str, &'static str, fn(&QueueStats) -> i64);

/// One unlabelled gauge with its HELP and TYPE lines.
pub fn gauge_line(out: &mut String, name: &str, help: &str, value: f64) {
    header(out, name, help);
    sample(out, name, None, value);
}

fn header(out: &mut String, name: &str, help: &str) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
}

/// A sample line; label values here are our own names (statuses, queues), never outside text.
fn sample(out: &mut String, name: &str, label: Option<(&str, &str)>, value: f64) {
    match label {
        Some((key, v)) => out.push_str(&format!("{name}{{{key}=\"{v}\"}} {value}\n")),
        None => out.push_str(&format!("{name} {value}\n")),
    }
}

#[cfg(test)]
mod tests {
    /// Without a running upkeep every histogram sample stays in memory until a scrape.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_recorders_upkeep_runs_without_any_scrape() {
        let _handle = super::install();
        let threads: Vec<String> = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .map(|name| name.trim().to_owned())
            .collect();
        assert!(
            threads.iter().any(|name| name == "metrics-upkeep"),
            "no upkeep thread among {threads:?}"
        );
    }
}
