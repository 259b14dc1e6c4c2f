use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{Caller, JsonBody};
use super::sessions::{ReportedPath, Session, SessionRole, reported_paths};
use super::{AppState, PageInfo, PageParams};
use crate::domain::{PathResolver, Role, SourceKind, validate_path_pattern, validate_source_url};
use crate::error::{ApiError, FieldError};
use crate::store::{NewPath, PathPatch, paths::PathRow};

const TIMEOUT_MAX_MS: u32 = 600_000;
const GRACE_MAX_MS: u32 = 3_600_000;
const MAX_READERS_MAX: u32 = 1_000_000;

/// Where a path's media comes from.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Source {
    /// Clients publish to the path (RTSP ANNOUNCE/RECORD, WHIP, ...).
    Publisher,
    /// The worker pulls from `url` (rtsp://, rtsps://, ...).
    Url { url: String },
}

#[derive(Serialize, ToSchema)]
pub struct Path {
    pub id: Uuid,
    /// Exact name, or `~` followed by a regular expression.
    pub name: String,
    pub source: Source,
    pub source_on_demand: bool,
    pub source_on_demand_start_timeout_ms: u32,
    pub source_on_demand_close_after_ms: u32,
    /// 0: unlimited.
    pub max_readers: u32,
    /// true: a new publisher replaces the current one; false: it is refused.
    pub override_publisher: bool,
    pub record: bool,
    /// How long readers stay attached after the publisher leaves.
    pub publisher_grace_ms: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub created_by: Option<Uuid>,
    pub updated_by: Option<Uuid>,
    /// Only in `GET /api/v1/paths/{name}`: what the online workers report for the concrete
    /// names that resolve to this path (for a `~regex` or the catch-all, every such name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<PathLive>,
}

/// A path's live state, from the last reports of the online workers.
#[derive(Serialize, ToSchema)]
pub struct PathLive {
    /// Whether some online worker has the path ready (a publisher is streaming).
    pub online: bool,
    /// The online workers that report the path.
    pub workers: Vec<PathOnWorker>,
}

#[derive(Serialize, ToSchema)]
pub struct PathOnWorker {
    /// The concrete path name, as published (differs from the configured name for a `~regex`
    /// or the catch-all).
    pub path: String,
    pub worker_id: Uuid,
    pub worker_name: String,
    pub ready: bool,
    pub publisher: Option<Session>,
    /// Readers attached on this worker.
    pub readers: u32,
}

/// The live state of configured path `name`: the reported names that `resolver` maps to it.
fn live(name: &str, resolver: &PathResolver, reported: Vec<ReportedPath>) -> PathLive {
    let workers: Vec<PathOnWorker> = reported
        .into_iter()
        .filter(|p| resolver.resolve(&p.name) == Some(name))
        .map(|p| {
            let readers = p
                .sessions
                .iter()
                .filter(|s| s.role == SessionRole::Reader)
                .count();
            PathOnWorker {
                path: p.name,
                worker_id: p.worker_id,
                worker_name: p.worker_name,
                ready: p.ready,
                publisher: p
                    .sessions
                    .into_iter()
                    .find(|s| s.role == SessionRole::Publisher),
                readers: u32::try_from(readers).unwrap_or(u32::MAX),
            }
        })
        .collect();
    PathLive {
        online: workers.iter().any(|w| w.ready),
        workers,
    }
}

