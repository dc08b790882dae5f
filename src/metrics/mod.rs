//! Prometheus metrics through the `metrics` facade. Counters and histograms are recorded where
//! things happen; gauges that describe the database (orders by status, queue backlog) are read
//! in the background ([`DbGauges`]) and rendered from memory at a scrape.

use std::time::Duration;

use metrics::gauge;
use minipay_jobs::bill::MismatchKind;
use minipay_jobs::{OrderStatus, RefundStatus};

use crate::store::{QueueStats, Store, StoreError};

mod recorder;

pub use recorder::install;

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
            .map(|kind| (*kind, count_named(&counts, kind.as_str())))
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
        samples(
            out,
            "minipay_bill_mismatches",
            "kind",
            self.mismatches.iter().map(|(kind, n)| (kind.as_str(), *n)),
        );
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
            .map(|status| (*status, count_named(&refund_counts, status.as_str())))
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
        samples(
            out,
            "minipay_refunds",
            "status",
            self.refunds.iter().map(|(status, n)| (status.as_str(), *n)),
        );
        gauge_line(
            out,
            "minipay_refunds_held",
            "Pending refunds held by NOTENOUGH (the merchant's balance), retried slowly.",
            self.refunds_held as f64,
        );
        header(out, "minipay_orders", "Orders by status.");
        samples(
            out,
            "minipay_orders",
            "status",
            self.orders.iter().map(|(status, n)| (status.as_str(), *n)),
        );
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
            samples(
                out,
                name,
                "queue",
                self.queues.iter().map(|s| (s.queue.as_str(), value(s))),
            );
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

/// The count listed under `name` in a grouped query's `(name, count)` rows; 0 when absent.
fn count_named(counts: &[(String, i64)], name: &str) -> i64 {
    counts
        .iter()
        .find(|(n, _)| n == name)
        .map_or(0, |(_, count)| *count)
}

/// One unlabelled gauge with its HELP and TYPE lines.
pub fn gauge_line(out: &mut String, name: &str, help: &str, value: f64) {
    header(out, name, help);
    sample(out, name, None, value);
}

fn header(out: &mut String, name: &str, help: &str) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
}

/// One sample of `name` per `(label value, count)` row, labelled `key`.
fn samples<'a>(
    out: &mut String,
    name: &str,
    key: &str,
    rows: impl IntoIterator<Item = (&'a str, i64)>,
) {
    for (value, n) in rows {
        sample(out, name, Some((key, value)), n as f64);
    }
}

/// A sample line; label values here are our own names (statuses, queues), never outside text.
fn sample(out: &mut String, name: &str, label: Option<(&str, &str)>, value: f64) {
    match label {
        Some((key, v)) => out.push_str(&format!("{name}{{{key}=\"{v}\"}} {value}\n")),
        None => out.push_str(&format!("{name} {value}\n")),
    }
}
