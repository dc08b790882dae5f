//! minipay's integration tests: real HTTP on loopback, real databases, real apalis queues.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod bills;
mod helpers;
mod logs;
mod migrations;
mod notify;
mod observability;
mod orders;
mod pipeline;
mod process;
mod processes;
mod reconcile;
mod refund_protocol;
mod retention;
mod sign_tool;
mod simulator;
mod storage;
mod webhook_delivery;
mod webhook_verify_tool;
