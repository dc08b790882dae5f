//! The operator's queue view (admin token): depth and age per queue, dead jobs, and retry.
//! JSON under `/v1/admin/` (the console shows the same at `/admin/jobs`).

use std::sync::Arc;

use axum::extract::State;
use serde::Deserialize;

use super::HttpState;
use super::auth::AdminAuth;
use super::error::{ApiError, AppJson, AppPath, AppQuery};
use super::views::{ErrorBody, Jobs, Queues, Retried};
use crate::services::Services;
use crate::store::{JobState, QueueStats};
use crate::worker::QUEUES;

const LIST_LIMIT: i64 = 100;

pub(super) async fn stats(services: &Services) -> Result<Vec<QueueStats>, ApiError> {
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
