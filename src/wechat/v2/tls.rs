//! The merchant API certificate that `/secapi/` calls (refunds) present over mutual TLS, and
//! the HTTPS client that presents it. The certificate comes as WeChat issues it: PEM
//! (`apiclient_cert.pem` + `apiclient_key.pem`) or PKCS#12 (`apiclient_cert.p12`, password the
//! mch_id, legacy RC2-40/3DES encryption, read by the pure-Rust `p12-keystore`). Each refusal
//! names the setting to fix. Server certificates are checked against the webpki roots plus an
//! optional extra CA (a staging WeChat's).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use p12_keystore::{KeyStore, Pkcs12ImportPolicy};
use rustls::crypto::ring::default_provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, InconsistentKeys, RootCertStore};

/// The settings this module reads files for (named in every refusal).
pub const CLIENT_CERT: &str = "MINIPAY_CLIENT_CERT";
pub const CLIENT_KEY: &str = "MINIPAY_CLIENT_KEY";
pub const CLIENT_P12: &str = "MINIPAY_CLIENT_P12";
pub const CLIENT_P12_PASSWORD: &str = "MINIPAY_CLIENT_P12_PASSWORD";
pub const WECHAT_CA_FILE: &str = "MINIPAY_WECHAT_CA_FILE";

/// A TLS setting that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct TlsSettingError {
    pub setting: &'static str,
    pub problem: TlsProblem,
}

/// What is wrong with a TLS setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsProblem {
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("no PEM certificate in it")]
    NoCertificate,
    #[error("no PEM private key in it")]
    NoPrivateKey,
    #[error("not a usable certificate: {0}")]
    BadCertificate(String),
    #[error("not a usable private key: {0}")]
    BadPrivateKey(String),
    #[error(
        "cannot open it as PKCS#12 ({0}); is the password right? It is the mch_id unless \
         MINIPAY_CLIENT_P12_PASSWORD is set"
    )]
    Pkcs12(String),
    #[error("the PKCS#12 file holds no private key with its certificate")]
    Pkcs12WithoutKey,
    #[error("the private key does not belong to the certificate")]
    KeyMismatch,
    #[error(
        "the certificate's subject CN is {found:?}, not the mch_id {mch_id:?}: WeChat's merchant \
         API certificate carries the mch_id"
    )]
    WrongSubject {
        found: Option<String>,
        mch_id: String,
    },
}

fn refuse(setting: &'static str, problem: TlsProblem) -> TlsSettingError {
    TlsSettingError { setting, problem }
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, TlsSettingError> {
    std::fs::read(path).map_err(|e| {
        refuse(
            setting,
            TlsProblem::Unreadable {
                path: path.display().to_string(),
                reason: e.to_string(),
            },
        )
    })
}

/// The merchant API certificate (with its chain) and private key, checked to belong together
/// and to name the mch_id. `Debug` never shows the key.
pub struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    subject_cn: String,
    expires_at: i64,
}

impl Clone for ClientIdentity {
    fn clone(&self) -> Self {
        ClientIdentity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            subject_cn: self.subject_cn.clone(),
            expires_at: self.expires_at,
        }
    }
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("subject_cn", &self.subject_cn)
            .field("chain_len", &self.chain.len())
            .field("expires_at", &self.expires_at)
            .field("key", &"***")
            .finish()
    }
}

