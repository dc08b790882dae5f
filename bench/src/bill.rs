//! `minipay-bench bill`: a generated statement of `rows` lines (payments, every tenth line a
//! partial refund) parsed and reconciled against a day of the same local trades, timed, with
//! the peak RSS growth of each phase. The statement is written to a file first and read back
//! as a stream: what is measured is what the parser and the comparison hold, which must not
//! grow with the statement (the local day's map does grow with the day's trades, by design).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use chrono::NaiveDate;
use minipay::wechat::v2::bill::{
    BillRow, ChunkParser, Fee, Layout, OrderAmounts, RowRefund, StatementReader, StatementWriter,
};
use minipay_jobs::OrderStatus;
use minipay_jobs::bill::{
    DayReconciliation, Elsewhere, LocalOrder, LocalRefund, LocalRefundStatus,
};

fn out_trade_no(i: usize) -> String {
    format!("MP20261129{i:012}")
}

fn fee(i: usize) -> i64 {
    1 + (i as i64 * 7919) % 100_000
}

/// The line index of the `n`-th payment (every tenth line is a refund).
pub(crate) fn payment_index(n: usize) -> usize {
    n + n / 9
}

/// Line `i`: a payment, or (every tenth) a refund of half of payment `i - 1`.
pub(crate) fn row(i: usize) -> BillRow {
    let time = NaiveDate::from_ymd_opt(2026, 11, 29)
        .and_then(|d| {
            d.and_hms_opt(
                ((i / 3600) % 24) as u32,
                ((i / 60) % 60) as u32,
                (i % 60) as u32,
            )
        })
        .unwrap_or_default();
    let refund = (i % 10 == 9).then(|| RowRefund {
        refund_id: format!("50300{i:020}"),
        out_refund_no: format!("RF{i:012}"),
        refund_fee: fee(i - 1) / 2,
        coupon_refund_fee: 0,
        refund_type: "ORIGINAL".into(),
        refund_status: "PROCESSING".into(),
    });
    let (otn, paid) = match &refund {
        Some(_) => (out_trade_no(i - 1), 0),
        None => (out_trade_no(i), fee(i)),
    };
    BillRow {
        trade_time: time,
        appid: "wxd930ea5d5a258f4f".into(),
        mch_id: "10000100".into(),
        sub_mch_id: "0".into(),
        device_info: String::new(),
        transaction_id: format!("4200000001202611{i:012}"),
        out_trade_no: otn,
        openid: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".into(),
        trade_type: "JSAPI".into(),
        trade_state: if refund.is_some() {
            "REFUND"
        } else {
            "SUCCESS"
        }
        .into(),
        bank_type: "OTHERS".into(),
        fee_type: "CNY".into(),
        settlement_total_fee: paid,
        coupon_fee: 0,
        order: Some(OrderAmounts {
            total_fee: paid,
            applied_refund_fee: refund.as_ref().map_or(0, |r| r.refund_fee),
            rate_remark: String::new(),
        }),
        refund,
        body: "咖啡-拿铁".into(),
        attach: String::new(),
        poundage: Fee(paid * 6),
        rate: "0.60%".into(),
    }
}

/// minipay's side of the same day, made on the fly as a database cursor would hand it over
/// (not held before the measurement, nor beside the map).
fn local_day(
    rows: usize,
) -> (
    impl Iterator<Item = LocalOrder>,
    impl Iterator<Item = LocalRefund>,
) {
    let orders = (0..rows).filter(|i| i % 10 != 9).map(|i| LocalOrder {
        out_trade_no: out_trade_no(i),
        total_fee: fee(i),
        status: OrderStatus::Paid,
    });
    let refunds = (0..rows).filter(|i| i % 10 == 9).map(|i| LocalRefund {
        out_trade_no: out_trade_no(i - 1),
        out_refund_no: format!("RF{i:012}"),
        refund_fee: fee(i - 1) / 2,
        status: LocalRefundStatus::Succeeded,
    });
    (orders, refunds)
}

