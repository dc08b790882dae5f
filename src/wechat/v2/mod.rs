//! WeChat Pay API v2. For now it holds the refund side: the refund request and query, the
//! refund notify, and the merchant API certificate that `/secapi/` calls present.

pub mod refund;
pub mod refund_client;
pub mod refund_notify;
pub mod tls;
