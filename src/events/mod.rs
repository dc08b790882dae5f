//! Merchant events on the wire: the envelope, its Standard Webhooks signature, and one signed
//! delivery to the merchant's endpoint. What the events are and when a failed delivery is tried
//! again belong to the core crate (`minipay_jobs::event`); recording events and queueing their
//! jobs belong to the store.

pub mod delivery;
pub mod envelope;
pub mod signature;
pub mod verify_cli;

use minipay_jobs::EventId;
use rand::rngs::OsRng;
use rand::{RngCore, TryRngCore};

pub use delivery::{Attempt, Deliverer};
pub use envelope::Envelope;
pub use signature::{SecretError, VerifyError, WebhookSecrets};

/// A fresh event id from the operating system's generator: 128 bits nobody can guess. Made
/// once, when the event is recorded; every attempt reuses it.
pub fn new_event_id() -> EventId {
    let mut bytes = [0u8; 16];
    OsRng.unwrap_err().fill_bytes(&mut bytes);
    EventId::from_random(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn event_ids_are_fresh_and_well_formed() {
        let a = super::new_event_id();
        let b = super::new_event_id();
        assert_ne!(a, b);
        assert_eq!(minipay_jobs::EventId::parse(a.as_str()), Some(a));
    }
}
