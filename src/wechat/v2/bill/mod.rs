//! WeChat Pay's daily statement (`downloadbill`, `bill_type=ALL`): typed rows and summary,
//! a streaming parser that checks the summary against the rows, the writer the simulator
//! uses, and the download call. Format facts: docs/bills.md; WeChat's page:
//! https://pay.weixin.qq.com/wiki/doc/api/wxa/wxa_api.php?chapter=9_6
//!
//! Rows become the protocol-neutral lines of `minipay_jobs::bill` with [`BillRow::entry`].

mod download;
mod layout;
mod money;
mod parse;
mod reader;
mod render;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, Utc};
use minipay_jobs::bill::{Fen, WechatEntry, WechatPayment, WechatRefund};

pub use download::{BillQuery, DownloadError, download_bill};
pub use layout::{Layout, SummaryLayout};
pub use money::{Fee, format_yuan, parse_yuan};
pub use parse::{LineParser, MAX_LINE, UncheckedStatement, parse_trade_time};
pub use reader::{ChunkParser, StatementReader, parse_statement};
pub use render::{StatementWriter, render_statement};

/// One payment or refund line of an `ALL` statement. Times are Beijing time as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillRow {
    /// 交易时间: the payment time, or on refund lines the time the refund was applied for.
    pub trade_time: NaiveDateTime,
    /// 公众账号ID
    pub appid: String,
    /// 商户号
    pub mch_id: String,
    /// 特约商户号 (子商户号)
    pub sub_mch_id: String,
    /// 设备号
    pub device_info: String,
    /// 微信订单号
    pub transaction_id: String,
    /// 商户订单号
    pub out_trade_no: String,
    /// 用户标识
    pub openid: String,
    /// 交易类型 (`JSAPI`, ...)
    pub trade_type: String,
    /// 交易状态: `SUCCESS`, `REFUND` on refund lines, `REVOKED`, ...
    pub trade_state: String,
    /// 付款银行
    pub bank_type: String,
    /// 货币种类
    pub fee_type: String,
    /// 应结订单金额 (总金额 in 2014 statements); zero on refund lines.
    pub settlement_total_fee: Fen,
    /// 代金券金额
    pub coupon_fee: Fen,
    /// The refund columns, on `REFUND` lines only.
    pub refund: Option<RowRefund>,
    /// 商品名称
    pub body: String,
    /// 商户数据包
    pub attach: String,
    /// 手续费 (negative on refund lines)
    pub poundage: Fee,
    /// 费率, e.g. `0.60%`
    pub rate: String,
    /// The three columns of 27-column statements.
    pub order: Option<OrderAmounts>,
}

/// 微信退款单号 … 退款状态 of a refund line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowRefund {
    /// 微信退款单号
    pub refund_id: String,
    /// 商户退款单号
    pub out_refund_no: String,
    /// 退款金额
    pub refund_fee: Fen,
    /// 充值券退款金额
    pub coupon_refund_fee: Fen,
    /// 退款类型 (`ORIGINAL`, `BALANCE`)
    pub refund_type: String,
    /// 退款状态 when the refund was applied for (`SUCCESS`, `PROCESSING`, ...)
    pub refund_status: String,
}

/// 订单金额, 申请退款金额, 费率备注 (27-column statements).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderAmounts {
    /// 订单金额: what the order cost (`total_fee`); zero on refund lines.
    pub total_fee: Fen,
    /// 申请退款金额: the refund asked for; zero on payment lines.
    pub applied_refund_fee: Fen,
    /// 费率备注
    pub rate_remark: String,
}

impl BillRow {
    /// Whether this is a refund line (交易状态 `REFUND`).
    pub fn is_refund(&self) -> bool {
        self.refund.is_some()
    }

