//! What becomes of an accepted refund: its result after a delay (or when a test settles it),
//! the encrypted refund notify POSTed on WeChat's re-send schedule until acknowledged, and
//! `/pay/refundquery`'s view of it.

use std::time::Duration;

use minipay_jobs::RefundResult;

use super::Simulator;
use super::delivery::Delivery;
use super::orders::Answer;
use super::refund_book::SimRefund;
use crate::wechat::v2::refund::{refund_status_name, refund_time};
use crate::wechat::v2::refund_notify::{RefundInfo, refund_notify_body};
use crate::wechat::v2::{Fields, xml};

impl Simulator {
    /// Gives a `PROCESSING` refund its result (`result`, else the one it was due) and sends
    /// its notify. A refund that already has its result is left alone.
    pub fn settle_refund(&self, out_refund_no: &str, result: Option<RefundResult>) -> bool {
        let now = self.clock().now();
        let (info, url, faults) = {
            let mut state = self.state();
            let faults = state.faults.clone();
            let Some(refund) = state.refunds.refunds.get_mut(out_refund_no) else {
                return false;
            };
            if refund.status != RefundResult::Processing {
                return false;
            }
            refund.status = result.unwrap_or(refund.outcome);
            if refund.status == RefundResult::Succeeded {
                refund.success_time = Some(now);
            }
            (notify_info(refund), refund.notify_url.clone(), faults)
        };
        if !faults.drop_refund_notifies && !url.is_empty() {
            let config = self.config();
            let body = refund_notify_body(&config.appid, &config.mch_id, &config.key, &info);
            let sim = self.clone();
            let out_refund_no = out_refund_no.to_owned();
            let scale = faults.notify_time_scale;
            tokio::spawn(async move { sim.deliver_refund(out_refund_no, url, body, scale).await });
        }
        true
    }

    /// POSTs a refund notify until the merchant answers `return_code` SUCCESS or WeChat's
    /// re-send schedule ends.
    async fn deliver_refund(&self, out_refund_no: String, url: String, body: String, scale: f64) {
        let gaps = std::iter::once(0).chain(super::control::RESEND_GAPS_SECS);
        for gap in gaps {
            tokio::time::sleep(Duration::from_secs_f64(gap as f64 * scale.max(0.0))).await;
            if self.state().faults.drop_refund_notifies {
                return;
            }
            let sent = self
                .inner
                .http
                .post(&url)
                .header("content-type", "text/xml")
                .body(body.clone())
                .send()
                .await;
            let (http_status, reply) = match sent {
                Ok(response) => (
                    Some(response.status().as_u16()),
                    response.text().await.unwrap_or_default(),
                ),
                Err(e) => (None, e.to_string()),
            };
            let acknowledged = xml::parse(reply.as_bytes(), xml::DEFAULT_BODY_LIMIT)
                .is_ok_and(|f| f.get("return_code") == Some("SUCCESS"));
            if let Some(refund) = self.state().refunds.refunds.get_mut(&out_refund_no) {
                refund.deliveries.push(Delivery {
                    at_ms: chrono::Utc::now().timestamp_millis(),
                    http_status,
                    reply,
                    acknowledged,
                });
            }
            if acknowledged {
                return;
            }
        }
    }

    /// Handles a signed, verified refundquery: by `refund_id`, `out_refund_no`,
    /// `transaction_id` or `out_trade_no`, in WeChat's order of precedence.
    pub(super) fn refund_query_request(&self, fields: &Fields) -> Answer {
        let state = self.state();
        let book = &state.refunds;
        let mut found: Vec<&SimRefund> = if let Some(id) = fields.non_empty("refund_id") {
            book.refunds
                .values()
                .filter(|r| r.refund_id == id)
                .collect()
        } else if let Some(no) = fields.non_empty("out_refund_no") {
            book.refunds.get(no).into_iter().collect()
        } else if let Some(txn) = fields.non_empty("transaction_id") {
            book.refunds
                .values()
                .filter(|r| r.transaction_id == txn)
                .collect()
        } else if let Some(otn) = fields.non_empty("out_trade_no") {
            book.of_order(otn).collect()
        } else {
            return Answer::ReturnFail("out_refund_no或out_trade_no参数缺失".into());
        };
        found.sort_by_key(|r| (r.requested_at, r.refund_id.clone()));
        let Some(first) = found.first() else {
            return Answer::Fail("REFUNDNOTEXIST".into(), "not exist".into());
        };
        let mut reply = Fields::from_iter([
            ("out_trade_no", first.out_trade_no.as_str()),
            ("transaction_id", first.transaction_id.as_str()),
        ]);
        reply.set("total_fee", first.total_fee.to_string());
        reply.set("cash_fee", first.total_fee.to_string());
        reply.set("refund_count", found.len().to_string());
        for (n, refund) in found.iter().enumerate() {
            let fee = refund.refund_fee.to_string();
            reply.set(format!("out_refund_no_{n}"), &refund.out_refund_no);
            reply.set(format!("refund_id_{n}"), &refund.refund_id);
            reply.set(format!("refund_channel_{n}"), "ORIGINAL");
            reply.set(format!("refund_fee_{n}"), &fee);
            reply.set(format!("settlement_refund_fee_{n}"), &fee);
            reply.set(
                format!("refund_status_{n}"),
                refund_status_name(refund.status),
            );
            reply.set(
                format!("refund_account_{n}"),
                "REFUND_SOURCE_UNSETTLED_FUNDS",
            );
            reply.set(format!("refund_recv_accout_{n}"), "支付用户的零钱");
            // Coupon fields are listed even when zero; a verifier must sign them too.
            reply.set(format!("coupon_refund_fee_{n}"), "0");
            reply.set(format!("coupon_refund_count_{n}"), "0");
            if let Some(at) = refund.success_time {
                reply.set(format!("refund_success_time_{n}"), refund_time(at));
            }
        }
        Answer::Success(reply)
    }
}

/// What the refund notify reports about `refund`.
fn notify_info(refund: &SimRefund) -> RefundInfo {
    RefundInfo {
        transaction_id: refund.transaction_id.clone(),
        out_trade_no: refund.out_trade_no.clone(),
        refund_id: refund.refund_id.clone(),
        out_refund_no: refund.out_refund_no.clone(),
        total_fee: refund.total_fee,
        settlement_total_fee: Some(refund.total_fee),
        refund_fee: refund.refund_fee,
        settlement_refund_fee: Some(refund.refund_fee),
        refund_status: refund.status,
        success_time: refund.success_time,
        refund_recv_accout: Some("支付用户的零钱".into()),
        refund_account: Some("REFUND_SOURCE_UNSETTLED_FUNDS".into()),
        refund_request_source: Some(refund.source.into()),
    }
}
