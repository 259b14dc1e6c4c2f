//! RTP and RTCP over UDP unicast through two shared server sockets (`rtpAddress`,
//! `rtcpAddress`), for publishers and readers.
//!
//! Publishers' packets arrive on the shared sockets and are demultiplexed by source address
//! (the client's IP and the `client_port` pair it gave in SETUP) to their stream and track, as
//! MediaMTX does. Readers' packets leave from the same sockets (so they come from the
//! `server_port` we answered) to the RTSP peer's IP at its client ports: never to a
//! `destination` parameter, which would make the server a reflector.
//!
//! UDP has no connection. A publisher's session lives as long as its RTSP connection, and
//! ends when it sends nothing for the read timeout. A reader's session outlives its
//! connection (some clients close it after PLAY): the connection parks its protocol state
//! here ([`Udp::park`]) and a request naming it on another connection takes it back. RTCP
//! receiver reports and RTSP keep-alives on any connection keep it; after the session timeout
//! without either it ends, and TEARDOWN ends it at once. PAUSE keeps its ports and task.
//!
//! Architecture invariant: the receive loops and the publisher never wait for a reader: sends
//! happen in each reader's own task without waiting (`sendmmsg` per batch, see [`super::udp_send`]),
//! and `WouldBlock` counts as a drop.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use streamplane_media_core::rtcp::{Bye, ReceiverReport, RtcpPacket};
use streamplane_media_core::rtp::RtpPacket;
use streamplane_media_core::rtp::Ssrc;
use streamplane_media_core::rtsp::server::{Session, SessionId};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, info};

use super::RtspBindError;
use super::conn::{Driven, now};
use crate::media::{Outgoing, SessionInfo, Stream};

/// Largest datagram we accept (the UDP maximum; RTP over Ethernet is ~1500).
const MAX_DATAGRAM: usize = 65_536;
/// Packets sent per wake-up of a reader's task.
const BATCH: usize = 64;
/// How often a parked reader checks whether it has timed out.
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
        seen: Arc<LastSeen>,
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
    /// Readers' sessions whose connection closed, until another connection takes them.
    parked: Mutex<HashMap<SessionId, (Session, Driven)>>,
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
            parked: Mutex::default(),
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

    /// Keeps a reader's session whose connection closed; its task goes on sending.
    pub(super) fn park(&self, session: Session, driven: Driven) {
        lock(&self.parked).insert(session.id().clone(), (session, driven));
    }

    /// A parked session, for the connection whose request names it.
    pub(super) fn unpark(&self, id: &SessionId) -> Option<(Session, Driven)> {
        lock(&self.parked).remove(id)
    }

    /// Whether `reader`'s session, if parked, has expired at `now` (its signs of life
    /// counted first).
    fn parked_expired(&self, reader: &UdpReader, now: std::time::Instant) -> bool {
        let mut parked = lock(&self.parked);
        let Some((session, _)) = parked.get_mut(&SessionId::new(reader.id.clone())) else {
            return false;
        };
        session.media(reader.seen.get());
        session.expired(now).is_some()
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
            Route::Publish {
                stream,
                track,
                seen,
            } => {
                seen.touch();
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
            Route::Read { reader, .. } => reader.seen.touch(),
        }
    }

    fn on_rtcp(&self, route: Route, from: SocketAddr, data: Bytes) {
        match route {
            Route::Publish {
                stream,
                track,
                seen,
            } => {
                seen.touch();
                stream
                    .publisher()
                    .counters
                    .bytes_received
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                stream.publish_rtcp(track, data);
            }
            Route::Read { reader, track } => {
                reader.seen.touch();
                match RtcpPacket::parse_compound(&data) {
                    Ok(packets) => reader.on_rtcp(track, &packets),
                    Err(e) => debug!(%from, track, error = %e, "invalid rtcp from a reader"),
                }
            }
        }
    }

    /// Sends a reader's queued packets; never waits.
    /// An RTCP BYE (after an empty receiver report, as a compound must start with one) on
    /// every track's RTCP port: the reader learns the stream ended even when its RTSP
    /// connection is gone.
    fn send_bye(&self, reader: &UdpReader, stream: &Stream, reason: &str) {
        let dests = lock(&reader.dests).clone();
        for (track, dest) in dests.iter().enumerate() {
            let (Some(dest), Some(ssrc)) = (dest, stream.ssrc(track)) else {
                continue;
            };
            let packets = [
                RtcpPacket::ReceiverReport(ReceiverReport {
                    ssrc: Ssrc(ssrc),
                    reports: Vec::new(),
                    extension: Bytes::new(),
                }),
                RtcpPacket::Bye(Bye {
                    sources: vec![Ssrc(ssrc)],
                    reason: Some(Bytes::copy_from_slice(reason.as_bytes())),
                }),
            ];
            match RtcpPacket::write_compound(&packets) {
                Ok(data) => {
                    if let Err(e) = self.rtcp.try_send_to(&data, dest.rtcp) {
                        debug!(to = %dest.rtcp, error = %e, "cannot send rtcp bye");
                    }
                }
                Err(e) => debug!(error = %e, "cannot build rtcp bye"),
            }
        }
    }

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

