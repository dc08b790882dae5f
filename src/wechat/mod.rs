//! WeChat Pay API v2 and the mini-program login API: signatures, XML, request rules,
//! `wx.requestPayment` parameters, the HTTP client, and a simulator that stands in for
//! WeChat on loopback.

pub mod client;
pub mod fields;
pub mod params;
pub mod pay_params;
pub mod reply;
pub mod sign;
pub mod simulator;
pub mod v2;
pub mod xml;

pub use fields::Fields;
pub use params::{Merchant, UnifiedOrderParams};
pub use pay_params::PayParams;
pub use sign::{ApiKey, SignType};
