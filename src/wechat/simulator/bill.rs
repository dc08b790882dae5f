//! The simulator's `POST /pay/downloadbill`: checked like WeChat checks it, answered with a
//! statement in WeChat's format (text or gzip, streamed in chunks) built from the simulator's
//! own trades of that Beijing day, with the differences tests inject (`bill_control.rs`).
//!
//! The statement is made from a plain list of [`Trade`]s, payments and refunds alike.

use std::collections::BTreeMap;
use std::io::Write;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{Days, Months, NaiveDate, NaiveTime};
use flate2::Compression;
use flate2::write::GzEncoder;

use super::Simulator;
use super::state::{Call, SimState, TradeState};
use super::trades::{Trade, TradeRefund, apply_injections};
use super::wire::return_fail;
use crate::wechat::v2::bill::{Layout, StatementWriter, beijing_day, beijing_instant};
use crate::wechat::v2::params::parse_beijing_time;
use crate::wechat::v2::sign::{SignType, verify};
use crate::wechat::v2::{Fields, xml};
use minipay_jobs::RefundResult;

/// The simulator's trades on Beijing day `day`, by time: orders paid that day (by
/// `time_end`), and refunds applied for that day with the status they had then (WeChat lists
/// an accepted refund as `PROCESSING`, or `SUCCESS` when it was done at once).
pub(super) fn day_trades(state: &SimState, day: NaiveDate) -> Vec<Trade> {
    let business = |out_trade_no: &str, name: &str| {
        state
            .orders
            .get(out_trade_no)
            .and_then(|o| o.business.get(name).cloned())
            .unwrap_or_default()
    };
    let mut trades: Vec<Trade> = state
        .orders
        .iter()
        .filter(|(_, o)| matches!(o.trade_state, TradeState::Success | TradeState::Refund))
        .filter_map(|(out_trade_no, order)| {
            let paid = parse_beijing_time(order.time_end.as_deref()?)?;
            let field = |name: &str| business(out_trade_no, name);
            (beijing_day(paid) == day).then(|| Trade {
                at: paid.naive_utc() + chrono::Duration::hours(8),
                out_trade_no: out_trade_no.clone(),
                transaction_id: order.transaction_id.clone().unwrap_or_default(),
                openid: field("openid"),
                trade_type: field("trade_type"),
                body: field("body"),
                attach: field("attach"),
                total_fee: field("total_fee").parse().unwrap_or(0),
                coupon_fee: order.coupon_fee.unwrap_or(0),
                state: "SUCCESS".into(),
                refund: None,
            })
        })
        .collect();
    trades.extend(state.refunds.refunds.values().filter_map(|refund| {
        let applied = chrono::DateTime::from_timestamp(refund.requested_at, 0)?;
        let field = |name: &str| business(&refund.out_trade_no, name);
        (beijing_day(applied) == day).then(|| Trade {
            at: applied.naive_utc() + chrono::Duration::hours(8),
            out_trade_no: refund.out_trade_no.clone(),
            transaction_id: refund.transaction_id.clone(),
            openid: field("openid"),
            trade_type: field("trade_type"),
            body: field("body"),
            attach: field("attach"),
            total_fee: refund.total_fee,
            coupon_fee: 0,
            state: "REFUND".into(),
            refund: Some(TradeRefund {
                out_refund_no: refund.out_refund_no.clone(),
                refund_id: refund.refund_id.clone(),
                refund_fee: refund.refund_fee,
                status: match refund.status {
                    RefundResult::Succeeded => "SUCCESS".into(),
                    _ => "PROCESSING".into(),
                },
            }),
        })
    }));
    trades.sort_by(|a, b| (a.at, &a.out_trade_no).cmp(&(b.at, &b.out_trade_no)));
    trades
}

/// A statement ready to send, or WeChat's `return_msg` for a refusal.
type BillAnswer = Result<(Vec<u8>, bool), String>;

