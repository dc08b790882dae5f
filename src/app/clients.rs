//! The WeChat clients of a process: the payment gateway (behind the protocol seam) and the
//! login API, for the merchant's own identity (live mode) or the simulator's demo identity
//! (simulator mode), at the configured or the default base URLs; and the session_key sealer,
//! whose key is derived from the merchant's.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use secrecy::SecretString;

use crate::config::{Config, Mode};
use crate::sealed::Sealer;
use crate::wechat::simulator::SimConfig;
use crate::wechat::v2::{self, Merchant, PayClient};
use crate::wechat::{Gateway, LoginClient, http_client, login};

/// The payment gateway and the login API: the merchant's own (live mode) or the simulator's
/// demo identity (simulator mode), at the configured or default base URLs.
pub(super) fn wechat(
    config: &Config,
    local: Option<SocketAddr>,
    embedded: Option<&str>,
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
    let http = http_client(config.wechat.connect_timeout, config.wechat.timeout);
    let login = LoginClient::new(http.clone(), auth_bases, merchant.appid.clone(), app_secret);
    let pay = PayClient::new(http, pay_bases, merchant);
    Ok((Gateway::V2(v2::V2::new(pay, notify_url)), login, sealer))
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
