//! WeChat: the payment provider behind one seam ([`Gateway`]), the mini-program login API, and
//! a simulator that stands in for both on loopback.
//!
//! The seam's inputs and outcomes are the core crate's protocol-neutral types
//! (`minipay_jobs::gateway`, `minipay_jobs::notify`), so the domain layer and the workers never
//! see a protocol version. API v2 lives in [`v2`]; a v3 implementation is a sibling module and
//! a variant here. A new operation (refund, refund query, bill download) is a method here, its
//! implementation in each version, and its outcome type in the core crate.

pub mod login;
pub mod simulator;
pub mod v2;

use axum::http::HeaderMap;
use chrono::NaiveDate;
use minipay_jobs::bill::{BillDownloaded, BillUnavailable, WechatEntry};
use minipay_jobs::{
    NotifyAck, OrderFields, ParamError, PostedNotify, PrepayInput, PrepayOutcome, QueryOutcome,
    RefundInput, RefundNotice, RefundOutcome, RefundQueryOutcome, RefundStatus, Reply,
    UnreadableParams,
};

pub use login::{LoginClient, LoginError, WechatSession, http_client};
pub use v2::client::Admission;

use crate::clock::Clock;

/// The payment provider, in the protocol version this merchant speaks.
#[derive(Clone, Debug)]
pub enum Gateway {
    /// WeChat Pay API v2 (XML, MD5/HMAC-SHA256 signatures with the APIv2 key).
    V2(v2::V2),
}

/// The HTTP answer a notify gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyReply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Gateway {
    /// The base URLs calls go to, in the order they are tried.
    pub fn base_urls(&self) -> &[String] {
        match self {
            Gateway::V2(v2) => v2.client().base_urls(),
        }
    }

    /// Checks the fields of an order supplied by the merchant's backend, by the provider's
    /// rules, before anything is stored.
    pub fn check_order(&self, order: &OrderFields<'_>) -> Result<(), ParamError> {
        match self {
            Gateway::V2(v2) => v2.check_order(order),
        }
    }

    /// Checks an order total by the provider's rules.
    pub fn check_total_fee(&self, fen: i64) -> Result<(), ParamError> {
        match self {
            Gateway::V2(v2) => v2.check_total_fee(fen),
        }
    }

    /// Builds, checks and freezes the prepay request of a new order: the text stored with
    /// the order and sent, unchanged, on every attempt.
    pub fn freeze_prepay(&self, order: &PrepayInput) -> Result<String, ParamError> {
        match self {
            Gateway::V2(v2) => v2.freeze_prepay(order),
        }
    }

    /// One prepay call with the frozen request.
    pub async fn prepay(
        &self,
        frozen: &str,
        clock: &Clock,
    ) -> Result<PrepayOutcome, UnreadableParams> {
        match self {
            Gateway::V2(v2) => v2.prepay(frozen, clock).await,
        }
    }

    /// Admission to call the provider: taken by a job before its call's state exists, given
    /// back (dropped) once the provider answered. See [`v2::client::PayClient::admit`].
    pub async fn admit(&self) -> Admission {
        match self {
            Gateway::V2(v2) => v2.client().admit().await,
        }
    }

    /// Asks the provider where an order stands.
    pub async fn query_order(&self, out_trade_no: &str) -> QueryOutcome {
        match self {
            Gateway::V2(v2) => v2.query_order(out_trade_no).await,
        }
    }

    /// Asks the provider to close an unpaid order.
    pub async fn close_order(&self, out_trade_no: &str) -> Reply {
        match self {
            Gateway::V2(v2) => v2.close_order(out_trade_no).await,
        }
    }

    /// Whether refunds can be sent (v2: a merchant API certificate is configured).
    pub fn refunds_enabled(&self) -> bool {
        match self {
            Gateway::V2(v2) => v2.refunds().is_some(),
        }
    }

    /// Builds, checks and freezes a refund request: the text stored with the refund and sent,
    /// unchanged, on every attempt.
    pub fn freeze_refund(&self, refund: &RefundInput) -> Result<String, ParamError> {
        match self {
            Gateway::V2(v2) => v2.freeze_refund(refund),
        }
    }

    /// One refund request with the frozen parameters.
    pub async fn refund(&self, frozen: &str) -> Result<RefundOutcome, UnreadableParams> {
        match self {
            Gateway::V2(v2) => v2.refund(frozen).await,
        }
    }

    /// Asks the provider where one refund stands (`current`: its status here).
    pub async fn query_refund(
        &self,
        out_refund_no: &str,
        current: RefundStatus,
    ) -> RefundQueryOutcome {
        match self {
            Gateway::V2(v2) => v2.query_refund(out_refund_no, current).await,
        }
    }

    /// Opens a refund notify: the provider's claim about one refund, or why it was refused
    /// (a short kind for metrics, and a detail).
    pub fn open_refund_notify(&self, body: &[u8]) -> Result<RefundNotice, (&'static str, String)> {
        match self {
            Gateway::V2(v2) => v2
                .open_refund_notify(body)
                .map_err(|e| (e.kind(), e.to_string())),
        }
    }

    /// Downloads one Beijing day's statement (every payment and refund), handing each line to
    /// `on_entry` as it arrives; the statement's summary is checked against its lines at the
    /// end. Lines handed over before an error must be discarded.
    pub async fn download_bill(
        &self,
        day: NaiveDate,
        on_entry: impl FnMut(WechatEntry) + Send,
    ) -> Result<BillDownloaded, BillUnavailable> {
        match self {
            Gateway::V2(v2) => v2.download_bill(day, on_entry).await,
        }
    }

    /// The most bytes a notify body may have.
    pub fn notify_body_limit(&self) -> usize {
        match self {
            Gateway::V2(_) => v2::xml::DEFAULT_BODY_LIMIT,
        }
    }

    /// Reads a body posted to a notify URL: a refund notify (either URL takes both), or a
    /// payment notify verified — bytes and headers in, a verified payment or a refusal out.
    /// (v2 signs inside the body; v3 signs in the headers.) The body is parsed once.
    pub fn read_notify(&self, body: &[u8], _headers: &HeaderMap) -> PostedNotify {
        match self {
            Gateway::V2(v2) => v2.read_notify(body),
        }
    }

    /// The answer a notify gets, in the provider's format.
    pub fn notify_reply(&self, ack: &NotifyAck) -> NotifyReply {
        match self {
            Gateway::V2(v2) => NotifyReply {
                status: 200,
                content_type: "text/xml; charset=utf-8",
                body: v2.notify_reply(ack),
            },
        }
    }
}