pub(crate) fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Resets the peak RSS (VmHWM) to the current RSS (Linux: `clear_refs` with 5).
pub(crate) fn reset_peak() -> u64 {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    status_kib("VmRSS:")
}

struct Phase {
    name: &'static str,
    seconds: f64,
    rss_growth_mib: f64,
}

fn measure(name: &'static str, run: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<Phase> {
    let before = reset_peak();
    let start = Instant::now();
    run()?;
    let seconds = start.elapsed().as_secs_f64();
    let peak = status_kib("VmHWM:");
    Ok(Phase {
        name,
        seconds,
        rss_growth_mib: peak.saturating_sub(before) as f64 / 1024.0,
    })
}

/// Runs the measurement and prints a table.
pub fn run(rows: usize, dir: &Path) -> anyhow::Result<()> {
    let text = dir.join("statement.csv");
    let gzip = dir.join("statement.csv.gz");
    {
        let out = BufWriter::new(File::create(&text)?);
        let gz = flate2::write::GzEncoder::new(
            BufWriter::new(File::create(&gzip)?),
            flate2::Compression::default(),
        );
        let mut writer = StatementWriter::new(Tee(out, gz), Layout::Columns27)?;
        for i in 0..rows {
            writer.row(&row(i))?;
        }
        let Tee(mut out, gz) = writer.finish()?;
        out.flush()?;
        gz.finish()?.flush()?;
    }
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len() as f64 / 1_048_576.0);
    eprintln!(
        "statement: {rows} rows, {:.1} MiB text, {:.1} MiB gzip",
        size(&text)?,
        size(&gzip)?
    );
    let mut phases = Vec::new();
    phases.push(measure("parse (BufRead)", || {
        let mut reader = StatementReader::new(BufReader::new(File::open(&text)?));
        let mut count = 0usize;
        for row in reader.by_ref() {
            row?;
            count += 1;
        }
        reader.finish()?;
        anyhow::ensure!(count == rows, "{count} rows read");
        Ok(())
    })?);
    phases.push(measure("inflate + parse (download path)", || {
        let mut file = File::open(&gzip)?;
        let mut inflate = flate2::write::GzDecoder::new(Vec::new());
        let mut parser = ChunkParser::new();
        let mut count = 0usize;
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let n = file.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            for piece in chunk[..n].chunks(1024) {
                inflate.write_all(piece)?;
                parser.push(inflate.get_ref(), &mut |_| count += 1)?;
                inflate.get_mut().clear();
            }
        }
        inflate.try_finish()?;
        parser.push(inflate.get_ref(), &mut |_| count += 1)?;
        parser.finish(&mut |_| count += 1)?;
        anyhow::ensure!(count == rows, "{count} rows read");
        Ok(())
    })?);
    phases.push(measure("parse + reconcile (local day in a map)", || {
        let (orders, refunds) = local_day(rows);
        let mut day = DayReconciliation::new(orders, refunds);
        let mut reader = StatementReader::new(BufReader::new(File::open(&text)?));
        for row in reader.by_ref() {
            day.add(row?.entry());
        }
        reader.finish()?;
        let report = day.finish(&Elsewhere::default());
        anyhow::ensure!(report.is_clean(), "{} mismatches", report.mismatches.len());
        Ok(())
    })?);
    println!("| {rows} statement rows | seconds | rows/s | peak RSS growth, MiB |");
    println!("|---|---:|---:|---:|");
    for p in &phases {
        println!(
            "| {} | {:.2} | {:.0} | {:.1} |",
            p.name,
            p.seconds,
            rows as f64 / p.seconds,
            p.rss_growth_mib
        );
    }
    Ok(())
}

/// Writes the statement to the text file and the gzip file at once.
struct Tee<A, B>(A, B);

impl<A: Write, B: Write> Write for Tee<A, B> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(buf)?;
        self.1.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()?;
        self.1.flush()
    }
}

/// The statement's directory, removed afterwards; then the service's whole path
/// (`bill_full.rs`) for as many payments.
pub async fn run_in_temp(rows: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    run(rows, dir.path())?;
    super::bill_full::run(rows, dir.path()).await
}
