//! The operator's queue view (admin token): depth and age per queue, dead jobs, and retry.
//! JSON under `/v1/admin/` (the console shows the same at `/admin/jobs`).

use std::sync::Arc;

use axum::extract::State;
use serde::Deserialize;

use super::HttpState;
use super::auth::AdminAuth;
use super::error::{ApiError, AppJson, AppPath, AppQuery};
use super::views::{Jobs, Queues, Retried};
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
