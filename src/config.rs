//! Configuration: defaults ← optional TOML file (`--config`) ← `MINIPAY_*` environment, read
//! and validated once at start. Every refusal names the setting to fix. Secrets are
//! `SecretString`/`ApiKey`, which print as a mask.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::wechat::{ApiKey, SignType};

/// Why the service refuses to start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn refuse(message: impl Into<String>) -> ConfigError {
    ConfigError(message.into())
}

/// Every setting, as written in the file (lowercase) and the environment (`MINIPAY_` + upper).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub database_url: String,
    pub listen: String,
    pub appid: Option<String>,
    #[serde(default, skip_serializing)]
    pub app_secret: Option<SecretString>,
    pub mch_id: Option<String>,
    #[serde(default, skip_serializing)]
    pub api_key: Option<SecretString>,
    pub sign_type: String,
    pub notify_url: Option<String>,
    /// One URL, or several separated by commas, tried in order.
    pub pay_base_url: Option<String>,
    pub auth_base_url: Option<String>,
    pub catalog: Option<PathBuf>,
    #[serde(default, skip_serializing)]
    pub admin_token: Option<SecretString>,
    /// IPs or CIDRs of reverse proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: String,
    /// `text` or `json`.
    pub log_format: String,
    /// A tracing filter, e.g. `info` or `minipay=debug,info`.
    pub log: String,
    pub order_ttl_secs: u64,
    pub session_ttl_secs: u64,
    pub prepay_max_attempts: u32,
    pub prepay_backoff_ms: u64,
    pub prepay_backoff_max_ms: u64,
    pub wechat_connect_timeout_ms: u64,
    pub wechat_timeout_ms: u64,
    pub reconcile_delay_secs: u64,
    pub reconcile_interval_ms: u64,
    pub stuck_pending_secs: u64,
    pub shutdown_timeout_secs: u64,
    pub worker_concurrency: usize,
    pub worker_batch_size: usize,
    pub heartbeat_secs: u64,
    pub db_pool_size: u32,
    pub job_retention_secs: u64,
    /// Refused notifies are deleted this long after they were last seen.
    pub refused_notify_retention_secs: u64,
    /// Below this much free space under a SQLite database, refused notifies are only counted.
    pub refused_notify_min_free_mb: u64,
    /// Sessions are deleted this long after they expire.
    pub session_retention_secs: u64,
    /// A cap on the SQLite database file; 0: none.
    pub sqlite_max_size_mb: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            database_url: "sqlite://minipay.db".into(),
            listen: "127.0.0.1:8080".into(),
            appid: None,
            app_secret: None,
            mch_id: None,
            api_key: None,
            sign_type: "MD5".into(),
            notify_url: None,
            pay_base_url: None,
            auth_base_url: None,
            catalog: None,
            admin_token: None,
            trusted_proxies: String::new(),
            log_format: "text".into(),
            log: "info".into(),
            order_ttl_secs: 30 * 60,
            session_ttl_secs: 24 * 3600,
            prepay_max_attempts: 8,
            prepay_backoff_ms: 200,
            prepay_backoff_max_ms: 5_000,
            wechat_connect_timeout_ms: 2_000,
            wechat_timeout_ms: 10_000,
            reconcile_delay_secs: 60,
            reconcile_interval_ms: 5_000,
            stuck_pending_secs: 120,
            shutdown_timeout_secs: 30,
            worker_concurrency: 64,
            worker_batch_size: 64,
            heartbeat_secs: 2,
            db_pool_size: 16,
            job_retention_secs: 3600,
            refused_notify_retention_secs: 7 * 24 * 3600,
            refused_notify_min_free_mb: 256,
            session_retention_secs: 24 * 3600,
            sqlite_max_size_mb: 0,
        }
    }
}

