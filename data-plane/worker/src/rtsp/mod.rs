//! The RTSP server: RTSP 1.0 over TCP with RTP interleaved in the connection or over UDP
//! unicast ([`udp`]), for publishers (ANNOUNCE/SETUP/RECORD) and readers (DESCRIBE/SETUP/PLAY).
//!
//! Framing, headers, URLs, SDP and the session state machines come from media-core
//! (`rtsp::server`); this module is their driver: it moves bytes between sockets and the
//! machine ([`conn`]) and performs the effects it asks for ([`session`]: authorization, the
//! path registry, readers' queues, UDP routes).
//!
//! Architecture invariant: one tokio task per connection; nothing a client sends can panic or
//! stall another connection: publishers never wait for readers (see [`crate::media::stream`]).

mod auth;
mod conn;
mod digest;
mod jwt;
mod session;
mod udp;
pub mod udp_send;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use streamplane_media_core::rtsp::server;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, info_span, warn};

use crate::media::Registry;
pub use udp::{UdpSockets, bind_udp};

/// The RTSP port cannot be bound.
#[derive(Debug, thiserror::Error)]
pub enum RtspBindError {
    #[error(
        "cannot listen on {addr} (rtspAddress): address already in use; \
         set rtspAddress or STREAMPLANE_RTSP_ADDRESS to a free port"
    )]
    InUse { addr: SocketAddr },
    #[error("cannot listen on {addr} (rtspAddress)")]
    Other {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot listen on {addr} ({key}, udp): address already in use; \
         set {key} or {env} to a free port"
    )]
    UdpInUse {
        addr: SocketAddr,
        key: &'static str,
        env: &'static str,
    },
    #[error("cannot listen on {addr} ({key}, udp)")]
    UdpOther {
        addr: SocketAddr,
        key: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Binds `rtspAddress`, before anything runs, so a busy port fails fast with its key.
pub async fn bind_rtsp(addr: SocketAddr) -> Result<TcpListener, RtspBindError> {
    TcpListener::bind(addr).await.map_err(|source| {
        if source.kind() == io::ErrorKind::AddrInUse {
            RtspBindError::InUse { addr }
        } else {
            RtspBindError::Other { addr, source }
        }
    })
}

/// What every connection shares.
pub(crate) struct Shared {
    pub registry: Registry,
    pub auth: Arc<auth::Authenticator>,
    /// `None` without UDP sockets: UDP SETUPs then get 461.
    pub udp: Option<Arc<udp::Udp>>,
    /// Server shutdown, for tasks that outlive their connection (UDP readers).
    pub shutdown: CancellationToken,
    /// Timeouts and transports for every connection's session machine.
    pub machine: server::Config,
}

/// RTSP server settings from the worker's configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// A UDP publisher sending nothing for this long is closed (`readTimeout`).
    pub read_timeout: Duration,
}

/// RTP over UDP: the bound sockets and the counter of invalid RTP packets received on them.
pub(crate) struct UdpConfig {
    pub sockets: UdpSockets,
    pub invalid_rtp: prometheus_client::metrics::counter::Counter,
}

/// Accepts connections until `cancel`, then waits for them to end (they watch `cancel` too).
pub(crate) async fn serve(
    listener: TcpListener,
    udp: Option<UdpConfig>,
    registry: Registry,
    settings: Settings,
    cancel: CancellationToken,
) {
    let udp = match udp.map(|u| udp::Udp::new(u.sockets, u.invalid_rtp)) {
        Some(Ok(udp)) => Some(Arc::new(udp)),
        Some(Err(e)) => {
            warn!(error = %e, "udp sockets unusable; serving rtp over tcp only");
            None
        }
        None => None,
    };
    let udp_task = udp.clone().map(|u| tokio::spawn(u.run(cancel.clone())));
    let kicks = tokio::spawn(registry.clone().enforce_kicks(cancel.clone()));
    let shared = Arc::new(Shared {
        registry,
        auth: auth::Authenticator::new(),
        machine: server::Config {
            read_timeout: settings.read_timeout,
            udp: udp.is_some(),
            ..server::Config::default()
        },
        udp,
        shutdown: cancel.clone(),
    });
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        match accepted {
            Ok((socket, peer)) => {
                // Interleaved RTP is latency sensitive and written in batches already.
                if let Err(e) = socket.set_nodelay(true) {
                    debug!(%peer, error = %e, "cannot set TCP_NODELAY");
                }
                let span = info_span!("rtsp", %peer, path = tracing::field::Empty);
                let shared = Arc::clone(&shared);
                let cancel = cancel.clone();
                connections.spawn(
                    conn::Connection::new(shared, socket, peer)
                        .run(cancel)
                        .instrument(span),
                );
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                warn!(error = %e, "cannot accept an rtsp connection");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
    while connections.join_next().await.is_some() {}
    let _ = kicks.await;
    if let Some(task) = udp_task {
        let _ = task.await;
    }
}
