//! `GET /metrics` (OpenMetrics text) and `GET /healthz` on `metricsAddress`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Mode;
use crate::state::AppliedState;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics port cannot be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(
        "cannot listen on {addr} (metricsAddress): address already in use; \
         set metricsAddress or STREAMPLANE_METRICS_ADDRESS to a free port"
    )]
    InUse { addr: SocketAddr },
    #[error("cannot listen on {addr} (metricsAddress)")]
    Other {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// Binds `metricsAddress`; done before the agent starts so a busy port fails fast.
pub async fn bind_metrics(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|source| {
        if source.kind() == io::ErrorKind::AddrInUse {
            BindError::InUse { addr }
        } else {
            BindError::Other { addr, source }
        }
    })
}

#[derive(Clone)]
pub(crate) struct HttpState {
    pub registry: Arc<Registry>,
    pub applied: watch::Receiver<Arc<AppliedState>>,
    pub connected: watch::Receiver<bool>,
    pub mode: Mode,
}

pub(crate) fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(state)
}

/// Serves until `cancel`, then finishes in-flight requests.
pub(crate) async fn serve(
    listener: TcpListener,
    state: HttpState,
    cancel: CancellationToken,
) -> io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
}

async fn metrics(State(state): State<HttpState>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => ([(header::CONTENT_TYPE, OPENMETRICS)], body).into_response(),
        Err(std::fmt::Error) => {
            tracing::error!("cannot encode metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Always 200 while the process serves: running on the last good state without the control
/// plane is healthy by design; the body tells the difference.
async fn healthz(State(state): State<HttpState>) -> Response {
    let generation = state.applied.borrow().generation();
    let connected = *state.connected.borrow();
    axum::Json(json!({
        "status": "ok",
        "generation": generation,
        "control_plane_connected": connected,
        "mode": state.mode.as_str(),
    }))
    .into_response()
}
