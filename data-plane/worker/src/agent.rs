//! The agent: follows the control plane's desired state and reports what runs.
//!
//! One session at a time: `Register`, then `WatchDesiredState` and `Report` side by side until
//! either fails; then back off and start over with a fresh registration. Snapshots go through
//! [`Tracker`] (the apply-or-ignore decision) and land in a `watch` channel, so the last good
//! desired state stays in force however long the control plane is away.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use futures::Stream;
use rand::Rng;
use streamplane_proto::v1 as pb;
use streamplane_proto::v1::worker_control_client::WorkerControlClient;
use tokio::sync::{Notify, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status, Streaming};
use tracing::{Instrument, Span, debug, error, field, info, info_span, warn};

use crate::backoff::Backoff;
use crate::config::{Config, ControlPlaneConfig, EnrollmentToken};
use crate::metrics::{IgnoreReason, Metrics};
use crate::report::{ReportSource, timestamp};
use crate::state::{AppliedState, Offer, Tracker};

/// What this worker can serve, as announced at registration.
pub const CAPABILITIES: &[&str] = &["rtsp"];
/// TCP connect timeout towards the control plane.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Bounds the unary call and the opening of the streams; a healthy control plane answers at once.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 pings notice a control plane that vanished without closing the connection.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Used when the control plane asks for no particular interval (0).
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
/// Heartbeat intervals the worker accepts; anything else is clamped into this range.
const HEARTBEAT_RANGE: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(300));