/// The names `Settings` accepts, for reading the environment.
const KEYS: [&str; 35] = [
    "database_url",
    "listen",
    "appid",
    "app_secret",
    "mch_id",
    "api_key",
    "sign_type",
    "notify_url",
    "pay_base_url",
    "auth_base_url",
    "catalog",
    "admin_token",
    "trusted_proxies",
    "log_format",
    "log",
    "order_ttl_secs",
    "session_ttl_secs",
    "prepay_max_attempts",
    "prepay_backoff_ms",
    "prepay_backoff_max_ms",
    "wechat_connect_timeout_ms",
    "wechat_timeout_ms",
    "reconcile_delay_secs",
    "reconcile_interval_ms",
    "stuck_pending_secs",
    "shutdown_timeout_secs",
    "worker_concurrency",
    "worker_batch_size",
    "heartbeat_secs",
    "db_pool_size",
    "job_retention_secs",
    "refused_notify_retention_secs",
    "refused_notify_min_free_mb",
    "session_retention_secs",
    "sqlite_max_size_mb",
];

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

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub listen: SocketAddr,
    pub mode: Mode,
    pub sign_type: SignType,
    /// `None`: `http://<bound address>/v1/wechat/notify` (simulator mode only).
    pub notify_url: Option<String>,
    /// `None`: WeChat's hosts in live mode, the embedded simulator in simulator mode.
    pub pay_base_urls: Option<Vec<String>>,
    pub auth_base_urls: Option<Vec<String>>,
    pub catalog: Catalog,
    pub admin_token: Option<SecretString>,
    pub trusted_proxies: Vec<IpNet>,
    pub log_json: bool,
    pub log_filter: String,
    pub order_ttl: Duration,
    pub session_ttl: Duration,
    pub prepay_max_attempts: u32,
    pub prepay_backoff: Duration,
    pub prepay_backoff_max: Duration,
    pub wechat_connect_timeout: Duration,
    pub wechat_timeout: Duration,
    pub reconcile_delay: Duration,
    pub reconcile_interval: Duration,
    pub stuck_pending: Duration,
    pub shutdown_timeout: Duration,
    pub worker_concurrency: usize,
    pub worker_batch_size: usize,
    pub heartbeat: Duration,
    pub db_pool_size: u32,
    pub job_retention: Duration,
    pub refused_notify_retention: Duration,
    /// Bytes; 0: always store.
    pub refused_notify_min_free: u64,
    pub session_retention: Duration,
    /// SQLite pages (4 KiB); `None`: no cap.
    pub sqlite_max_pages: Option<u64>,
}

/// WeChat's production hosts, primary then the cross-city backup (docs/wechat-pay-v2.md §2, §10).
pub const WECHAT_PAY_HOSTS: [&str; 2] = [
    "https://api.mch.weixin.qq.com",
    "https://api2.mch.weixin.qq.com",
];
pub const WECHAT_LOGIN_HOSTS: [&str; 2] =
    ["https://api.weixin.qq.com", "https://api2.weixin.qq.com"];

