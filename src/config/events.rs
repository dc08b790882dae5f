//! Merchant event settings: where events are POSTed, the secrets that sign them, how long one
//! delivery may take, and how many deliveries run at once.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::settings::{positive, settings};
use super::{ConfigError, refuse};
use crate::events::WebhookSecrets;

settings! {
    /// The merchant event settings as read.
    pub struct EventSettings {
        /// the merchant's endpoint for events (http or https); none: events are recorded, not sent
        webhook_url: Option<String> = None;
        /// `whsec_` + base64 of 24–64 random bytes, several separated by spaces while rotating; required with the URL
        webhook_secret: Option<SecretString> = None;
        /// how long one delivery may take, connecting to reading the answer
        webhook_timeout_secs: u64 = 10, check |secs: &u64| positive(*secs);
        /// deliveries running at once per worker process (their own queue: a slow endpoint never holds up payments)
        webhook_concurrency: usize = 16, check |n: &usize| positive(*n as u64);
        /// every pause of the retry schedule multiplied by this (drills and tests: `0.001` walks the 27-hour schedule in 100 s)
        webhook_retry_scale: String = "1".into();
    }
}

/// Where and how events are delivered.
#[derive(Debug, Clone)]
pub struct Events {
    /// `None`: events are recorded, not sent.
    pub url: Option<String>,
    /// Present whenever `url` is.
    pub secrets: Option<WebhookSecrets>,
    pub timeout: Duration,
    pub concurrency: usize,
    pub retry_scale: f64,
}

impl EventSettings {
    pub fn config(self) -> Result<Events, ConfigError> {
        self.check()?;
        let url = self.webhook_url.filter(|u| !u.trim().is_empty());
        if let Some(url) = &url {
            check_url(url)?;
        }
        let secrets = match self
            .webhook_secret
            .filter(|s| !s.expose_secret().trim().is_empty())
        {
            Some(value) => Some(
                WebhookSecrets::from_setting(value.expose_secret())
                    .map_err(|e| refuse(e.to_string()))?,
            ),
            None => None,
        };
        if url.is_some() && secrets.is_none() {
            return Err(refuse(
                "MINIPAY_WEBHOOK_URL is set without MINIPAY_WEBHOOK_SECRET: every delivery must \
                 be signed (make one with: echo \"whsec_$(openssl rand -base64 32)\")",
            ));
        }
        let retry_scale: f64 = self.webhook_retry_scale.trim().parse().unwrap_or(f64::NAN);
        if !(retry_scale.is_finite() && retry_scale > 0.0) {
            return Err(refuse(format!(
                "MINIPAY_WEBHOOK_RETRY_SCALE: {:?} is not a number above 0",
                self.webhook_retry_scale
            )));
        }
        Ok(Events {
            url,
            secrets,
            timeout: Duration::from_secs(self.webhook_timeout_secs),
            concurrency: self.webhook_concurrency,
            retry_scale,
        })
    }
}

/// An absolute http(s) URL with a host. Not echoed back: it may carry a token.
fn check_url(url: &str) -> Result<(), ConfigError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|_| refuse("MINIPAY_WEBHOOK_URL is not an absolute URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(refuse(
            "MINIPAY_WEBHOOK_URL must be an http:// or https:// URL with a host",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

    fn with(url: Option<&str>, secret: Option<&str>) -> Result<Events, ConfigError> {
        EventSettings {
            webhook_url: url.map(str::to_owned),
            webhook_secret: secret.map(|s| SecretString::from(s.to_owned())),
            ..EventSettings::default()
        }
        .config()
    }

    #[test]
    fn off_by_default_and_on_with_url_and_secret() {
        let off = with(None, None).unwrap();
        assert!(off.url.is_none() && off.secrets.is_none());
        assert_eq!(off.timeout, Duration::from_secs(10));
        let on = with(Some("https://shop.example/hooks"), Some(SECRET)).unwrap();
        assert_eq!(on.url.as_deref(), Some("https://shop.example/hooks"));
        assert_eq!(on.secrets.unwrap().len(), 1);
        let two = with(
            Some("http://127.0.0.1:9/h"),
            Some(&format!("{SECRET} {SECRET}")),
        )
        .unwrap();
        assert_eq!(two.secrets.unwrap().len(), 2);
    }

    #[test]
    fn refusals_name_the_setting_never_the_secret() {
        let no_secret = with(Some("https://shop.example/hooks"), None).unwrap_err();
        assert!(no_secret.to_string().contains("MINIPAY_WEBHOOK_SECRET"));
        for bad in ["whsec_short", "not-a-secret", "whsec_!!!!"] {
            let message = with(None, Some(bad)).unwrap_err().to_string();
            assert!(message.contains("MINIPAY_WEBHOOK_SECRET"), "{message}");
            assert!(!message.contains(bad), "{message}");
        }
        let second_bad = with(None, Some(&format!("{SECRET} whsec_x")))
            .unwrap_err()
            .to_string();
        assert!(second_bad.contains("secret 2"), "{second_bad}");
        for url in ["shop.example/hooks", "ftp://shop.example/", "https://"] {
            let message = with(Some(url), Some(SECRET)).unwrap_err().to_string();
            assert!(message.contains("MINIPAY_WEBHOOK_URL"), "{message}");
        }
        let scale = EventSettings {
            webhook_retry_scale: "0".into(),
            ..EventSettings::default()
        };
        assert!(scale.config().is_err());
    }
}
