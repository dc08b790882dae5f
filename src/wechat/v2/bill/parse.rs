//! The statement parser, one line at a time: each row line into a [`BillRow`], the running
//! sums kept, the summary checked against them at the end. Nothing but the current line is
//! held, so a statement of any length reads in constant memory; `reader.rs` feeds it lines.

use chrono::NaiveDateTime;

use super::layout::{Layout, SummaryLayout, column_name};
use super::money::{Fee, parse_yuan};
use super::{
    BillError, BillErrorKind, BillRow, OrderAmounts, RowRefund, Statement, Summary, excerpt,
};

/// Longest line accepted, in bytes (a real line is a few hundred).
pub const MAX_LINE: usize = 64 * 1024;

const BOM: &[u8] = b"\xEF\xBB\xBF";

enum State {
    Header,
    Rows(Layout),
    SummaryValues(Layout, SummaryLayout),
    Done {
        layout: Layout,
        declared: Summary,
        line: usize,
    },
    Failed,
}

/// Parses a statement fed line by line; the readers below drive it.
pub struct LineParser {
    line: usize,
    state: State,
    sums: Summary,
}

/// A statement read to its end, its summary not yet compared with its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UncheckedStatement {
    pub layout: Layout,
    /// What the summary line says.
    pub declared: Summary,
    /// What the rows add up to.
    pub computed: Summary,
    /// The summary values' line number.
    pub summary_line: usize,
}

impl UncheckedStatement {
    /// The statement, if its summary matches its rows (count and every sum).
    pub fn check(self) -> Result<Statement, BillError> {
        let (d, c) = (&self.declared, &self.computed);
        let money = |field, rows: i64, summary: i64| {
            (rows != summary).then(|| (field, rows.to_string(), summary.to_string()))
        };
        let optional = |field, rows: Option<i64>, summary: Option<i64>| match summary {
            Some(summary) => money(field, rows.unwrap_or_default(), summary),
            None => None,
        };
        let mismatch = (c.count != d.count)
            .then(|| ("总交易单数", c.count.to_string(), d.count.to_string()))
            .or_else(|| {
                money(
                    "应结订单总金额",
                    c.settlement_total_fee,
                    d.settlement_total_fee,
                )
            })
            .or_else(|| money("退款总金额", c.refund_fee, d.refund_fee))
            .or_else(|| money("充值券退款总金额", c.coupon_refund_fee, d.coupon_refund_fee))
            .or_else(|| money("手续费总金额", c.poundage.0, d.poundage.0))
            .or_else(|| optional("订单总金额", c.total_fee, d.total_fee))
            .or_else(|| optional("申请退款总金额", c.applied_refund_fee, d.applied_refund_fee));
        match mismatch {
            // Amounts are named in the unit they are held in: fen, and 0.00001 yuan for fees.
            Some((field, rows, summary)) => Err(BillError {
                line: self.summary_line,
                kind: BillErrorKind::SummaryMismatch {
                    field,
                    rows,
                    summary,
                },
            }),
            None => Ok(Statement {
                layout: self.layout,
                summary: self.declared,
            }),
        }
    }
}

impl Default for LineParser {
    fn default() -> Self {
        Self::new()
    }
}

impl LineParser {
    pub fn new() -> Self {
        LineParser {
            line: 0,
            state: State::Header,
            sums: Summary::default(),
        }
    }

    /// Lines read so far.
    pub fn lines(&self) -> usize {
        self.line
    }

    /// The layout, once the header is read.
    pub fn layout(&self) -> Option<Layout> {
        match self.state {
            State::Rows(layout) | State::SummaryValues(layout, _) => Some(layout),
            State::Done { layout, .. } => Some(layout),
            State::Header | State::Failed => None,
        }
    }