impl Config {
    /// Reads defaults, then `file` (if any), then the `MINIPAY_*` variables of `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(refuse(format!("--config {}: no such file", path.display())));
            }
            figment = figment.merge(Toml::file(path));
        }
        let (env, unknown) = minipay_env(env);
        if let Some(name) = unknown.first() {
            return Err(refuse(format!(
                "{name} is not a minipay setting (see README, \"Settings\")"
            )));
        }
        figment = figment.merge(Serialized::globals(env));
        let settings: Settings = figment.extract_lossy().map_err(|e| {
            let name = e.path.first().map(|k| setting_name(k)).unwrap_or_default();
            refuse(format!("{name}: {}", e.kind))
        })?;
        Config::from_settings(settings)
    }

    /// Validates settings into a configuration.
    pub fn from_settings(s: Settings) -> Result<Config, ConfigError> {
        if !(s.database_url.starts_with("sqlite:")
            || s.database_url.starts_with("postgres://")
            || s.database_url.starts_with("postgresql://"))
        {
            return Err(refuse(
                "MINIPAY_DATABASE_URL must be sqlite://PATH or postgres://...",
            ));
        }
        let listen: SocketAddr = s.listen.parse().map_err(|_| {
            refuse(format!(
                "MINIPAY_LISTEN: {:?} is not an address like 127.0.0.1:8080",
                s.listen
            ))
        })?;
        let sign_type: SignType = s
            .sign_type
            .parse()
            .map_err(|_| refuse("MINIPAY_SIGN_TYPE must be MD5 or HMAC-SHA256"))?;
        let mode = mode(&s)?;
        let notify_url = s.notify_url.filter(|u| !u.is_empty());
        if let Some(url) = &notify_url {
            crate::wechat::params::check_notify_url(url)
                .map_err(|e| refuse(format!("MINIPAY_NOTIFY_URL: {}", e.reason)))?;
        }
        if let Mode::Live(_) = mode {
            match &notify_url {
                Some(url) if url.starts_with("https://") => {}
                _ => {
                    return Err(refuse(
                        "MINIPAY_NOTIFY_URL must be set to an https:// URL WeChat can reach in live mode",
                    ));
                }
            }
        }
        let catalog = match &s.catalog {
            Some(path) => {
                Catalog::load(path).map_err(|e| refuse(format!("MINIPAY_CATALOG: {e}")))?
            }
            None => Catalog::demo(),
        };
        let admin_token = match s.admin_token.filter(|t| !t.expose_secret().is_empty()) {
            Some(t) if t.expose_secret().len() < 16 => {
                return Err(refuse("MINIPAY_ADMIN_TOKEN must be at least 16 characters"));
            }
            other => other,
        };
        let trusted_proxies = s
            .trusted_proxies
            .split(',')
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
            .collect::<Result<Vec<_>, _>>()?;
        let log_json = match s.log_format.as_str() {
            "text" => false,
            "json" => true,
            _ => return Err(refuse("MINIPAY_LOG_FORMAT must be text or json")),
        };
        // WeChat refuses a time_expire under 5 minutes away; keep a margin for the prepay
        // retries and for closeorder's own 5-minute rule.
        if s.order_ttl_secs < 6 * 60 {
            return Err(refuse(
                "MINIPAY_ORDER_TTL_SECS must be at least 360 (WeChat needs time_expire ≥ 5 minutes ahead)",
            ));
        }
        if s.order_ttl_secs > 7 * 24 * 3600 {
            return Err(refuse("MINIPAY_ORDER_TTL_SECS must be at most 7 days"));
        }
        for (name, value) in [
            (
                "MINIPAY_PREPAY_MAX_ATTEMPTS",
                u64::from(s.prepay_max_attempts),
            ),
            ("MINIPAY_WORKER_CONCURRENCY", s.worker_concurrency as u64),
            ("MINIPAY_WORKER_BATCH_SIZE", s.worker_batch_size as u64),
            ("MINIPAY_DB_POOL_SIZE", u64::from(s.db_pool_size)),
            ("MINIPAY_HEARTBEAT_SECS", s.heartbeat_secs),
            ("MINIPAY_WECHAT_TIMEOUT_MS", s.wechat_timeout_ms),
            ("MINIPAY_RECONCILE_INTERVAL_MS", s.reconcile_interval_ms),
        ] {
            if value == 0 {
                return Err(refuse(format!("{name} must be at least 1")));
            }
        }
        Ok(Config {
            database_url: s.database_url,
            listen,
            mode,
            sign_type,
            notify_url,
            pay_base_urls: base_urls("MINIPAY_PAY_BASE_URL", s.pay_base_url)?,
            auth_base_urls: base_urls("MINIPAY_AUTH_BASE_URL", s.auth_base_url)?,
            catalog,
            admin_token,
            trusted_proxies,
            log_json,
            log_filter: s.log,
            order_ttl: Duration::from_secs(s.order_ttl_secs),
            session_ttl: Duration::from_secs(s.session_ttl_secs.max(60)),
            prepay_max_attempts: s.prepay_max_attempts,
            prepay_backoff: Duration::from_millis(s.prepay_backoff_ms),
            prepay_backoff_max: Duration::from_millis(
                s.prepay_backoff_max_ms.max(s.prepay_backoff_ms),
            ),
            wechat_connect_timeout: Duration::from_millis(s.wechat_connect_timeout_ms.max(1)),
            wechat_timeout: Duration::from_millis(s.wechat_timeout_ms),
            reconcile_delay: Duration::from_secs(s.reconcile_delay_secs),
            reconcile_interval: Duration::from_millis(s.reconcile_interval_ms),
            stuck_pending: Duration::from_secs(s.stuck_pending_secs.max(1)),
            shutdown_timeout: Duration::from_secs(s.shutdown_timeout_secs),
            worker_concurrency: s.worker_concurrency,
            worker_batch_size: s.worker_batch_size,
            heartbeat: Duration::from_secs(s.heartbeat_secs),
            db_pool_size: s.db_pool_size,
            job_retention: Duration::from_secs(s.job_retention_secs),
            refused_notify_retention: Duration::from_secs(s.refused_notify_retention_secs),
            refused_notify_min_free: s.refused_notify_min_free_mb.saturating_mul(1024 * 1024),
            session_retention: Duration::from_secs(s.session_retention_secs),
            sqlite_max_pages: (s.sqlite_max_size_mb > 0)
                .then(|| s.sqlite_max_size_mb.saturating_mul(1024 * 1024 / 4096)),
        })
    }

    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }

    /// The SQLite database file, when the database is one (not in memory).
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let path = self
            .database_url
            .strip_prefix("sqlite:")?
            .trim_start_matches("//")
            .split('?')
            .next()
            .unwrap_or_default();
        (!path.is_empty() && !path.contains(":memory:")).then(|| PathBuf::from(path))
    }

    pub fn simulator_mode(&self) -> bool {
        matches!(self.mode, Mode::Simulator)
    }
}

