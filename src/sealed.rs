//! Secrets the database keeps but must not reveal on its own (a user's WeChat `session_key`):
//! sealed with AES-256-GCM under a key derived by HKDF-SHA256 from the merchant API key, which
//! lives in the configuration, never in the database. Each value gets a random 96-bit nonce and
//! is bound to its row's owner (the openid, as associated data), so a sealed value copied onto
//! another user's row does not open.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hkdf::Hkdf;
use rand::rngs::OsRng;
use rand::{RngCore, TryRngCore};
use secrecy::SecretString;
use sha2::Sha256;

use crate::wechat::v2::ApiKey;

/// HKDF `info`: names what the derived key is for, so it is never the key of anything else.
const KEY_INFO: &[u8] = b"minipay/session_key-at-rest/v1";
const NONCE_LEN: usize = 12;

/// Why a value could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("deriving the sealing key failed")]
    Key,
    #[error("sealing failed")]
    Seal,
    /// Not base64, too short, another key, another owner, or altered.
    #[error("the sealed value does not open with this key and owner")]
    Open,
}

/// Seals and opens values with the key derived from the merchant API key.
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer(***)")
    }
}

impl Sealer {
    /// The sealer of this merchant (changing the API key makes stored values unreadable).
    pub fn new(api_key: &ApiKey) -> Result<Sealer, SealError> {
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(None, api_key.expose().as_bytes())
            .expand(KEY_INFO, &mut key)
            .map_err(|_| SealError::Key)?;
        let cipher = Aes256Gcm::new_from_slice(&key).map_err(|_| SealError::Key)?;
        Ok(Sealer { cipher })
    }

    /// base64 of nonce ‖ ciphertext ‖ tag, bound to `owner`.
    pub fn seal(&self, secret: &str, owner: &str) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.unwrap_err().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: secret.as_bytes(),
            aad: owner.as_bytes(),
        };
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .map_err(|_| SealError::Seal)?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(STANDARD.encode(out))
    }

    /// The secret `seal` was given, if `sealed` is intact and belongs to `owner`.
    pub fn open(&self, sealed: &str, owner: &str) -> Result<SecretString, SealError> {
        let bytes = STANDARD.decode(sealed).map_err(|_| SealError::Open)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::Open);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let payload = Payload {
            msg: ciphertext,
            aad: owner.as_bytes(),
        };
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| SealError::Open)?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| SealError::Open)
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn sealer(key: &str) -> Sealer {
        Sealer::new(&ApiKey::new(key)).unwrap()
    }

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_owner() {
        let s = sealer("192006250b4c09247ec02edce69f6a2d");
        let sealed = s.seal("tiihtNczf5v6AKRyjwEUhQ==", "oUser").unwrap();
        assert!(!sealed.contains("tiihtNczf5v6AKRyjwEUhQ"));
        assert_eq!(
            s.open(&sealed, "oUser").unwrap().expose_secret(),
            "tiihtNczf5v6AKRyjwEUhQ=="
        );
        assert!(s.open(&sealed, "oOther").is_err(), "bound to its owner");
        let other = sealer("0123456789abcdef0123456789abcdef");
        assert!(other.open(&sealed, "oUser").is_err(), "another key");
        let mut altered = STANDARD.decode(&sealed).unwrap();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert!(s.open(&STANDARD.encode(altered), "oUser").is_err());
        assert!(s.open("dGlueQ", "oUser").is_err());
    }

    #[test]
    fn each_seal_has_its_own_nonce() {
        let s = sealer("192006250b4c09247ec02edce69f6a2d");
        let (a, b) = (s.seal("k", "o").unwrap(), s.seal("k", "o").unwrap());
        assert_ne!(a, b);
        assert_ne!(
            STANDARD.decode(&a).unwrap()[..NONCE_LEN],
            STANDARD.decode(&b).unwrap()[..NONCE_LEN]
        );
    }
}
