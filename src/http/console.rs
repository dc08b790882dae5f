//! What keeps the operator console (`/admin`) to its operator: response headers that forbid
//! framing, scripts and caching, and CSRF protection of its forms. A browser that holds the
//! admin credentials (HTTP Basic) sends them with any request to the console, also one a
//! foreign page makes it send; so a form post must carry a token only the console's own page
//! has, and must not come from another site.
//!
//! The token is an HMAC-SHA256, under a random key made once per process, of the admin token
//! and the hour: it is valid for one to two hours and for this process only (a reload of the
//! page gets a fresh one). The checks follow OWASP's CSRF prevention cheat sheet
//! (<https://cheatsheetseries.owasp.org/cheatsheets/Cross-Site_Request_Forgery_Prevention_Cheat_Sheet.html>):
//! a signed synchronizer token, plus `Sec-Fetch-Site` and `Origin` when the browser sends them.

use std::sync::OnceLock;

use axum::extract::Request;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, HOST, ORIGIN, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::{RngCore, TryRngCore};
use sha2::Sha256;

use crate::wechat::v2::sign::constant_time_eq;

/// What the page may do: its inline style, and forms posting to itself; nothing else (no
/// scripts, images or frames), and no page may frame it.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// A token is made for the current window and accepted for it and the one before.
const WINDOW_SECS: i64 = 3600;

/// The form field carrying the token.
pub const FIELD: &str = "csrf";

/// The per-process key; made at first use, never stored or shown.
fn key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        OsRng.unwrap_err().fill_bytes(&mut key);
        key
    })
}

fn mac(admin_token: &[u8], window: i64) -> Vec<u8> {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key()) else {
        unreachable!("HMAC takes a key of any length")
    };
    mac.update(b"minipay admin console\0");
    mac.update(&window.to_be_bytes());
    mac.update(admin_token);
    mac.finalize().into_bytes().to_vec()
}

/// The token for the console's forms, for the operator holding `admin_token`, at `now_secs`.
pub fn token(admin_token: &[u8], now_secs: i64) -> String {
    let window = now_secs.div_euclid(WINDOW_SECS);
    format!("{window}.{}", hex::encode(mac(admin_token, window)))
}

/// Whether `presented` is a token [`token`] made for `admin_token` in this window or the last.
pub fn verify(admin_token: &[u8], presented: &str, now_secs: i64) -> bool {
    let Some((window, tag)) = presented.split_once('.') else {
        return false;
    };
    let (Ok(window), Ok(tag)) = (window.parse::<i64>(), hex::decode(tag)) else {
        return false;
    };
    let current = now_secs.div_euclid(WINDOW_SECS);
    (window == current || window == current - 1)
        && constant_time_eq(&tag, &mac(admin_token, window))
}

/// Whether the request did not come from another site, as far as the browser says:
/// `Sec-Fetch-Site` (when sent) is `same-origin` (or `none`: typed by the user), and `Origin`
/// (when sent) names the host the request was sent to.
pub fn same_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.as_bytes(), b"same-origin" | b"none")
    {
        return false;
    }
    let Some(origin) = headers.get(ORIGIN) else {
        return true;
    };
    let authority = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, authority)| authority);
    let host = headers.get(HOST).and_then(|h| h.to_str().ok());
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
}

/// Every console response: not framed, no scripts, not cached, no referrer to other sites
/// (`no-referrer` would make browsers send `Origin: null` with the page's own forms).
pub async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: &[u8] = b"an-admin-token-0123456789";
    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_token_is_accepted_for_its_window_and_the_next() {
        let t = token(ADMIN, NOW);
        assert!(verify(ADMIN, &t, NOW));
        assert!(verify(ADMIN, &t, NOW + WINDOW_SECS));
        assert!(!verify(ADMIN, &t, NOW + 2 * WINDOW_SECS), "expired");
        assert!(!verify(ADMIN, &t, NOW - WINDOW_SECS), "from the future");
    }

    #[test]
    fn a_token_is_bound_to_the_admin_token_and_unforgeable() {
        let t = token(ADMIN, NOW);
        assert!(!verify(b"another-admin-token-012345", &t, NOW));
        let (window, tag) = t.split_once('.').unwrap();
        let mut flipped = hex::decode(tag).unwrap();
        flipped[0] ^= 1;
        assert!(!verify(
            ADMIN,
            &format!("{window}.{}", hex::encode(flipped)),
            NOW
        ));
        for bad in ["", ".", "x.y", &format!("{window}."), tag] {
            assert!(!verify(ADMIN, bad, NOW), "{bad:?}");
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn cross_site_posts_are_recognised() {
        let host = ("host", "127.0.0.1:9090");
        assert!(same_site(&headers(&[host])), "a client that says nothing");
        assert!(same_site(&headers(&[
            host,
            ("origin", "http://127.0.0.1:9090"),
            ("sec-fetch-site", "same-origin"),
        ])));
        assert!(!same_site(&headers(&[
            host,
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(!same_site(&headers(&[
            host,
            ("sec-fetch-site", "same-site")
        ])));
        assert!(!same_site(&headers(&[
            host,
            ("origin", "https://evil.example")
        ])));
        assert!(!same_site(&headers(&[host, ("origin", "null")])));
    }
}
