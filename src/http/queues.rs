//! The operator's queue view (admin token): depth and age per queue, dead jobs, and retry.
//! JSON under `/v1/admin/`, and a plain HTML page at `/admin` for a browser (HTTP Basic auth,
//! any user name, the admin token as password; its retry form carries a CSRF token, see
//! `console`).

use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::header::{LOCATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use quick_xml::escape::escape;
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::HttpState;
use super::auth::AdminAuth;
use super::console;
use super::error::{ApiError, AppJson, AppPath, AppQuery};
use super::views::{ErrorBody, Jobs, Queues, Retried};
use crate::services::Services;
use crate::store::{JobState, QueueStats};
use crate::worker::QUEUES;

const LIST_LIMIT: i64 = 100;

async fn stats(services: &Services) -> Result<Vec<QueueStats>, ApiError> {
    let found = services
        .store
        .queue_stats(chrono::Utc::now().timestamp())
        .await?;
    Ok(QUEUES
        .iter()
        .map(|queue| {
            found
                .iter()
                .find(|s| s.queue == *queue)
                .cloned()
                .unwrap_or(QueueStats {
                    queue: (*queue).to_owned(),
                    ..QueueStats::default()
                })
        })
        .collect())
}

/// Depth, age and dead jobs of every queue.
#[utoipa::path(get, path = "/v1/admin/queues", tag = "admin",
    responses((status = 200, description = "Every queue", body = Queues)))]
pub async fn list_queues(
    State(state): State<Arc<HttpState>>,
    _admin: AdminAuth,
) -> Result<AppJson<Queues>, ApiError> {
    let queues = stats(&state.services).await?;
    Ok(AppJson(Queues { queues }))
}

#[derive(Deserialize)]
pub struct JobFilter {
    state: Option<String>,
}

/// Jobs of one queue (at most 100).
#[utoipa::path(get, path = "/v1/admin/queues/{queue}/jobs", tag = "admin",
    params(
        ("queue" = String, Path, description = "A queue name from GET /v1/admin/queues"),
        ("state" = Option<String>, Query, description = "dead (the default), waiting or running"),
    ),
    responses(
        (status = 200, description = "The jobs", body = Jobs),
        (status = 404, description = "NOT_FOUND: no such queue", body = ErrorBody),
        (status = 422, description = "INVALID_PARAMETER: an unknown state", body = ErrorBody),
    ))]
pub async fn list_jobs(
    State(state): State<Arc<HttpState>>,
    _admin: AdminAuth,
    AppPath(queue): AppPath<String>,
    AppQuery(filter): AppQuery<JobFilter>,
) -> Result<AppJson<Jobs>, ApiError> {
    if !QUEUES.contains(&queue.as_str()) {
        return Err(ApiError::NoRoute);
    }
    let services = &state.services;
    let wanted = match filter.state.as_deref() {
        None => JobState::Dead,
        Some(name) => JobState::parse(name).ok_or_else(|| ApiError::InvalidParameter {
            field: "state".into(),
            reason: "must be dead, waiting or running".into(),
        })?,
    };
    let jobs = services.store.jobs(&queue, wanted, LIST_LIMIT).await?;
    Ok(AppJson(Jobs { queue, jobs }))
}

/// Re-queue a dead job (every job re-checks its order first, so this is safe).
#[utoipa::path(post, path = "/v1/admin/jobs/{id}/retry", tag = "admin",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "Queued again", body = Retried),
        (status = 422, description = "INVALID_PARAMETER: no such job, or not dead", body = ErrorBody),
    ))]
pub async fn retry_job(
    State(state): State<Arc<HttpState>>,
    _admin: AdminAuth,
    AppPath(id): AppPath<String>,
) -> Result<AppJson<Retried>, ApiError> {
    if state.services.store.retry_job(&id).await? {
        tracing::info!(job = %id, "dead job re-queued by an operator");
        Ok(AppJson(Retried {
            id,
            status: "Pending",
        }))
    } else {
        Err(ApiError::InvalidParameter {
            field: "id".into(),
            reason: format!("job {id} does not exist or is not dead"),
        })
    }
}