/// The `MINIPAY_*` variables as raw strings (never re-typed: "0123" stays "0123"), and the
/// unknown `MINIPAY_*` names.
fn minipay_env(
    env: impl IntoIterator<Item = (String, String)>,
) -> (BTreeMap<String, String>, Vec<String>) {
    let mut known = BTreeMap::new();
    let mut unknown = Vec::new();
    for (name, value) in env {
        let Some(key) = name.strip_prefix("MINIPAY_") else {
            continue;
        };
        let key = key.to_ascii_lowercase();
        // Test-harness variables share the prefix but are not settings.
        if key.starts_with("test_") || key == "config" {
            continue;
        }
        if KEYS.contains(&key.as_str()) {
            known.insert(key, value);
        } else {
            unknown.push(name);
        }
    }
    (known, unknown)
}

fn setting_name(key: &str) -> String {
    format!("MINIPAY_{}", key.to_ascii_uppercase())
}

fn mode(s: &Settings) -> Result<Mode, ConfigError> {
    let present = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.is_empty());
    let secret =
        |v: &Option<SecretString>| v.as_ref().is_some_and(|v| !v.expose_secret().is_empty());
    let fields = [
        ("MINIPAY_APPID", present(&s.appid)),
        ("MINIPAY_APP_SECRET", secret(&s.app_secret)),
        ("MINIPAY_MCH_ID", present(&s.mch_id)),
        ("MINIPAY_API_KEY", secret(&s.api_key)),
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
        s.api_key
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
        appid: s.appid.clone().unwrap_or_default(),
        app_secret: s.app_secret.clone().unwrap_or_default(),
        mch_id: s.mch_id.clone().unwrap_or_default(),
        api_key,
    }))
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

impl Credentials {
    pub fn app_secret(&self) -> &str {
        self.app_secret.expose_secret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY32: &str = "192006250b4c09247ec02edce69f6a2d";

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn live(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut vars = env(&[
            ("MINIPAY_APPID", "wx0123456789abcdef"),
            ("MINIPAY_APP_SECRET", "app-secret-value"),
            ("MINIPAY_MCH_ID", "0123456789"),
            ("MINIPAY_API_KEY", KEY32),
            (
                "MINIPAY_NOTIFY_URL",
                "https://pay.example.com/v1/wechat/notify",
            ),
        ]);
        for (k, v) in extra {
            vars.retain(|(name, _)| name != k);
            vars.push(((*k).to_owned(), (*v).to_owned()));
        }
        vars
    }

    fn refused(vars: Vec<(String, String)>) -> String {
        Config::load(None, vars).unwrap_err().to_string()
    }

    #[test]
    fn no_credentials_is_simulator_mode_with_the_contract_defaults() {
        let config = Config::load(None, env(&[("PATH", "/bin")])).unwrap();
        assert!(config.simulator_mode());
        assert_eq!(config.database_url, "sqlite://minipay.db");
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.sign_type, SignType::Md5);
        assert!(config.admin_token.is_none());
        assert!(config.catalog.get("sms-100").is_some());
    }

    #[test]
    fn live_credentials_are_read_verbatim() {
        let config = Config::load(None, live(&[])).unwrap();
        let Mode::Live(creds) = &config.mode else {
            panic!("live mode expected")
        };
        assert_eq!(creds.mch_id, "0123456789", "a leading zero survives");
        assert_eq!(creds.api_key.expose(), KEY32);
    }

