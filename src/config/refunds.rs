//! Refund settings: the merchant API certificate that `/secapi/pay/refund` needs (PEM pair or
//! WeChat's PKCS#12 file), an extra CA for a staging WeChat, where refund results are
//! posted, and how long a refund held by `NOTENOUGH` is retried. The certificate files are
//! read and checked against the mch_id at start (`app::clients`); without a certificate,
//! live mode starts and refunds answer `REFUNDS_NOT_CONFIGURED`.

use std::path::PathBuf;
use std::time::Duration;

use minipay_jobs::refund::HoldPolicy;
use secrecy::{ExposeSecret, SecretString};

use super::settings::{positive, settings};
use super::{ConfigError, refuse};

settings! {
    /// The refund settings as read.
    pub struct RefundSettings {
        /// the merchant API certificate `apiclient_cert.pem` presented to `/secapi/pay/refund` (with `MINIPAY_CLIENT_KEY`)
        client_cert: Option<String> = None;
        /// its private key, `apiclient_key.pem`
        client_key: Option<String> = None;
        /// the same certificate as WeChat's `apiclient_cert.p12` (instead of the PEM pair)
        client_p12: Option<String> = None;
        /// the p12 file's password; the mch_id when unset
        client_p12_password: Option<SecretString> = None;
        /// an extra CA certificate (PEM) trusted for the WeChat Pay and login base URLs (a staging WeChat)
        wechat_ca_file: Option<String> = None;
        /// where WeChat posts refund results; default: the notify URL's origin + `/v1/wechat/refund-notify`
        refund_notify_url: Option<String> = None;
        /// how long a refund refused with `NOTENOUGH` is retried before it fails
        refund_hold_secs: u64 = 86_400, check |s: &u64| positive(*s);
    }
}

/// Where the merchant API certificate comes from.
#[derive(Debug, Clone)]
pub enum ClientCertificate {
    Pem {
        cert: PathBuf,
        key: PathBuf,
    },
    P12 {
        path: PathBuf,
        password: Option<SecretString>,
    },
}

/// Refunds as configured.
#[derive(Debug, Clone)]
pub struct Refunds {
    /// `None`: no certificate configured (simulator mode makes its own).
    pub certificate: Option<ClientCertificate>,
    pub wechat_ca_file: Option<PathBuf>,
    /// `None`: derived from the payment notify URL.
    pub notify_url: Option<String>,
    pub hold: HoldPolicy,
    pub hold_for: Duration,
}

fn path(value: &Option<String>) -> Option<PathBuf> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl RefundSettings {
    pub fn config(self) -> Result<Refunds, ConfigError> {
        self.check()?;
        let (cert, key, p12) = (
            path(&self.client_cert),
            path(&self.client_key),
            path(&self.client_p12),
        );
        let password = self
            .client_p12_password
            .clone()
            .filter(|p| !p.expose_secret().is_empty());
        let certificate = match (cert, key, p12) {
            (None, None, None) => {
                if password.is_some() {
                    return Err(refuse(
                        "MINIPAY_CLIENT_P12_PASSWORD is set but MINIPAY_CLIENT_P12 is not",
                    ));
                }
                None
            }
            (Some(cert), Some(key), None) => Some(ClientCertificate::Pem { cert, key }),
            (None, None, Some(path)) => Some(ClientCertificate::P12 { path, password }),
            (Some(_), None, None) => {
                return Err(refuse(
                    "MINIPAY_CLIENT_CERT is set but MINIPAY_CLIENT_KEY is not: set both (apiclient_cert.pem and apiclient_key.pem)",
                ));
            }
            (None, Some(_), None) => {
                return Err(refuse(
                    "MINIPAY_CLIENT_KEY is set but MINIPAY_CLIENT_CERT is not: set both (apiclient_cert.pem and apiclient_key.pem)",
                ));
            }
            _ => {
                return Err(refuse(
                    "MINIPAY_CLIENT_P12 and MINIPAY_CLIENT_CERT/MINIPAY_CLIENT_KEY are both set: set one",
                ));
            }
        };
        let notify_url = self.refund_notify_url.filter(|u| !u.trim().is_empty());
        if let Some(url) = &notify_url {
            crate::wechat::v2::params::check_notify_url(url)
                .map_err(|e| refuse(format!("MINIPAY_REFUND_NOTIFY_URL: {}", e.reason)))?;
        }
        let hold_secs = i64::try_from(self.refund_hold_secs).unwrap_or(i64::MAX);
        Ok(Refunds {
            certificate,
            wechat_ca_file: path(&self.wechat_ca_file),
            notify_url,
            hold: HoldPolicy {
                give_up_after_secs: hold_secs,
            },
            hold_for: Duration::from_secs(self.refund_hold_secs),
        })
    }
}

/// The refund notify URL: the configured one, else the payment notify URL's origin +
/// `/v1/wechat/refund-notify`.
pub fn refund_notify_url(configured: Option<&str>, payment_notify_url: &str) -> String {
    if let Some(url) = configured {
        return url.to_owned();
    }
    let origin_end = payment_notify_url
        .find("://")
        .map(|scheme| {
            let after = scheme + 3;
            payment_notify_url[after..]
                .find('/')
                .map_or(payment_notify_url.len(), |slash| after + slash)
        })
        .unwrap_or(payment_notify_url.len());
    format!(
        "{}/v1/wechat/refund-notify",
        &payment_notify_url[..origin_end]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refund_notify_url_defaults_to_the_notify_urls_origin() {
        assert_eq!(
            refund_notify_url(None, "https://pay.example.com/v1/wechat/notify"),
            "https://pay.example.com/v1/wechat/refund-notify"
        );
        assert_eq!(
            refund_notify_url(None, "http://127.0.0.1:8080/x/y"),
            "http://127.0.0.1:8080/v1/wechat/refund-notify"
        );
        assert_eq!(
            refund_notify_url(Some("https://r.example.com/refunds"), "https://a/b"),
            "https://r.example.com/refunds"
        );
    }

    #[test]
    fn a_half_set_certificate_is_refused() {
        let mut s = RefundSettings {
            client_cert: Some("cert.pem".into()),
            ..RefundSettings::default()
        };
        assert!(
            s.clone()
                .config()
                .unwrap_err()
                .0
                .contains("MINIPAY_CLIENT_KEY")
        );
        s.client_key = Some("key.pem".into());
        assert!(matches!(
            s.clone().config().unwrap().certificate,
            Some(ClientCertificate::Pem { .. })
        ));
        s.client_p12 = Some("cert.p12".into());
        assert!(s.config().is_err());
        let no_file = RefundSettings {
            client_p12_password: Some("x".to_owned().into()),
            ..RefundSettings::default()
        };
        assert!(no_file.config().is_err());
    }
}