    /// Takes one line without its `\n` (a trailing `\r` is dropped, and a UTF-8 BOM before
    /// the first line). Gives the row it held, if it was a row. After an error every call
    /// fails.
    pub fn line(&mut self, raw: &[u8]) -> Result<Option<BillRow>, BillError> {
        self.line += 1;
        let result = self.take(raw).map_err(|kind| BillError {
            line: self.line,
            kind,
        });
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    /// Takes the input's last line when it has no line break. If that line is not valid
    /// before the summary header was read, the input was most likely cut off in the middle of a
    /// line: that is reported as [`BillErrorKind::NoSummary`] (worth downloading again).
    pub fn last_line(&mut self, raw: &[u8]) -> Result<Option<BillRow>, BillError> {
        let before_summary = matches!(self.state, State::Header | State::Rows(_));
        self.line(raw).map_err(|error| match before_summary {
            true => BillError {
                line: error.line,
                kind: BillErrorKind::NoSummary,
            },
            false => error,
        })
    }

    fn take(&mut self, raw: &[u8]) -> Result<Option<BillRow>, BillErrorKind> {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let raw = match self.line {
            1 => raw.strip_prefix(BOM).unwrap_or(raw),
            _ => raw,
        };
        if raw.len() > MAX_LINE {
            return Err(BillErrorKind::TooLong);
        }
        let text = std::str::from_utf8(raw).map_err(|_| BillErrorKind::NotUtf8)?;
        match self.state {
            State::Header => {
                let layout = Layout::recognise(text)
                    .ok_or_else(|| BillErrorKind::UnknownHeader(excerpt(text)))?;
                self.sums.total_fee = layout.has_order_amounts().then_some(0);
                self.sums.applied_refund_fee = self.sums.total_fee;
                self.state = State::Rows(layout);
                Ok(None)
            }
            State::Rows(layout) if text.starts_with('`') => {
                let row = parse_row(layout, text)?;
                add_row(&mut self.sums, &row).ok_or(BillErrorKind::Value {
                    column: "总交易单数",
                    value: "sums overflow".into(),
                })?;
                Ok(Some(row))
            }
            State::Rows(layout) => {
                let summary = SummaryLayout::recognise(text)
                    .ok_or_else(|| BillErrorKind::Unexpected(excerpt(text)))?;
                if !summary.fits(layout) {
                    return Err(BillErrorKind::SummaryLayout(excerpt(text)));
                }
                self.state = State::SummaryValues(layout, summary);
                Ok(None)
            }
            State::SummaryValues(layout, summary) => {
                let declared = parse_summary(summary, text)?;
                self.state = State::Done {
                    layout,
                    declared,
                    line: self.line,
                };
                Ok(None)
            }
            State::Done { .. } if text.trim().is_empty() => Ok(None),
            State::Done { .. } => Err(BillErrorKind::TrailingText(excerpt(text))),
            State::Failed => Err(BillErrorKind::AfterError),
        }
    }

    /// Ends the statement without comparing its summary to its rows (for reading published
    /// excerpts whose summary covers rows left out). Production uses [`Self::finish`].
    pub fn finish_unchecked(self) -> Result<UncheckedStatement, BillError> {
        let error = |kind| {
            Err(BillError {
                line: self.line,
                kind,
            })
        };
        match self.state {
            State::Done {
                layout,
                declared,
                line,
            } => Ok(UncheckedStatement {
                layout,
                declared,
                computed: self.sums,
                summary_line: line,
            }),
            State::Header => error(BillErrorKind::Empty),
            State::Rows(_) | State::SummaryValues(..) => error(BillErrorKind::NoSummary),
            State::Failed => error(BillErrorKind::AfterError),
        }
    }

    /// Ends the statement: it must have had its summary, and the summary must match the rows.
    pub fn finish(self) -> Result<Statement, BillError> {
        self.finish_unchecked()?.check()
    }
}

fn add_row(sums: &mut Summary, row: &BillRow) -> Option<()> {
    sums.count = sums.count.checked_add(1)?;
    sums.settlement_total_fee = sums
        .settlement_total_fee
        .checked_add(row.settlement_total_fee)?;
    if let Some(refund) = &row.refund {
        sums.refund_fee = sums.refund_fee.checked_add(refund.refund_fee)?;
        sums.coupon_refund_fee = sums
            .coupon_refund_fee
            .checked_add(refund.coupon_refund_fee)?;
    }
    sums.poundage = sums.poundage.checked_add(row.poundage)?;
    if let (Some(total), Some(order)) = (sums.total_fee, &row.order) {
        sums.total_fee = Some(total.checked_add(order.total_fee)?);
        sums.applied_refund_fee = Some(
            sums.applied_refund_fee?
                .checked_add(order.applied_refund_fee)?,
        );
    }
    Some(())
}

/// Values of a backtick-prefixed line: every value starts with `` ` ``, so values are split at
/// `` ,` `` and a comma inside a value (商品名称, 商户数据包) stays in it.
fn cells(text: &str) -> impl Iterator<Item = &str> {
    text.strip_prefix('`').unwrap_or(text).split(",`")
}

fn parse_row(layout: Layout, text: &str) -> Result<BillRow, BillErrorKind> {
    let cells: Vec<&str> = cells(text).collect();
    if cells.len() != layout.columns() {
        return Err(BillErrorKind::Columns {
            expected: layout.columns(),
            found: cells.len(),
        });
    }
    let invalid = |at: usize| BillErrorKind::Value {
        column: column_name(at),
        value: excerpt(cells[at]),
    };
    let fen = |at: usize| parse_yuan(cells[at]).ok_or_else(|| invalid(at));
    let text = |at: usize| cells[at].to_owned();
    let trade_time = parse_trade_time(cells[0]).ok_or_else(|| invalid(0))?;
    let refund = if cells[9] == "REFUND" {
        let id = |at: usize| !matches!(cells[at], "" | "0");
        if !id(14) || !id(15) {
            return Err(BillErrorKind::RefundWithoutIds);
        }
        Some(RowRefund {
            refund_id: text(14),
            out_refund_no: text(15),
            refund_fee: fen(16)?,
            coupon_refund_fee: fen(17)?,
            refund_type: text(18),
            refund_status: text(19),
        })
    } else {
        let blank = matches!(cells[14], "" | "0")
            && matches!(cells[15], "" | "0")
            && fen(16)? == 0
            && fen(17)? == 0
            && cells[18].is_empty()
            && cells[19].is_empty();
        if !blank {
            return Err(BillErrorKind::RefundOnPayment);
        }
        None
    };
    let order = match layout.has_order_amounts() {
        true => Some(OrderAmounts {
            total_fee: fen(24)?,
            applied_refund_fee: fen(25)?,
            rate_remark: text(26),
        }),
        false => None,
    };
    Ok(BillRow {
        trade_time,
        appid: text(1),
        mch_id: text(2),
        sub_mch_id: text(3),
        device_info: text(4),
        transaction_id: text(5),
        out_trade_no: text(6),
        openid: text(7),
        trade_type: text(8),
        trade_state: text(9),
        bank_type: text(10),
        fee_type: text(11),
        settlement_total_fee: fen(12)?,
        coupon_fee: fen(13)?,
        refund,
        body: text(20),
        attach: text(21),
        poundage: Fee::parse(cells[22]).ok_or_else(|| invalid(22))?,
        rate: text(23),
        order,
    })
}

fn parse_summary(layout: SummaryLayout, text: &str) -> Result<Summary, BillErrorKind> {
    let values: Vec<&str> = match text.starts_with('`') {
        true => cells(text).collect(),
        false => return Err(BillErrorKind::Unexpected(excerpt(text))),
    };
    if values.len() != layout.columns() {
        return Err(BillErrorKind::Columns {
            expected: layout.columns(),
            found: values.len(),
        });
    }
    let names: Vec<String> = layout.header().split(',').map(str::to_owned).collect();
    let invalid = |at: usize| BillErrorKind::Value {
        column: summary_name(&names[at]),
        value: excerpt(values[at]),
    };
    let fen = |at: usize| parse_yuan(values[at]).ok_or_else(|| invalid(at));
    let count = match values[0].bytes().all(|b| b.is_ascii_digit()) {
        true => values[0].parse::<u64>().map_err(|_| invalid(0))?,
        false => return Err(invalid(0)),
    };
    let seven = layout == SummaryLayout::Seven;
    Ok(Summary {
        count,
        settlement_total_fee: fen(1)?,
        refund_fee: fen(2)?,
        coupon_refund_fee: fen(3)?,
        poundage: Fee::parse(values[4]).ok_or_else(|| invalid(4))?,
        total_fee: if seven { Some(fen(5)?) } else { None },
        applied_refund_fee: if seven { Some(fen(6)?) } else { None },
    })
}

/// Summary column names as `'static` for errors (the few there are).
fn summary_name(name: &str) -> &'static str {
    const NAMES: [&str; 9] = [
        "总交易单数",
        "应结订单总金额",
        "退款总金额",
        "充值券退款总金额",
        "手续费总金额",
        "订单总金额",
        "申请退款总金额",
        "总交易额",
        "总退款金额",
    ];
    NAMES.into_iter().find(|n| *n == name).unwrap_or("汇总金额")
}

/// Reads 交易时间: `yyyy-MM-dd HH:mm:ss`, also with full-width colons (`16：33：45`, old
/// statements) and without the space (as WeChat's own 2014 example prints it).
pub fn parse_trade_time(text: &str) -> Option<NaiveDateTime> {
    let mut normal = text.replace('：', ":");
    if normal.len() == 18 && normal.is_char_boundary(10) {
        normal.insert(10, ' ');
    }
    let well_formed = normal.len() == 19
        && normal.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b' ',
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        });
    if !well_formed {
        return None;
    }
    NaiveDateTime::parse_from_str(&normal, "%Y-%m-%d %H:%M:%S").ok()
}
