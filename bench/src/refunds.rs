//! Refund throughput (`minipay-bench refunds`): `orders` paid orders, then one full refund of
//! each requested through the admin API by 64 clients. Reported per backend: refund requests
//! accepted per second (the refund and its job stored) with their p50/p99, and refunds
//! settled per second from the first request to the last `succeeded` (each one a
//! `refund_order` job calling the embedded simulator over mutual TLS, then its notify; the
//! simulator settles a refund `REFUND_RESULT_MS` after accepting it, as WeChat takes seconds).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::db::{Backend, BenchDb};
use crate::embedded::{Embedded, wait_for};

/// How long the simulator keeps an accepted refund `PROCESSING`.
const REFUND_RESULT_MS: u64 = 500;

pub async fn run(backends: &[Backend], orders: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    println!(
        "| backend | refunds | requests accepted/s | request p50 | request p99 | settled/s (request → succeeded) | CPU s service |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &backend in backends {
        let name = backend.name();
        let db = BenchDb::create(backend).await?;
        let svc =
            Embedded::start(&db, dir.path(), "minipay-refunds", &[], REFUND_RESULT_MS).await?;

        eprintln!("[{name}] refunds: {orders} paid orders");
        let numbers = Arc::new(svc.ready_orders(orders).await?);
        svc.pay_each(&numbers).await?;
        let paid = numbers.len() as i64;
        let paid_sql = "SELECT COUNT(*) FROM orders WHERE status = 'paid'";
        wait_for(&db.url, "", paid_sql, paid).await?;

        eprintln!("[{name}] refunds: one full refund of each");
        let cpu_before = svc.service.cpu_secs();
        let started = Instant::now();
        let requests = svc.refund_each(&numbers).await?;
        let succeeded = "SELECT COUNT(*) FROM refunds WHERE status = 'succeeded'";
        wait_for(&db.url, "", succeeded, paid).await?;
        let settled = paid as f64 / started.elapsed().as_secs_f64();
        let cpu = svc.service.cpu_secs() - cpu_before;
        println!(
            "| {name} | {paid} | {:.0} | {:.1} ms | {:.1} ms | {settled:.0} | {cpu:.1} |",
            requests.rate(),
            requests.latencies.ms(0.5),
            requests.latencies.ms(0.99),
        );
        let mut service = svc.service;
        service.stop(Duration::from_secs(10))?;
        db.drop_now().await;
    }
    Ok(())
}
