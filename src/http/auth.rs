//! Who is calling: a mini-program session (bearer token from `POST /v1/sessions`) or the
//! merchant's backend (bearer `MINIPAY_ADMIN_TOKEN`).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use super::HttpState;
use super::error::ApiError;
use crate::store::SessionRow;
use crate::wechat::v2::sign::constant_time_eq;

/// The hex SHA-256 of a session token: what the database stores instead of the token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

/// A live mini-program session.
pub struct SessionAuth(pub SessionRow);

impl FromRequestParts<Arc<HttpState>> for SessionAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<HttpState>,
    ) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or(ApiError::SessionRequired)?;
        let hash = token_hash(token);
        let now_ms = state.services.clock.unix_ms();
        if let Some(session) = state.sessions.get(&hash, now_ms) {
            return Ok(SessionAuth(session));
        }
        let session = state
            .services
            .store
            .session(&hash, now_ms)
            .await?
            .ok_or(ApiError::SessionRequired)?;
        state.sessions.put(hash, session.clone());
        Ok(SessionAuth(session))
    }
}

/// The merchant's backend, authenticated by the admin token.
pub struct AdminAuth;

impl FromRequestParts<Arc<HttpState>> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<HttpState>,
    ) -> Result<Self, ApiError> {
        if is_admin(parts, state)? {
            Ok(AdminAuth)
        } else {
            Err(ApiError::AdminRequired)
        }
    }
}

/// The password of HTTP Basic credentials (any user name), for the browser admin page.
fn basic_password(parts: &Parts) -> Option<String> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':')
        .map(|(_, password)| password.to_owned())
}

fn is_admin(parts: &Parts, state: &HttpState) -> Result<bool, ApiError> {
    let expected = state
        .services
        .config
        .http
        .admin_token
        .as_ref()
        .ok_or(ApiError::AdminOff)?;
    let expected = expected.expose_secret().as_bytes();
    let presented = bearer(parts)
        .map(str::to_owned)
        .or_else(|| basic_password(parts));
    Ok(presented.is_some_and(|token| constant_time_eq(token.as_bytes(), expected)))
}

/// Either kind of caller (reading an order: its session, or the merchant's backend).
pub enum Caller {
    Session(SessionRow),
    Admin,
}

impl FromRequestParts<Arc<HttpState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<HttpState>,
    ) -> Result<Self, ApiError> {
        if state.services.config.http.admin_token.is_some() && is_admin(parts, state)? {
            return Ok(Caller::Admin);
        }
        let SessionAuth(session) = SessionAuth::from_request_parts(parts, state).await?;
        Ok(Caller::Session(session))
    }
}
