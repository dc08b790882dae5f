//! Configuration: defaults ← optional TOML file (`--config`) ← `MINIPAY_*` environment, read
//! and validated once at start. Every refusal names the setting to fix. Secrets are
//! `SecretString`/`ApiKey`, which print as a mask.
//!
//! Each concern declares its settings once — name, type, default, documentation, check — in
//! its own file with [`settings!`](settings::settings): `database`, `wechat`, `http`,
//! `orders`, `limits`, `workers`, `retention`, `process`, `bills`, `events`, `refunds`. This
//! module reads them and keeps no list of names; the README's settings table is checked
//! against the declarations by a test.

mod bills;
mod database;
mod edge;
mod events;
mod http;
mod limits;
mod orders;
mod process;
mod refunds;
mod retention;
pub(crate) mod settings;
mod wechat;
mod workers;

use std::collections::BTreeMap;
use std::path::Path;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::de::DeserializeOwned;

pub use bills::{BillSettings, Bills};
pub use database::{Database, DatabaseSettings};
pub use edge::{Edge, EdgeSettings};
pub use events::{EventSettings, Events};
pub use http::{Http, HttpSettings};
pub use limits::{LimitSettings, Limits};
pub use orders::{OrderSettings, Orders};
pub use process::{Process, ProcessSettings};
pub use refunds::{ClientCertificate, RefundSettings, Refunds, refund_notify_url};
pub use retention::{Retention, RetentionSettings};
pub use settings::Key;
pub use wechat::{Credentials, Mode, Wechat, WechatSettings};
pub use workers::{WorkerSettings, Workers};

/// Why the service refuses to start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

pub(crate) fn refuse(message: impl Into<String>) -> ConfigError {
    ConfigError(message.into())
}

/// Every setting as read, concern by concern.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub wechat: WechatSettings,
    pub http: HttpSettings,
    pub edge: EdgeSettings,
    pub orders: OrderSettings,
    pub limits: LimitSettings,
    pub workers: WorkerSettings,
    pub retention: RetentionSettings,
    pub process: ProcessSettings,
    pub events: EventSettings,
    pub bills: BillSettings,
    pub refunds: RefundSettings,
}

impl Settings {
    /// Every setting's key and documentation, concern by concern.
    pub fn keys() -> impl Iterator<Item = &'static Key> {
        [
            DatabaseSettings::KEYS,
            WechatSettings::KEYS,
            HttpSettings::KEYS,
            EdgeSettings::KEYS,
            OrderSettings::KEYS,
            LimitSettings::KEYS,
            WorkerSettings::KEYS,
            RetentionSettings::KEYS,
            ProcessSettings::KEYS,
            EventSettings::KEYS,
            BillSettings::KEYS,
            RefundSettings::KEYS,
        ]
        .into_iter()
        .flatten()
    }

    /// Every setting's default as the README shows it (see [`settings::Shown`]).
    pub fn shown_defaults() -> Vec<(&'static str, Option<String>)> {
        [
            DatabaseSettings::shown_defaults(),
            WechatSettings::shown_defaults(),
            HttpSettings::shown_defaults(),
            EdgeSettings::shown_defaults(),
            OrderSettings::shown_defaults(),
            LimitSettings::shown_defaults(),
            WorkerSettings::shown_defaults(),
            RetentionSettings::shown_defaults(),
            ProcessSettings::shown_defaults(),
            EventSettings::shown_defaults(),
            BillSettings::shown_defaults(),
            RefundSettings::shown_defaults(),
        ]
        .concat()
    }

    fn extract(figment: &Figment) -> Result<Settings, ConfigError> {
        Ok(Settings {
            database: extract(figment)?,
            wechat: extract(figment)?,
            http: extract(figment)?,
            edge: extract(figment)?,
            orders: extract(figment)?,
            limits: extract(figment)?,
            workers: extract(figment)?,
            retention: extract(figment)?,
            process: extract(figment)?,
            events: extract(figment)?,
            bills: extract(figment)?,
            refunds: extract(figment)?,
        })
    }
}

