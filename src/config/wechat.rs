//! WeChat settings: the merchant's credentials (all four, or none for simulator mode), the
//! sign type, where notifies go, the base URLs and the call timeouts.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::settings::{positive, settings};
use super::{ConfigError, refuse};
use crate::wechat::v2::{ApiKey, SignType};

settings! {
    /// The WeChat settings as read.
    pub struct WechatSettings {
        /// the mini-program's AppID (merchant credentials: all four, or none for simulator mode)
        appid: Option<String> = None;
        /// the mini-program's AppSecret, for jscode2session
        app_secret: Option<SecretString> = None;
        /// the merchant id
        mch_id: Option<String> = None;
        /// the 32-character APIv2 key
        api_key: Option<SecretString> = None;
        /// `MD5` or `HMAC-SHA256`
        sign_type: String = "MD5".into(), check |name: &String| sign_type(name).map(|_| ());
        /// where WeChat posts payment results; must be `https://` in live mode with WeChat's own hosts (`http://` is accepted, with a warning, with another `MINIPAY_PAY_BASE_URL`)
        notify_url: Option<String> = None;
        /// WeChat Pay base URL(s), comma-separated, tried in order
        pay_base_url: Option<String> = None;
        /// WeChat login base URL(s)
        auth_base_url: Option<String> = None;
        /// per-call connect timeout
        wechat_connect_timeout_ms: u64 = 2_000;
        /// per-call total timeout
        wechat_timeout_ms: u64 = 10_000, check |ms: &u64| positive(*ms);
        /// WeChat Pay calls in flight at once per process (more wait for a turn); also the most connections kept to WeChat
        wechat_max_in_flight: u32 = 256, check |n: &u32| positive(u64::from(*n));
    }
}

/// Where the merchant's money goes, or the built-in simulator.
#[derive(Debug, Clone)]
pub enum Mode {
    /// No credentials: the service plays WeChat itself, with the demo identity.
    Simulator,
    Live(Credentials),
}

/// Real merchant credentials.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub appid: String,
    pub app_secret: SecretString,
    pub mch_id: String,
    pub api_key: ApiKey,
}

impl Credentials {
    pub fn app_secret(&self) -> &str {
        self.app_secret.expose_secret()
    }
}

/// How WeChat is reached.
#[derive(Debug, Clone)]
pub struct Wechat {
    pub mode: Mode,
    pub sign_type: SignType,
    /// `None`: `http://<bound address>/v1/wechat/notify` (simulator mode only).
    pub notify_url: Option<String>,
    /// `None`: WeChat's hosts in live mode, the embedded simulator in simulator mode.
    pub pay_base_urls: Option<Vec<String>>,
    pub auth_base_urls: Option<Vec<String>>,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    /// WeChat Pay calls in flight at once per process.
    pub max_in_flight: usize,
}

impl Wechat {
    pub fn simulator_mode(&self) -> bool {
        matches!(self.mode, Mode::Simulator)
    }

    /// What to warn about at start: an `http://` notify URL in live mode (allowed only with a
    /// staging WeChat, which is not WeChat's own hosts).
    pub fn start_warning(&self) -> Option<String> {
        match (&self.mode, &self.notify_url) {
            (Mode::Live(_), Some(url)) if !url.starts_with("https://") => Some(format!(
                "MINIPAY_NOTIFY_URL {url:?} is not https://: accepted because MINIPAY_PAY_BASE_URL \
                 is not WeChat's own (a staging WeChat); WeChat itself requires https"
            )),
            _ => None,
        }
    }
}

/// WeChat Pay's own hosts (`api.mch.weixin.qq.com`, its backup `api2.mch.weixin.qq.com`, and
/// the other `*.mch.weixin.qq.com` regions), where only an https notify URL is accepted:
/// https://pay.weixin.qq.com/wiki/doc/api/wxa/wxa_api.php?chapter=9_1 (`notify_url`).
fn is_wechat_host(url: &str) -> bool {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .is_some_and(|host| host == "weixin.qq.com" || host.ends_with(".weixin.qq.com"))
}

/// Whether the service calls WeChat Pay itself (the default base URLs, or any of WeChat's).
fn talks_to_wechat(pay_base_urls: Option<&[String]>) -> bool {
    match pay_base_urls {
        None => true,
        Some(urls) => urls.iter().any(|u| is_wechat_host(u)),
    }
}

