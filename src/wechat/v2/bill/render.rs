//! Writes statements in WeChat's format (the simulator's `downloadbill`, tests, the bench):
//! header, one backtick-prefixed line per row, the summary computed from the rows. Lines end
//! in `\r\n` as WeChat's do.

use std::io::{self, Write};

use super::layout::Layout;
use super::money::format_yuan;
use super::{BillRow, Summary};

/// Writes one statement row by row; the sums are kept as it goes.
pub struct StatementWriter<W: Write> {
    out: W,
    layout: Layout,
    sums: Summary,
}

impl<W: Write> StatementWriter<W> {
    /// Writes the header line.
    pub fn new(mut out: W, layout: Layout) -> io::Result<Self> {
        write!(out, "{}\r\n", layout.header())?;
        let zero = layout.has_order_amounts().then_some(0);
        Ok(StatementWriter {
            out,
            layout,
            sums: Summary {
                total_fee: zero,
                applied_refund_fee: zero,
                ..Summary::default()
            },
        })
    }

    /// Writes one row. A 24-column layout leaves [`BillRow::order`] out; a 27-column one
    /// writes zeros where it is missing. Refuses values the format cannot carry: line breaks,
    /// and `` ,` `` (the value separator).
    pub fn row(&mut self, row: &BillRow) -> io::Result<()> {
        let refund = row.refund.as_ref();
        let mut cells: Vec<String> = vec![
            row.trade_time.format("%Y-%m-%d %H:%M:%S").to_string(),
            row.appid.clone(),
            row.mch_id.clone(),
            row.sub_mch_id.clone(),
            row.device_info.clone(),
            row.transaction_id.clone(),
            row.out_trade_no.clone(),
            row.openid.clone(),
            row.trade_type.clone(),
            row.trade_state.clone(),
            row.bank_type.clone(),
            row.fee_type.clone(),
            format_yuan(row.settlement_total_fee),
            format_yuan(row.coupon_fee),
            refund.map_or("0".into(), |r| r.refund_id.clone()),
            refund.map_or("0".into(), |r| r.out_refund_no.clone()),
            format_yuan(refund.map_or(0, |r| r.refund_fee)),
            format_yuan(refund.map_or(0, |r| r.coupon_refund_fee)),
            refund.map_or(String::new(), |r| r.refund_type.clone()),
            refund.map_or(String::new(), |r| r.refund_status.clone()),
            row.body.clone(),
            row.attach.clone(),
            row.poundage.to_string(),
            row.rate.clone(),
        ];
        if self.layout.has_order_amounts() {
            let order = row.order.as_ref();
            cells.push(format_yuan(order.map_or(0, |o| o.total_fee)));
            cells.push(format_yuan(order.map_or(0, |o| o.applied_refund_fee)));
            cells.push(order.map_or(String::new(), |o| o.rate_remark.clone()));
        }
        if let Some(bad) = cells
            .iter()
            .find(|c| c.contains(['\r', '\n']) || c.contains(",`"))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a statement value cannot hold line breaks or \",`\": {bad:?}"),
            ));
        }
        write_values(&mut self.out, &cells)?;
        self.add(row);
        Ok(())
    }

    fn add(&mut self, row: &BillRow) {
        let s = &mut self.sums;
        // Saturating: a statement of absurd amounts is the parser's to refuse, not a panic here.
        s.count = s.count.saturating_add(1);
        s.settlement_total_fee = s
            .settlement_total_fee
            .saturating_add(row.settlement_total_fee);
        if let Some(refund) = &row.refund {
            s.refund_fee = s.refund_fee.saturating_add(refund.refund_fee);
            s.coupon_refund_fee = s.coupon_refund_fee.saturating_add(refund.coupon_refund_fee);
        }
        s.poundage.0 = s.poundage.0.saturating_add(row.poundage.0);
        let order = row.order.as_ref();
        if let Some(total) = s.total_fee.as_mut() {
            *total = total.saturating_add(order.map_or(0, |o| o.total_fee));
        }
        if let Some(applied) = s.applied_refund_fee.as_mut() {
            *applied = applied.saturating_add(order.map_or(0, |o| o.applied_refund_fee));
        }
    }

    /// What the rows written so far add up to.
    pub fn sums(&self) -> Summary {
        self.sums
    }

    /// Writes the summary the rows add up to and hands the output back.
    pub fn finish(self) -> io::Result<W> {
        let sums = self.sums;
        self.finish_with(&sums)
    }

    /// Writes `summary` whatever the rows add up to (tests of the parser's check).
    pub fn finish_with(mut self, summary: &Summary) -> io::Result<W> {
        let layout = self.layout.summary_layout();
        write!(self.out, "{}\r\n", layout.header())?;
        let mut values = vec![
            summary.count.to_string(),
            format_yuan(summary.settlement_total_fee),
            format_yuan(summary.refund_fee),
            format_yuan(summary.coupon_refund_fee),
            summary.poundage.to_string(),
        ];
        if layout.columns() == 7 {
            values.push(format_yuan(summary.total_fee.unwrap_or_default()));
            values.push(format_yuan(summary.applied_refund_fee.unwrap_or_default()));
        }
        write_values(&mut self.out, &values)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

fn write_values(out: &mut impl Write, values: &[String]) -> io::Result<()> {
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        write!(out, "`{value}")?;
    }
    out.write_all(b"\r\n")
}

/// A whole statement in memory.
pub fn render_statement<'a>(
    layout: Layout,
    rows: impl IntoIterator<Item = &'a BillRow>,
) -> io::Result<Vec<u8>> {
    let mut writer = StatementWriter::new(Vec::new(), layout)?;
    for row in rows {
        writer.row(row)?;
    }
    writer.finish()
}
