//! The simulator's statement data: a trade as a statement lists it, the differences a test
//! injects between the statement and the simulator's trades, and the statement settings. Data
//! only: the endpoints are in `bill` (WeChat's) and `bill_control` (the `/sim/bill/` ones).

use std::collections::VecDeque;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use serde::{Deserialize, Serialize};

use crate::wechat::v2::bill::{BillRow, Fee, Layout, OrderAmounts, RowRefund};

/// Statement settings and injected differences.
#[derive(Debug, Default)]
pub(super) struct BillState {
    pub injections: Vec<BillInjection>,
    /// `return_msg`s to answer the next calls with, oldest first.
    pub forced: VecDeque<String>,
    /// `None`: 27 columns, as for every merchant since 2018.
    pub layout: Option<Layout>,
}

/// One trade as a statement lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trade {
    /// Payment time, or when the refund was applied for (Beijing time).
    pub at: NaiveDateTime,
    pub out_trade_no: String,
    pub transaction_id: String,
    pub openid: String,
    pub trade_type: String,
    pub body: String,
    pub attach: String,
    /// What the order cost (`total_fee`).
    pub total_fee: i64,
    /// Paid with a coupon (免充值券): not settled to the merchant.
    pub coupon_fee: i64,
    /// 交易状态 of a payment (`SUCCESS`); refund lines always say `REFUND`.
    pub state: String,
    pub refund: Option<TradeRefund>,
}

/// The refund a refund line is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeRefund {
    pub out_refund_no: String,
    pub refund_id: String,
    pub refund_fee: i64,
    /// 退款状态 when it was applied for: `SUCCESS` or `PROCESSING`.
    pub status: String,
}

/// The simulator's rate: 0.60%, each fee rounded to the fen as WeChat's are.
fn poundage(fen: i64) -> Fee {
    Fee((fen * 6 + 500).div_euclid(1000) * Fee::PER_FEN)
}

/// Statement values cannot hold line breaks or a backtick after a comma.
fn clean(text: &str) -> String {
    text.chars()
        .filter(|c| !matches!(c, '`' | '\r' | '\n'))
        .collect()
}

impl Trade {
    /// The statement line of this trade.
    pub fn row(&self, appid: &str, mch_id: &str) -> BillRow {
        let settled = self.total_fee - self.coupon_fee;
        let (settlement, order_fee, refund, fee) = match &self.refund {
            None => (settled, self.total_fee, None, poundage(settled)),
            Some(r) => (
                0,
                0,
                Some(RowRefund {
                    refund_id: r.refund_id.clone(),
                    out_refund_no: r.out_refund_no.clone(),
                    refund_fee: r.refund_fee,
                    coupon_refund_fee: 0,
                    refund_type: "ORIGINAL".into(),
                    refund_status: r.status.clone(),
                }),
                Fee(-poundage(r.refund_fee).0),
            ),
        };
        BillRow {
            trade_time: self.at,
            appid: appid.into(),
            mch_id: mch_id.into(),
            sub_mch_id: "0".into(),
            device_info: String::new(),
            transaction_id: self.transaction_id.clone(),
            out_trade_no: self.out_trade_no.clone(),
            openid: self.openid.clone(),
            trade_type: self.trade_type.clone(),
            trade_state: match refund {
                Some(_) => "REFUND".into(),
                None => self.state.clone(),
            },
            bank_type: "OTHERS".into(),
            fee_type: "CNY".into(),
            settlement_total_fee: settlement,
            coupon_fee: if refund.is_some() { 0 } else { self.coupon_fee },
            order: Some(OrderAmounts {
                total_fee: order_fee,
                applied_refund_fee: refund.as_ref().map_or(0, |r| r.refund_fee),
                rate_remark: String::new(),
            }),
            refund,
            body: clean(&self.body),
            attach: clean(&self.attach),
            poundage: fee,
            rate: "0.60%".into(),
        }
    }
}

/// `POST /sim/bill/injections`: a difference between the statement and the simulator's
/// trades. `out_refund_no` picks a refund line instead of the order's payment line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BillInjection {
    /// Leave the line out.
    Drop {
        out_trade_no: String,
        #[serde(default)]
        out_refund_no: Option<String>,
    },
    /// List this amount (fen): 订单金额 (and 应结订单金额) of a payment, 退款金额 of a refund.
    Amount {
        out_trade_no: String,
        #[serde(default)]
        out_refund_no: Option<String>,
        fee: i64,
    },
    /// List this 交易状态 (payment, e.g. `REVOKED`) or 退款状态 (refund, e.g. `FAIL`).
    Status {
        out_trade_no: String,
        #[serde(default)]
        out_refund_no: Option<String>,
        status: String,
    },
    /// A payment minipay never created, on `date` (`YYYY-MM-DD`, Beijing) at noon.
    Extra {
        date: String,
        out_trade_no: String,
        total_fee: i64,
    },
}

pub(super) fn extra_day(date: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()
}

/// Applies `injections` to the trades of `day`.
pub(super) fn apply_injections(
    injections: &[BillInjection],
    day: NaiveDate,
    trades: &mut Vec<Trade>,
) {
    let line = |trade: &Trade, otn: &str, orn: &Option<String>| {
        trade.out_trade_no == otn && trade.refund.as_ref().map(|r| &r.out_refund_no) == orn.as_ref()
    };
    for injection in injections {
        match injection {
            BillInjection::Drop {
                out_trade_no,
                out_refund_no,
            } => trades.retain(|t| !line(t, out_trade_no, out_refund_no)),
            BillInjection::Amount {
                out_trade_no,
                out_refund_no,
                fee,
            } => {
                for trade in trades
                    .iter_mut()
                    .filter(|t| line(t, out_trade_no, out_refund_no))
                {
                    match trade.refund.as_mut() {
                        Some(refund) => refund.refund_fee = *fee,
                        None => trade.total_fee = *fee,
                    }
                }
            }
            BillInjection::Status {
                out_trade_no,
                out_refund_no,
                status,
            } => {
                for trade in trades
                    .iter_mut()
                    .filter(|t| line(t, out_trade_no, out_refund_no))
                {
                    match trade.refund.as_mut() {
                        Some(refund) => refund.status = status.clone(),
                        None => trade.state = status.clone(),
                    }
                }
            }
            BillInjection::Extra {
                date,
                out_trade_no,
                total_fee,
            } if extra_day(date) == Some(day) => trades.push(Trade {
                at: day.and_time(NaiveTime::MIN) + chrono::Duration::hours(12),
                out_trade_no: out_trade_no.clone(),
                transaction_id: format!("4200{}{:010}", day.format("%Y%m%d"), trades.len()),
                openid: "oSimulatorExtraTradeOpenid0000".into(),
                trade_type: "JSAPI".into(),
                body: "extra".into(),
                attach: String::new(),
                total_fee: *total_fee,
                coupon_fee: 0,
                state: "SUCCESS".into(),
                refund: None,
            }),
            BillInjection::Extra { .. } => {}
        }
    }
}