impl WechatSettings {
    pub fn config(self) -> Result<Wechat, ConfigError> {
        self.check()?;
        let sign_type =
            sign_type(&self.sign_type).map_err(|why| refuse(format!("MINIPAY_SIGN_TYPE {why}")))?;
        let mode = self.mode()?;
        let notify_url = self.notify_url.filter(|u| !u.is_empty());
        if let Some(url) = &notify_url {
            crate::wechat::v2::params::check_notify_url(url)
                .map_err(|e| refuse(format!("MINIPAY_NOTIFY_URL: {}", e.reason)))?;
        }
        let pay_base_urls = base_urls("MINIPAY_PAY_BASE_URL", self.pay_base_url)?;
        if let Mode::Live(_) = mode {
            match &notify_url {
                Some(url) if url.starts_with("https://") => {}
                Some(_) if !talks_to_wechat(pay_base_urls.as_deref()) => {}
                _ => {
                    return Err(refuse(
                        "MINIPAY_NOTIFY_URL must be set to an https:// URL WeChat can reach in live mode \
                         (http:// is accepted only with a staging MINIPAY_PAY_BASE_URL)",
                    ));
                }
            }
        }
        Ok(Wechat {
            mode,
            sign_type,
            notify_url,
            pay_base_urls,
            auth_base_urls: base_urls("MINIPAY_AUTH_BASE_URL", self.auth_base_url)?,
            connect_timeout: Duration::from_millis(self.wechat_connect_timeout_ms.max(1)),
            timeout: Duration::from_millis(self.wechat_timeout_ms),
            max_in_flight: usize::try_from(self.wechat_max_in_flight).unwrap_or(usize::MAX),
        })
    }

    /// All four credentials (live mode) or none (simulator mode); half-set is refused.
    fn mode(&self) -> Result<Mode, ConfigError> {
        let present = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.is_empty());
        let secret =
            |v: &Option<SecretString>| v.as_ref().is_some_and(|v| !v.expose_secret().is_empty());
        let fields = [
            ("MINIPAY_APPID", present(&self.appid)),
            ("MINIPAY_APP_SECRET", secret(&self.app_secret)),
            ("MINIPAY_MCH_ID", present(&self.mch_id)),
            ("MINIPAY_API_KEY", secret(&self.api_key)),
        ];
        let set: Vec<&str> = fields.iter().filter(|f| f.1).map(|f| f.0).collect();
        let unset: Vec<&str> = fields.iter().filter(|f| !f.1).map(|f| f.0).collect();
        if set.is_empty() {
            return Ok(Mode::Simulator);
        }
        if !unset.is_empty() {
            return Err(refuse(format!(
                "merchant credentials are half-set: {} set but {} not; set all four for live mode, or none for simulator mode",
                set.join(", "),
                unset.join(", ")
            )));
        }
        let api_key = ApiKey::new(
            self.api_key
                .as_ref()
                .map(|k| k.expose_secret().to_owned())
                .unwrap_or_default(),
        );
        if api_key.len() != 32 {
            return Err(refuse(format!(
                "MINIPAY_API_KEY must be the 32-character APIv2 key (it has {} characters)",
                api_key.len()
            )));
        }
        Ok(Mode::Live(Credentials {
            appid: self.appid.clone().unwrap_or_default(),
            app_secret: self.app_secret.clone().unwrap_or_default(),
            mch_id: self.mch_id.clone().unwrap_or_default(),
            api_key,
        }))
    }
}

fn sign_type(name: &str) -> Result<SignType, String> {
    name.parse()
        .map_err(|_| "must be MD5 or HMAC-SHA256".to_owned())
}

fn base_urls(name: &str, value: Option<String>) -> Result<Option<Vec<String>>, ConfigError> {
    let Some(value) = value.filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    let urls: Vec<String> = value
        .split(',')
        .map(|u| u.trim().trim_end_matches('/').to_owned())
        .filter(|u| !u.is_empty())
        .collect();
    for url in &urls {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(refuse(format!("{name}: {url:?} is not an http(s) URL")));
        }
    }
    Ok(Some(urls))
}