    #[test]
    fn half_set_credentials_name_what_is_missing() {
        let message = refused(env(&[("MINIPAY_APPID", "wx1"), ("MINIPAY_MCH_ID", "1")]));
        assert!(message.contains("half-set"), "{message}");
        assert!(
            message.contains("MINIPAY_APP_SECRET") && message.contains("MINIPAY_API_KEY"),
            "{message}"
        );
    }

    #[test]
    fn each_bad_setting_is_named() {
        let cases: Vec<(Vec<(String, String)>, &str)> = vec![
            (live(&[("MINIPAY_API_KEY", "short")]), "MINIPAY_API_KEY"),
            (
                live(&[("MINIPAY_NOTIFY_URL", "http://pay.example.com/notify")]),
                "MINIPAY_NOTIFY_URL",
            ),
            (live(&[("MINIPAY_NOTIFY_URL", "")]), "MINIPAY_NOTIFY_URL"),
            (
                live(&[("MINIPAY_CATALOG", "/no/such/catalog.toml")]),
                "MINIPAY_CATALOG",
            ),
            (env(&[("MINIPAY_SIGN_TYPE", "SHA1")]), "MINIPAY_SIGN_TYPE"),
            (env(&[("MINIPAY_LISTEN", "localhost")]), "MINIPAY_LISTEN"),
            (
                env(&[("MINIPAY_DATABASE_URL", "mysql://x")]),
                "MINIPAY_DATABASE_URL",
            ),
            (
                env(&[("MINIPAY_ADMIN_TOKEN", "short")]),
                "MINIPAY_ADMIN_TOKEN",
            ),
            (
                env(&[("MINIPAY_ORDER_TTL_SECS", "60")]),
                "MINIPAY_ORDER_TTL_SECS",
            ),
            (
                env(&[("MINIPAY_ORDER_TTL_SECS", "soon")]),
                "MINIPAY_ORDER_TTL_SECS",
            ),
            (
                env(&[("MINIPAY_TRUSTED_PROXIES", "10.0.0.0/33")]),
                "MINIPAY_TRUSTED_PROXIES",
            ),
            (
                env(&[("MINIPAY_PAY_BASE_URL", "ftp://x")]),
                "MINIPAY_PAY_BASE_URL",
            ),
            (env(&[("MINIPAY_LOG_FORMAT", "xml")]), "MINIPAY_LOG_FORMAT"),
            (
                env(&[("MINIPAY_WORKER_CONCURENCY", "3")]),
                "MINIPAY_WORKER_CONCURENCY",
            ),
        ];
        for (vars, setting) in cases {
            let message = refused(vars);
            assert!(message.contains(setting), "{setting}: {message}");
        }
    }

    #[test]
    fn a_bad_catalog_names_its_line() {
        let dir = std::env::temp_dir().join(format!("minipay-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("catalog.toml");
        std::fs::write(
            &path,
            "[[product]]\nsku = \"a\"\ndescription = \"A\"\nprice = 0\n",
        )
        .unwrap();
        let message = refused(env(&[("MINIPAY_CATALOG", path.to_str().unwrap())]));
        assert!(
            message.contains("MINIPAY_CATALOG") && message.contains("line 4"),
            "{message}"
        );
    }

    #[test]
    fn the_file_is_overridden_by_the_environment() {
        let dir = std::env::temp_dir().join(format!("minipay-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("minipay.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\nworker_concurrency = 7\nsign_type = \"HMAC-SHA256\"\n",
        )
        .unwrap();
        let config =
            Config::load(Some(&path), env(&[("MINIPAY_LISTEN", "127.0.0.1:9001")])).unwrap();
        assert_eq!(config.listen.port(), 9001);
        assert_eq!(config.worker_concurrency, 7);
        assert_eq!(config.sign_type, SignType::HmacSha256);

        std::fs::write(&path, "listn = \"127.0.0.1:9000\"\n").unwrap();
        let message = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(message.contains("listn"), "{message}");
        let missing = Config::load(Some(&dir.join("nope.toml")), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("nope.toml"), "{missing}");
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let vars = live(&[("MINIPAY_ADMIN_TOKEN", "admin-token-0123456789")]);
        let config = Config::load(None, vars).unwrap();
        let shown = format!("{config:?}");
        for secret in [KEY32, "app-secret-value", "admin-token-0123456789"] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
    }
}