/// The latest sign of life of a UDP session (a packet, a request), on the runtime's clock.
pub(super) struct LastSeen(Mutex<std::time::Instant>);

impl LastSeen {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(LastSeen(Mutex::new(now())))
    }

    pub(super) fn touch(&self) {
        *lock(&self.0) = now();
    }

    pub(super) fn get(&self) -> std::time::Instant {
        *lock(&self.0)
    }
}

/// What PLAY and PAUSE tell a reader's sending task: a new queue, or none.
type Command = Option<mpsc::Receiver<Outgoing>>;

/// A UDP reader's state, shared by its RTSP connection(s), its sending task and the
/// receive loops.
pub(super) struct UdpReader {
    pub id: String,
    pub info: Arc<SessionInfo>,
    /// RTCP, NAT openers and keep-alives from other connections.
    pub seen: LastSeen,
    /// Per track, where its packets go (the RTSP peer's IP at its client ports).
    dests: Mutex<Vec<Option<Dest>>>,
    /// Losses from its receiver reports.
    lost: ReaderLosses,
    /// Cancelled by TEARDOWN or expiry; ends the sending task.
    pub stop: CancellationToken,
    /// The sending task's commands, once started by the first PLAY.
    commands: Mutex<Option<mpsc::UnboundedSender<Command>>>,
}

impl UdpReader {
    pub(super) fn new(id: String, info: Arc<SessionInfo>, tracks: usize) -> Arc<Self> {
        Arc::new(UdpReader {
            id,
            info,
            seen: LastSeen(Mutex::new(now())),
            dests: Mutex::new(vec![None; tracks]),
            lost: ReaderLosses::new(tracks),
            stop: CancellationToken::new(),
            commands: Mutex::new(None),
        })
    }

    pub(super) fn set_dest(&self, track: usize, dest: Dest) {
        if let Some(slot) = lock(&self.dests).get_mut(track) {
            *slot = Some(dest);
        }
    }

    /// PLAY: starts the sending task with `rx`, or gives a paused task its new queue.
    pub(super) fn play(
        self: &Arc<Self>,
        udp: &Arc<Udp>,
        rx: mpsc::Receiver<Outgoing>,
        stream: Arc<Stream>,
        routes: Vec<RouteGuard>,
        shutdown: CancellationToken,
    ) {
        let mut commands = lock(&self.commands);
        let rx = match commands.as_ref() {
            // A send fails only when the task has ended (then the session is ending too).
            Some(tx) => match tx.send(Some(rx)) {
                Ok(()) => return,
                Err(mpsc::error::SendError(command)) => command,
            },
            None => Some(rx),
        };
        if self.stop.is_cancelled() {
            return;
        }
        let (tx, command_rx) = mpsc::unbounded_channel();
        let _ = tx.send(rx);
        *commands = Some(tx);
        drop(commands);
        spawn_reader(
            Arc::clone(udp),
            Arc::clone(self),
            command_rx,
            stream,
            routes,
            shutdown,
        );
    }