pub(super) async fn download_bill(State(sim): State<Simulator>, body: Bytes) -> Response {
    let (answer, business) = sim.bill_answer(&body);
    sim.state().record(Call {
        api: "downloadbill".into(),
        out_trade_no: None,
        business,
        at_ms: chrono::Utc::now().timestamp_millis(),
        outcome: match &answer {
            Ok(_) => "SUCCESS".into(),
            Err(msg) => format!("RETURN_FAIL: {msg}"),
        },
        client_cert: None,
    });
    match answer {
        Err(msg) => return_fail(&msg),
        Ok((bytes, gzip)) => {
            let content_type = match gzip {
                true => "application/x-gzip",
                false => "text/plain;charset=utf-8",
            };
            // In small chunks, so that clients meet lines (and gzip blocks) cut anywhere.
            let chunks: Vec<Result<Bytes, std::convert::Infallible>> = bytes
                .chunks(4096)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let body = Body::from_stream(futures::stream::iter(chunks));
            ([(header::CONTENT_TYPE, content_type)], body).into_response()
        }
    }
}

impl Simulator {
    fn bill_answer(&self, body: &[u8]) -> (BillAnswer, BTreeMap<String, String>) {
        let Ok(fields) = xml::parse(body, xml::DEFAULT_BODY_LIMIT) else {
            return (Err("data format error".into()), BTreeMap::new());
        };
        let business = fields
            .iter()
            .filter(|(name, _)| !matches!(*name, "nonce_str" | "sign"))
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        (self.bill_for(&fields), business)
    }

    fn bill_for(&self, fields: &Fields) -> BillAnswer {
        let config = self.config();
        for required in ["appid", "mch_id", "nonce_str", "sign", "bill_date"] {
            if fields.non_empty(required).is_none() {
                return Err("missing parameter".into());
            }
        }
        if fields.get("mch_id") != Some(config.mch_id.as_str()) {
            return Err("invalid mch_id".into());
        }
        if fields
            .non_empty("sign_type")
            .is_some_and(|t| t.parse::<SignType>().is_err())
            || verify(fields, &config.key).is_err()
        {
            return Err("SIGN ERROR".into());
        }
        if fields.get("appid") != Some(config.appid.as_str()) {
            return Err("invalid appid".into());
        }
        // The simulator writes ALL statements only.
        if !matches!(fields.non_empty("bill_type"), None | Some("ALL")) {
            return Err("invalid bill_type".into());
        }
        let gzip = match fields.non_empty("tar_type") {
            None => false,
            Some("GZIP") => true,
            Some(_) => return Err("data format error".into()),
        };
        if let Some(forced) = self.state().bills.forced.pop_front() {
            return Err(forced);
        }
        let day = self.bill_day(fields.get("bill_date").unwrap_or_default())?;
        let state = self.state();
        let mut trades = day_trades(&state, day);
        apply_injections(&state.bills.injections, day, &mut trades);
        let layout = state.bills.layout.unwrap_or(Layout::Columns27);
        drop(state);
        if trades.is_empty() {
            return Err("No Bill Exist".into());
        }
        let text = render(&trades, layout, &config.appid, &config.mch_id)
            .map_err(|_| "SYSTEMERROR".to_owned())?;
        if !gzip {
            return Ok((text, false));
        }
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder
            .write_all(&text)
            .and_then(|()| encoder.finish())
            .map(|bytes| (bytes, true))
            .map_err(|_| "CompressGZip Error".into())
    }

    /// The day asked for, if WeChat would have its bill now: three months back at most, and
    /// from 10:00 Beijing time the next day.
    fn bill_day(&self, bill_date: &str) -> Result<NaiveDate, String> {
        let invalid = || "invalid bill_date".to_owned();
        if bill_date.len() != 8 || !bill_date.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let day = NaiveDate::parse_from_str(bill_date, "%Y%m%d").map_err(|_| invalid())?;
        let now = self.clock().now();
        let today = beijing_day(now);
        let oldest = today
            .checked_sub_months(Months::new(3))
            .ok_or_else(invalid)?;
        if day < oldest || day > today {
            return Err(invalid());
        }
        let ready = day
            .checked_add_days(Days::new(1))
            .map(|next| beijing_instant(next.and_time(BILL_READY)))
            .ok_or_else(invalid)?;
        if now < ready {
            return Err("Bill Creating".into());
        }
        Ok(day)
    }
}

/// When a day's bill is ready, the next day (Beijing time).
const BILL_READY: NaiveTime = match NaiveTime::from_hms_opt(10, 0, 0) {
    Some(t) => t,
    None => panic!("10:00 is a valid time"),
};

fn render(trades: &[Trade], layout: Layout, appid: &str, mch_id: &str) -> std::io::Result<Vec<u8>> {
    let mut writer = StatementWriter::new(Vec::new(), layout)?;
    for trade in trades {
        writer.row(&trade.row(appid, mch_id))?;
    }
    writer.finish()
}