/// Asks a browser for the admin credentials.
fn challenge(e: ApiError) -> Response {
    let mut response = e.into_response();
    if response.status() == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"minipay admin\""),
        );
    }
    response
}

/// The admin token (the page is only reached with it) and the time, for the form token.
fn csrf_token(state: &HttpState) -> String {
    console::token(admin_token(state), state.services.clock.unix_ms() / 1000)
}

fn admin_token(state: &HttpState) -> &[u8] {
    let token = state.services.config.http.admin_token.as_ref();
    token.map_or(&[], |t| t.expose_secret().as_bytes())
}

pub async fn page(
    State(state): State<Arc<HttpState>>,
    admin: Result<AdminAuth, ApiError>,
) -> Response {
    if let Err(e) = admin {
        return challenge(e);
    }
    match render(&state.services, &csrf_token(&state)).await {
        Ok(html) => Html(html).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The page's retry form: the token the page embedded.
#[derive(Deserialize)]
pub struct RetryForm {
    csrf: String,
}

pub async fn page_retry(
    State(state): State<Arc<HttpState>>,
    admin: Result<AdminAuth, ApiError>,
    AppPath(id): AppPath<String>,
    headers: HeaderMap,
    form: Result<Form<RetryForm>, FormRejection>,
) -> Response {
    if let Err(e) = admin {
        return challenge(e);
    }
    let now_secs = state.services.clock.unix_ms() / 1000;
    let token_ok =
        form.is_ok_and(|Form(f)| console::verify(admin_token(&state), &f.csrf, now_secs));
    if !token_ok || !console::same_site(&headers) {
        tracing::warn!(job = ?id, "admin console: a retry without a valid form token or from another site was refused");
        return ApiError::CsrfRejected.into_response();
    }
    match state.services.store.retry_job(&id).await {
        Ok(_) => (StatusCode::SEE_OTHER, [(LOCATION, "/admin")]).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The page's look: plain tables; on a phone each dead job is a card of labelled lines.
const STYLE: &str = "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}\
    td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}code{font-size:90%;overflow-wrap:anywhere}\
    @media (max-width:600px){table.jobs,.jobs tbody,.jobs tr,.jobs td{display:block}\
    .jobs tr:first-child{display:none}.jobs tr{border:1px solid #ccc;margin-bottom:1em}\
    .jobs td{border:none}.jobs td[data-label]::before{content:attr(data-label) \": \";font-weight:bold}}";

async fn render(services: &Services, csrf: &str) -> Result<String, ApiError> {
    let mut html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>minipay queues</title><style>{STYLE}</style></head><body><h1>minipay queues</h1>\
         <table class=\"queues\"><tr><th>queue</th><th>depth</th><th>oldest pending (s)</th><th>dead</th></tr>"
    );
    let queues = stats(services).await?;
    for q in &queues {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(q.queue.as_str()),
            q.depth,
            q.oldest_pending_secs,
            q.dead
        ));
    }
    html.push_str("</table><h2>Dead jobs</h2><p>Jobs that will not run again. Retrying is safe: every job re-checks its order first.</p><table class=\"jobs\"><tr><th>queue</th><th>id</th><th>runs</th><th>job</th><th>last result</th><th></th></tr>");
    for q in &queues {
        for job in services
            .store
            .jobs(&q.queue, JobState::Dead, LIST_LIMIT)
            .await?
        {
            html.push_str(&format!(
                "<tr><td data-label=\"queue\">{}</td><td data-label=\"id\"><code>{}</code></td>\
                 <td data-label=\"runs\">{}/{}</td><td data-label=\"job\"><code>{}</code></td>\
                 <td data-label=\"last result\">{}</td><td><form method=\"post\" action=\"/admin/jobs/{}/retry\">\
                 <input type=\"hidden\" name=\"{}\" value=\"{}\"><button>retry</button></form></td></tr>",
                escape(job.queue.as_str()),
                escape(job.id.as_str()),
                job.attempts,
                job.max_attempts,
                escape(job.args.as_str()),
                escape(job.last_result.as_deref().unwrap_or("")),
                escape(job.id.as_str()),
                console::FIELD,
                escape(csrf),
            ));
        }
    }
    html.push_str("</table></body></html>");
    Ok(html)
}