    /// PAUSE: the task drops its queue and waits, keeping ports and session.
    pub(super) fn pause(&self) {
        if let Some(tx) = lock(&self.commands).as_ref() {
            let _ = tx.send(None);
        }
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

/// Sends a reader's queue over UDP, in its own task that outlives the RTSP connection (see
/// the module docs); PLAY and PAUSE swap its queue through `commands`. `routes` are kept
/// until the session ends.
fn spawn_reader(
    udp: Arc<Udp>,
    reader: Arc<UdpReader>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    stream: Arc<Stream>,
    routes: Vec<RouteGuard>,
    shutdown: CancellationToken,
) {
    lock(&udp.readers).insert(reader.id.clone(), Arc::clone(&reader));
    let task = async move {
        let _routes = routes;
        let mut rx: Option<mpsc::Receiver<Outgoing>> = None;
        let mut batch = Vec::with_capacity(BATCH);
        let mut check = tokio::time::interval(LIVENESS_CHECK);
        check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let reason = loop {
            tokio::select! {
                // Commands first: PAUSE is sent before the queue closes, so a closed queue
                // is never mistaken for the end of the stream.
                biased;
                () = shutdown.cancelled() => break "shutting down",
                () = reader.stop.cancelled() => break "torn down",
                () = reader.info.kicked.cancelled() => break "kicked",
                () = stream.closed().cancelled() => break "stream ended",
                command = commands.recv() => match command {
                    Some(queue) => rx = queue,
                    None => break "session ended",
                },
                n = recv(&mut rx, &mut batch) => {
                    if n == 0 {
                        break "stream ended";
                    }
                    udp.send_batch(&reader, &lock(&reader.dests), &mut batch);
                }
                _ = check.tick() => {
                    if udp.parked_expired(&reader, now()) {
                        break "session timed out";
                    }
                }
            }
        };
        if matches!(reason, "stream ended" | "kicked" | "shutting down") {
            udp.send_bye(&reader, &stream, reason);
        }
        reader.stop.cancel();
        lock(&udp.readers).remove(&reader.id);
        // Dropping the parked session here breaks its cycle back to this reader.
        let parked = udp.unpark(&SessionId::new(reader.id.clone()));
        if let Some((_, driven)) = parked {
            driven.stream.unsubscribe(&driven.info);
        }
        info!(session = %reader.id, reason, "udp reader left");
    };
    tokio::spawn(task.instrument(tracing::Span::current()));
}

/// The next packets of a playing reader; pending while paused.
async fn recv(rx: &mut Option<mpsc::Receiver<Outgoing>>, batch: &mut Vec<Outgoing>) -> usize {
    match rx {
        Some(rx) => rx.recv_many(batch, BATCH).await,
        None => std::future::pending().await,
    }
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

    async fn test_udp() -> Arc<Udp> {
        let sockets = bind_udp(
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        Arc::new(Udp::new(sockets, Counter::default()).unwrap())
    }

    /// A UDP reader's session, set up and played through the machine, as its connection
    /// closes.
    fn played_session(id: &str, t0: std::time::Instant) -> Session {
        use streamplane_media_core::rtsp::server::{self, Outcome, Step};
        use streamplane_media_core::rtsp::{Method, Request, Url, names};
        let mut machine = server::Connection::new(server::Config::default(), t0);
        let url = |u: &str| Some(Url::parse(u).unwrap());
        let setup = Request::new(Method::Setup, url("rtsp://h/live/trackID=0"))
            .with_header(names::CSEQ, "1")
            .with_header(names::TRANSPORT, "RTP/AVP;unicast;client_port=5000-5001");
        let Step::Intent(pending) = machine.handle(t0, setup) else {
            panic!("SETUP needs the driver")
        };
        let outcome = Outcome::SetUp {
            new_session: Some((SessionId::new(id), 2)),
            server_port: Some((8000, 8001)),
            ssrc: None,
        };
        assert!(matches!(
            machine.complete(t0, pending, outcome),
            Step::Reply(_)
        ));
        let play = Request::new(Method::Play, url("rtsp://h/live"))
            .with_header(names::CSEQ, "2")
            .with_header(names::SESSION, id);
        let Step::Intent(pending) = machine.handle(t0, play) else {
            panic!("PLAY needs the driver")
        };
        let outcome = Outcome::Playing { first: Vec::new() };
        assert!(matches!(
            machine.complete(t0, pending, outcome),
            Step::Reply(_)
        ));
        machine.close().pop().unwrap()
    }

    fn driven(reader: &Arc<UdpReader>) -> Driven {
        const SDP: &[u8] = b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n\
m=audio 0 RTP/AVP 0\r\na=control:trackID=0\r\n";
        let tracks = streamplane_media_core::sdp::SessionDescription::parse(SDP)
            .unwrap()
            .tracks;
        let peer = "127.0.0.1:1".parse().unwrap();
        let publisher = SessionInfo::new("p".into(), SessionRole::Publisher, peer, None);
        Driven {
            id: SessionId::new(reader.id.clone()),
            path: "live".parse().unwrap(),
            info: Arc::clone(&reader.info),
            stream: Arc::new(Stream::new(tracks, publisher)),
            publisher: false,
            udp_routes: Vec::new(),
            udp_reader: Some(Arc::clone(reader)),
            seen: None,
            losses: ReaderLosses::new(1),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_parked_reader_lives_while_it_shows_signs_of_life() {
        let udp = test_udp().await;
        let r = reader();
        let t0 = now();
        let session = played_session("r", t0);
        let timeout = session.timeout();
        assert!(
            !udp.parked_expired(&r, t0 + timeout * 2),
            "not parked: its connection decides"
        );
        udp.park(session, driven(&r));
        assert!(!udp.parked_expired(&r, t0 + timeout / 2));
        assert!(udp.parked_expired(&r, t0 + timeout + Duration::from_secs(1)));
        // A receiver report 59 s in pushes the deadline.
        *lock(&r.seen.0) = t0 + timeout - Duration::from_secs(1);
        assert!(!udp.parked_expired(&r, t0 + timeout + Duration::from_secs(1)));
        assert!(udp.parked_expired(&r, t0 + timeout * 2));
        // Another connection takes it back: no longer the task's to expire.
        let (taken, _) = udp.unpark(&SessionId::new("r")).unwrap();
        assert_eq!(taken.id().as_str(), "r");
        assert!(!udp.parked_expired(&r, t0 + timeout * 3));
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
        let udp = test_udp().await;
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
