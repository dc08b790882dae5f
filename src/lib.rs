//! minipay: WeChat mini-program payments from "the user tapped Buy" to "the order is paid".
//!
//! The floors, top to bottom (an import only ever points down; `make lint` checks it):
//! `app` wires a process; `http` (the API) and `worker` (the apalis jobs) call `domain` (the
//! business operations), which uses `store` (the only SQL) and `wechat` (the payment provider
//! behind one seam, the login API, the simulator); `services` is what they share; `config`,
//! `catalog`, `clock`, `waiters`, `metrics` and `telemetry` are helpers below. The pure rules —
//! statuses and transitions, job payloads, decision tables — live in the `minipay-jobs` crate.

pub mod app;
pub mod bill_cli;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod domain;
pub mod events;
pub mod http;
pub mod metrics;
pub mod sealed;
pub mod services;
pub mod sign_cli;
pub mod store;
pub mod telemetry;
pub mod waiters;
pub mod wechat;
pub mod worker;
