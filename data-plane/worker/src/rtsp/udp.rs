//! RTP and RTCP over UDP unicast through two shared server sockets (`rtpAddress`,
//! `rtcpAddress`), for publishers and readers.
//!
//! Publishers' packets arrive on the shared sockets and are demultiplexed by source address
//! (the client's IP and the `client_port` pair it gave in SETUP) to their stream and track, as
//! MediaMTX does. Readers' packets leave from the same sockets (so they come from the
//! `server_port` we answered) to the RTSP peer's IP at its client ports: never to a
//! `destination` parameter, which would make the server a reflector.
//!
//! UDP has no connection. A publisher's session lives as long as its RTSP connection. A
//! reader's session outlives its connection (some clients close it after PLAY): RTCP receiver
//! reports and RTSP keep-alives on any connection keep it; after [`SESSION_TIMEOUT`] without
//! either it ends, and TEARDOWN ends it at once.
//!
//! Architecture invariant: the receive loops and the publisher never wait for a reader: sends
//! happen in each reader's own task without waiting (`sendmmsg` per batch, see [`super::udp_send`]),
//! and `WouldBlock` counts as a drop.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use streamplane_media_core::rtcp::RtcpPacket;
use streamplane_media_core::rtp::RtpPacket;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, info};

use super::RtspBindError;
use super::conn::SESSION_TIMEOUT;
use crate::media::{Outgoing, SessionInfo, Stream};

/// Largest datagram we accept (the UDP maximum; RTP over Ethernet is ~1500).
const MAX_DATAGRAM: usize = 65_536;
/// Packets sent per wake-up of a reader's task.
const BATCH: usize = 64;
/// How often a detached reader checks whether it has timed out.
const LIVENESS_CHECK: Duration = Duration::from_secs(1);

/// The bound server RTP and RTCP sockets, before the server runs.
#[derive(Debug)]
pub struct UdpSockets {
    rtp: UdpSocket,
    rtcp: UdpSocket,
}

/// Binds `rtpAddress` and `rtcpAddress`, before anything runs, so a busy port fails fast with
/// its key.
pub async fn bind_udp(rtp: SocketAddr, rtcp: SocketAddr) -> Result<UdpSockets, RtspBindError> {
    async fn bind(
        addr: SocketAddr,
        key: &'static str,
        env: &'static str,
    ) -> Result<UdpSocket, RtspBindError> {
        UdpSocket::bind(addr).await.map_err(|source| {
            if source.kind() == io::ErrorKind::AddrInUse {
                RtspBindError::UdpInUse { addr, key, env }
            } else {
                RtspBindError::UdpOther { addr, key, source }
            }
        })
    }
    Ok(UdpSockets {
        rtp: bind(rtp, "rtpAddress", "STREAMPLANE_RTP_ADDRESS").await?,
        rtcp: bind(rtcp, "rtcpAddress", "STREAMPLANE_RTCP_ADDRESS").await?,
    })
}

/// Where a datagram from a known client address goes.
#[derive(Clone)]
pub(super) enum Route {
    Publish {
        stream: Arc<Stream>,
        track: usize,
    },
    Read {
        reader: Arc<UdpReader>,
        track: usize,
    },
}

#[derive(Default)]
struct Routes {
    rtp: HashMap<SocketAddr, Route>,
    rtcp: HashMap<SocketAddr, Route>,
}

/// The UDP side of the RTSP server, shared by every connection.
pub(crate) struct Udp {
    rtp: UdpSocket,
    rtcp: UdpSocket,
    /// Our RTP and RTCP ports, for `server_port`.
    pub(super) ports: (u16, u16),
    routes: Mutex<Routes>,
    /// Playing UDP readers by session id, for keep-alives and TEARDOWN on other connections.
    readers: Mutex<HashMap<String, Arc<UdpReader>>>,
    /// Publishers' RTP packets dropped as invalid (`streamplane_rtp_invalid_packets_total`).
    invalid_rtp: Counter,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Only maps behind these locks, always left consistent; keep serving after a panic.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A source address as the kernel reports it for IPv4 on dual-stack sockets too.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

impl Udp {
    pub(crate) fn new(sockets: UdpSockets, invalid_rtp: Counter) -> io::Result<Self> {
        let ports = (
            sockets.rtp.local_addr()?.port(),
            sockets.rtcp.local_addr()?.port(),
        );
        Ok(Udp {
            rtp: sockets.rtp,
            rtcp: sockets.rtcp,
            ports,
            routes: Mutex::default(),
            readers: Mutex::default(),
            invalid_rtp,
        })
    }

