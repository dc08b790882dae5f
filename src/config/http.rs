//! HTTP settings: where the API listens, who may call the admin endpoints, which proxies are
//! believed, how long a login lasts.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};

use super::settings::settings;
use super::{ConfigError, refuse};

settings! {
    /// The HTTP settings as read.
    pub struct HttpSettings {
        /// HTTP address
        listen: String = "127.0.0.1:8080".into();
        /// a second address for `/metrics`, `/admin` and the admin API; when set they leave `MINIPAY_LISTEN` (bind it to loopback or a private network)
        admin_listen: String = String::new();
        /// how often the database-backed gauges of `/metrics` are read (a scrape reads none)
        metrics_refresh_ms: u64 = 10_000;
        /// how long a `/metrics` answer is served again (a scrape flood costs a copy, not a render); `0`: render every scrape
        metrics_cache_ms: u64 = 1_000;
        /// bearer token of the admin endpoints (≥ 16 characters)
        admin_token: Option<SecretString> = None;
        /// IPs/CIDRs whose `X-Forwarded-For` is believed
        trusted_proxies: String = String::new();
        /// session token lifetime
        session_ttl_secs: u64 = 24 * 3600;
        /// SQLite: with less free space than this on the database's volume, refused notifies are only counted, not stored; `0`: always store
        refused_notify_min_free_mb: u64 = 256;
    }
}

/// How the API is reached.
#[derive(Debug, Clone)]
pub struct Http {
    pub listen: SocketAddr,
    /// `None`: the operator endpoints are served on `listen` with the rest.
    pub admin_listen: Option<SocketAddr>,
    /// How often the database-backed gauges are refreshed.
    pub metrics_refresh: Duration,
    /// How long a rendered `/metrics` answer is served again.
    pub metrics_cache: Duration,
    /// `None`: admin endpoints off.
    pub admin_token: Option<SecretString>,
    pub trusted_proxies: Vec<IpNet>,
    pub session_ttl: Duration,
    /// Bytes; 0: refused notifies are always stored.
    pub refused_notify_min_free: u64,
}

impl HttpSettings {
    pub fn config(self) -> Result<Http, ConfigError> {
        self.check()?;
        let listen: SocketAddr = self.listen.parse().map_err(|_| {
            refuse(format!(
                "MINIPAY_LISTEN: {:?} is not an address like 127.0.0.1:8080",
                self.listen
            ))
        })?;
        let admin_listen = match self.admin_listen.trim() {
            "" => None,
            text => Some(text.parse::<SocketAddr>().map_err(|_| {
                refuse(format!(
                    "MINIPAY_ADMIN_LISTEN: {text:?} is not an address like 127.0.0.1:9090"
                ))
            })?),
        };
        if admin_listen.is_some_and(|a| a == listen && a.port() != 0) {
            return Err(refuse(
                "MINIPAY_ADMIN_LISTEN must differ from MINIPAY_LISTEN (the operator endpoints leave it)",
            ));
        }
        let admin_token = match self.admin_token.filter(|t| !t.expose_secret().is_empty()) {
            Some(t) if t.expose_secret().len() < 16 => {
                return Err(refuse("MINIPAY_ADMIN_TOKEN must be at least 16 characters"));
            }
            other => other,
        };
        Ok(Http {
            listen,
            admin_listen,
            metrics_refresh: Duration::from_millis(self.metrics_refresh_ms.max(100)),
            metrics_cache: Duration::from_millis(self.metrics_cache_ms),
            admin_token,
            trusted_proxies: trusted_proxies(&self.trusted_proxies)?,
            session_ttl: Duration::from_secs(self.session_ttl_secs.max(60)),
            refused_notify_min_free: self.refused_notify_min_free_mb.saturating_mul(1024 * 1024),
        })
    }
}

fn trusted_proxies(list: &str) -> Result<Vec<IpNet>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<IpNet>()
                .or_else(|_| p.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    refuse(format!(
                        "MINIPAY_TRUSTED_PROXIES: {p:?} is not an IP or CIDR"
                    ))
                })
        })
        .collect()
}
