//! The Streamplane worker: follows the control plane's desired state (or a built-in one in
//! standalone mode), publishes it to the media layer through a `watch` channel, reports what
//! runs, and serves `/metrics` and `/healthz`.
//!
//! Entry points: [`run`] (or [`Worker`] to subscribe to the desired state or plug in a
//! [`ReportSource`]); `agent` for the control plane session; `state` for the snapshot
//! conversion and the apply-or-ignore decision.
//!
//! Architecture invariant: the worker keeps serving the last good desired state while the
//! control plane is away; only a newer, valid snapshot replaces it.

#![forbid(unsafe_code)]

mod agent;
mod backoff;
pub mod config;
mod http;
pub mod media;
mod metrics;
pub mod report;
pub mod rtsp;
mod standalone;
pub mod state;

use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

pub use agent::{CAPABILITIES, SessionError, heartbeat_interval};
pub use backoff::Backoff;
pub use config::{Config, Mode};
pub use http::{BindError, bind_metrics};
pub use metrics::IgnoreReason;
pub use report::{NothingRunning, ReportSource, Runtime};
pub use rtsp::{RtspBindError, UdpSockets, bind_rtsp, bind_udp};
pub use state::{AppliedState, DesiredState, InvalidDesiredState, Offer, Tracker};

/// The crate version, announced at registration and in `streamplane_worker_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why the worker stopped before being cancelled.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the metrics server failed")]
    Http(#[source] std::io::Error),
}

/// A configured worker, not yet running. Subscribe to its desired state before [`Worker::run`].
pub struct Worker {
    config: Config,
    registry: Registry,
    metrics: metrics::Metrics,
    applied: watch::Sender<Arc<AppliedState>>,
    connected: watch::Sender<bool>,
    source: Arc<dyn ReportSource>,
    rtsp: Option<(TcpListener, media::Registry)>,
    rtp_udp: Option<rtsp::UdpConfig>,
}

impl Worker {
    pub fn new(config: Config) -> Self {
        let mut registry = Registry::default();
        let metrics = metrics::Metrics::register(&mut registry, VERSION, &config.name);
        let initial = match config.mode() {
            Mode::Managed => DesiredState {
                rtsp_auth: config.rtsp_auth,
                ..DesiredState::empty()
            },
            Mode::Standalone => config.standalone.clone(),
        };
        metrics.set_state(initial.generation, initial.path_count());
        let (applied, _) = watch::channel(Arc::new(AppliedState::initial(initial)));
        let (connected, _) = watch::channel(false);
        Worker {
            config,
            registry,
            metrics,
            applied,
            connected,
            source: Arc::new(NothingRunning),
            rtsp: None,
            rtp_udp: None,
        }
    }

    /// Serves RTSP on `listener` (bound with [`bind_rtsp`]); reports then describe its paths
    /// and sessions. Without it the worker serves no media.
    pub fn with_rtsp_listener(mut self, listener: TcpListener) -> Self {
        let registry = media::Registry::new(self.applied.subscribe());
        self.source = Arc::new(registry.clone());
        self.rtsp = Some((listener, registry));
        self
    }

    /// Also serves RTP/RTCP over UDP on `sockets` (bound with [`bind_udp`]).
    pub fn with_rtp_sockets(mut self, sockets: UdpSockets) -> Self {
        let invalid_rtp = prometheus_client::metrics::counter::Counter::default();
        self.registry.register(
            "streamplane_rtp_invalid_packets",
            "RTP packets from publishers (UDP or TCP interleaved) dropped as invalid",
            invalid_rtp.clone(),
        );
        self.rtp_udp = Some(rtsp::UdpConfig {
            sockets,
            invalid_rtp,
        });
        self
    }

    /// Where reports get the running paths, sessions and counters from.
    pub fn with_report_source(mut self, source: impl ReportSource) -> Self {
        self.source = Arc::new(source);
        self
    }

    /// The latest applied desired state; cheap to read (`borrow`) and to wait on (`changed`).
    pub fn desired_state(&self) -> watch::Receiver<Arc<AppliedState>> {
        self.applied.subscribe()
    }

    /// Whether a session with the control plane is established (always `false` standalone).
    pub fn control_plane_connected(&self) -> watch::Receiver<bool> {
        self.connected.subscribe()
    }

    /// Serves metrics and health on `metrics_listener` and follows the control plane until
    /// `cancel`. Returns early only if the metrics server fails.
    pub async fn run(
        self,
        metrics_listener: TcpListener,
        cancel: CancellationToken,
    ) -> Result<(), RunError> {
        // A failing metrics server stops the agent too, without cancelling the caller's token.
        let cancel = cancel.child_token();
        let mode = self.config.mode();
        let agent = match &self.config.control_plane {
            Some(control_plane) => Some(Arc::new(agent::Agent::new(
                &self.config,
                control_plane,
                self.applied.clone(),
                self.connected.clone(),
                self.metrics.clone(),
                Arc::clone(&self.source),
            ))),
            None => {
                let state = &self.config.standalone;
                warn!(
                    name = %self.config.name,
                    paths = state.path_count(),
                    users = state.users.len(),
                    acl_rules = state.acl.len(),
                    "standalone mode: no control plane configured; \
                     paths and users come from the configuration file or the defaults \
                     (any path, anyone may publish and read)"
                );
                standalone::log_limitations(state);
                None
            }
        };
        let http_state = http::HttpState {
            registry: Arc::new(self.registry),
            applied: self.applied.subscribe(),
            connected: self.connected.subscribe(),
            mode,
        };
        let agent_task = async {
            if let Some(agent) = agent {
                agent.run(cancel.clone()).await;
            }
        };
        let http_task = async {
            let result = http::serve(metrics_listener, http_state, cancel.clone()).await;
            cancel.cancel();
            result.map_err(RunError::Http)
        };
        let rtsp_task = async {
            if let Some((listener, registry)) = self.rtsp {
                let settings = rtsp::Settings {
                    read_timeout: self.config.read_timeout,
                };
                rtsp::serve(listener, self.rtp_udp, registry, settings, cancel.clone()).await;
            }
        };
        let ((), result, ()) = tokio::join!(agent_task, http_task, rtsp_task);
        result
    }
}

/// Runs a worker with `config` until `cancel`; see [`Worker::run`].
pub async fn run(
    config: Config,
    metrics_listener: TcpListener,
    cancel: CancellationToken,
) -> Result<(), RunError> {
    Worker::new(config).run(metrics_listener, cancel).await
}