fn non_negative(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

impl From<PathRow> for Path {
    fn from(r: PathRow) -> Self {
        let source = match (r.source_kind(), r.source_url.clone()) {
            (SourceKind::Url, Some(url)) => Source::Url { url },
            _ => Source::Publisher,
        };
        Path {
            id: r.id,
            name: r.name,
            source,
            source_on_demand: r.source_on_demand,
            source_on_demand_start_timeout_ms: non_negative(r.source_on_demand_start_timeout_ms),
            source_on_demand_close_after_ms: non_negative(r.source_on_demand_close_after_ms),
            max_readers: non_negative(r.max_readers),
            override_publisher: r.override_publisher,
            record: r.record,
            publisher_grace_ms: non_negative(r.publisher_grace_ms),
            created_at: r.created_at,
            updated_at: r.updated_at,
            created_by: r.created_by,
            updated_by: r.updated_by,
            live: None,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct PathList {
    pub items: Vec<Path>,
    #[serde(flatten)]
    pub page: PageInfo,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePath {
    /// Exact name (`^[0-9a-zA-Z_\-/.]+$`, no leading or trailing `/`, no `.` or `..` segments)
    /// or `~` followed by a regular expression. `all_others` (or `all`) is the catch-all that
    /// workers try after every other path, as in MediaMTX.
    pub name: String,
    /// Defaults to `{"kind": "publisher"}`.
    pub source: Option<Source>,
    pub source_on_demand: Option<bool>,
    /// Default 10000.
    pub source_on_demand_start_timeout_ms: Option<u32>,
    /// Default 10000.
    pub source_on_demand_close_after_ms: Option<u32>,
    pub max_readers: Option<u32>,
    /// Default true, as in MediaMTX.
    pub override_publisher: Option<bool>,
    pub record: Option<bool>,
    pub publisher_grace_ms: Option<u32>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePath {
    pub name: Option<String>,
    pub source: Option<Source>,
    pub source_on_demand: Option<bool>,
    pub source_on_demand_start_timeout_ms: Option<u32>,
    pub source_on_demand_close_after_ms: Option<u32>,
    pub max_readers: Option<u32>,
    pub override_publisher: Option<bool>,
    pub record: Option<bool>,
    pub publisher_grace_ms: Option<u32>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PathQuery {
    pub page: Option<u32>,
    pub per_page: Option<u32>,
    /// Case-insensitive substring of the name.
    pub q: Option<String>,
    pub source_kind: Option<SourceKind>,
    /// true: only `~regex` patterns; false: only exact names.
    pub regex: Option<bool>,
}

fn check_range(
    errors: &mut Vec<FieldError>,
    field: &str,
    v: Option<u32>,
    min: u32,
    max: u32,
) -> Option<i32> {
    let v = v?;
    if v < min || v > max {
        errors.push(FieldError::new(
            format!("/{field}"),
            format!("must be from {min} to {max}"),
        ));
        return None;
    }
    i32::try_from(v).ok()
}

/// The numeric settings of a create or update, range-checked (absent stays absent).
struct Numbers {
    start: Option<i32>,
    close: Option<i32>,
    max_readers: Option<i32>,
    grace: Option<i32>,
}

fn check_numbers(
    errors: &mut Vec<FieldError>,
    start: Option<u32>,
    close: Option<u32>,
    max_readers: Option<u32>,
    grace: Option<u32>,
) -> Numbers {
    Numbers {
        start: check_range(
            errors,
            "source_on_demand_start_timeout_ms",
            start,
            1,
            TIMEOUT_MAX_MS,
        ),
        close: check_range(
            errors,
            "source_on_demand_close_after_ms",
            close,
            0,
            TIMEOUT_MAX_MS,
        ),
        max_readers: check_range(errors, "max_readers", max_readers, 0, MAX_READERS_MAX),
        grace: check_range(errors, "publisher_grace_ms", grace, 0, GRACE_MAX_MS),
    }
}

fn check_name(errors: &mut Vec<FieldError>, name: &str) {
    if let Err(m) = validate_path_pattern(name) {
        errors.push(FieldError::new("/name", m));
    }
}

/// Validates a source; returns (kind, url).
fn check_source(errors: &mut Vec<FieldError>, source: Source) -> (SourceKind, Option<String>) {
    match source {
        Source::Publisher => (SourceKind::Publisher, None),
        Source::Url { url } => {
            if let Err(m) = validate_source_url(&url) {
                errors.push(FieldError::new("/source/url", m));
            }
            (SourceKind::Url, Some(url))
        }
    }
}

/// Lists paths, ordered by name.
#[utoipa::path(get, path = "/api/v1/paths", tag = "paths", params(PathQuery), security(("bearer" = [])), responses(
    (status = 200, body = PathList),
    (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
))]
#[get("/paths")]
pub async fn list_paths(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<PathQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let q = query.into_inner();
    let page = PageParams {
        page: q.page,
        per_page: q.per_page,
    }
    .validate()?;
    // Served from the published generation: paths change only with it, and writes publish
    // before they answer.
    let published = state.hub.current();
    let search = q.q.map(|s| s.to_lowercase());
    let matching: Vec<&PathRow> = published
        .paths
        .iter()
        .filter(|p| {
            search
                .as_ref()
                .is_none_or(|s| p.name.to_lowercase().contains(s))
        })
        .filter(|p| q.source_kind.is_none_or(|k| p.source_kind() == k))
        .filter(|p| q.regex.is_none_or(|r| p.name.starts_with('~') == r))
        .collect();
    let total = i64::try_from(matching.len()).unwrap_or(i64::MAX);
    let start = usize::try_from(page.page.saturating_sub(1)).unwrap_or(0) * page.per_page as usize;
    let items: Vec<Path> = matching
        .into_iter()
        .skip(start)
        .take(page.per_page as usize)
        .cloned()
        .map(Path::from)
        .collect();
    Ok(HttpResponse::Ok().json(PathList {
        items,
        page: PageInfo {
            page: page.page,
            per_page: page.per_page,
            total,
        },
    }))
}

/// Creates a path.
#[utoipa::path(post, path = "/api/v1/paths", tag = "paths", request_body = CreatePath, security(("bearer" = [])), responses(
    (status = 201, body = Path),
    (status = 409, description = "Name taken", body = crate::error::Problem, content_type = "application/problem+json"),
    (status = 422, body = crate::error::Problem, content_type = "application/problem+json"),
))]
#[post("/paths")]
pub async fn create_path(
    state: web::Data<AppState>,
    caller: Caller,
    body: JsonBody<CreatePath>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Operator)?;
    let b = body.0;
    let mut errors = Vec::new();
    check_name(&mut errors, &b.name);
    let (source_kind, source_url) =
        check_source(&mut errors, b.source.unwrap_or(Source::Publisher));
    let Numbers {
        start,
        close,
        max_readers,
        grace,
    } = check_numbers(
        &mut errors,
        b.source_on_demand_start_timeout_ms,
        b.source_on_demand_close_after_ms,
        b.max_readers,
        b.publisher_grace_ms,
    );
    let on_demand = b.source_on_demand.unwrap_or(false);
    if on_demand && source_kind != SourceKind::Url {
        errors.push(FieldError::new(
            "/source_on_demand",
            "needs a source of kind url",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let row = state
        .store
        .create_path(
            NewPath {
                name: b.name,
                source_kind,
                source_url,
                source_on_demand: on_demand,
                source_on_demand_start_timeout_ms: start.unwrap_or(10_000),
                source_on_demand_close_after_ms: close.unwrap_or(10_000),
                max_readers: max_readers.unwrap_or(0),
                override_publisher: b.override_publisher.unwrap_or(true),
                record: b.record.unwrap_or(false),
                publisher_grace_ms: grace.unwrap_or(0),
            },
            &caller.actor(),
        )
        .await?;
    state.sync().await;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/paths/{}", row.name)))
        .json(Path::from(row)))
}

/// Gets a path by name (URL-encode `~regex` names), with its live state on the online workers
/// (`live`): for a `~regex` or the catch-all, every published name that resolves to it.
#[utoipa::path(get, path = "/api/v1/paths/{name}", tag = "paths", params(("name" = String, Path)), security(("bearer" = [])), responses(
    (status = 200, body = Path),
    (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
))]
#[get("/paths/{name:.+}")]
pub async fn get_path(
    state: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let mut path = Path::from(state.store.get_path(&name).await?);
    let reported = reported_paths(state.store.online_reports().await?);
    // Resolved with the published generation, the configuration workers serve.
    let published = state.hub.current();
    path.live = Some(live(&path.name, &published.resolver, reported));
    Ok(HttpResponse::Ok().json(path))
}

/// Updates a path; absent fields stay as they are.
#[utoipa::path(patch, path = "/api/v1/paths/{name}", tag = "paths", params(("name" = String, Path)), request_body = UpdatePath, security(("bearer" = [])), responses(
    (status = 200, body = Path),
    (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
    (status = 409, body = crate::error::Problem, content_type = "application/problem+json"),
    (status = 422, body = crate::error::Problem, content_type = "application/problem+json"),
))]
#[patch("/paths/{name:.+}")]
pub async fn update_path(
    state: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
    body: JsonBody<UpdatePath>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Operator)?;
    let b = body.0;
    let mut errors = Vec::new();
    if let Some(n) = &b.name {
        check_name(&mut errors, n);
    }
    let source = b.source.map(|s| check_source(&mut errors, s));
    let Numbers {
        start,
        close,
        max_readers,
        grace,
    } = check_numbers(
        &mut errors,
        b.source_on_demand_start_timeout_ms,
        b.source_on_demand_close_after_ms,
        b.max_readers,
        b.publisher_grace_ms,
    );
    // Switching to a publisher source turns on-demand pulling off unless it is given explicitly.
    let mut source_on_demand = b.source_on_demand;
    if matches!(source, Some((SourceKind::Publisher, _))) && source_on_demand.is_none() {
        source_on_demand = Some(false);
    }
    if source_on_demand == Some(true) || source.is_some() {
        // The combination must hold after the update, so look at what is stored.
        let current = state.store.get_path(&name).await?;
        let kind = source.as_ref().map_or(current.source_kind(), |(k, _)| *k);
        let on_demand = source_on_demand.unwrap_or(current.source_on_demand);
        if on_demand && kind != SourceKind::Url {
            errors.push(FieldError::new(
                "/source_on_demand",
                "needs a source of kind url",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let row = state
        .store
        .update_path(
            &name,
            PathPatch {
                name: b.name,
                source,
                source_on_demand,
                source_on_demand_start_timeout_ms: start,
                source_on_demand_close_after_ms: close,
                max_readers,
                override_publisher: b.override_publisher,
                record: b.record,
                publisher_grace_ms: grace,
            },
            &caller.actor(),
        )
        .await?;
    state.sync().await;
    Ok(HttpResponse::Ok().json(Path::from(row)))
}

/// Deletes a path.
#[utoipa::path(delete, path = "/api/v1/paths/{name}", tag = "paths", params(("name" = String, Path)), security(("bearer" = [])), responses(
    (status = 204, description = "Deleted"),
    (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
))]
#[delete("/paths/{name:.+}")]
pub async fn delete_path(
    state: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Operator)?;
    state.store.delete_path(&name, &caller.actor()).await?;
    state.sync().await;
    Ok(HttpResponse::NoContent().finish())
}
