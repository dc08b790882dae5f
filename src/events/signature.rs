//! Standard Webhooks signatures, symmetric scheme `v1` (docs/webhooks.md, "Verifying a
//! delivery" and "Rotating the secret"): HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}`
//! keyed with the bytes of a `whsec_` secret, sent as `v1,<base64>`; several secrets give several
//! space-separated signatures so that a merchant can roll keys without downtime.
//!
//! Owns the secrets (never in `Debug` or an error message), signing, and checking a signature
//! header in constant time. Knows nothing of HTTP or of the event's shape.

use std::fmt;

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;

/// The setting that holds the secrets, named in every message about them.
pub const SECRET_SETTING: &str = "MINIPAY_WEBHOOK_SECRET";

/// How far a `webhook-timestamp` may be from the receiver's clock, either way (the official
/// libraries use 5 minutes).
pub const TOLERANCE_SECS: i64 = 300;

const PREFIX: &str = "whsec_";
/// The specification's bounds: at least 24 random bytes, at most 512 bits.
const MIN_KEY_BYTES: usize = 24;
const MAX_KEY_BYTES: usize = 64;

/// Padding is optional: the official libraries accept secrets with and without it.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

type HmacSha256 = Hmac<Sha256>;

/// Why a secret was refused. The message names where it came from and which one it is, never
/// its text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error(
        "{setting} holds no secret; expected whsec_ followed by base64 of 24 to 64 random bytes"
    )]
    Empty { setting: &'static str },
    #[error("{setting}: secret {position} does not start with whsec_")]
    NoPrefix {
        setting: &'static str,
        position: usize,
    },
    #[error("{setting}: secret {position} is not base64 after whsec_")]
    NotBase64 {
        setting: &'static str,
        position: usize,
    },
    #[error(
        "{setting}: secret {position} holds {len} bytes; a whsec_ secret holds 24 to 64 random bytes"
    )]
    BadLength {
        setting: &'static str,
        position: usize,
        len: usize,
    },
}

/// Why a delivery did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("webhook-timestamp {0:?} is not Unix seconds")]
    BadTimestamp(String),
    #[error("webhook-timestamp is {0} s old, more than the {TOLERANCE_SECS} s allowed")]
    TooOld(i64),
    #[error("webhook-timestamp is {0} s in the future, more than the {TOLERANCE_SECS} s allowed")]
    TooNew(i64),
    #[error("webhook-signature holds no v1 signature")]
    NoSignature,
    #[error("no signature in webhook-signature matches")]
    NoMatch,
}

/// The signing secrets, in the order given; at least one. Cheap to clone.
#[derive(Clone)]
pub struct WebhookSecrets {
    keys: Vec<SecretSlice<u8>>,
}

impl fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookSecrets({} × [REDACTED])", self.keys.len())
    }
}

impl WebhookSecrets {
    /// The value of [`SECRET_SETTING`]: one or more `whsec_` secrets separated by spaces.
    pub fn from_setting(value: &str) -> Result<Self, SecretError> {
        Self::parse(value, SECRET_SETTING)
    }

