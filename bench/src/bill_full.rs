//! `minipay-bench bill`, the service's whole path: a SQLite database holding the day's paid
//! orders, a statement of the same payments downloaded over HTTP (gzip) from a stand-in
//! WeChat, and one attempt of the day's reconciliation as the `reconcile_bill` job runs it —
//! the local day loaded from the store, the download inflated and parsed as it arrives, the
//! comparison, and the report stored. Timed, with the peak RSS growth.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use axum::body::{Body, Bytes};
use axum::routing::post;
use minipay::config::{Config, Settings};
use minipay::domain::bill::{DayOutcome, reconcile_day};
use minipay::store::{RequestedBy, Store};
use minipay::wechat::v2::bill::{Layout, StatementWriter};

use crate::bill::{payment_index, reset_peak, row, status_kib};

const DAY: &str = "2026-11-29";

/// The statement of `rows` payments, gzipped, held by the stand-in server.
fn statement(rows: usize) -> anyhow::Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut writer = StatementWriter::new(gz, Layout::Columns27)?;
    for n in 0..rows {
        writer.row(&row(payment_index(n)))?;
    }
    Ok(writer.finish()?.finish()?)
}

/// The same payments as minipay's paid orders of the day.
async fn insert_orders(store: &Store, rows: usize) -> anyhow::Result<()> {
    let Store::Sqlite(pools) = store else {
        anyhow::bail!("the bench database is SQLite")
    };
    let mut tx = pools.writer.begin().await?;
    for n in 0..rows {
        let r = row(payment_index(n));
        sqlx::query(
            "INSERT INTO orders (out_trade_no, openid, total_fee, description, payer_ip, params, \
             status, transaction_id, time_end, created_at, updated_at, paid_at, expires_at) \
             VALUES ($1, 'o', $2, 'bench', '127.0.0.1', '{}', 'paid', $3, $4, 0, 0, 0, 0)",
        )
        .bind(&r.out_trade_no)
        .bind(r.order.as_ref().map_or(0, |o| o.total_fee))
        .bind(&r.transaction_id)
        .bind(r.trade_time.format("%Y%m%d%H%M%S").to_string())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// A stand-in WeChat answering every `downloadbill` with the statement.
async fn serve(statement: Bytes) -> anyhow::Result<String> {
    let router = axum::Router::new().route(
        "/pay/downloadbill",
        post(move || {
            let body = statement.clone();
            async move { Body::from(body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(url)
}

/// Prints one table row: the whole path for `rows` payments.
pub async fn run(rows: usize, dir: &Path) -> anyhow::Result<()> {
    let url = serve(Bytes::from(statement(rows)?)).await?;
    let mut settings = Settings::default();
    settings.database.database_url = format!("sqlite://{}/bench.db", dir.display());
    settings.wechat.pay_base_url = Some(url.clone());
    settings.wechat.auth_base_url = Some(url);
    let config = Config::from_settings(settings).map_err(|e| anyhow::anyhow!("{e}"))?;
    let services = minipay::app::services_for_command(config).await?;
    insert_orders(&services.store, rows).await?;
    let now_ms = services.clock.unix_ms();
    services
        .store
        .request_bill_run(DAY, RequestedBy::Cli, now_ms, now_ms, now_ms + 3_600_000)
        .await?;
    let claim = services
        .store
        .claim_bill_run(DAY, now_ms, 600_000)
        .await?
        .context("claiming the run")?;

    let before = reset_peak();
    let start = Instant::now();
    let outcome = reconcile_day(&services, DAY, claim).await?;
    let seconds = start.elapsed().as_secs_f64();
    let growth = status_kib("VmHWM:").saturating_sub(before) as f64 / 1024.0;
    match outcome {
        DayOutcome::Reconciled { report, .. } if report.is_clean() => {
            anyhow::ensure!(report.wechat.payments == rows as u64, "{:?}", report.wechat);
        }
        other => anyhow::bail!("the day did not reconcile clean: {other:?}"),
    }
    println!(
        "| store load + download (gzip) + reconcile + report stored (SQLite, the job's path) | {seconds:.2} | {:.0} | {growth:.1} |",
        rows as f64 / seconds
    );
    services.store.close().await;
    Ok(())
}
