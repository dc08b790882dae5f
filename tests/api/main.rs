//! minipay's integration tests: real HTTP on loopback, real databases, real apalis queues.
// A scenario reads as one story, so the 80-line limit of production functions is lifted here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod admin;
mod admin_listener;
mod bill_runs;
mod bills;
mod console;
mod csrf;
mod edge;
mod events;
mod events_crash;
mod helpers;
mod limits;
mod logs;
mod migrations;
mod notify;
mod observability;
mod openapi;
mod orders;
mod pipeline;
mod process;
mod processes;
mod reconcile;
mod refund_protocol;
mod refunds;
mod replies;
mod retention;
mod schema;
mod sign_tool;
mod simulator;
mod state_machine;
mod storage;
mod webhook_delivery;
mod webhook_verify_tool;
