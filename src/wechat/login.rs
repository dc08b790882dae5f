//! The mini-program login API (`jscode2session`), and the HTTP client every WeChat call uses:
//! connect and total timeouts, fail-over to the next base URL (api → api2) when a host cannot
//! be reached.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// WeChat's login hosts, primary then the cross-city backup (docs/wechat-pay-v2.md §10).
pub const LOGIN_HOSTS: [&str; 2] = ["https://api.weixin.qq.com", "https://api2.weixin.qq.com"];

/// One `reqwest::Client` for every WeChat call: its connection pool is shared.
pub fn http_client(connect_timeout: Duration, timeout: Duration) -> reqwest::Client {
    // rustls needs a process-wide crypto provider; installing it twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .user_agent(concat!("minipay/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// The mini-program login API (`jscode2session`).
#[derive(Clone)]
pub struct LoginClient {
    http: reqwest::Client,
    bases: Arc<[String]>,
    appid: String,
    secret: SecretString,
}

impl std::fmt::Debug for LoginClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginClient")
            .field("bases", &self.bases)
            .field("appid", &self.appid)
            .field("secret", &"***")
            .finish()
    }
}

/// What `jscode2session` gives for a valid code. The session_key stays on the server.
pub struct WechatSession {
    pub openid: String,
    pub session_key: SecretString,
    pub unionid: Option<String>,
}

/// Why a login failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// WeChat refused the code (invalid, used, blocked user, ...): the client must call
    /// `wx.login` again.
    #[error("WeChat refused the login code: {errcode} {errmsg}")]
    Rejected { errcode: i64, errmsg: String },
    /// WeChat could not be asked (network, system busy, rate limit): try again later.
    #[error("WeChat login is unavailable: {0}")]
    Unavailable(String),
}

#[derive(Deserialize)]
struct SessionReply {
    #[serde(default)]
    openid: String,
    #[serde(default)]
    session_key: String,
    unionid: Option<String>,
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
}

/// `errcode`s that say "not now" rather than "not this code" (docs/wechat-pay-v2.md §10).
const LOGIN_TRANSIENT: [i64; 2] = [-1, 45011];

impl LoginClient {
    pub fn new(
        http: reqwest::Client,
        bases: Vec<String>,
        appid: String,
        secret: SecretString,
    ) -> Self {
        LoginClient {
            http,
            bases: bases
                .into_iter()
                .map(|b| b.trim_end_matches('/').to_owned())
                .collect(),
            appid,
            secret,
        }
    }

    /// Exchanges a `wx.login` code for the user's openid and session_key.
    pub async fn code_to_session(&self, code: &str) -> Result<WechatSession, LoginError> {
        let mut last = LoginError::Unavailable("no login host configured".into());
        for base in self.bases.iter() {
            match self.code_to_session_at(base, code).await {
                Err(LoginError::Unavailable(why)) => {
                    tracing::warn!(host = %base, ?why, "WeChat login host failed");
                    last = LoginError::Unavailable(why);
                }
                other => return other,
            }
        }
        Err(last)
    }

    async fn code_to_session_at(
        &self,
        base: &str,
        code: &str,
    ) -> Result<WechatSession, LoginError> {
        // The query carries the AppSecret: errors are reported without the URL.
        let response = self
            .http
            .get(format!("{base}/sns/jscode2session"))
            .query(&[
                ("appid", self.appid.as_str()),
                ("secret", self.secret.expose_secret()),
                ("js_code", code),
                ("grant_type", "authorization_code"),
            ])
            .send()
            .await
            .map_err(|e| LoginError::Unavailable(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(LoginError::Unavailable(format!(
                "HTTP {}",
                response.status()
            )));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| LoginError::Unavailable(e.without_url().to_string()))?;
        // Parsed whatever the Content-Type says: some WeChat endpoints answer text/plain.
        let reply: SessionReply = serde_json::from_slice(&body)
            .map_err(|_| LoginError::Unavailable("unreadable jscode2session reply".into()))?;
        if reply.errcode != 0 {
            return Err(if LOGIN_TRANSIENT.contains(&reply.errcode) {
                LoginError::Unavailable(format!("{} {}", reply.errcode, reply.errmsg))
            } else {
                LoginError::Rejected {
                    errcode: reply.errcode,
                    errmsg: reply.errmsg,
                }
            });
        }
        if reply.openid.is_empty() || reply.session_key.is_empty() {
            return Err(LoginError::Unavailable(
                "jscode2session reply without openid or session_key".into(),
            ));
        }
        Ok(WechatSession {
            openid: reply.openid,
            session_key: SecretString::from(reply.session_key),
            unionid: reply.unionid.filter(|u| !u.is_empty()),
        })
    }
}