/// One concern's settings; values from the environment are strings, read as the field's type.
fn extract<T: DeserializeOwned>(figment: &Figment) -> Result<T, ConfigError> {
    figment.extract_lossy().map_err(|e| {
        let name = e
            .path
            .first()
            .map(|k| settings::env_name(k))
            .unwrap_or_default();
        refuse(format!("{name}: {}", e.kind))
    })
}

fn is_setting(key: &str) -> bool {
    Settings::keys().any(|k| k.name == key)
}

/// The validated configuration, concern by concern.
#[derive(Debug, Clone)]
pub struct Config {
    pub database: Database,
    pub wechat: Wechat,
    pub http: Http,
    pub edge: Edge,
    pub orders: Orders,
    pub limits: Limits,
    pub workers: Workers,
    pub retention: Retention,
    pub process: Process,
    pub events: Events,
    pub bills: Bills,
    pub refunds: Refunds,
}

impl Config {
    /// Reads defaults, then `file` (if any), then the `MINIPAY_*` variables of `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            figment = figment.merge(Toml::string(&read_file(path)?));
        }
        let (env, unknown) = minipay_env(env);
        if let Some(name) = unknown.first() {
            return Err(refuse(format!(
                "{name} is not a minipay setting (see README, \"Settings\")"
            )));
        }
        figment = figment.merge(Serialized::globals(env));
        Config::from_settings(Settings::extract(&figment)?)
    }

    /// Validates settings into a configuration.
    pub fn from_settings(s: Settings) -> Result<Config, ConfigError> {
        Ok(Config {
            database: s.database.config()?,
            wechat: s.wechat.config()?,
            http: s.http.config()?,
            edge: s.edge.config()?,
            orders: s.orders.config()?,
            limits: s.limits.config()?,
            workers: s.workers.config()?,
            retention: s.retention.config()?,
            process: s.process.config()?,
            events: s.events.config()?,
            bills: s.bills.config()?,
            refunds: s.refunds.config()?,
        })
    }
}

