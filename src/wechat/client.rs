//! HTTP client for WeChat Pay v2 and `jscode2session`: connect and total timeouts, reply
//! signatures verified, and fail-over to the next base URL (api → api2) when a host cannot be
//! reached, times out or answers 5xx.

use std::sync::Arc;
use std::time::Duration;

use minipay_jobs::Transport;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::reply::Answer;
use super::sign::nonce;
use super::xml::to_xml;
use super::{Fields, Merchant, UnifiedOrderParams};

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

/// The WeChat Pay v2 API (`unifiedorder`, `orderquery`, `closeorder`).
#[derive(Clone, Debug)]
pub struct PayClient {
    http: reqwest::Client,
    bases: Arc<[String]>,
    merchant: Arc<Merchant>,
}

impl PayClient {
    /// `bases` are tried in order, e.g. `https://api.mch.weixin.qq.com` then
    /// `https://api2.mch.weixin.qq.com`.
    pub fn new(http: reqwest::Client, bases: Vec<String>, merchant: Merchant) -> Self {
        PayClient {
            http,
            bases: bases
                .into_iter()
                .map(|b| b.trim_end_matches('/').to_owned())
                .collect(),
            merchant: Arc::new(merchant),
        }
    }

    pub fn merchant(&self) -> &Merchant {
        &self.merchant
    }

    pub fn base_urls(&self) -> &[String] {
        &self.bases
    }

    /// `unifiedorder` with the frozen parameters, a fresh nonce and sign.
    pub async fn unified_order(&self, params: &UnifiedOrderParams) -> Answer {
        let request = params.signed_request(&self.merchant.key, &nonce());
        self.post("/pay/unifiedorder", &request).await
    }

    /// `orderquery` by our order number.
    pub async fn order_query(&self, out_trade_no: &str) -> Answer {
        let request = self.merchant.signed(
            Fields::from_iter([("out_trade_no", out_trade_no)]),
            &nonce(),
        );
        self.post("/pay/orderquery", &request).await
    }

    /// `closeorder` by our order number.
    pub async fn close_order(&self, out_trade_no: &str) -> Answer {
        let request = self.merchant.signed(
            Fields::from_iter([("out_trade_no", out_trade_no)]),
            &nonce(),
        );
        self.post("/pay/closeorder", &request).await
    }

    /// POSTs a signed request, failing over across the base URLs (also used by the v2 refund
    /// calls).
    pub(crate) async fn post(&self, path: &str, request: &Fields) -> Answer {
        let body = to_xml(request.iter());
        let mut answer = Answer::Failed(Transport::Connect);
        for (i, base) in self.bases.iter().enumerate() {
            answer = self.post_once(&format!("{base}{path}"), body.clone()).await;
            // Only "no answer from this host" moves on to the next one; a refusal is an answer.
            let unanswered = matches!(
                answer,
                Answer::Failed(Transport::Connect | Transport::Timeout | Transport::ServerError(_))
            );
            if !unanswered || i + 1 == self.bases.len() {
                break;
            }
            tracing::warn!(%path, host = %base, answer = ?answer.label(), "WeChat Pay host failed; trying the next one");
        }
        answer
    }

    /// POSTs a signed request like every other call (same hosts, same fail-over) but hands
    /// back the HTTP 200 response unread, for answers that are not signed XML replies:
    /// `downloadbill` streams its statement. `timeout` replaces the client's for this call.
    pub(crate) async fn post_unread(
        &self,
        path: &str,
        request: &Fields,
        timeout: Duration,
    ) -> Result<reqwest::Response, Answer> {
        let body = to_xml(request.iter());
        let mut failure = Answer::Failed(Transport::Connect);
        for base in self.bases.iter() {
            let sent = self
                .http
                .post(format!("{base}{path}"))
                .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
                .timeout(timeout)
                .body(body.clone())
                .send()
                .await;
            failure = match sent {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) if response.status().is_server_error() => {
                    Answer::Failed(Transport::ServerError(response.status().as_u16()))
                }
                Ok(response) => return Err(Answer::Rejected(response.status().as_u16())),
                Err(e) => Answer::Failed(transport_failure(&e)),
            };
            // As in `post`: only "no answer from this host" moves on to the next one.
            if matches!(failure, Answer::Failed(Transport::Unreadable)) {
                break;
            }
            tracing::warn!(%path, host = %base, answer = %failure.label(), "WeChat Pay host failed");
        }
        Err(failure)
    }

    async fn post_once(&self, url: &str, body: String) -> Answer {
        let sent = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => return Answer::Failed(transport_failure(&e)),
        };
        let status = response.status();
        if status.is_server_error() {
            return Answer::Failed(Transport::ServerError(status.as_u16()));
        }
        if !status.is_success() {
            return Answer::Rejected(status.as_u16());
        }
        match response.bytes().await {
            Ok(body) => Answer::from_body(&body, &self.merchant),
            Err(e) => Answer::Failed(transport_failure(&e)),
        }
    }
}

fn transport_failure(e: &reqwest::Error) -> Transport {
    if e.is_timeout() {
        Transport::Timeout
    } else if e.is_connect() {
        Transport::Connect
    } else {
        // A reset or truncated body after the request went out: WeChat may have acted.
        Transport::Unreadable
    }
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
