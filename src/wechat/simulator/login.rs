//! WeChat's login API, `jscode2session`, as the simulator plays it.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::Simulator;
use super::state::Call;
use crate::wechat::v2::sign::random_alphanumeric;

#[derive(Deserialize)]
pub(super) struct CodeQuery {
    #[serde(default)]
    appid: String,
    #[serde(default)]
    secret: String,
    #[serde(default)]
    js_code: String,
    #[serde(default)]
    grant_type: String,
}

/// `jscode2session`. A code is single-use. Codes starting with `invalid` are refused
/// (40029), `blocked` (40226), `busy` (-1). The part before a `#` names the user, so
/// `alice#1` and `alice#2` log the same openid in twice.
pub(super) async fn code_to_session(
    State(sim): State<Simulator>,
    Query(query): Query<CodeQuery>,
) -> Response {
    let config = sim.config();
    let (errcode, errmsg) = if query.appid != config.appid {
        (40013, "invalid appid")
    } else if query.secret != config.app_secret {
        (40125, "invalid appsecret")
    } else if query.grant_type != "authorization_code" {
        (40002, "invalid grant_type")
    } else if query.js_code.is_empty() {
        (41008, "missing code")
    } else if query.js_code.starts_with("invalid") {
        (40029, "invalid code")
    } else if query.js_code.starts_with("blocked") {
        (40226, "code blocked")
    } else if query.js_code.starts_with("busy") {
        (-1, "system error")
    } else if !sim.state().used_codes.insert(query.js_code.clone()) {
        (40163, "code been used")
    } else {
        (0, "")
    };
    sim.state().record(Call {
        api: "jscode2session".into(),
        out_trade_no: None,
        business: BTreeMap::new(),
        at_ms: chrono::Utc::now().timestamp_millis(),
        outcome: errcode.to_string(),
        client_cert: None,
    });
    let body = if errcode != 0 {
        serde_json::json!({ "errcode": errcode, "errmsg": errmsg })
    } else {
        let user = query.js_code.split('#').next().unwrap_or_default();
        let digest = Sha256::digest(format!("{}:{user}", config.appid));
        let openid = format!(
            "o{}",
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)[..27]
        );
        let session_key =
            base64::engine::general_purpose::STANDARD.encode(random_alphanumeric(16).as_bytes());
        serde_json::json!({ "openid": openid, "session_key": session_key })
    };
    // WeChat's login API is known to answer with text/plain; clients must not depend on it.
    ([(header::CONTENT_TYPE, "text/plain")], body.to_string()).into_response()
}