/// The TOML file's text, once every key in it is a setting.
fn read_file(path: &Path) -> Result<String, ConfigError> {
    let shown = path.display();
    if !path.is_file() {
        return Err(refuse(format!("--config {shown}: no such file")));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| refuse(format!("--config {shown}: cannot read: {e}")))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| refuse(format!("--config {shown}: {e}")))?;
    if let Some(key) = table.keys().find(|k| !is_setting(k)) {
        return Err(refuse(format!(
            "--config {shown}: {key:?} is not a minipay setting (see README, \"Settings\")"
        )));
    }
    Ok(text)
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
        if is_setting(&key) {
            known.insert(key, value);
        } else {
            unknown.push(name);
        }
    }
    (known, unknown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::v2::SignType;

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
        assert!(config.wechat.simulator_mode());
        assert_eq!(config.database.url, "sqlite://minipay.db");
        assert_eq!(config.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.wechat.sign_type, SignType::Md5);
        assert!(config.http.admin_token.is_none());
        assert!(config.orders.catalog.get("sms-100").is_some());
    }

    #[test]
    fn live_credentials_are_read_verbatim() {
        let config = Config::load(None, live(&[])).unwrap();
        let Mode::Live(creds) = &config.wechat.mode else {
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
    fn an_http_notify_url_is_refused_with_wechats_own_hosts() {
        for base in [
            "",
            "https://api2.mch.weixin.qq.com",
            "https://API.MCH.WEIXIN.QQ.COM/",
        ] {
            let message = refused(live(&[
                (
                    "MINIPAY_NOTIFY_URL",
                    "http://pay.example.com/v1/wechat/notify",
                ),
                ("MINIPAY_PAY_BASE_URL", base),
            ]));
            assert!(message.contains("MINIPAY_NOTIFY_URL"), "{base}: {message}");
        }
        let config = Config::load(None, live(&[])).unwrap();
        assert_eq!(
            config.wechat.start_warning(),
            None,
            "https needs no warning"
        );
    }

    #[test]
    fn an_http_notify_url_is_accepted_with_a_warning_for_a_staging_wechat() {
        let config = Config::load(
            None,
            live(&[
                (
                    "MINIPAY_NOTIFY_URL",
                    "http://10.0.0.5:8080/v1/wechat/notify",
                ),
                (
                    "MINIPAY_PAY_BASE_URL",
                    "http://wechat-staging.internal:9000",
                ),
            ]),
        )
        .unwrap();
        let warning = config.wechat.start_warning().expect("a warning at start");
        assert!(
            warning.contains("MINIPAY_NOTIFY_URL") && warning.contains("staging"),
            "{warning}"
        );
        // A list that includes WeChat's own host still calls WeChat: https is required.
        let message = refused(live(&[
            (
                "MINIPAY_NOTIFY_URL",
                "http://10.0.0.5:8080/v1/wechat/notify",
            ),
            (
                "MINIPAY_PAY_BASE_URL",
                "http://wechat-staging.internal:9000,https://api.mch.weixin.qq.com",
            ),
        ]));
        assert!(message.contains("MINIPAY_NOTIFY_URL"), "{message}");
    }

    #[test]
    fn the_rate_limits_default_to_the_contract_and_zero_turns_one_off() {
        let config = Config::load(None, env(&[])).unwrap();
        assert_eq!(
            config.limits,
            Limits {
                logins_per_ip_per_minute: 60,
                orders_per_user_per_minute: 30,
                unpaid_per_user: 20,
                reads_per_user_per_second: 20,
                admin_failures_per_ip_per_minute: 10,
            }
        );
        let config = Config::load(
            None,
            env(&[
                ("MINIPAY_LIMIT_LOGINS_PER_IP", "0"),
                ("MINIPAY_LIMIT_READS_PER_USER", "500"),
            ]),
        )
        .unwrap();
        assert_eq!(config.limits.logins_per_ip_per_minute, 0);
        assert_eq!(config.limits.reads_per_user_per_second, 500);
        let message = refused(env(&[("MINIPAY_LIMIT_ORDERS_PER_USER", "-1")]));
        assert!(
            message.contains("MINIPAY_LIMIT_ORDERS_PER_USER"),
            "{message}"
        );
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
        assert_eq!(config.http.listen.port(), 9001);
        assert_eq!(config.workers.concurrency, 7);
        assert_eq!(config.wechat.sign_type, SignType::HmacSha256);

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

    #[test]
    fn every_setting_is_declared_once() {
        let mut names: Vec<&str> = Settings::keys().map(|k| k.name).collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "a key is declared twice");
        assert!(Settings::keys().all(|k| !k.doc.trim().is_empty()));
    }

    /// The README's settings table names every setting, no other, and each plain default.
    #[test]
    fn the_readme_settings_table_is_true() {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("\n### Settings")
            .nth(1)
            .and_then(|s| s.split("\n### ").next())
            .unwrap_or_default();
        let rows: Vec<&str> = section
            .lines()
            .filter(|l| l.starts_with("| `MINIPAY_"))
            .collect();
        let mut listed = std::collections::BTreeSet::new();
        for row in &rows {
            let first = row.split('|').nth(1).unwrap_or_default();
            for name in first.split('`').filter(|n| n.starts_with("MINIPAY_")) {
                listed.insert(name.to_owned());
            }
        }
        let declared: std::collections::BTreeSet<String> = Settings::keys().map(Key::env).collect();
        assert_eq!(
            listed, declared,
            "README settings table vs declared settings"
        );
        for (key, default) in Settings::shown_defaults() {
            let Some(default) = default else { continue };
            let name = settings::env_name(key);
            let row = rows
                .iter()
                .find(|r| {
                    r.split('|')
                        .nth(1)
                        .is_some_and(|c| c.contains(&format!("`{name}`")))
                })
                .unwrap();
            let shown = row
                .trim_end_matches('|')
                .rsplit('|')
                .next()
                .unwrap_or_default();
            assert!(
                shown.contains(&format!("`{default}`")),
                "{name}: the README shows {shown:?}, the default is {default:?}"
            );
        }
    }
}
