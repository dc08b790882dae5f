//! minipay: WeChat mini-program payments from "the user tapped Buy" to "the order is paid".
//!
//! `wechat` speaks WeChat Pay v2 (and simulates it); `store` is the only SQL; `http` is the
//! API; `worker` runs the apalis jobs; `app` wires them into a process.

pub mod app;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod error;
pub mod events;
pub mod http;
pub mod metrics;
pub mod sealed;
pub mod sign_cli;
pub mod store;
pub mod telemetry;
pub mod waiters;
pub mod wechat;
pub mod worker;