impl ClientIdentity {
    /// From PEM: the certificate (its chain may follow) and its private key (PKCS#8, PKCS#1
    /// or SEC1).
    pub fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        mch_id: &str,
    ) -> Result<ClientIdentity, TlsSettingError> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| refuse(CLIENT_CERT, TlsProblem::BadCertificate(e.to_string())))?;
        if chain.is_empty() {
            return Err(refuse(CLIENT_CERT, TlsProblem::NoCertificate));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                refuse(CLIENT_KEY, TlsProblem::NoPrivateKey)
            }
            other => refuse(CLIENT_KEY, TlsProblem::BadPrivateKey(other.to_string())),
        })?;
        Self::checked(chain, key, mch_id, CLIENT_CERT, CLIENT_KEY)
    }

    /// [`ClientIdentity::from_pem`] from the files `MINIPAY_CLIENT_CERT` and
    /// `MINIPAY_CLIENT_KEY` name.
    pub fn from_pem_files(
        cert: &Path,
        key: &Path,
        mch_id: &str,
    ) -> Result<ClientIdentity, TlsSettingError> {
        Self::from_pem(&read(CLIENT_CERT, cert)?, &read(CLIENT_KEY, key)?, mch_id)
    }

    /// From a PKCS#12 file as WeChat issues it; `password` defaults to the mch_id.
    pub fn from_p12(
        der: &[u8],
        password: Option<&str>,
        mch_id: &str,
    ) -> Result<ClientIdentity, TlsSettingError> {
        let setting = if password.is_some() {
            CLIENT_P12_PASSWORD
        } else {
            CLIENT_P12
        };
        let store =
            KeyStore::from_pkcs12(der, password.unwrap_or(mch_id), Pkcs12ImportPolicy::Strict)
                .map_err(|e| refuse(setting, TlsProblem::Pkcs12(e.to_string())))?;
        let (_, keychain) = store
            .private_key_chain()
            .ok_or_else(|| refuse(CLIENT_P12, TlsProblem::Pkcs12WithoutKey))?;
        let chain: Vec<_> = keychain
            .certs()
            .iter()
            .map(|c| CertificateDer::from(c.as_der().to_vec()))
            .collect();
        if chain.is_empty() {
            return Err(refuse(CLIENT_P12, TlsProblem::Pkcs12WithoutKey));
        }
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(keychain.key().as_der().to_vec()));
        Self::checked(chain, key, mch_id, CLIENT_P12, CLIENT_P12)
    }

    /// [`ClientIdentity::from_p12`] from the file `MINIPAY_CLIENT_P12` names.
    pub fn from_p12_file(
        path: &Path,
        password: Option<&str>,
        mch_id: &str,
    ) -> Result<ClientIdentity, TlsSettingError> {
        Self::from_p12(&read(CLIENT_P12, path)?, password, mch_id)
    }

    /// Refuses a key that does not match the certificate, and a certificate that does not
    /// name the mch_id.
    fn checked(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        mch_id: &str,
        cert_setting: &'static str,
        key_setting: &'static str,
    ) -> Result<ClientIdentity, TlsSettingError> {
        let (subject_cn, expires_at) = {
            let leaf = chain
                .first()
                .ok_or_else(|| refuse(cert_setting, TlsProblem::NoCertificate))?;
            let (_, leaf) = x509_parser::parse_x509_certificate(leaf)
                .map_err(|e| refuse(cert_setting, TlsProblem::BadCertificate(e.to_string())))?;
            let cn = leaf
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_owned);
            (cn, leaf.validity().not_after.timestamp())
        };
        let signing_key = default_provider()
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| refuse(key_setting, TlsProblem::BadPrivateKey(e.to_string())))?;
        match CertifiedKey::new(chain.clone(), signing_key).keys_match() {
            // Unknown: the key type cannot tell its public key; rustls accepts it the same way.
            Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
            Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
                return Err(refuse(key_setting, TlsProblem::KeyMismatch));
            }
            Err(e) => {
                return Err(refuse(
                    cert_setting,
                    TlsProblem::BadCertificate(e.to_string()),
                ));
            }
        }
        match subject_cn {
            Some(cn) if cn == mch_id => Ok(ClientIdentity {
                chain,
                key,
                subject_cn: cn,
                expires_at,
            }),
            found => Err(refuse(
                cert_setting,
                TlsProblem::WrongSubject {
                    found,
                    mch_id: mch_id.to_owned(),
                },
            )),
        }
    }

    /// The certificate's subject CN (the mch_id).
    pub fn subject_cn(&self) -> &str {
        &self.subject_cn
    }

    /// Unix second at which the certificate expires (worth a warning as it nears).
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }

    /// The certificate first, then its chain.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }
}

/// The CA certificates of a PEM file (`MINIPAY_WECHAT_CA_FILE`), refused when it holds none.
pub fn read_ca_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsSettingError> {
    let cas = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| refuse(WECHAT_CA_FILE, TlsProblem::BadCertificate(e.to_string())))?;
    if cas.is_empty() {
        return Err(refuse(WECHAT_CA_FILE, TlsProblem::NoCertificate));
    }
    Ok(cas)
}

/// [`read_ca_pem`] from a file.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSettingError> {
    read_ca_pem(&read(WECHAT_CA_FILE, path)?)
}

/// A rustls client configuration trusting the webpki roots and `extra_ca`, presenting
/// `identity` when a server asks for a client certificate.
pub fn client_config(
    extra_ca: &[CertificateDer<'static>],
    identity: Option<&ClientIdentity>,
) -> Result<ClientConfig, TlsSettingError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for ca in extra_ca {
        roots
            .add(ca.clone())
            .map_err(|e| refuse(WECHAT_CA_FILE, TlsProblem::BadCertificate(e.to_string())))?;
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| refuse(WECHAT_CA_FILE, TlsProblem::BadCertificate(e.to_string())))?
        .with_root_certificates(roots);
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some(identity) => builder
            .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
            .map_err(|e| refuse(CLIENT_CERT, TlsProblem::BadCertificate(e.to_string()))),
    }
}

/// An HTTPS client for WeChat Pay built on [`client_config`], with the same timeouts and
/// user agent as [`crate::wechat::http_client`]. With an identity it is the client for
/// `/secapi/pay/refund`.
pub fn https_client(
    extra_ca: &[CertificateDer<'static>],
    identity: Option<&ClientIdentity>,
    connect_timeout: Duration,
    timeout: Duration,
) -> Result<reqwest::Client, TlsSettingError> {
    let config = client_config(extra_ca, identity)?;
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .user_agent(concat!("minipay/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| refuse(CLIENT_CERT, TlsProblem::BadCertificate(e.to_string())))
}