    /// Secrets separated by whitespace; `setting` names where they came from in errors (a
    /// setting, a command-line flag).
    pub fn parse(value: &str, setting: &'static str) -> Result<Self, SecretError> {
        let keys = value
            .split_whitespace()
            .enumerate()
            .map(|(i, secret)| decode(secret, setting, i + 1))
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(SecretError::Empty { setting });
        }
        Ok(WebhookSecrets { keys })
    }

    /// How many secrets sign each delivery.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: parsing refuses an empty list.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The `webhook-signature` value: one `v1,<base64>` per secret, joined by a space.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let timestamp = timestamp.to_string();
        self.keys
            .iter()
            .map(|key| {
                let tag = mac(key, id, &timestamp, body).finalize().into_bytes();
                format!("v1,{}", BASE64.encode(tag))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// What a receiver does: the timestamp within [`TOLERANCE_SECS`] of `now` (Unix seconds),
    /// then any `v1` signature of `signature_header` made with any of these secrets.
    pub fn verify(
        &self,
        id: &str,
        timestamp: &str,
        body: &[u8],
        signature_header: &str,
        now: i64,
    ) -> Result<(), VerifyError> {
        let sent = parse_timestamp(timestamp)?;
        let age = now.saturating_sub(sent);
        if age > TOLERANCE_SECS {
            return Err(VerifyError::TooOld(age));
        }
        if -age > TOLERANCE_SECS {
            return Err(VerifyError::TooNew(-age));
        }
        self.check_signature(id, timestamp, body, signature_header)
    }

    /// The signature check alone, for a delivery captured earlier. `timestamp` is the header's
    /// text as sent: it is signed verbatim.
    pub fn check_signature(
        &self,
        id: &str,
        timestamp: &str,
        body: &[u8],
        signature_header: &str,
    ) -> Result<(), VerifyError> {
        let mut any_v1 = false;
        for candidate in signature_header.split_whitespace() {
            // Other schemes (`v1a`, later versions) may sit next to ours; they are not ours to check.
            let Some(("v1", encoded)) = candidate.split_once(',') else {
                continue;
            };
            any_v1 = true;
            let Ok(signature) = BASE64.decode(encoded) else {
                continue;
            };
            // `verify_slice` compares in constant time.
            let matches = self.keys.iter().any(|key| {
                mac(key, id, timestamp, body)
                    .verify_slice(&signature)
                    .is_ok()
            });
            if matches {
                return Ok(());
            }
        }
        Err(if any_v1 {
            VerifyError::NoMatch
        } else {
            VerifyError::NoSignature
        })
    }
}

/// Unix seconds, as a `webhook-timestamp` carries them.
pub fn parse_timestamp(text: &str) -> Result<i64, VerifyError> {
    text.parse::<i64>()
        .map_err(|_| VerifyError::BadTimestamp(text.to_owned()))
}

fn decode(
    secret: &str,
    setting: &'static str,
    position: usize,
) -> Result<SecretSlice<u8>, SecretError> {
    let encoded = secret
        .strip_prefix(PREFIX)
        .ok_or(SecretError::NoPrefix { setting, position })?;
    let bytes = BASE64
        .decode(encoded)
        .map_err(|_| SecretError::NotBase64 { setting, position })?;
    if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&bytes.len()) {
        return Err(SecretError::BadLength {
            setting,
            position,
            len: bytes.len(),
        });
    }
    Ok(SecretSlice::from(bytes))
}

