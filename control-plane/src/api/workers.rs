use std::collections::BTreeMap;

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::Caller;
use super::{AppState, PageInfo, PageParams};
use crate::domain::{Role, WorkerStatus};
use crate::error::ApiError;
use crate::store::{WorkerFilter, workers::WorkerRow};

#[derive(Serialize, ToSchema)]
pub struct Worker {
    pub id: Uuid,
    pub name: String,
    pub status: WorkerStatus,
    pub advertised_addresses: Vec<String>,
    pub capabilities: Vec<String>,
    pub version: String,
    pub labels: BTreeMap<String, String>,
    pub registered_at: DateTime<Utc>,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    /// Generation of the desired state the worker reports running.
    pub applied_generation: u64,
    /// Generation the control plane wants it to run.
    pub desired_generation: u64,
    pub in_sync: bool,
    /// Why the last snapshot could not be applied, if it could not.
    pub apply_error: Option<String>,
    /// The worker's last report (paths, sessions, counters).
    #[schema(value_type = Option<Object>)]
    pub last_report: Option<serde_json::Value>,
}

impl Worker {
    fn from_row(r: WorkerRow, desired: u64) -> Self {
        let applied = u64::try_from(r.applied_generation).unwrap_or(0);
        let labels = serde_json::from_value(r.labels).unwrap_or_default();
        Worker {
            id: r.id,
            name: r.name,
            status: r.status.parse().unwrap_or(WorkerStatus::Offline),
            advertised_addresses: r.advertised_addresses,
            capabilities: r.capabilities,
            version: r.version,
            labels,
            registered_at: r.registered_at,
            last_heartbeat_at: r.last_heartbeat_at,
            applied_generation: applied,
            desired_generation: desired,
            in_sync: applied >= desired,
            apply_error: r.apply_error,
            last_report: r.last_report,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct WorkerList {
    pub items: Vec<Worker>,
    #[serde(flatten)]
    pub page: PageInfo,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WorkerQuery {
    pub page: Option<u32>,
    pub per_page: Option<u32>,
    pub status: Option<WorkerStatus>,
}

/// Lists workers, ordered by name.
#[utoipa::path(get, path = "/api/v1/workers", tag = "workers", params(WorkerQuery), security(("bearer" = [])), responses(
    (status = 200, body = WorkerList),
    (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
))]
#[get("/workers")]
pub async fn list_workers(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<WorkerQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let q = query.into_inner();
    let page = PageParams {
        page: q.page,
        per_page: q.per_page,
    }
    .validate()?;
    let listing = state
        .store
        .list_workers(&WorkerFilter { status: q.status }, page)
        .await?;
    let desired = state.store.generation().await?;
    Ok(HttpResponse::Ok().json(WorkerList {
        items: listing
            .items
            .into_iter()
            .map(|r| Worker::from_row(r, desired))
            .collect(),
        page: PageInfo::new(page, listing.total),
    }))
}

/// Gets a worker.
#[utoipa::path(get, path = "/api/v1/workers/{id}", tag = "workers", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 200, body = Worker),
    (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
))]
#[get("/workers/{id}")]
pub async fn get_worker(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found("worker", id.as_str()))?;
    let row = state.store.get_worker(id).await?;
    let desired = state.store.generation().await?;
    Ok(HttpResponse::Ok().json(Worker::from_row(row, desired)))
}
