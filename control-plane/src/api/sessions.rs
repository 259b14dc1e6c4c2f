//! Media sessions (publishers and readers) of the online workers, from their last reports, and
//! kicking one: the kick goes into the desired state, and the worker running the session closes
//! it when it applies that generation.

use actix_web::{HttpResponse, delete, get, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::Caller;
use super::{AppState, PageInfo, PageParams};
use crate::domain::Role;
use crate::error::ApiError;
use crate::store::sessions::WorkerReportRow;

/// Who a session is: the one publisher of a path or one of its readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionRole {
    Publisher,
    Reader,
}

/// A media session as its worker last reported it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Session {
    pub id: String,
    pub worker_id: Uuid,
    pub worker_name: String,
    pub path: String,
    pub role: SessionRole,
    /// e.g. `rtsp`.
    pub protocol: String,
    pub remote_address: String,
    pub username: Option<String>,
    /// `tcp` or `udp`.
    pub transport: String,
    pub started_at: Option<DateTime<Utc>>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub packets_received: u64,
    pub packets_sent: u64,
    pub packets_lost: u64,
    pub frames_dropped: u64,
}

/// A path as one worker reported it.
pub struct ReportedPath {
    pub worker_id: Uuid,
    pub worker_name: String,
    pub name: String,
    pub ready: bool,
    pub sessions: Vec<Session>,
}

// The stored report, as `grpc::convert::report_to_json` writes it; anything missing or
// malformed is skipped rather than failing the whole listing.
#[derive(Deserialize, Default)]
struct StoredReport {
    #[serde(default)]
    paths: Vec<StoredPath>,
}

#[derive(Deserialize)]
struct StoredPath {
    name: String,
    #[serde(default)]
    ready: bool,
    #[serde(default)]
    sessions: Vec<StoredSession>,
}

#[derive(Deserialize)]
struct StoredSession {
    id: String,
    role: String,
    #[serde(default)]
    protocol: String,
    #[serde(default)]
    remote_address: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    transport: String,
    started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    counters: StoredCounters,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct StoredCounters {
    bytes_received: u64,
    bytes_sent: u64,
    packets_received: u64,
    packets_sent: u64,
    packets_lost: u64,
    frames_dropped: u64,
}

/// Every path of every online worker's last report, with its sessions.
pub fn reported_paths(rows: Vec<WorkerReportRow>) -> Vec<ReportedPath> {
    let mut out = Vec::new();
    for row in rows {
        let report: StoredReport = row
            .last_report
            .and_then(|r| serde_json::from_value(r).ok())
            .unwrap_or_default();
        for p in report.paths {
            let sessions = p
                .sessions
                .into_iter()
                .filter_map(|s| {
                    let role = match s.role.as_str() {
                        "publisher" => SessionRole::Publisher,
                        "reader" => SessionRole::Reader,
                        _ => return None,
                    };
                    Some(Session {
                        id: s.id,
                        worker_id: row.id,
                        worker_name: row.name.clone(),
                        path: p.name.clone(),
                        role,
                        protocol: s.protocol,
                        remote_address: s.remote_address,
                        username: Some(s.username).filter(|u| !u.is_empty()),
                        transport: s.transport,
                        started_at: s.started_at,
                        bytes_received: s.counters.bytes_received,
                        bytes_sent: s.counters.bytes_sent,
                        packets_received: s.counters.packets_received,
                        packets_sent: s.counters.packets_sent,
                        packets_lost: s.counters.packets_lost,
                        frames_dropped: s.counters.frames_dropped,
                    })
                })
                .collect();
            out.push(ReportedPath {
                worker_id: row.id,
                worker_name: row.name.clone(),
                name: p.name,
                ready: p.ready,
                sessions,
            });
        }
    }
    out
}

/// Every session of every online worker, ordered by path, then id.
async fn all_sessions(state: &AppState) -> Result<Vec<Session>, ApiError> {
    let rows = state.store.online_reports().await?;
    let mut sessions: Vec<Session> = reported_paths(rows)
        .into_iter()
        .flat_map(|p| p.sessions)
        .collect();
    sessions.sort_by(|a, b| {
        (a.path.as_str(), a.id.as_str(), a.worker_id).cmp(&(
            b.path.as_str(),
            b.id.as_str(),
            b.worker_id,
        ))
    });
    Ok(sessions)
}

#[derive(Serialize, ToSchema)]
pub struct SessionList {
    pub items: Vec<Session>,
    #[serde(flatten)]
    pub page: PageInfo,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SessionQuery {
    pub page: Option<u32>,
    pub per_page: Option<u32>,
    /// Exact path name.
    pub path: Option<String>,
    pub worker_id: Option<Uuid>,
    /// e.g. `rtsp`.
    pub protocol: Option<String>,
    pub role: Option<SessionRole>,
}

impl SessionQuery {
    fn matches(&self, s: &Session) -> bool {
        self.path.as_ref().is_none_or(|p| *p == s.path)
            && self.worker_id.is_none_or(|w| w == s.worker_id)
            && self
                .protocol
                .as_ref()
                .is_none_or(|p| p.eq_ignore_ascii_case(&s.protocol))
            && self.role.is_none_or(|r| r == s.role)
    }
}

/// Lists the media sessions of all online workers, ordered by path, then id.
#[utoipa::path(get, path = "/api/v1/sessions", tag = "sessions", params(SessionQuery), security(("bearer" = [])), responses(
    (status = 200, body = SessionList),
    (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
    (status = 422, body = crate::error::Problem, content_type = "application/problem+json"),
))]
#[get("/sessions")]
pub async fn list_sessions(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<SessionQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let q = query.into_inner();
    let page = PageParams {
        page: q.page,
        per_page: q.per_page,
    }
    .validate()?;
    let matching: Vec<Session> = all_sessions(&state)
        .await?
        .into_iter()
        .filter(|s| q.matches(s))
        .collect();
    let total = i64::try_from(matching.len()).unwrap_or(i64::MAX);
    let skip = usize::try_from(page.page.saturating_sub(1))
        .unwrap_or(usize::MAX)
        .saturating_mul(usize::try_from(page.per_page).unwrap_or(usize::MAX));
    let items = matching
        .into_iter()
        .skip(skip)
        .take(usize::try_from(page.per_page).unwrap_or(usize::MAX))
        .collect();
    Ok(HttpResponse::Ok().json(SessionList {
        items,
        page: PageInfo {
            page: page.page,
            per_page: page.per_page,
            total,
        },
    }))
}

/// Kicks a session: it is added to the desired state, and the worker running it closes it
/// when it applies that generation (hence 202). The client may reconnect; it then gets a new
/// session id.
#[utoipa::path(delete, path = "/api/v1/sessions/{id}", tag = "sessions", params(("id" = String, Path)), security(("bearer" = [])), responses(
    (status = 202, body = Session, description = "The kick is in the desired state; the session closes when its worker applies it"),
    (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
    (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
))]
#[delete("/sessions/{id}")]
pub async fn kick_session(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Operator)?;
    let id = id.into_inner();
    let session = all_sessions(&state)
        .await?
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| ApiError::not_found("session", id.as_str()))?;
    let detail = serde_json::json!({
        "worker_id": session.worker_id,
        "worker_name": session.worker_name,
        "path": session.path,
        "role": session.role,
        "protocol": session.protocol,
        "remote_address": session.remote_address,
    });
    state
        .store
        .kick_session(&session.id, &caller.actor(), detail)
        .await?;
    state.sync().await;
    Ok(HttpResponse::Accepted().json(session))
}
