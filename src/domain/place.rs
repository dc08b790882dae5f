//! Placing an order: the provider's prepay request built, checked and frozen, then the order
//! stored with its prepay job in one transaction. The mini-program's orders (priced from the
//! catalog) and the merchant backend's orders both come through here.

use std::time::Duration;

use minipay_jobs::{OrderFields, ParamError, PrepayInput};

use crate::services::Services;
use crate::store::{CreateOutcome, NewOrder, OrderRow, StoreError};
use crate::wechat::v2::params::beijing_time;
use crate::wechat::v2::sign::random_alphanumeric;

/// An order about to be placed, before its number and frozen parameters exist.
#[derive(Debug, Clone)]
pub struct Draft {
    pub session_id: Option<i64>,
    pub openid: String,
    pub sku: Option<String>,
    pub quantity: Option<i64>,
    pub total_fee: i64,
    pub description: String,
    pub attach: String,
    pub payer_ip: String,
    pub idempotency_key: Option<String>,
    /// The most unpaid orders the user may hold (checked in the inserting transaction);
    /// `None`: no cap (the merchant backend's orders).
    pub unpaid_cap: Option<u32>,
}

/// Why an order was not placed.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    /// A field the provider would refuse.
    #[error(transparent)]
    Invalid(#[from] ParamError),
    /// The merchant's out_trade_no belongs to a different order.
    #[error("out_trade_no {0:?} is already used by a different order")]
    NumberTaken(String),
    /// Generated numbers kept colliding (practically never).
    #[error("could not allocate an out_trade_no")]
    NoNumber,
    /// The user already holds `limit` unpaid orders; the first of them closes after `retry_after`.
    #[error("the user already holds {limit} unpaid orders")]
    TooManyUnpaid { limit: u32, retry_after: Duration },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An order placed now, or the existing order its idempotency key or number names.
#[derive(Debug)]
pub struct Placed {
    pub order: OrderRow,
    pub created: bool,
}

/// Checks the merchant-supplied fields of `draft` by the provider's rules.
pub fn check_draft(
    services: &Services,
    draft: &Draft,
    out_trade_no: Option<&str>,
) -> Result<(), ParamError> {
    services.gateway.check_order(&OrderFields {
        openid: &draft.openid,
        description: &draft.description,
        attach: &draft.attach,
        total_fee: draft.total_fee,
        out_trade_no,
    })
}

/// Freezes the prepay request and stores the order with its prepay job. With a
/// merchant-chosen `out_trade_no`, an existing order under it is returned when it is the same
/// order.
pub async fn place_order(
    services: &Services,
    draft: Draft,
    out_trade_no: Option<String>,
) -> Result<Placed, PlaceError> {
    for _ in 0..3 {
        let now = services.clock.now();
        let number = out_trade_no
            .clone()
            .unwrap_or_else(|| new_out_trade_no(now));
        let expires =
            now + chrono::Duration::from_std(services.config.orders.order_ttl).unwrap_or_default();
        let params = services.gateway.freeze_prepay(&PrepayInput {
            out_trade_no: number.clone(),
            description: draft.description.clone(),
            attach: draft.attach.clone(),
            total_fee: draft.total_fee,
            payer_ip: draft.payer_ip.clone(),
            openid: draft.openid.clone(),
            created_at_ms: now.timestamp_millis(),
            expires_at_ms: expires.timestamp_millis(),
        })?;
        let new = NewOrder {
            out_trade_no: number.clone(),
            session_id: draft.session_id,
            openid: draft.openid.clone(),
            sku: draft.sku.clone(),
            quantity: draft.quantity,
            total_fee: draft.total_fee,
            description: draft.description.clone(),
            attach: draft.attach.clone(),
            payer_ip: draft.payer_ip.clone(),
            idempotency_key: draft.idempotency_key.clone(),
            unpaid_cap: draft.unpaid_cap,
            params,
            created_at: now.timestamp_millis(),
            expires_at: expires.timestamp_millis(),
        };
        match services.store.create_order(&new).await? {
            CreateOutcome::Created(order) => {
                tracing::info!(out_trade_no = %order.out_trade_no, total_fee = order.total_fee, "order created");
                metrics::counter!("minipay_orders_created_total").increment(1);
                return Ok(Placed {
                    order,
                    created: true,
                });
            }
            CreateOutcome::Existing(order) => {
                return Ok(Placed {
                    order,
                    created: false,
                });
            }
            CreateOutcome::TooManyUnpaid { first_expiry_ms } => {
                let limit = draft.unpaid_cap.unwrap_or_default();
                tracing::info!(limit, "order refused: too many unpaid orders");
                metrics::counter!("minipay_rate_limited_total", "limit" => "unpaid_per_user")
                    .increment(1);
                let left_ms = first_expiry_ms
                    .saturating_sub(now.timestamp_millis())
                    .max(0);
                return Err(PlaceError::TooManyUnpaid {
                    limit,
                    retry_after: Duration::from_millis(left_ms.unsigned_abs()),
                });
            }
            CreateOutcome::NumberTaken if out_trade_no.is_some() => {
                return Err(PlaceError::NumberTaken(number));
            }
            // A generated number collided (30 random-ish characters: practically never).
            CreateOutcome::NumberTaken => continue,
        }
    }
    Err(PlaceError::NoNumber)
}

/// `MP` + Beijing `yyMMddHHmmss` + 16 random characters: 30 of WeChat's allowed 32, sortable
/// by time, unguessable.
fn new_out_trade_no(now: chrono::DateTime<chrono::Utc>) -> String {
    format!("MP{}{}", &beijing_time(now)[2..], random_alphanumeric(16))
}
