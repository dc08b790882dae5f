//! Refunds: requesting one (its request frozen, then the row stored with its job, the order's
//! amount guarded in SQL), and settling one — each change one store transaction plus its log
//! line with both numbers, its metrics, its alert and the long-poll wake-up.

use minipay_jobs::{OrderStatus, ParamError, RefundInput, RefundStatus};

use crate::services::Services;
use crate::store::{CreateRefund, NewRefund, RefundChange, RefundRefusal, RefundRow, StoreError};
use crate::wechat::v2::params::beijing_time;
use crate::wechat::v2::refund::check_refund_desc;
use crate::wechat::v2::sign::random_alphanumeric;

/// WeChat refunds payments up to a year old.
const REFUND_WINDOW_MS: i64 = 365 * 24 * 3600 * 1000;

/// A refund as the operator asks for it.
#[derive(Debug, Clone)]
pub struct RefundRequest {
    pub out_trade_no: String,
    pub refund_fee: i64,
    pub reason: String,
    pub idempotency_key: Option<String>,
}

/// Why a refund was not created.
#[derive(Debug, thiserror::Error)]
pub enum RefundError {
    #[error(
        "refunds are not configured: set MINIPAY_CLIENT_CERT and MINIPAY_CLIENT_KEY (or MINIPAY_CLIENT_P12)"
    )]
    NotConfigured,
    #[error(transparent)]
    Invalid(#[from] ParamError),
    #[error("no order {0:?}")]
    OrderNotFound(String),
    #[error("the order is {0}, not paid: there is nothing to refund")]
    NotPaid(OrderStatus),
    #[error(
        "{refund_fee} fen plus the order's refunds not failed ({reserved} fen) is more than its total of {total_fee} fen"
    )]
    Exceeds {
        refund_fee: i64,
        reserved: i64,
        total_fee: i64,
    },
    #[error("the order already has the 50 refunds WeChat allows")]
    LimitReached,
    #[error("the order was paid over 365 days ago: WeChat no longer refunds it")]
    WindowClosed,
    #[error("this Idempotency-Key was used for a different refund of this order")]
    KeyReused,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A refund created now, or the one the idempotency key names.
#[derive(Debug)]
pub struct Requested {
    pub refund: RefundRow,
    pub created: bool,
}

/// Freezes the refund request and stores the refund with its job, if the order is paid and
/// the amount fits.
pub async fn request_refund(
    services: &Services,
    request: RefundRequest,
) -> Result<Requested, RefundError> {
    if !services.gateway.refunds_enabled() {
        return Err(RefundError::NotConfigured);
    }
    if request.refund_fee < 1 {
        return Err(ParamError::new("refund_fee", "must be at least 1 fen").into());
    }
    check_refund_desc(&request.reason)
        .map_err(|e| ParamError::new("reason", e.reason.replace("refund_desc", "reason")))?;
    let order = services
        .store
        .order(&request.out_trade_no)
        .await?
        .ok_or_else(|| RefundError::OrderNotFound(request.out_trade_no.clone()))?;
    if let Some(key) = &request.idempotency_key
        && let Some(existing) = services
            .store
            .refunds_of(&order.out_trade_no)
            .await?
            .into_iter()
            .find(|r| r.idempotency_key.as_deref() == Some(key))
    {
        return same_request(existing, &request);
    }
    match order.status {
        OrderStatus::Paid if request.refund_fee <= order.total_fee - order.refund_reserved => {}
        OrderStatus::Paid | OrderStatus::Refunded => {
            return Err(RefundError::Exceeds {
                refund_fee: request.refund_fee,
                reserved: order.refund_reserved,
                total_fee: order.total_fee,
            });
        }
        other => return Err(RefundError::NotPaid(other)),
    }
    let now = services.clock.now();
    let now_ms = now.timestamp_millis();
    let out_refund_no = new_out_refund_no(now);
    let params = services.gateway.freeze_refund(&RefundInput {
        out_trade_no: order.out_trade_no.clone(),
        out_refund_no: out_refund_no.clone(),
        total_fee: order.total_fee,
        refund_fee: request.refund_fee,
        reason: request.reason.clone(),
    })?;
    let new = NewRefund {
        out_refund_no,
        out_trade_no: order.out_trade_no.clone(),
        total_fee: order.total_fee,
        refund_fee: request.refund_fee,
        reason: request.reason.clone(),
        params,
        idempotency_key: request.idempotency_key.clone(),
        created_at: now_ms,
        paid_after: now_ms - REFUND_WINDOW_MS,
        lease_until: now_ms + lease_ms(services),
    };
    match services.store.create_refund(&new).await? {
        CreateRefund::Created(refund) => {
            tracing::info!(
                out_trade_no = %refund.out_trade_no,
                out_refund_no = %refund.out_refund_no,
                refund_fee = refund.refund_fee,
                "refund requested"
            );
            metrics::counter!("minipay_refunds_created_total").increment(1);
            Ok(Requested {
                refund,
                created: true,
            })
        }
        CreateRefund::Existing(existing) => same_request(existing, &request),
        CreateRefund::Refused(refusal) => Err(refused(refusal, &request)),
    }
}

