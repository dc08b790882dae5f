//! Who is calling: a mini-program session (bearer token from `POST /v1/sessions`) or the
//! merchant's backend (bearer `MINIPAY_ADMIN_TOKEN`). Wrong admin tokens are logged (the
//! client IP, never the token) and limited per client IP: past the budget every admin attempt
//! from that IP, right or wrong, gets `429` until it refills, so the token cannot be guessed.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use super::HttpState;
use super::error::ApiError;
use super::limits::client_ip;
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
        // Boxed: inline, the read's large future would be part of every request's future,
        // long-polls included, for as long as they wait.
        let session = Box::pin(state.services.store.session(&hash, now_ms))
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
        let ip = client_ip(parts, &state.services.config.http.trusted_proxies);
        state.limits.admin_attempt(ip)?;
        match admin_check(parts, state)? {
            AdminCheck::Admin => Ok(AdminAuth),
            AdminCheck::Absent => Err(ApiError::AdminRequired),
            AdminCheck::Wrong => {
                tracing::warn!(client_ip = ?ip, path = ?parts.uri.path(), "wrong admin token");
                state.limits.admin_failure(ip)?;
                Err(ApiError::AdminRequired)
            }
        }
    }
}

/// What the request presents as the admin token.
enum AdminCheck {
    Admin,
    /// No credentials at all.
    Absent,
    /// Credentials, not the admin token.
    Wrong,
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

fn admin_check(parts: &Parts, state: &HttpState) -> Result<AdminCheck, ApiError> {
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
    Ok(match presented {
        None => AdminCheck::Absent,
        Some(token) if constant_time_eq(token.as_bytes(), expected) => AdminCheck::Admin,
        Some(_) => AdminCheck::Wrong,
    })
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
        if state.services.config.http.admin_token.is_none() {
            let SessionAuth(session) = SessionAuth::from_request_parts(parts, state).await?;
            return Ok(Caller::Session(session));
        }
        // A locked-out client is not compared with the admin token at all; its sessions still
        // work, and what is neither answers 401 as always (an expired session looks the same).
        let ip = client_ip(parts, &state.services.config.http.trusted_proxies);
        let locked = state.limits.admin_locked(ip).is_some();
        let check = match locked {
            true => AdminCheck::Wrong,
            false => admin_check(parts, state)?,
        };
        if let AdminCheck::Admin = check {
            return Ok(Caller::Admin);
        }
        match SessionAuth::from_request_parts(parts, state).await {
            Ok(SessionAuth(session)) => Ok(Caller::Session(session)),
            Err(ApiError::SessionRequired) if !locked && bearer(parts).is_some() => {
                session_or_admin_refused(state, ip);
                Err(ApiError::SessionRequired)
            }
            Err(e) => Err(e),
        }
    }
}

/// A bearer token that is neither a live session nor the admin token: a guess at either, or
/// (most often) an expired session. It spends the client's admin budget, quietly.
fn session_or_admin_refused(state: &HttpState, ip: IpAddr) {
    tracing::debug!(client_ip = ?ip, "bearer token neither a session nor the admin token");
    let _ = state.limits.admin_failure(ip);
}
