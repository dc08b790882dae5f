//! minipay's integration tests: real HTTP on loopback, real databases, real apalis queues.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod helpers;
mod notify;
mod observability;
mod orders;
mod pipeline;
mod process;
mod processes;
mod reconcile;
mod refund_protocol;
mod sign_tool;
mod simulator;
