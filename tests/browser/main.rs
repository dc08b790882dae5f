//! Browser tests: the operator's pages in a real headless Chromium, driven through chromedriver.
//! Skipped loudly when the browser is missing, required with `CI=true`; see
//! `docs/console-testing.md`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod bills;
mod console;
mod driver;
mod harness;
// The same app plumbing as the API tests; this binary uses a part of it.
#[path = "../api/helpers.rs"]
#[allow(dead_code, unused_imports, unused_macros)]
mod helpers;
// The helpers check JSON answers against the OpenAPI document.
#[path = "../api/schema.rs"]
#[allow(dead_code)]
mod schema;