    /// Counts a publisher's invalid RTP packet received over TCP interleaved, in the same
    /// metric as over UDP.
    pub(crate) fn count_invalid_rtp(&self) {
        self.invalid_rtp.inc();
    }

    /// Routes datagrams from `ip` at the `client` ports to `route` until the guard drops;
    /// `None` when another session already uses those client ports.
    pub(super) fn register(
        self: &Arc<Self>,
        ip: IpAddr,
        client: (u16, u16),
        route: Route,
    ) -> Option<RouteGuard> {
        let rtp = SocketAddr::new(ip.to_canonical(), client.0);
        let rtcp = SocketAddr::new(ip.to_canonical(), client.1);
        let mut routes = lock(&self.routes);
        if routes.rtp.contains_key(&rtp) || routes.rtcp.contains_key(&rtcp) {
            return None;
        }
        routes.rtp.insert(rtp, route.clone());
        routes.rtcp.insert(rtcp, route);
        Some(RouteGuard {
            udp: Arc::clone(self),
            rtp,
            rtcp,
        })
    }

    /// A playing UDP reader's session, for requests on a connection other than its own.
    pub(super) fn reader(&self, id: &str) -> Option<Arc<UdpReader>> {
        lock(&self.readers).get(id).cloned()
    }

    /// Receives on both sockets until `cancel`.
    pub(super) async fn run(self: Arc<Self>, cancel: CancellationToken) {
        tokio::join!(
            self.receive(false, cancel.clone()),
            self.receive(true, cancel)
        );
    }

    async fn receive(&self, rtcp: bool, cancel: CancellationToken) {
        let socket = if rtcp { &self.rtcp } else { &self.rtp };
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let received = tokio::select! {
                () = cancel.cancelled() => return,
                received = socket.recv_from(&mut buf) => received,
            };
            let (len, from) = match received {
                Ok(received) => received,
                Err(e) => {
                    // Transient (ICMP errors on some systems); avoid spinning on a broken socket.
                    debug!(rtcp, error = %e, "udp receive failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let from = canonical(from);
            let route = {
                let routes = lock(&self.routes);
                let map = if rtcp { &routes.rtcp } else { &routes.rtp };
                map.get(&from).cloned()
            };
            let Some(route) = route else {
                debug!(%from, rtcp, len, "udp datagram from an unknown address dropped");
                continue;
            };
            let data = Bytes::copy_from_slice(buf.get(..len).unwrap_or_default());
            if rtcp {
                self.on_rtcp(route, from, data);
            } else {
                self.on_rtp(route, from, data);
            }
        }
    }

    fn on_rtp(&self, route: Route, from: SocketAddr, data: Bytes) {
        match route {
            Route::Publish { stream, track } => {
                let counters = &stream.publisher().counters;
                counters
                    .bytes_received
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                match RtpPacket::parse(data) {
                    Ok(packet) => {
                        counters.packets_received.fetch_add(1, Ordering::Relaxed);
                        stream.publish(track, &packet);
                    }
                    Err(e) => {
                        self.invalid_rtp.inc();
                        debug!(%from, track, error = %e, "invalid rtp packet dropped");
                    }
                }
            }
            // Players send a few packets from their RTP port to open NAT bindings.
            Route::Read { reader, .. } => reader.touch(),
        }
    }

    fn on_rtcp(&self, route: Route, from: SocketAddr, data: Bytes) {
        match route {
            Route::Publish { stream, track } => {
                stream
                    .publisher()
                    .counters
                    .bytes_received
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                stream.publish_rtcp(track, data);
            }
            Route::Read { reader, track } => {
                reader.touch();
                match RtcpPacket::parse_compound(&data) {
                    Ok(packets) => reader.on_rtcp(track, &packets),
                    Err(e) => debug!(%from, track, error = %e, "invalid rtcp from a reader"),
                }
            }
        }
    }

    /// Sends a reader's queued packets; never waits.
    fn send_batch(&self, reader: &UdpReader, dests: &[Option<Dest>], batch: &mut Vec<Outgoing>) {
        use super::udp_send::{self, Datagram};
        let counters = &reader.info.counters;
        let (mut bytes, mut packets, mut dropped) = (0u64, 0u64, 0u64);
        // One batched send per socket, each in queue order; RTCP first, so a sender report
        // goes out ahead of the packets queued after it.
        for rtcp in [true, false] {
            let socket = if rtcp { &self.rtcp } else { &self.rtp };
            let datagrams: Vec<Datagram<'_>> = batch
                .iter()
                .filter(|item| item.rtcp == rtcp)
                .filter_map(|item| {
                    let dest = dests.get(item.track)?.as_ref()?;
                    let to = if rtcp { dest.rtcp } else { dest.rtp };
                    Some(Datagram {
                        payload: &item.data,
                        to,
                    })
                })
                .collect();
            if datagrams.is_empty() {
                continue;
            }
            udp_send::send_batch(socket, &datagrams, |i, result| match result {
                Ok(n) => {
                    bytes += n as u64;
                    packets += u64::from(!rtcp);
                }
                Err(e) => {
                    if e.kind() != io::ErrorKind::WouldBlock && dropped == 0 {
                        debug!(to = %datagrams[i].to, error = %e, "udp send failed");
                    }
                    dropped += 1;
                }
            });
        }
        batch.clear();
        counters.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
        counters.packets_sent.fetch_add(packets, Ordering::Relaxed);
        counters
            .packets_dropped
            .fetch_add(dropped, Ordering::Relaxed);
    }
}

/// Removes a session's routes when dropped.
pub(super) struct RouteGuard {
    udp: Arc<Udp>,
    rtp: SocketAddr,
    rtcp: SocketAddr,
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        let mut routes = lock(&self.udp.routes);
        routes.rtp.remove(&self.rtp);
        routes.rtcp.remove(&self.rtcp);
    }
}

/// Where a reader's track goes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Dest {
    pub rtp: SocketAddr,
    pub rtcp: SocketAddr,
}

impl Dest {
    /// The peer's IP (the RTSP connection's) at its client ports.
    pub(super) fn new(ip: IpAddr, client: (u16, u16)) -> Self {
        Dest {
            rtp: SocketAddr::new(ip, client.0),
            rtcp: SocketAddr::new(ip, client.1),
        }
    }
}

/// A UDP reader's session state, shared by its RTSP connection(s), its sending task and the
/// receive loops.
pub(super) struct UdpReader {
    pub id: String,
    pub info: Arc<SessionInfo>,
    last_seen: Mutex<Instant>,
    /// Whether the RTSP connection that set the session up is still open.
    attached: AtomicBool,
    /// Losses from its receiver reports.
    lost: ReaderLosses,
    /// Cancelled by TEARDOWN.
    pub stop: CancellationToken,
}

impl UdpReader {
    pub(super) fn new(id: String, info: Arc<SessionInfo>, tracks: usize) -> Arc<Self> {
        Arc::new(UdpReader {
            id,
            info,
            last_seen: Mutex::new(Instant::now()),
            attached: AtomicBool::new(true),
            lost: ReaderLosses::new(tracks),
            stop: CancellationToken::new(),
        })
    }