    /// The line as the reconciliation compares it: a payment's amount is 订单金额 on
    /// 27-column statements and 应结订单金额 on 24-column ones; a refund's is 退款金额.
    pub fn entry(&self) -> WechatEntry {
        match &self.refund {
            Some(refund) => WechatEntry::Refund(WechatRefund {
                out_trade_no: self.out_trade_no.clone(),
                out_refund_no: refund.out_refund_no.clone(),
                refund_fee: refund.refund_fee,
                status: refund.refund_status.clone(),
            }),
            None => WechatEntry::Payment(WechatPayment {
                out_trade_no: self.out_trade_no.clone(),
                transaction_id: self.transaction_id.clone(),
                fee: self
                    .order
                    .as_ref()
                    .map_or(self.settlement_total_fee, |o| o.total_fee),
                state: self.trade_state.clone(),
            }),
        }
    }
}

/// The summary lines (总交易单数 …), or the same sums computed from the rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// 总交易单数: payment and refund lines.
    pub count: u64,
    /// 应结订单总金额 (总交易额)
    pub settlement_total_fee: Fen,
    /// 退款总金额
    pub refund_fee: Fen,
    /// 充值券退款总金额
    pub coupon_refund_fee: Fen,
    /// 手续费总金额
    pub poundage: Fee,
    /// 订单总金额 (seven-column summaries)
    pub total_fee: Option<Fen>,
    /// 申请退款总金额 (seven-column summaries)
    pub applied_refund_fee: Option<Fen>,
}

/// A statement read to its end whose summary matches its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Statement {
    pub layout: Layout,
    pub summary: Summary,
}

/// Why a statement cannot be used; `line` is 1-based (0: before any line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("statement line {line}: {kind}")]
pub struct BillError {
    pub line: usize,
    pub kind: BillErrorKind,
}

/// What is wrong with a statement. Outside text is shown escaped and cut to 80 characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillErrorKind {
    #[error("cannot be read: {0}")]
    Io(String),
    #[error("is not UTF-8")]
    NotUtf8,
    #[error("is longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("the statement is empty")]
    Empty,
    #[error("unknown header {0:?}: not an ALL statement of 24 or 27 columns")]
    UnknownHeader(String),
    #[error("expected a row (starting with a backtick) or the summary header, found {0:?}")]
    Unexpected(String),
    #[error("has {found} columns where the header has {expected}")]
    Columns { expected: usize, found: usize },
    #[error("{column} {value:?} is not valid")]
    Value { column: &'static str, value: String },
    #[error("a payment line with refund columns filled")]
    RefundOnPayment,
    #[error("a refund line without 微信退款单号 or 商户退款单号")]
    RefundWithoutIds,
    #[error("summary header {0:?} does not go with the statement's columns")]
    SummaryLayout(String),
    #[error("the statement ends before its summary")]
    NoSummary,
    #[error("{field}: the rows add up to {rows}, the summary says {summary}")]
    SummaryMismatch {
        field: &'static str,
        rows: String,
        summary: String,
    },
    #[error("text after the summary: {0:?}")]
    TrailingText(String),
    #[error("read on after an error")]
    AfterError,
}

/// Outside text for an error message: at most 80 characters (shown escaped by `{:?}`).
fn excerpt(text: &str) -> String {
    text.chars().take(80).collect()
}

/// China Standard Time, in which WeChat Pay writes every time and cuts every bill day.
const BEIJING: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(offset) => offset,
    None => panic!("UTC+8 is a valid offset"),
};

/// The Beijing day `at` falls on: the bill it belongs to.
pub fn beijing_day(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&BEIJING).date_naive()
}

/// A statement time (Beijing) as an instant.
pub fn beijing_instant(time: NaiveDateTime) -> DateTime<Utc> {
    DateTime::<Utc>::from_naive_utc_and_offset(time - chrono::Duration::hours(8), Utc)
}

/// `bill_date` as the request carries it: `yyyyMMdd`.
pub fn bill_date(day: NaiveDate) -> String {
    day.format("%Y%m%d").to_string()
}
