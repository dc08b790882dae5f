//! The refund calls: `/secapi/pay/refund` over the merchant certificate's mutual TLS and
//! `/pay/refundquery`, each signed afresh per attempt and reduced to what the core's decision
//! tables read. Transport, fail-over and reply verification are [`PayClient`]'s.

use minipay_jobs::refund::{
    RefundDecision, RefundQueryDecision, RefundStatus, after_refund, after_refund_query,
};
use minipay_jobs::{
    ParamError, RefundInput, RefundNotice, RefundOutcome, RefundQueryOutcome, UnreadableParams,
};

use super::refund::{RefundAccepted, RefundParams, RefundQueryKey, RefundQueryReply, RefundRecord};
use crate::wechat::v2::client::PayClient;
use crate::wechat::v2::refund_notify::{RefundNotifyError, read_refund_notify};
use crate::wechat::v2::reply::Answer;
use crate::wechat::v2::sign::nonce;

/// A [`PayClient`] whose HTTP client presents the merchant API certificate (see
/// [`super::tls::https_client`]); refunds need it, refund queries do not mind it.
#[derive(Clone, Debug)]
pub struct RefundClient {
    pay: PayClient,
}

/// One refund request, as sent and answered.
#[derive(Debug, Clone)]
pub struct RefundAttempt {
    pub answer: Answer,
    pub decision: RefundDecision,
    /// WeChat's acceptance, when it accepted and echoed this very refund.
    pub accepted: Option<RefundAccepted>,
}

/// One refund query about one refund, as answered.
#[derive(Debug, Clone)]
pub struct RefundCheck {
    pub answer: Answer,
    pub decision: RefundQueryDecision,
    /// The refund as WeChat listed it, when it did.
    pub record: Option<RefundRecord>,
}

impl RefundClient {
    /// `pay` must be built on an HTTP client that presents the merchant certificate.
    pub fn new(pay: PayClient) -> Self {
        RefundClient { pay }
    }

    pub fn pay_client(&self) -> &PayClient {
        &self.pay
    }

    /// `/secapi/pay/refund` with the frozen parameters, a fresh nonce and sign.
    pub async fn refund(&self, params: &RefundParams) -> Answer {
        let request = params.signed_request(&self.pay.merchant().key, &nonce());
        self.pay.post("/secapi/pay/refund", &request).await
    }

    /// [`RefundClient::refund`], decided. A success reply that does not echo this refund (other
    /// `out_refund_no` or amounts) is treated as an unverifiable answer: query first.
    pub async fn request_refund(&self, params: &RefundParams) -> RefundAttempt {
        let answer = self.refund(params).await;
        let mut decision = after_refund(&answer.reply());
        let accepted = match decision {
            RefundDecision::Accepted => answer
                .trusted_fields()
                .and_then(|f| RefundAccepted::from_fields(f).ok())
                .filter(|a| a.matches(params)),
            _ => None,
        };
        if decision == RefundDecision::Accepted && accepted.is_none() {
            decision = RefundDecision::QueryFirst {
                reason: "the refund reply does not echo this refund".into(),
            };
        }
        RefundAttempt {
            answer,
            decision,
            accepted,
        }
    }

    /// `/pay/refundquery` by one of WeChat's keys.
    pub async fn refund_query(&self, key: &RefundQueryKey) -> Answer {
        let request = self.pay.merchant().signed(key.business_fields(), &nonce());
        self.pay.post("/pay/refundquery", &request).await
    }

    /// Asks about one refund by its `out_refund_no` and decides, given its status here.
    pub async fn check_refund(&self, out_refund_no: &str, current: RefundStatus) -> RefundCheck {
        let answer = self
            .refund_query(&RefundQueryKey::OutRefundNo(out_refund_no.to_owned()))
            .await;
        let record = answer
            .trusted_fields()
            .and_then(|f| RefundQueryReply::from_fields(f).ok())
            .and_then(|reply| reply.find(out_refund_no).cloned());
        let decision =
            after_refund_query(&answer.reply(), record.as_ref().map(|r| r.status), current);
        RefundCheck {
            answer,
            decision,
            record,
        }
    }
}

/// Refunds behind the gateway seam: the client that presents the merchant certificate, and
/// where WeChat posts refund results.
#[derive(Clone, Debug)]
pub struct Refunds {
    pub client: RefundClient,
    pub notify_url: String,
}

impl super::V2 {
    /// The refund request of `input`, checked as WeChat checks it and frozen as JSON: every
    /// attempt sends it unchanged. Refused when refunds are not configured.
    pub fn freeze_refund(&self, input: &RefundInput) -> Result<String, ParamError> {
        let refunds = self
            .refunds()
            .ok_or_else(|| ParamError::new("refunds", "no merchant API certificate"))?;
        let merchant = self.merchant();
        let params = RefundParams {
            appid: merchant.appid.clone(),
            mch_id: merchant.mch_id.clone(),
            sign_type: merchant.sign_type,
            out_trade_no: input.out_trade_no.clone(),
            out_refund_no: input.out_refund_no.clone(),
            total_fee: input.total_fee,
            refund_fee: input.refund_fee,
            refund_desc: input.reason.clone(),
            notify_url: refunds.notify_url.clone(),
        };
        params.validate()?;
        serde_json::to_string(&params).map_err(|e| ParamError::new("params", e.to_string()))
    }

    /// One `/secapi/pay/refund` call with the frozen request, decided.
    pub async fn refund(&self, frozen: &str) -> Result<RefundOutcome, UnreadableParams> {
        let params: RefundParams =
            serde_json::from_str(frozen).map_err(|e| UnreadableParams(e.to_string()))?;
        let refunds = self
            .refunds()
            .ok_or_else(|| UnreadableParams("refunds are not configured".into()))?;
        let attempt = refunds.client.request_refund(&params).await;
        Ok(RefundOutcome {
            label: attempt.answer.reply().label(),
            decision: attempt.decision,
            refund_id: attempt.accepted.map(|a| a.refund_id),
        })
    }

    /// `/pay/refundquery` about one refund (no certificate needed), decided given its
    /// status here.
    pub async fn query_refund(
        &self,
        out_refund_no: &str,
        current: RefundStatus,
    ) -> RefundQueryOutcome {
        let check = RefundClient::new(self.client().clone())
            .check_refund(out_refund_no, current)
            .await;
        RefundQueryOutcome {
            label: check.answer.reply().label(),
            decision: check.decision,
            refund_id: check.record.as_ref().map(|r| r.refund_id.clone()),
            refund_fee: check.record.as_ref().map(|r| r.refund_fee),
        }
    }

    /// Opens a refund notify body with our key: our appid and mch_id, `req_info` decrypted
    /// and read. Not yet believed: the caller matches it to a refund it knows.
    pub fn open_refund_notify(&self, body: &[u8]) -> Result<RefundNotice, RefundNotifyError> {
        let info = read_refund_notify(body, self.merchant())?;
        Ok(RefundNotice {
            from_console: info.from_merchant_console(),
            out_refund_no: info.out_refund_no,
            out_trade_no: info.out_trade_no,
            refund_id: info.refund_id,
            total_fee: info.total_fee,
            refund_fee: info.refund_fee,
            result: info.refund_status,
        })
    }
}
