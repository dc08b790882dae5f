//! The WeChat clients of a process: the payment gateway (behind the protocol seam) and the
//! login API, for the merchant's own identity (live mode) or the simulator's demo identity
//! (simulator mode), at the configured or the default base URLs; and the session_key sealer,
//! whose key is derived from the merchant's.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use rustls::pki_types::CertificateDer;
use secrecy::{ExposeSecret, SecretString};

use crate::config::{ClientCertificate, Config, Mode, refund_notify_url};
use crate::sealed::Sealer;
use crate::wechat::simulator::SimConfig;
use crate::wechat::v2::refund_client::RefundClient;
use crate::wechat::v2::tls::{ClientIdentity, https_client, read_ca_file};
use crate::wechat::v2::{self, Merchant, PayClient};
use crate::wechat::{Gateway, LoginClient, http_client, login};

/// The embedded simulator's TLS side (simulator mode): its HTTPS base URL, its CA and the
/// merchant certificate it issued, so that refunds work out of the box.
pub(super) struct EmbeddedTls {
    pub base: String,
    pub ca: Vec<CertificateDer<'static>>,
    pub identity: ClientIdentity,
}

/// The payment gateway and the login API: the merchant's own (live mode) or the simulator's
/// demo identity (simulator mode), at the configured or default base URLs.
pub(super) fn wechat(
    config: &Config,
    local: Option<SocketAddr>,
    embedded: Option<&str>,
    embedded_tls: Option<EmbeddedTls>,
) -> anyhow::Result<(Gateway, LoginClient, Sealer)> {
    if let Some(warning) = config.wechat.start_warning() {
        tracing::warn!("{warning}");
    }
    let (merchant, app_secret): (Merchant, SecretString) = match &config.wechat.mode {
        Mode::Live(creds) => (
            Merchant {
                appid: creds.appid.clone(),
                mch_id: creds.mch_id.clone(),
                key: creds.api_key.clone(),
                sign_type: config.wechat.sign_type,
            },
            creds.app_secret.clone(),
        ),
        Mode::Simulator => {
            let demo = SimConfig::demo();
            let merchant = Merchant {
                appid: demo.appid.clone(),
                mch_id: demo.mch_id.clone(),
                key: demo.key.clone(),
                sign_type: config.wechat.sign_type,
            };
            (merchant, demo.app_secret.into())
        }
    };
    let pay_bases = base_urls(
        config,
        config.wechat.pay_base_urls.clone(),
        &v2::PAY_HOSTS,
        embedded,
        "MINIPAY_PAY_BASE_URL",
    )?;
    let auth_bases = base_urls(
        config,
        config.wechat.auth_base_urls.clone(),
        &login::LOGIN_HOSTS,
        embedded,
        "MINIPAY_AUTH_BASE_URL",
    )?;
    let notify_url = match (&config.wechat.notify_url, local) {
        (Some(url), _) => url.clone(),
        (None, Some(addr)) => format!("http://{addr}/v1/wechat/notify"),
        // A worker-only process creates no orders, so it never hands out a notify_url.
        (None, None) => String::new(),
    };
    let sealer = Sealer::new(&merchant.key).context("deriving the session_key sealing key")?;
    let (connect, timeout) = (config.wechat.connect_timeout, config.wechat.timeout);
    let extra_ca = match &config.refunds.wechat_ca_file {
        Some(path) => read_ca_file(path)?,
        None => Vec::new(),
    };
    let http = match extra_ca.is_empty() {
        true => http_client(connect, timeout),
        false => https_client(&extra_ca, None, connect, timeout)?,
    };
    let login = LoginClient::new(http.clone(), auth_bases, merchant.appid.clone(), app_secret);
    let refund_notify = refund_notify_url(config.refunds.notify_url.as_deref(), &notify_url);
    let gateway = v2::V2::new(
        PayClient::new(http, pay_bases.clone(), merchant.clone())
            .with_max_in_flight(config.wechat.max_in_flight),
        notify_url,
    );
    let refunds = Refunds {
        merchant,
        pay_bases,
        extra_ca,
        embedded_tls,
    };
    let gateway = refunds.attach(config, gateway, refund_notify)?;
    Ok((Gateway::V2(gateway), login, sealer))
}

/// What refunds are built from: the merchant, where WeChat Pay is, the CAs trusted, and the
/// embedded simulator's TLS side.
struct Refunds {
    merchant: Merchant,
    pay_bases: Vec<String>,
    extra_ca: Vec<CertificateDer<'static>>,
    embedded_tls: Option<EmbeddedTls>,
}

impl Refunds {
    /// The gateway with refunds when a merchant API certificate is configured (checked against
    /// the mch_id here: a bad one stops the start) or the embedded simulator issued one.
    fn attach(self, config: &Config, gateway: v2::V2, notify: String) -> anyhow::Result<v2::V2> {
        let (connect, timeout) = (config.wechat.connect_timeout, config.wechat.timeout);
        let mch_id = self.merchant.mch_id.clone();
        let identity = match &config.refunds.certificate {
            Some(ClientCertificate::Pem { cert, key }) => {
                Some(ClientIdentity::from_pem_files(cert, key, &mch_id)?)
            }
            Some(ClientCertificate::P12 { path, password }) => Some(ClientIdentity::from_p12_file(
                path,
                password.as_ref().map(|p| p.expose_secret()),
                &mch_id,
            )?),
            None => None,
        };
        let (identity, trusted, bases) = match (identity, self.embedded_tls) {
            (Some(identity), _) => (identity, self.extra_ca, self.pay_bases),
            (None, Some(tls)) => (
                tls.identity,
                [self.extra_ca, tls.ca].concat(),
                vec![tls.base],
            ),
            (None, None) => {
                tracing::info!(
                    "refunds off: no merchant API certificate (MINIPAY_CLIENT_CERT/MINIPAY_CLIENT_KEY or MINIPAY_CLIENT_P12)"
                );
                return Ok(gateway);
            }
        };
        let days_left = (identity.expires_at() - chrono::Utc::now().timestamp()) / 86_400;
        tracing::info!(
            subject = identity.subject_cn(),
            days_left,
            refund_notify_url = %notify,
            "refunds on: the merchant API certificate is loaded"
        );
        let http = https_client(&trusted, Some(&identity), connect, timeout)?;
        let client = RefundClient::new(
            PayClient::new(http, bases, self.merchant)
                .with_max_in_flight(config.wechat.max_in_flight),
        );
        Ok(gateway.with_refunds(client, notify))
    }
}

fn base_urls(
    config: &Config,
    configured: Option<Vec<String>>,
    live: &[&str],
    embedded: Option<&str>,
    setting: &str,
) -> anyhow::Result<Vec<String>> {
    if let Some(urls) = configured {
        return Ok(urls);
    }
    match (&config.wechat.mode, embedded) {
        (Mode::Live(_), _) => Ok(live.iter().map(|u| (*u).to_owned()).collect()),
        (Mode::Simulator, Some(url)) => Ok(vec![url.to_owned()]),
        (Mode::Simulator, None) => bail!(
            "{setting}: in simulator mode a worker-only process needs the URL of a simulator \
             (run `minipay simulator`, or the /simulator path of a `minipay serve`)"
        ),
    }
}
