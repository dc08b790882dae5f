//! WeChat Pay API v2 protocol code that has moved to its own module (the rest of the v2 code
//! follows later).

pub mod bill;