    /// A sign of life: RTCP, or a request naming the session.
    pub(super) fn touch(&self) {
        *lock(&self.last_seen) = Instant::now();
    }

    /// The RTSP connection closed; from now on only signs of life keep the session.
    pub(super) fn detach(&self) {
        self.touch();
        self.attached.store(false, Ordering::Relaxed);
    }

    fn expired(&self, now: Instant) -> bool {
        !self.attached.load(Ordering::Relaxed)
            && now.saturating_duration_since(*lock(&self.last_seen)) >= SESSION_TIMEOUT
    }

    /// Losses from the reader's receiver reports, into its counters.
    fn on_rtcp(&self, track: usize, packets: &[RtcpPacket]) {
        self.lost.on_rtcp(&self.info, track, packets);
    }
}

/// A reader's losses: per track, the cumulative loss of its latest receiver report
/// (RFC 3550 §6.4.2), summed into its `packets_lost`. Shared by UDP and TCP readers.
pub(super) struct ReaderLosses {
    lost: Vec<AtomicU64>,
}

impl ReaderLosses {
    pub(super) fn new(tracks: usize) -> Self {
        ReaderLosses {
            lost: (0..tracks).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub(super) fn on_rtcp(&self, info: &SessionInfo, track: usize, packets: &[RtcpPacket]) {
        let Some(slot) = self.lost.get(track) else {
            return;
        };
        for packet in packets {
            let blocks = match packet {
                RtcpPacket::ReceiverReport(rr) => &rr.reports,
                RtcpPacket::SenderReport(sr) => &sr.reports,
                _ => continue,
            };
            // One source per track: the publisher's SSRC, relayed unchanged.
            if let Some(block) = blocks.first() {
                let lost = u64::try_from(block.cumulative_lost).unwrap_or(0);
                slot.store(lost, Ordering::Relaxed);
            }
        }
        let total = self.lost.iter().map(|l| l.load(Ordering::Relaxed)).sum();
        info.counters.packets_lost.store(total, Ordering::Relaxed);
    }
}

/// Starts sending a playing reader's queue over UDP, in its own task that outlives the RTSP
/// connection (see the module docs). `routes` are kept until the session ends.
pub(super) fn spawn_reader(
    udp: Arc<Udp>,
    reader: Arc<UdpReader>,
    dests: Vec<Option<Dest>>,
    mut rx: mpsc::Receiver<Outgoing>,
    closed: CancellationToken,
    routes: Vec<RouteGuard>,
    shutdown: CancellationToken,
) {
    lock(&udp.readers).insert(reader.id.clone(), Arc::clone(&reader));
    let task = async move {
        let _routes = routes;
        let mut batch = Vec::with_capacity(BATCH);
        let mut check = tokio::time::interval(LIVENESS_CHECK);
        check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let reason = loop {
            tokio::select! {
                () = shutdown.cancelled() => break "shutting down",
                () = reader.stop.cancelled() => break "torn down",
                () = reader.info.kicked.cancelled() => break "kicked",
                () = closed.cancelled() => break "stream ended",
                n = rx.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        break "stream ended";
                    }
                    udp.send_batch(&reader, &dests, &mut batch);
                }
                _ = check.tick() => {
                    if reader.expired(Instant::now()) {
                        break "session timed out";
                    }
                }
            }
        };
        lock(&udp.readers).remove(&reader.id);
        info!(session = %reader.id, reason, "udp reader left");
    };
    tokio::spawn(task.instrument(tracing::Span::current()));
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::report::SessionRole;
    use streamplane_media_core::rtcp::{ReceiverReport, ReportBlock};
    use streamplane_media_core::rtp::Ssrc;