fn refused(refusal: RefundRefusal, request: &RefundRequest) -> RefundError {
    match refusal {
        RefundRefusal::UnknownOrder => RefundError::OrderNotFound(request.out_trade_no.clone()),
        RefundRefusal::NotPaid(status) => RefundError::NotPaid(status),
        RefundRefusal::Exceeds {
            total_fee,
            reserved,
        } => RefundError::Exceeds {
            refund_fee: request.refund_fee,
            reserved,
            total_fee,
        },
        RefundRefusal::LimitReached => RefundError::LimitReached,
        RefundRefusal::WindowClosed => RefundError::WindowClosed,
    }
}

/// The refund an idempotency key names, if it was asked for with the same body.
fn same_request(existing: RefundRow, request: &RefundRequest) -> Result<Requested, RefundError> {
    if existing.refund_fee == request.refund_fee && existing.reason == request.reason {
        Ok(Requested {
            refund: existing,
            created: false,
        })
    } else {
        Err(RefundError::KeyReused)
    }
}

/// How long a queued refund job holds its refund before the reconciler queues another.
pub fn lease_ms(services: &Services) -> i64 {
    (services.config.wechat.timeout.as_millis() as i64 * 10).max(60_000)
}

/// `RF` + Beijing `yyMMddHHmmss` + 16 random characters: 30 of WeChat's allowed 32, of the
/// allowed characters, sortable by time, unguessable.
fn new_out_refund_no(now: chrono::DateTime<chrono::Utc>) -> String {
    format!("RF{}{}", &beijing_time(now)[2..], random_alphanumeric(16))
}

/// Moves a refund to `change.to` (a duplicate changes nothing); logs, counts, alerts and
/// wakes the order's long-polls. True when it changed.
pub async fn settle_refund(services: &Services, change: RefundChange) -> Result<bool, StoreError> {
    let settled = services
        .store
        .change_refund(&change, &services.outbox())
        .await?;
    if !settled.changed {
        tracing::debug!(to = %change.to, "refund already settled; nothing changed");
        return Ok(false);
    }
    let otn = settled.out_trade_no.as_str();
    let (code, message) = change.error.clone().unwrap_or_default();
    match change.to {
        RefundStatus::Succeeded => {
            tracing::info!(out_trade_no = otn, refund_fee = settled.refund_fee, source = %change.source, "refund succeeded");
            metrics::counter!("minipay_refunded_fen_total").increment(settled.refund_fee as u64);
        }
        RefundStatus::Abnormal => refund_alert(
            otn,
            &change.out_refund_no,
            "refund_abnormal",
            &format!("{code}: {message}"),
        ),
        RefundStatus::Failed => {
            tracing::warn!(out_trade_no = otn, code = ?code, message = ?message, "refund failed");
        }
        RefundStatus::Processing | RefundStatus::Pending => {
            tracing::info!(out_trade_no = otn, "refund accepted by WeChat");
        }
    }
    metrics::counter!("minipay_refund_transitions_total", "status" => change.to.as_str())
        .increment(1);
    if settled.order_refunded {
        tracing::info!(out_trade_no = otn, "order fully refunded");
    }
    services.waiters.wake(otn);
    Ok(true)
}

/// An operator must look at this refund: one ERROR line with both numbers and a counter.
pub fn refund_alert(out_trade_no: &str, out_refund_no: &str, kind: &'static str, message: &str) {
    tracing::error!(
        out_trade_no,
        out_refund_no,
        alert = kind,
        "{}",
        message.escape_debug()
    );
    metrics::counter!("minipay_alerts_total", "kind" => kind).increment(1);
}
