//! `POST /v1/sessions`: `wx.login` code → `jscode2session` → an opaque token. The openid and
//! session_key stay on the server, the session_key sealed (`crate::sealed`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use base64::Engine;
use rand::rngs::OsRng;
use rand::{RngCore, TryRngCore};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::HttpState;
use super::auth::token_hash;
use super::error::{ApiError, AppJson};
use super::payer_ip::payer_ip;
use super::views::ErrorBody;
use crate::wechat::LoginError;

/// A `wx.login` code.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The code `wx.login` gave the mini-program (1 to 128 characters).
    #[schema(min_length = 1, max_length = 128)]
    code: String,
}

/// A session.
#[derive(Serialize, ToSchema)]
pub struct Token {
    /// Opaque; send it back as `Authorization: Bearer <token>`.
    token: String,
    /// Seconds until the session expires.
    expires_in: u64,
}

/// Log in: exchange a `wx.login` code for a session token.
#[utoipa::path(post, path = "/v1/sessions", operation_id = "create_session", tag = "mini-program", request_body = Login,
    responses(
        (status = 201, description = "A new session", body = Token),
        (status = 401, description = "WECHAT_LOGIN_FAILED: WeChat refused the code (call wx.login again)", body = ErrorBody),
        (status = 422, description = "INVALID_BODY: no code, or over 128 characters", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: too many logins from this IP", body = ErrorBody),
        (status = 503, description = "WECHAT_UNAVAILABLE: WeChat could not be reached", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    AppJson(login): AppJson<Login>,
) -> Result<
    (
        StatusCode,
        [(axum::http::HeaderName, HeaderValue); 1],
        AppJson<Token>,
    ),
    ApiError,
> {
    if login.code.is_empty() || login.code.len() > 128 {
        return Err(ApiError::InvalidBody(
            "code must be 1 to 128 characters".into(),
        ));
    }
    let services = &state.services;
    // Before WeChat is called: a flood of codes must not spend the appid's login quota.
    let ip = payer_ip(peer, &headers, &services.config.http.trusted_proxies);
    state.limits.login(ip)?;
    let session = match state.login.code_to_session(&login.code).await {
        Ok(session) => session,
        Err(LoginError::Rejected { errcode, errmsg }) => {
            tracing::info!(errcode, ?errmsg, "login code refused by WeChat");
            return Err(ApiError::WechatLoginFailed(format!("{errcode} {errmsg}")));
        }
        Err(LoginError::Unavailable(why)) => {
            tracing::warn!(?why, "WeChat login unavailable");
            return Err(ApiError::WechatUnavailable);
        }
    };
    let mut bytes = [0u8; 32];
    OsRng.unwrap_err().fill_bytes(&mut bytes);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let now_ms = services.clock.unix_ms();
    let ttl = services.config.http.session_ttl;
    let sealed_key = state
        .sealer
        .seal(session.session_key.expose_secret(), &session.openid)
        .map_err(anyhow::Error::from)?;
    services
        .store
        .create_session(
            &token_hash(&token),
            &session.openid,
            &sealed_key,
            session.unionid.as_deref(),
            now_ms,
            now_ms + ttl.as_millis() as i64,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        [(CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        AppJson(Token {
            token,
            expires_in: ttl.as_secs(),
        }),
    ))
}