/// The HMAC of `{id}.{timestamp}.{body}` under `key`, not yet finalized.
fn mac(key: &SecretSlice<u8>, id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length: the error branch cannot be reached.
    let mut mac = HmacSha256::new_from_slice(key.expose_secret())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    for part in [id.as_bytes(), b".", timestamp.as_bytes(), b".", body] {
        mac.update(part);
    }
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    // The published example of the specification's reference libraries.
    const SPEC_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const SPEC_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const SPEC_TIMESTAMP: i64 = 1_649_367_553;
    const SPEC_BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SPEC_SIGNATURE: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";
    // 32 bytes 0x00..0x1f and 64 bytes of 0x42, base64.
    const SECOND: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const LONGEST: &str = "whsec_QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQg==";

    fn secrets(value: &str) -> WebhookSecrets {
        WebhookSecrets::from_setting(value).unwrap()
    }

    #[test]
    fn reproduces_the_specification_example() {
        let spec = secrets(SPEC_SECRET);
        assert_eq!(
            spec.sign(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY),
            SPEC_SIGNATURE
        );
        assert_eq!(
            spec.verify(
                SPEC_ID,
                "1649367553",
                SPEC_BODY,
                SPEC_SIGNATURE,
                SPEC_TIMESTAMP
            ),
            Ok(())
        );
    }

    #[test]
    fn two_secrets_give_two_signatures_each_verifiable_alone() {
        let both = secrets(&format!("{SPEC_SECRET}  {SECOND}"));
        assert_eq!(both.len(), 2);
        let header = both.sign(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY);
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2, "{header}");
        assert_eq!(parts[0], SPEC_SIGNATURE);
        assert!(parts[1].starts_with("v1,") && parts[1] != SPEC_SIGNATURE);
        for alone in [SPEC_SECRET, SECOND] {
            let receiver = secrets(alone);
            assert_eq!(
                receiver.verify(SPEC_ID, "1649367553", SPEC_BODY, &header, SPEC_TIMESTAMP),
                Ok(()),
                "{alone}"
            );
        }
        // a receiver holding a third secret accepts neither
        assert_eq!(
            secrets(LONGEST).verify(SPEC_ID, "1649367553", SPEC_BODY, &header, SPEC_TIMESTAMP),
            Err(VerifyError::NoMatch)
        );
    }

    #[test]
    fn a_tampered_body_id_or_timestamp_fails() {
        let spec = secrets(SPEC_SECRET);
        let now = SPEC_TIMESTAMP;
        let tampered_body = br#"{"email":"test@example.com","username":"test_user2"}"#;
        assert_eq!(
            spec.verify(SPEC_ID, "1649367553", tampered_body, SPEC_SIGNATURE, now),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            spec.verify(
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpl",
                "1649367553",
                SPEC_BODY,
                SPEC_SIGNATURE,
                now
            ),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            spec.verify(SPEC_ID, "1649367554", SPEC_BODY, SPEC_SIGNATURE, now),
            Err(VerifyError::NoMatch)
        );
        // the signature itself, one character changed
        let forged = SPEC_SIGNATURE.replace("tZ1", "tZ2");
        assert_eq!(
            spec.verify(SPEC_ID, "1649367553", SPEC_BODY, &forged, now),
            Err(VerifyError::NoMatch)
        );
    }

    #[test]
    fn other_schemes_and_garbage_next_to_ours_are_skipped() {
        let spec = secrets(SPEC_SECRET);
        let header = format!(
            "v1a,AAAA v1,!!notbase64!! nonsense v2,{} {SPEC_SIGNATURE}",
            &SPEC_SIGNATURE[3..]
        );
        assert_eq!(
            spec.check_signature(SPEC_ID, "1649367553", SPEC_BODY, &header),
            Ok(())
        );
        let only_other = format!("v1a,AAAA v2,{}", &SPEC_SIGNATURE[3..]);
        assert_eq!(
            spec.check_signature(SPEC_ID, "1649367553", SPEC_BODY, &only_other),
            Err(VerifyError::NoSignature)
        );
        assert_eq!(
            spec.check_signature(SPEC_ID, "1649367553", SPEC_BODY, ""),
            Err(VerifyError::NoSignature)
        );
    }

    #[test]
    fn the_timestamp_must_be_within_five_minutes() {
        let spec = secrets(SPEC_SECRET);
        let at = |now| spec.verify(SPEC_ID, "1649367553", SPEC_BODY, SPEC_SIGNATURE, now);
        assert_eq!(at(SPEC_TIMESTAMP + 300), Ok(()));
        assert_eq!(at(SPEC_TIMESTAMP - 300), Ok(()));
        assert_eq!(at(SPEC_TIMESTAMP + 301), Err(VerifyError::TooOld(301)));
        assert_eq!(at(SPEC_TIMESTAMP - 301), Err(VerifyError::TooNew(301)));
        assert_eq!(
            spec.verify(
                SPEC_ID,
                "16493675.53",
                SPEC_BODY,
                SPEC_SIGNATURE,
                SPEC_TIMESTAMP
            ),
            Err(VerifyError::BadTimestamp("16493675.53".into()))
        );
    }

    #[test]
    fn malformed_secrets_are_refused_naming_the_setting_not_the_secret() {
        let too_short = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRY="; // 23 bytes
        let too_long = "whsec_QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI="; // 65 bytes
        let cases: [(&str, SecretError); 6] = [
            (
                "",
                SecretError::Empty {
                    setting: SECRET_SETTING,
                },
            ),
            (
                "   ",
                SecretError::Empty {
                    setting: SECRET_SETTING,
                },
            ),
            (
                "C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
                SecretError::NoPrefix {
                    setting: SECRET_SETTING,
                    position: 1,
                },
            ),
            (
                &format!("{SPEC_SECRET} whsec_C2FV*BQIhrscChlQIMV+b5sSYspob7oD"),
                SecretError::NotBase64 {
                    setting: SECRET_SETTING,
                    position: 2,
                },
            ),
            (
                too_short,
                SecretError::BadLength {
                    setting: SECRET_SETTING,
                    position: 1,
                    len: 23,
                },
            ),
            (
                too_long,
                SecretError::BadLength {
                    setting: SECRET_SETTING,
                    position: 1,
                    len: 65,
                },
            ),
        ];
        for (value, expected) in cases {
            let error = WebhookSecrets::from_setting(value).expect_err(value);
            assert_eq!(error, expected, "{value}");
            let message = error.to_string();
            assert!(message.starts_with(SECRET_SETTING), "{message}");
            assert!(!message.contains("C2FV"), "the secret leaked: {message}");
        }
        assert_eq!(secrets(SECOND).len(), 1);
        assert_eq!(secrets(LONGEST).len(), 1);
        // unpadded base64 is accepted, as the official libraries do
        assert_eq!(
            secrets(SECOND.trim_end_matches('=')).sign("a", 1, b"b"),
            secrets(SECOND).sign("a", 1, b"b")
        );
        assert!(
            WebhookSecrets::parse("nope", "--secret")
                .unwrap_err()
                .to_string()
                .starts_with("--secret: secret 1")
        );
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let both = secrets(&format!("{SPEC_SECRET} {SECOND}"));
        let debug = format!("{both:?} {:#?}", both.clone());
        assert_eq!(format!("{both:?}"), "WebhookSecrets(2 × [REDACTED])");
        for fragment in ["C2FV", "AAECAwQF", "11, 97"] {
            assert!(!debug.contains(fragment), "{debug}");
        }
    }
}
