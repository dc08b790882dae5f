//! One notify POST the simulator made to the merchant: a record every kind of notify (payment,
//! refund) keeps.

use serde::{Deserialize, Serialize};

/// One notify POST to the merchant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    pub at_ms: i64,
    pub http_status: Option<u16>,
    pub reply: String,
    pub acknowledged: bool,
}
