//! `/admin/jobs`: each queue's depth and age, the dead jobs (jobs that will not run again),
//! and a Retry button for each.

use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;

use super::dashboard::queue_table;
use super::layout::{self, Section};
use super::{Failure, Operator, Page};
use crate::http::error::ApiError;
use crate::http::queues::stats;
use crate::http::{HttpState, csrf};
use crate::store::JobState;

/// Dead jobs listed per queue.
const LIST_LIMIT: i64 = 100;

pub async fn page(State(state): State<Arc<HttpState>>, _operator: Operator) -> Page {
    let services = &state.services;
    let queues = stats(services).await?;
    let mut dead = Vec::new();
    for q in &queues {
        dead.extend(
            services
                .store
                .jobs(&q.queue, JobState::Dead, LIST_LIMIT)
                .await?,
        );
    }
    let token = csrf::form_token(&state);
    let body = html! {
        (queue_table(&queues))
        h2 { "Dead jobs" }
        p.note { "Jobs that will not run again. Retrying is safe: every job re-checks its order first." }
        table.jobs.cards {
            tr { th { "queue" } th { "id" } th { "runs" } th { "job" } th { "last result" } th {} }
            @for job in &dead {
                tr {
                    td data-label="queue" { (job.queue) }
                    td data-label="id" { code { (job.id) } }
                    td data-label="runs" { (job.attempts) "/" (job.max_attempts) }
                    td data-label="job" { code { (job.args) } }
                    td data-label="last result" { (job.last_result.as_deref().unwrap_or("")) }
                    td {
                        form method="post" action={ "/admin/jobs/" (layout::urlencode(&job.id)) "/retry" } {
                            input type="hidden" name=(csrf::FIELD) value=(token);
                            button { "retry" }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page("Jobs", Section::Jobs, body))
}

/// The retry form: the token its page embedded (see `csrf`).
#[derive(serde::Deserialize)]
pub struct RetryForm {
    csrf: String,
}

/// Re-queues a dead job and goes back to the jobs page; a post without the page's token, or
/// from another site, is refused (`403 CSRF_REJECTED`) and changes nothing.
pub async fn retry(
    State(state): State<Arc<HttpState>>,
    _operator: Operator,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Result<Form<RetryForm>, FormRejection>,
) -> Response {
    let presented = form.ok().map(|Form(f)| f.csrf);
    if !csrf::form_ok(&state, &headers, presented.as_deref()) {
        tracing::warn!(job = ?id, "admin console: a retry without a valid form token or from another site was refused");
        return ApiError::CsrfRejected.into_response();
    }
    match state.services.store.retry_job(&id).await {
        Ok(retried) => {
            if retried {
                tracing::info!(job = ?id, "dead job re-queued from the console");
            }
            (StatusCode::SEE_OTHER, [(LOCATION, "/admin/jobs")]).into_response()
        }
        Err(e) => Failure::from(e).into_response(),
    }
}
