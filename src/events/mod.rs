//! Merchant events on the wire: the signed Standard Webhooks delivery of an event to the
//! merchant's endpoint. What the events are, and when a failed delivery is tried again, is the
//! core crate's (`minipay_jobs::event`); recording them and queueing their jobs is the store's.

pub mod signature;

pub use signature::{SecretError, VerifyError, WebhookSecrets};
