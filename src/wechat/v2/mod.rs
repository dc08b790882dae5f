//! WeChat Pay API v2. For now it holds the newer operations: daily bill statements, the refund
//! request and query, the refund notify, and the merchant API certificate that `/secapi/` calls
//! present (the rest of the v2 code moves here with the restructure).

pub mod bill;
pub mod refund;
pub mod refund_client;
pub mod refund_notify;
pub mod tls;