/// Why a session with the control plane ended. Every session ends in one of these.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{call} failed: {code:?}: {message}")]
    Rpc {
        call: &'static str,
        code: Code,
        message: String,
    },
    #[error("{call} got no answer within {after:?}")]
    Timeout { call: &'static str, after: Duration },
    #[error("{call}: the control plane ended the stream")]
    Ended { call: &'static str },
    #[error("register: the control plane returned an empty worker id")]
    EmptyWorkerId,
}

impl SessionError {
    fn rpc(call: &'static str, status: &Status) -> Self {
        // Transport failures hide the useful part ("connection refused") in the source chain.
        let mut message = status.message().to_string();
        let mut source = std::error::Error::source(status);
        while let Some(cause) = source {
            // Each layer tends to repeat the one below; keep only what adds information.
            let cause_text = cause.to_string();
            if !message.contains(&cause_text) {
                message = format!("{message}: {cause_text}");
            }
            source = cause.source();
        }
        SessionError::Rpc {
            call,
            code: status.code(),
            message,
        }
    }

    fn is_unauthenticated(&self) -> bool {
        matches!(
            self,
            SessionError::Rpc {
                code: Code::Unauthenticated,
                ..
            }
        )
    }
}

/// The heartbeat interval to use for what the control plane asked.
pub fn heartbeat_interval(requested_ms: u32) -> Duration {
    if requested_ms == 0 {
        return DEFAULT_HEARTBEAT;
    }
    Duration::from_millis(u64::from(requested_ms)).clamp(HEARTBEAT_RANGE.0, HEARTBEAT_RANGE.1)
}

pub(crate) struct Agent {
    endpoint: Endpoint,
    token: EnrollmentToken,
    register: pb::RegisterRequest,
    backoff_max: Duration,
    tracker: Mutex<Tracker>,
    /// Wakes the report stream early, after a snapshot was applied or refused.
    report_now: Notify,
    state: watch::Sender<Arc<AppliedState>>,
    connected: watch::Sender<bool>,
    metrics: Metrics,
    source: Arc<dyn ReportSource>,
}

impl Agent {
    pub(crate) fn new(
        config: &Config,
        control_plane: &ControlPlaneConfig,
        state: watch::Sender<Arc<AppliedState>>,
        connected: watch::Sender<bool>,
        metrics: Metrics,
        source: Arc<dyn ReportSource>,
    ) -> Self {
        let endpoint = Endpoint::from(control_plane.url.clone())
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        let register = pb::RegisterRequest {
            name: config.name.clone(),
            advertised_addresses: config.advertised_addresses.clone(),
            capabilities: CAPABILITIES.iter().map(|c| c.to_string()).collect(),
            version: crate::VERSION.to_string(),
            labels: config
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        let generation = state.borrow().generation();
        Agent {
            endpoint,
            token: control_plane.enrollment_token.clone(),
            register,
            backoff_max: config.reconnect_backoff_max,
            tracker: Mutex::new(Tracker::new(generation, config.rtsp_auth)),
            report_now: Notify::new(),
            state,
            connected,
            metrics,
            source,
        }
    }

    /// Runs sessions until `cancel`; never gives up on the control plane.
    pub(crate) async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut backoff = Backoff::new(self.backoff_max);
        let url = self.endpoint.uri().to_string();
        let rtsp_auth = self.lock_tracker().rtsp_auth();
        info!(
            control_plane = %url,
            name = %self.register.name,
            rtsp_auth_methods = %rtsp_auth,
            "managed mode: following the control plane"
        );
        loop {
            // `worker_id` is recorded once registered, so every line of a session carries it.
            let span = info_span!("session", worker_id = field::Empty);
            let error = tokio::select! {
                () = cancel.cancelled() => break,
                error = self.session(&mut backoff).instrument(span.clone()) => error,
            };
            self.set_connected(false);
            let jitter = rand::rng().random::<f64>();
            let entered = span.enter();
            let delay = if error.is_unauthenticated() {
                error!(
                    control_plane = %url,
                    error = %error,
                    "the control plane refused the enrollment token; check enrollmentToken"
                );
                backoff.max_delay(jitter)
            } else {
                // Warn on the 1st, 2nd, 4th, 8th... failure in a row: a long outage does not
                // flood the log, and every line says how long it has been going on.
                let failures = backoff.failures() + 1;
                if failures.is_power_of_two() {
                    warn!(control_plane = %url, error = %error, failures, "control plane session ended");
                } else {
                    debug!(control_plane = %url, error = %error, failures, "control plane session ended");
                }
                backoff.next_delay(jitter)
            };
            debug!(delay_ms = delay.as_millis(), "reconnecting after a delay");
            drop(entered);
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
            }
            self.metrics.reconnecting();
        }
        self.set_connected(false);
        debug!("agent stopped");
    }

    /// One registration and the two streams that follow it; returns why it ended.
    async fn session(self: &Arc<Self>, backoff: &mut Backoff) -> SessionError {
        let mut client = WorkerControlClient::new(self.endpoint.connect_lazy());
        let registered = match tokio::time::timeout(
            CALL_TIMEOUT,
            client.register(self.request(self.register.clone())),
        )
        .await
        {
            Err(_) => {
                return SessionError::Timeout {
                    call: "register",
                    after: CALL_TIMEOUT,
                };
            }
            Ok(Err(status)) => return SessionError::rpc("register", &status),
            Ok(Ok(response)) => response.into_inner(),
        };
        if registered.worker_id.is_empty() {
            return SessionError::EmptyWorkerId;
        }
        let worker_id = registered.worker_id;
        Span::current().record("worker_id", worker_id.as_str());
        let heartbeat = heartbeat_interval(registered.heartbeat_interval_ms);
        self.streams(client, worker_id, heartbeat, backoff).await
    }

    async fn streams(
        self: &Arc<Self>,
        mut client: WorkerControlClient<Channel>,
        worker_id: String,
        heartbeat: Duration,
        backoff: &mut Backoff,
    ) -> SessionError {
        let known_generation = self.lock_tracker().generation();
        let watch = client.watch_desired_state(self.request(pb::WatchDesiredStateRequest {
            worker_id: worker_id.clone(),
            known_generation,
        }));
        let snapshots = match tokio::time::timeout(CALL_TIMEOUT, watch).await {
            Err(_) => {
                return SessionError::Timeout {
                    call: "watch_desired_state",
                    after: CALL_TIMEOUT,
                };
            }
            Ok(Err(status)) => return SessionError::rpc("watch_desired_state", &status),
            Ok(Ok(response)) => response.into_inner(),
        };
        backoff.reset();
        self.set_connected(true);
        info!(
            heartbeat_ms = heartbeat.as_millis(),
            known_generation, "connected to the control plane"
        );
        let reports = client.report(self.request(self.reports(worker_id, heartbeat)));
        tokio::select! {
            error = self.follow(snapshots) => error,
            result = reports => match result {
                Ok(_) => SessionError::Ended { call: "report" },
                Err(status) => SessionError::rpc("report", &status),
            },
        }
    }

    /// Offers every snapshot of the stream until it ends.
    async fn follow(&self, mut snapshots: Streaming<pb::DesiredState>) -> SessionError {
        loop {
            match snapshots.message().await {
                Ok(Some(snapshot)) => self.offer(snapshot),
                Ok(None) => {
                    return SessionError::Ended {
                        call: "watch_desired_state",
                    };
                }
                Err(status) => return SessionError::rpc("watch_desired_state", &status),
            }
        }
    }

    fn offer(&self, snapshot: pb::DesiredState) {
        let offer = self.lock_tracker().offer(snapshot);
        match offer {
            Offer::Apply(desired) => {
                let generation = desired.generation;
                let paths = desired.path_count();
                self.state.send_replace(Arc::new(AppliedState {
                    desired,
                    applied_at: Some(Utc::now()),
                }));
                self.metrics.applied(generation, paths);
                info!(generation, paths, "applied desired state");
                self.report_now.notify_one();
            }
            Offer::Stale { current, incoming } => {
                self.metrics.ignored(IgnoreReason::Stale);
                debug!(
                    generation = incoming,
                    current, "ignored a desired state that is not newer"
                );
            }
            Offer::Invalid { generation, error } => {
                self.metrics.ignored(IgnoreReason::Invalid);
                let current = self.lock_tracker().generation();
                error!(
                    generation,
                    current,
                    error = %error,
                    "refused an invalid desired state; keeping the current one"
                );
                self.report_now.notify_one();
            }
        }
    }

    /// One report per heartbeat, and one right after each applied or refused snapshot.
    fn reports(
        self: &Arc<Self>,
        worker_id: String,
        heartbeat: Duration,
    ) -> impl Stream<Item = pb::WorkerReport> + Send + 'static {
        let mut interval = tokio::time::interval(heartbeat);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let agent = Arc::clone(self);
        futures::stream::unfold(
            (agent, interval, worker_id),
            |(agent, mut interval, worker_id)| async move {
                tokio::select! {
                    _ = interval.tick() => {}
                    () = agent.report_now.notified() => interval.reset(),
                }
                let report = agent.report(&worker_id);
                Some((report, (agent, interval, worker_id)))
            },
        )
    }

    fn report(&self, worker_id: &str) -> pb::WorkerReport {
        let (applied_generation, apply_error) = {
            let tracker = self.lock_tracker();
            (
                tracker.generation(),
                tracker.apply_error().unwrap_or_default().to_string(),
            )
        };
        let runtime = self.source.runtime();
        pb::WorkerReport {
            worker_id: worker_id.to_string(),
            applied_generation,
            sent_at: Some(timestamp(Utc::now())),
            paths: runtime.paths.into_iter().map(Into::into).collect(),
            totals: Some(runtime.totals.into()),
            apply_error,
        }
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.token.authorization().clone());
        request
    }

    fn set_connected(&self, connected: bool) {
        self.connected
            .send_if_modified(|c| std::mem::replace(c, connected) != connected);
        self.metrics.set_connected(connected);
    }

    fn lock_tracker(&self) -> std::sync::MutexGuard<'_, Tracker> {
        // A panic while holding the lock cannot leave the tracker half-updated: each of its
        // methods assigns its fields last, from values computed before.
        self.tracker.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_is_clamped() {
        assert_eq!(heartbeat_interval(0), DEFAULT_HEARTBEAT);
        assert_eq!(heartbeat_interval(1), Duration::from_millis(50));
        assert_eq!(heartbeat_interval(2_000), Duration::from_secs(2));
        assert_eq!(heartbeat_interval(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn unauthenticated_is_recognised() {
        let e = SessionError::rpc("register", &Status::unauthenticated("bad token"));
        assert!(e.is_unauthenticated());
        assert_eq!(e.to_string(), "register failed: Unauthenticated: bad token");
        assert!(!SessionError::rpc("report", &Status::unavailable("x")).is_unauthenticated());
    }
}
