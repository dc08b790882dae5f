//! `/admin/jobs`: each queue's depth and age, the dead jobs (jobs that will not run again),
//! and a Retry button for each.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::dashboard::queue_table;
use super::layout::{self, Section};
use super::{Failure, Operator, Page};
use crate::http::HttpState;
use crate::http::queues::stats;
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
                            button { "retry" }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page("Jobs", Section::Jobs, body))
}

/// Re-queues a dead job and goes back to the jobs page.
pub async fn retry(
    State(state): State<Arc<HttpState>>,
    _operator: Operator,
    Path(id): Path<String>,
) -> Response {
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
