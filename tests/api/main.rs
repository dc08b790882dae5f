//! minipay's integration tests: real HTTP on loopback, real databases, real apalis queues.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;
mod notify;
mod observability;
mod orders;
mod pipeline;
mod reconcile;
mod sign_tool;
mod simulator;