    fn reader() -> Arc<UdpReader> {
        let info = SessionInfo::new(
            "r".into(),
            SessionRole::Reader,
            "127.0.0.1:2".parse().unwrap(),
            None,
        );
        UdpReader::new("r".into(), info, 2)
    }

    #[test]
    fn a_detached_reader_lives_while_it_shows_signs_of_life() {
        let r = reader();
        let start = Instant::now();
        assert!(
            !r.expired(start + SESSION_TIMEOUT * 2),
            "attached: the connection decides"
        );
        r.detach();
        let detached = Instant::now();
        assert!(!r.expired(detached + SESSION_TIMEOUT / 2));
        assert!(r.expired(detached + SESSION_TIMEOUT * 2));
        // 59 s without a sign of life, then a receiver report.
        let silent_since = detached.checked_sub(SESSION_TIMEOUT - Duration::from_secs(1));
        *lock(&r.last_seen) = silent_since.unwrap();
        assert!(r.expired(detached + Duration::from_secs(2)));
        r.touch();
        assert!(
            !r.expired(detached + Duration::from_secs(2)),
            "the report pushed the deadline"
        );
    }

    #[test]
    fn receiver_reports_set_the_readers_losses() {
        let r = reader();
        let report = |lost| {
            vec![RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: Ssrc(9),
                reports: vec![ReportBlock {
                    ssrc: Ssrc(1),
                    fraction_lost: 0,
                    cumulative_lost: lost,
                    extended_highest_seq: 100,
                    jitter: 0,
                    last_sr: 0,
                    delay_since_last_sr: 0,
                }],
                extension: Bytes::new(),
            })]
        };
        r.on_rtcp(0, &report(3));
        r.on_rtcp(1, &report(4));
        r.on_rtcp(0, &report(5));
        r.on_rtcp(7, &report(100));
        assert_eq!(r.info.counters.snapshot().packets_lost, 9);
        r.on_rtcp(1, &report(-2));
        assert_eq!(r.info.counters.snapshot().packets_lost, 5);
    }

    #[tokio::test]
    async fn routes_are_exclusive_and_removed_with_their_guard() {
        let sockets = bind_udp(
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        let udp = Arc::new(Udp::new(sockets, Counter::default()).unwrap());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let route = || Route::Read {
            reader: reader(),
            track: 0,
        };
        let guard = udp.register(ip, (5000, 5001), route()).unwrap();
        assert!(udp.register(ip, (5000, 5001), route()).is_none());
        assert!(udp.register(ip, (5002, 5003), route()).is_some());
        drop(guard);
        assert!(udp.register(ip, (5000, 5001), route()).is_some());
    }
}
