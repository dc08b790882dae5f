//! The two sides of a day's comparison: WeChat's statement lines, reduced to what the
//! comparison needs, and the orders and refunds minipay holds.

use serde::{Deserialize, Serialize};

use super::Fen;
use crate::OrderStatus;

/// One line of WeChat's statement, reduced to what the comparison needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WechatEntry {
    Payment(WechatPayment),
    Refund(WechatRefund),
}

/// A payment line (交易状态 other than `REFUND`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WechatPayment {
    pub out_trade_no: String,
    pub transaction_id: String,
    /// 订单金额 on 27-column statements, 应结订单金额 on 24-column ones.
    pub fee: Fen,
    /// 交易状态 as listed: `SUCCESS`, or e.g. `REVOKED`.
    pub state: String,
}

impl WechatPayment {
    /// WeChat holds the money for this order.
    pub fn is_paid(&self) -> bool {
        self.state == "SUCCESS"
    }
}

/// A refund line (交易状态 `REFUND`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WechatRefund {
    pub out_trade_no: String,
    pub out_refund_no: String,
    /// 退款金额.
    pub refund_fee: Fen,
    /// 退款状态 as it was when the refund was applied for: `SUCCESS`, `PROCESSING`, ...
    pub status: String,
}

impl WechatRefund {
    /// `SUCCESS` and `PROCESSING` both count as refunded: the statement freezes the status of
    /// the day the refund was applied for, and a processing refund is not undone.
    pub fn succeeded(&self) -> bool {
        matches!(self.status.as_str(), "SUCCESS" | "PROCESSING")
    }
}

/// An order as minipay holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalOrder {
    pub out_trade_no: String,
    pub total_fee: Fen,
    pub status: OrderStatus,
}

/// Where a refund stands at minipay, in the terms the comparison needs (the integrator maps
/// its refund statuses onto these three).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalRefundStatus {
    /// Submitted to WeChat, outcome not yet known.
    Processing,
    Succeeded,
    /// WeChat refused or closed it.
    Failed,
}

impl LocalRefundStatus {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            LocalRefundStatus::Processing => "processing",
            LocalRefundStatus::Succeeded => "succeeded",
            LocalRefundStatus::Failed => "failed",
        }
    }

    pub(super) fn counts(self) -> bool {
        self != LocalRefundStatus::Failed
    }
}

/// A refund as minipay holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRefund {
    pub out_trade_no: String,
    pub out_refund_no: String,
    pub refund_fee: Fen,
    pub status: LocalRefundStatus,
}
