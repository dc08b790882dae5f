//! Refunds as WeChat holds them: `/secapi/pay/refund` (client certificate required) and
//! `/pay/refundquery`, with WeChat's rules (docs/refunds.md): the order must be paid, the total
//! must be the order's, refunds add up to at most the total, 50 per order, within a year of the
//! payment, a minute between two refunds of one order, and the same `out_refund_no` with the
//! same amount is the same refund. An accepted refund turns `SUCCESS` (or a forced result)
//! after `Faults::refund_result_ms`, and its encrypted notify is POSTed until acknowledged.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use minipay_jobs::RefundResult;

use super::Simulator;
use super::orders::{Answer, Api};
use super::refund_book::{NewRefund, REFUND_WINDOW_SECS, Refusal, SimRefund};
use super::state::TradeState;
use super::tls::ClientCert;
use crate::wechat::v2::refund::{check_out_refund_no, check_refund_desc};
use crate::wechat::v2::{Fields, params};

/// What nginx in front of `/secapi/` answers a client without a certificate.
pub const NO_CLIENT_CERT: &str = "No required SSL certificate was sent";

/// `POST /secapi/pay/refund`: only over TLS with a client certificate, as WeChat.
pub(super) async fn secapi_refund(
    State(sim): State<Simulator>,
    cert: Option<Extension<ClientCert>>,
    body: Bytes,
) -> Response {
    let presented = matches!(cert, Some(Extension(ClientCert(true))));
    if !presented {
        sim.record(
            Api::Refund { client_cert: false },
            None,
            BTreeMap::new(),
            "HTTP_400".into(),
        );
        let page = format!(
            "<html>\r\n<head><title>400 {NO_CLIENT_CERT}</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<center>{NO_CLIENT_CERT}</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
        );
        return (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "text/html")],
            page,
        )
            .into_response();
    }
    sim.pay_call(Api::Refund { client_cert: true }, &body).await
}

/// `POST /pay/refundquery` (no certificate needed).
pub(super) async fn refund_query(State(sim): State<Simulator>, body: Bytes) -> Response {
    sim.pay_call(Api::RefundQuery, &body).await
}

impl Simulator {
    /// Handles a signed, verified refund request.
    pub(super) fn refund_request(&self, fields: &Fields) -> Answer {
        let text = |name: &str| fields.get(name).unwrap_or_default();
        for required in ["out_refund_no", "total_fee", "refund_fee"] {
            if fields.non_empty(required).is_none() {
                return Answer::Fail("LACK_PARAMS".into(), format!("缺少参数{required}"));
            }
        }
        let (total_fee, refund_fee) = match (fen(text("total_fee")), fen(text("refund_fee"))) {
            (Some(total), Some(refund)) if refund >= 1 => (total, refund),
            _ => return Answer::ReturnFail("invalid refund_fee".into()),
        };
        if refund_fee > total_fee {
            return Answer::ReturnFail("invalid refund_fee".into());
        }
        if let Err(e) = check_out_refund_no(text("out_refund_no"))
            .and_then(|()| check_refund_desc(text("refund_desc")))
        {
            return Answer::Fail("PARAM_ERROR".into(), format!("{}参数格式错误", e.field));
        }
        if let Some(url) = fields.non_empty("notify_url")
            && params::check_notify_url(url).is_err()
        {
            return Answer::Fail("PARAM_ERROR".into(), "notify_url参数格式错误".into());
        }
        let out_trade_no = match self.find_order(fields) {
            Ok(out_trade_no) => out_trade_no,
            Err(refusal) => return refusal,
        };
        let order_total = self.order_total(&out_trade_no);
        if order_total != Some(total_fee) {
            return Answer::Fail("PARAM_ERROR".into(), "订单金额与原订单不一致".into());
        }
        let notify_url = fields
            .non_empty("notify_url")
            .map(str::to_owned)
            .unwrap_or_else(|| self.default_refund_notify_url(&out_trade_no));
        let created = self.create_refund(NewRefund {
            out_trade_no: &out_trade_no,
            out_refund_no: text("out_refund_no"),
            refund_fee,
            refund_desc: text("refund_desc"),
            notify_url: &notify_url,
            source: "API",
        });
        match created {
            Ok(refund) => Answer::Success(accepted_fields(&refund)),
            Err((code, description)) => Answer::Fail(code.into(), description),
        }
    }

    /// The paid order a refund request names (`transaction_id` first, as WeChat reads it).
    fn find_order(&self, fields: &Fields) -> Result<String, Answer> {
        let state = self.state();
        let found = match (
            fields.non_empty("transaction_id"),
            fields.non_empty("out_trade_no"),
        ) {
            (Some(txn), _) => state
                .orders
                .iter()
                .find(|(_, o)| o.transaction_id.as_deref() == Some(txn))
                .ok_or_else(|| {
                    Answer::Fail("INVALID_TRANSACTIONID".into(), "无效transaction_id".into())
                })?,
            (None, Some(otn)) => state
                .orders
                .get_key_value(otn)
                .ok_or_else(|| Answer::Fail("ORDERNOTEXIST".into(), "订单不存在".into()))?,
            (None, None) => {
                return Err(Answer::ReturnFail(
                    "out_trade_no或transaction_id参数缺失".into(),
                ));
            }
        };
        match found.1.trade_state {
            // Refunds need a payment: an unpaid order has no transaction to refund.
            TradeState::Success | TradeState::Refund => Ok(found.0.clone()),
            _ => Err(Answer::Fail("ORDERNOTEXIST".into(), "订单未支付".into())),
        }
    }

