//! The gRPC service workers talk to: registration, the desired-state stream and reports.

pub mod convert;

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use streamplane_config::Secret;
use streamplane_proto::v1 as pb;
use streamplane_proto::v1::worker_control_server::WorkerControl;
use tokio_stream::wrappers::WatchStream;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::hub::SnapshotHub;
use crate::store::{Registration, ReportUpdate, Store, StoreError};

pub use streamplane_proto::v1::worker_control_server::WorkerControlServer;

pub struct WorkerControlService {
    store: Store,
    hub: SnapshotHub,
    enrollment_token: Secret,
    heartbeat_interval: Duration,
}

impl WorkerControlService {
    pub fn new(
        store: Store,
        hub: SnapshotHub,
        enrollment_token: Secret,
        heartbeat_interval: Duration,
    ) -> Self {
        WorkerControlService {
            store,
            hub,
            enrollment_token,
            heartbeat_interval,
        }
    }

    fn authenticate<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let presented = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .unwrap_or("");
        if constant_time_eq(
            presented.as_bytes(),
            self.enrollment_token.expose().as_bytes(),
        ) {
            return Ok(());
        }
        let peer = req.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        tracing::warn!(%peer, presented = !presented.is_empty(), "worker refused: wrong enrollment token");
        Err(Status::unauthenticated(
            "wrong or missing enrollment token; set the worker's enrollmentToken to the control plane's",
        ))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn store_status(e: StoreError) -> Status {
    match e {
        StoreError::NotFound { resource, id } => {
            Status::not_found(format!("{resource} {id} does not exist; register again"))
        }
        StoreError::Invalid { pointer, message } => {
            Status::invalid_argument(format!("{pointer}: {message}"))
        }
        StoreError::Conflict(m) => Status::already_exists(m),
        StoreError::Unavailable(m) => Status::unavailable(format!("database unavailable: {m}")),
        StoreError::Other(m) => {
            tracing::error!(error = %m, "grpc request failed");
            Status::internal("internal error; the control plane log has the cause")
        }
    }
}

fn parse_worker_id(id: &str) -> Result<Uuid, Status> {
    Uuid::parse_str(id).map_err(|_| {
        Status::invalid_argument(format!(
            "worker_id {id:?} is not a UUID; call Register first"
        ))
    })
}

fn validate_worker_name(name: &str) -> Result<(), Status> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "worker name {name:?} must be 1-64 characters of letters, digits, - _ ."
        )))
    }
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::DesiredState, Status>> + Send>>;

#[tonic::async_trait]
impl WorkerControl for WorkerControlService {
    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        self.authenticate(&req)?;
        let r = req.into_inner();
        validate_worker_name(&r.name)?;
        let labels = serde_json::to_value(&r.labels).unwrap_or_default();
        let row = self
            .store
            .register_worker(Registration {
                name: r.name,
                advertised_addresses: r.advertised_addresses,
                capabilities: r.capabilities,
                version: r.version,
                labels,
            })
            .await
            .map_err(store_status)?;
        tracing::info!(worker = %row.name, worker_id = %row.id, version = %row.version, "worker registered");
        Ok(Response::new(pb::RegisterResponse {
            worker_id: row.id.to_string(),
            heartbeat_interval_ms: u32::try_from(self.heartbeat_interval.as_millis())
                .unwrap_or(u32::MAX),
        }))
    }

    type WatchDesiredStateStream = SnapshotStream;

    async fn watch_desired_state(
        &self,
        req: Request<pb::WatchDesiredStateRequest>,
    ) -> Result<Response<Self::WatchDesiredStateStream>, Status> {
        self.authenticate(&req)?;
        let r = req.into_inner();
        let id = parse_worker_id(&r.worker_id)?;
        self.store.get_worker(id).await.map_err(store_status)?;
        let known = r.known_generation;
        tracing::debug!(worker_id = %id, known, "worker watches desired state");
        // The current snapshot first, then every newer one; a worker that already runs the
        // current generation gets nothing until something changes.
        let stream = WatchStream::new(self.hub.subscribe())
            .filter(move |s| {
                std::future::ready(s.state.generation > known && s.state.generation > 0)
            })
            .map(|s| Ok(s.state.clone()));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn report(
        &self,
        req: Request<Streaming<pb::WorkerReport>>,
    ) -> Result<Response<pb::ReportAck>, Status> {
        self.authenticate(&req)?;
        let mut stream = req.into_inner();
        // Marks the worker offline however this call ends, including when tonic drops it
        // because the connection closed.
        let mut guard = OfflineOnEnd {
            store: self.store.clone(),
            seen: None,
        };
        loop {
            let report = match stream.message().await {
                Ok(Some(report)) => report,
                Ok(None) => return Ok(Response::new(pb::ReportAck {})),
                Err(status) => return Err(status),
            };
            let id = parse_worker_id(&report.worker_id)?;
            if guard.seen.is_some_and(|(w, _)| w != id) {
                return Err(Status::invalid_argument(
                    "one report stream carries one worker's reports",
                ));
            }
            let update = ReportUpdate {
                applied_generation: i64::try_from(report.applied_generation).unwrap_or(i64::MAX),
                apply_error: (!report.apply_error.is_empty()).then(|| report.apply_error.clone()),
                report: convert::report_to_json(&report),
            };
            match self.store.record_report(id, update).await {
                Ok(Some(at)) => guard.seen = Some((id, at)),
                Ok(None) => {
                    return Err(Status::not_found(format!(
                        "worker {id} is unknown; register again"
                    )));
                }
                Err(e) => return Err(store_status(e)),
            }
        }
    }
}

struct OfflineOnEnd {
    store: Store,
    /// The worker and the time of its last report on this stream.
    seen: Option<(Uuid, chrono::DateTime<chrono::Utc>)>,
}

impl Drop for OfflineOnEnd {
    fn drop(&mut self) {
        let Some((id, last_seen)) = self.seen else {
            return;
        };
        let store = self.store.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            match store.mark_worker_offline(id, last_seen).await {
                Ok(true) => tracing::info!(worker_id = %id, "worker report stream ended; marked offline"),
                Ok(false) => tracing::debug!(worker_id = %id, "report stream ended; the worker reported since"),
                Err(e) => tracing::warn!(worker_id = %id, error = %e, "cannot mark worker offline"),
            }
        });
    }
}

/// Marks workers offline after they miss heartbeats, until cancelled.
pub async fn reap_silent_workers(
    store: Store,
    every: Duration,
    timeout: Duration,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        match store.mark_silent_workers_offline(timeout).await {
            Ok(names) => {
                for name in names {
                    tracing::warn!(worker = %name, timeout_ms = timeout.as_millis() as u64, "worker missed heartbeats; marked offline");
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot check worker heartbeats"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn worker_names() {
        assert!(validate_worker_name("worker-1.eu").is_ok());
        assert!(validate_worker_name("").is_err());
        assert!(validate_worker_name("a b").is_err());
    }
}