    fn order_total(&self, out_trade_no: &str) -> Option<i64> {
        self.state()
            .orders
            .get(out_trade_no)?
            .business
            .get("total_fee")?
            .parse()
            .ok()
    }

    /// Where a refund without its own notify_url is notified: the order's last refund's URL,
    /// else its payment notify_url (merchants often configure one URL for both).
    pub(super) fn default_refund_notify_url(&self, out_trade_no: &str) -> String {
        let state = self.state();
        let last_refund = state
            .refunds
            .of_order(out_trade_no)
            .max_by_key(|r| r.requested_at)
            .map(|r| r.notify_url.clone());
        last_refund
            .or_else(|| {
                state
                    .orders
                    .get(out_trade_no)
                    .and_then(|o| o.business.get("notify_url").cloned())
            })
            .unwrap_or_default()
    }

    /// Applies WeChat's refund rules and records the refund; an existing `out_refund_no` with
    /// the same amount is the same refund. Refusals are `(err_code, err_code_des)`.
    pub(super) fn create_refund(&self, new: NewRefund<'_>) -> Result<SimRefund, Refusal> {
        let now = self.clock().unix();
        let faults = self.state().faults.clone();
        let mut state = self.state();
        let order = state
            .orders
            .get(new.out_trade_no)
            .ok_or(("ORDERNOTEXIST", "订单不存在".to_owned()))?;
        let total_fee: i64 = order
            .business
            .get("total_fee")
            .and_then(|f| f.parse().ok())
            .unwrap_or(0);
        let transaction_id = order.transaction_id.clone().unwrap_or_default();
        let paid_at = order
            .time_end
            .as_deref()
            .and_then(params::parse_beijing_time)
            .map_or(now, |t| t.timestamp());
        if let Some(existing) = state.refunds.refunds.get(new.out_refund_no) {
            return if existing.out_trade_no == new.out_trade_no
                && existing.refund_fee == new.refund_fee
            {
                Ok(existing.clone())
            } else {
                Err((
                    "REFUND_FEE_MISMATCH",
                    "订单金额或退款金额与之前请求不一致，请核实后再试".to_owned(),
                ))
            };
        }
        if now - paid_at > REFUND_WINDOW_SECS {
            return Err(("TRADE_OVERDUE", "订单已经超过退款期限".to_owned()));
        }
        state.refunds.check_new(&new, total_fee, now)?;
        if faults.refund_notenough {
            return Err(("NOTENOUGH", "基本账户余额不足，请充值后重新发起".to_owned()));
        }
        let book = &mut state.refunds;
        book.serial += 1;
        let refund = SimRefund {
            out_refund_no: new.out_refund_no.to_owned(),
            out_trade_no: new.out_trade_no.to_owned(),
            transaction_id,
            refund_id: format!("503{now:014}{:012}", book.serial % 1_000_000_000_000),
            refund_fee: new.refund_fee,
            total_fee,
            refund_desc: new.refund_desc.to_owned(),
            notify_url: new.notify_url.to_owned(),
            source: new.source,
            requested_at: now,
            status: RefundResult::Processing,
            outcome: book.take_outcome(new.out_trade_no),
            success_time: None,
            deliveries: Vec::new(),
        };
        book.last_new_refund
            .insert(new.out_trade_no.to_owned(), now);
        book.refunds
            .insert(refund.out_refund_no.clone(), refund.clone());
        if let Some(order) = state.orders.get_mut(new.out_trade_no) {
            order.trade_state = TradeState::Refund;
        }
        drop(state);
        let sim = self.clone();
        let out_refund_no = refund.out_refund_no.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(faults.refund_result_ms)).await;
            sim.settle_refund(&out_refund_no, None);
        });
        Ok(refund)
    }
}

/// Digits only, as WeChat reads an amount.
fn fen(value: &str) -> Option<i64> {
    if value.is_empty() || value.len() > 12 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// The fields of an accepted refund request's reply.
fn accepted_fields(refund: &SimRefund) -> Fields {
    let mut fields = Fields::from_iter([
        ("transaction_id", refund.transaction_id.as_str()),
        ("out_trade_no", refund.out_trade_no.as_str()),
        ("out_refund_no", refund.out_refund_no.as_str()),
        ("refund_id", refund.refund_id.as_str()),
    ]);
    for (name, fee) in [
        ("refund_fee", refund.refund_fee),
        ("settlement_refund_fee", refund.refund_fee),
        ("total_fee", refund.total_fee),
        ("settlement_total_fee", refund.total_fee),
        ("cash_fee", refund.total_fee),
        ("cash_refund_fee", refund.refund_fee),
    ] {
        fields.set(name, fee.to_string());
    }
    fields.set("refund_channel", "");
    fields.set("coupon_refund_fee", "0");
    fields
}
