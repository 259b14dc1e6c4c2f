//! One RTSP connection: reads and decodes requests and interleaved frames, answers requests
//! (see [`super::session`]), relays a publisher's packets into its stream and writes a
//! reader's queued packets in batches.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use streamplane_media_core::rtcp::RtcpPacket;
use streamplane_media_core::rtp::RtpPacket;
use streamplane_media_core::rtsp::server::{self, SessionId, Step};
use streamplane_media_core::rtsp::{
    Decoder, Item, Limits, Request, Response, StatusCode, encode_response, interleaved_header,
    names,
};
use streamplane_media_core::{Action, PathName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Shared;
use super::auth::Granted;
use super::udp::{self, LastSeen};
use crate::media::{Outgoing, SessionInfo, Stream};

/// Packets written per batch (two iovecs each, well under IOV_MAX).
const BATCH: usize = 64;

/// The machine's clock: the runtime's (so paused test time applies), as a std `Instant`.
pub(super) fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// The driver's side of one session: what the protocol machine (media-core) does not know.
pub(super) struct Driven {
    pub id: SessionId,
    pub path: PathName,
    pub info: Arc<SessionInfo>,
    pub stream: Arc<Stream>,
    pub publisher: bool,
    /// The UDP demultiplexer's entries for this session, removed when it ends (a UDP
    /// reader's move to its sending task at the first PLAY).
    pub udp_routes: Vec<udp::RouteGuard>,
    /// A UDP reader's state, created at its first SETUP.
    pub udp_reader: Option<Arc<udp::UdpReader>>,
    /// A UDP publisher's latest packet, for the read timeout.
    pub seen: Option<Arc<LastSeen>>,
    /// A TCP reader's losses, from the receiver reports on its tracks' RTCP channels.
    pub losses: udp::ReaderLosses,
}

impl Driven {
    /// RTCP from a TCP reader on `track`'s RTCP channel: its receiver reports' losses.
    fn reader_rtcp(&self, track: usize, payload: &Bytes) {
        match RtcpPacket::parse_compound(payload) {
            Ok(packets) => self.losses.on_rtcp(&self.info, track, &packets),
            Err(e) => debug!(track, error = %e, "invalid rtcp from a reader"),
        }
    }

    /// Tokens whose cancellation ends this session, with the reason.
    fn watch(&self) -> impl Iterator<Item = (CancellationToken, &'static str)> {
        let stop = self
            .udp_reader
            .as_ref()
            .map(|r| (r.stop.clone(), "torn down"));
        [
            (self.info.kicked.clone(), "kicked"),
            (self.stream.closed().clone(), "stream ended"),
        ]
        .into_iter()
        .chain(stop)
    }
}

pub(crate) struct Connection {
    pub(super) shared: Arc<Shared>,
    pub(super) peer: SocketAddr,
    /// The protocol state of this connection's sessions.
    pub(super) machine: server::Connection,
    /// The driver's side of each of the machine's sessions.
    pub(super) sessions: Vec<Driven>,
    /// Access already granted on this connection, so a request sequence is checked once.
    pub(super) granted: Vec<(PathName, Action, Granted)>,
    /// Whether the connection's span carries the path yet.
    pub(super) path_in_span: bool,
    socket: Option<TcpStream>,
    /// Playing TCP readers' queues.
    pub(super) queues: Vec<(SessionId, mpsc::Receiver<Outgoing>)>,
    /// Which queue [`recv_batch`] polls first, so one busy reader cannot starve another.
    next_queue: usize,
    /// Invalid RTP packets received, for the log at the end.
    invalid_rtp: u64,
}

impl Connection {
    pub(crate) fn new(shared: Arc<Shared>, socket: TcpStream, peer: SocketAddr) -> Self {
        let machine = server::Connection::new(shared.machine, now());
        Connection {
            shared,
            peer,
            machine,
            sessions: Vec::new(),
            granted: Vec::new(),
            path_in_span: false,
            socket: Some(socket),
            queues: Vec::new(),
            next_queue: 0,
            invalid_rtp: 0,
        }
    }

    pub(super) fn driven(&self, id: &SessionId) -> Option<&Driven> {
        self.sessions.iter().find(|d| &d.id == id)
    }

    pub(super) fn driven_mut(&mut self, id: &SessionId) -> Option<&mut Driven> {
        self.sessions.iter_mut().find(|d| &d.id == id)
    }

    fn take_driven(&mut self, id: &SessionId) -> Option<Driven> {
        let index = self.sessions.iter().position(|d| &d.id == id)?;
        self.queues.retain(|(q, _)| q != id);
        Some(self.sessions.swap_remove(index))
    }

    pub(crate) async fn run(mut self, cancel: CancellationToken) {
        let Some(socket) = self.socket.take() else {
            return;
        };
        let (mut reader, mut writer) = socket.into_split();
        debug!("connection opened");
        let reason = self.serve(&mut reader, &mut writer, cancel).await;
        let sessions = self.machine.close();
        if sessions.is_empty() {
            debug!(reason, "connection closed");
        }
        for session in sessions {
            let Some(driven) = self.take_driven(session.id()) else {
                continue;
            };
            let alive = driven
                .udp_reader
                .as_ref()
                .is_some_and(|r| !r.stop.is_cancelled());
            match &self.shared.udp {
                // A UDP reader goes on without its connection (see `udp`).
                Some(udp) if session.outlives_connection() && alive => {
                    info!(
                        reason,
                        session = %session.id(),
                        "reader's connection closed; its udp session goes on"
                    );
                    udp.park(session, driven);
                }
                _ => self.end(driven, reason),
            }
        }
        if self.invalid_rtp > 0 {
            warn!(count = self.invalid_rtp, "dropped invalid rtp packets");
        }
        let _ = writer.shutdown().await;
    }

    /// Ends a session's effects: a publisher releases its path, a reader leaves its stream.
    pub(super) fn end(&self, driven: Driven, reason: &'static str) {
        if driven.publisher {
            self.shared.registry.release(&driven.path, &driven.stream);
            info!(reason, session = %driven.id, "publisher left");
        } else {
            driven.stream.unsubscribe(&driven.info);
            if let Some(reader) = &driven.udp_reader {
                reader.stop.cancel();
            }
            info!(reason, session = %driven.id, "reader left");
        }
    }

    /// Runs until the connection should close; returns why, for the log.
    async fn serve(
        &mut self,
        reader: &mut OwnedReadHalf,
        writer: &mut OwnedWriteHalf,
        cancel: CancellationToken,
    ) -> &'static str {
        let mut decoder = Decoder::new(Limits::default());
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let mut out = BytesMut::new();
        let mut batch: Vec<Outgoing> = Vec::with_capacity(BATCH);
        // The sessions' end signals and the machine's timer persist across passes and are
        // rebuilt or reset only when a request or an ended session changed them: a playing
        // reader passes here once per written batch.
        let mut ends: FuturesUnordered<BoxFuture<'static, (SessionId, &'static str)>> =
            FuturesUnordered::new();
        let mut sessions_changed = true;
        let timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(timer);
        let mut armed: Option<std::time::Instant> = None;
        loop {
            loop {
                match decoder.decode(&mut buf) {
                    Ok(None) => break,
                    Ok(Some(Item::Request(request))) => {
                        sessions_changed = true;
                        let reply = self.handle(request).await;
                        // TEARDOWN ends a session, not the connection: the client closes it,
                        // and a request that crossed TEARDOWN on the wire still gets an answer.
                        if write_response(writer, &reply.response, &mut out)
                            .await
                            .is_err()
                        {
                            return "write failed";
                        }
                    }
                    Ok(Some(Item::Response(_))) => {
                        // Answers to requests we never send; harmless.
                    }
                    Ok(Some(Item::Interleaved { channel, payload })) => {
                        self.interleaved(channel, payload);
                    }
                    Err(e) => {
                        warn!(error = %e, "invalid rtsp input; closing");
                        let response = Response::new(e.status_code());
                        let _ = write_response(writer, &response, &mut out).await;
                        return "invalid input";
                    }
                }
            }
            if sessions_changed {
                sessions_changed = false;
                ends = self
                    .sessions
                    .iter()
                    .flat_map(|d| d.watch().map(|(token, why)| (d.id.clone(), token, why)))
                    .map(|(id, token, why)| -> BoxFuture<'static, _> {
                        Box::pin(async move {
                            token.cancelled().await;
                            (id, why)
                        })
                    })
                    .collect();
            }
            let deadline = self.machine.poll_timeout();
            if let Some(at) = deadline
                && armed != Some(at)
            {
                timer.as_mut().reset(tokio::time::Instant::from_std(at));
                armed = Some(at);
            }
            tokio::select! {
                () = cancel.cancelled() => return "shutting down",
                Some((id, why)) = ends.next(), if !ends.is_empty() => {
                    sessions_changed = true;
                    if self.session_ended(&id, why) {
                        return why;
                    }
                }
                read = reader.read_buf(&mut buf) => match read {
                    Ok(0) => return "closed by peer",
                    Ok(_) => {}
                    Err(_) => return "read failed",
                },
                received = recv_batch(&mut self.queues, &mut self.next_queue, &mut batch) => {
                    let (which, n) = received;
                    if n == 0 {
                        sessions_changed = true;
                        let id = self.queues.get(which).map(|(id, _)| id.clone());
                        if let Some(id) = id
                            && self.session_ended(&id, "stream ended")
                        {
                            return "stream ended";
                        }
                        continue;
                    }
                    if self.write_batch(writer, which, &mut batch).await.is_err() {
                        return "write failed";
                    }
                }
                () = &mut timer, if deadline.is_some() => {
                    armed = None;
                    sessions_changed = true;
                    if let Some(reason) = self.timeouts() {
                        return reason;
                    }
                }
            }
        }
    }

    /// A session ended on the driver's side (kicked, stream ended, torn down elsewhere);
    /// whether the connection should close (it has no session left).
    fn session_ended(&mut self, id: &SessionId, why: &'static str) -> bool {
        self.machine.remove(id);
        if let Some(driven) = self.take_driven(id) {
            self.end(driven, why);
        }
        self.sessions.is_empty()
    }

    /// Feeds what the sockets saw to the machine, then ends the sessions that expired;
    /// `Some(reason)` when the connection should close.
    fn timeouts(&mut self) -> Option<&'static str> {
        for driven in &self.sessions {
            let seen = driven
                .seen
                .as_ref()
                .map(|s| s.get())
                .or_else(|| driven.udp_reader.as_ref().map(|r| r.seen.get()));
            if let Some(at) = seen {
                self.machine.media(&driven.id, at);
            }
        }
        let timeouts = self.machine.handle_timeout(now());
        let mut reason = "session timed out";
        for (session, expiry) in timeouts.expired {
            reason = expiry.as_str();
            if let Some(driven) = self.take_driven(session.id()) {
                self.end(driven, reason);
            }
        }
        timeouts.close.then_some(reason)
    }

    /// A `$` frame from the client: a publisher's RTP/RTCP, or a reader's receiver reports.
    fn interleaved(&mut self, channel: u8, payload: Bytes) {
        let Some(route) = self.machine.inbound(channel) else {
            return;
        };
        // Per packet: look the session up by reference, no id copy.
        let (track, rtcp) = (route.track, route.rtcp);
        let Some(driven) = self.sessions.iter().find(|d| &d.id == route.session) else {
            return;
        };
        let counters = &driven.info.counters;
        counters
            .bytes_received
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        if !driven.publisher {
            if rtcp {
                driven.reader_rtcp(track, &payload);
            }
            return;
        }
        if rtcp {
            driven.stream.publish_rtcp(track, payload);
            return;
        }
        match RtpPacket::parse(payload) {
            Ok(packet) => {
                counters.packets_received.fetch_add(1, Ordering::Relaxed);
                driven.stream.publish(track, &packet);
            }
            Err(e) => {
                if let Some(udp) = &self.shared.udp {
                    udp.count_invalid_rtp();
                }
                self.invalid_rtp += 1;
                if self.invalid_rtp == 1 {
                    debug!(channel, error = %e, "invalid rtp packet dropped");
                }
            }
        }
    }

    /// Answers one request: the machine decides, the driver performs what it asks for.
    async fn handle(&mut self, request: Request) -> server::Reply {
        let method = request.method.clone();
        let mut step = self.machine.handle(now(), request);
        let reply = loop {
            match step {
                Step::Reply(reply) => break reply,
                Step::Intent(pending) => {
                    let outcome = self.perform(&pending).await;
                    step = self.machine.complete(now(), pending, outcome);
                }
            }
        };
        if let Some(reason) = &reply.refused {
            let status = reply.response.status;
            if status == StatusCode::Unauthorized {
                debug!(method = <&str>::from(&method), "credentials requested");
            } else {
                info!(
                    method = <&str>::from(&method),
                    status = u16::from(status),
                    reason = %reason,
                    "request refused"
                );
            }
        }
        reply
    }

    /// Writes queued packets as `$` frames with one vectored write per batch (partial writes
    /// continue where they stopped); payloads are the shared buffers, never copied.
    async fn write_batch(
        &mut self,
        writer: &mut OwnedWriteHalf,
        which: usize,
        batch: &mut Vec<Outgoing>,
    ) -> std::io::Result<()> {
        let id = self.queues.get(which).map(|(id, _)| id);
        let (Some(machine), Some(session)) = (
            id.and_then(|id| self.machine.session(id)),
            id.and_then(|id| self.driven(id)),
        ) else {
            batch.clear();
            return Ok(());
        };
        let mut headers: Vec<[u8; 4]> = Vec::with_capacity(batch.len());
        let mut payloads: Vec<&Bytes> = Vec::with_capacity(batch.len());
        let mut packets = 0u64;
        for item in batch.iter() {
            let Some(rtp) = machine.channel(item.track) else {
                continue;
            };
            let channel = if item.rtcp { rtp.wrapping_add(1) } else { rtp };
            let Ok(header) = interleaved_header(channel, item.data.len()) else {
                continue;
            };
            headers.push(header);
            payloads.push(&item.data);
            packets += u64::from(!item.rtcp);
        }
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(headers.len() * 2);
        let mut total = 0usize;
        for (header, payload) in headers.iter().zip(&payloads) {
            slices.push(IoSlice::new(header));
            slices.push(IoSlice::new(payload));
            total += 4 + payload.len();
        }
        let mut remaining: &mut [IoSlice<'_>] = &mut slices;
        while !remaining.is_empty() {
            let n = writer.write_vectored(remaining).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut remaining, n);
        }
        let counters = &session.info.counters;
        counters
            .bytes_sent
            .fetch_add(total as u64, Ordering::Relaxed);
        counters.packets_sent.fetch_add(packets, Ordering::Relaxed);
        drop(slices);
        batch.clear();
        Ok(())
    }
}

/// Waits for queued packets of any playing reader and takes up to [`BATCH`] of one: which
/// queue, and how many (0 when that queue closed). Pending forever without queues, so it can
/// sit in a `select!` for every connection.
async fn recv_batch(
    queues: &mut [(SessionId, mpsc::Receiver<Outgoing>)],
    next: &mut usize,
    batch: &mut Vec<Outgoing>,
) -> (usize, usize) {
    std::future::poll_fn(|cx| {
        let count = queues.len();
        for offset in 0..count {
            let which = (*next + offset) % count;
            let Some((_, rx)) = queues.get_mut(which) else {
                continue;
            };
            if let Poll::Ready(n) = rx.poll_recv_many(cx, batch, BATCH) {
                *next = which + 1;
                return Poll::Ready((which, n));
            }
        }
        Poll::Pending
    })
    .await
}

async fn write_response(
    writer: &mut OwnedWriteHalf,
    response: &Response,
    out: &mut BytesMut,
) -> std::io::Result<()> {
    out.clear();
    let mut response = response.clone();
    response.headers.insert(names::SERVER, "streamplane");
    if let Err(e) = encode_response(&response, out) {
        // Our own headers failed the check; answer without them rather than not at all.
        warn!(error = %e, "cannot encode a response");
        out.clear();
        let fallback = Response::new(StatusCode::InternalServerError);
        if encode_response(&fallback, out).is_err() {
            return Ok(());
        }
    }
    writer.write_all(out).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::report::SessionRole;
    use streamplane_media_core::rtcp::{ReceiverReport, ReportBlock};
    use streamplane_media_core::rtp::Ssrc;
    use streamplane_media_core::sdp::SessionDescription;

    const SDP: &[u8] = b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:trackID=0\r\n\
m=audio 0 RTP/AVP 0\r\na=control:trackID=1\r\n";

    fn reader_session() -> Driven {
        let tracks = SessionDescription::parse(SDP).unwrap().tracks;
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let publisher = SessionInfo::new("p".into(), SessionRole::Publisher, peer, None);
        let count = tracks.len();
        Driven {
            id: SessionId::new("r"),
            path: "live".parse().unwrap(),
            info: SessionInfo::new("r".into(), SessionRole::Reader, peer, None),
            stream: Arc::new(Stream::new(tracks, publisher)),
            publisher: false,
            udp_routes: Vec::new(),
            udp_reader: None,
            seen: None,
            losses: udp::ReaderLosses::new(count),
        }
    }

    fn receiver_report(lost: i32) -> Bytes {
        RtcpPacket::write_compound(&[RtcpPacket::ReceiverReport(ReceiverReport {
            ssrc: Ssrc(7),
            reports: vec![ReportBlock {
                ssrc: Ssrc(1),
                cumulative_lost: lost,
                ..ReportBlock::default()
            }],
            extension: Bytes::new(),
        })])
        .unwrap()
    }

    #[test]
    fn a_tcp_readers_receiver_reports_set_its_losses() {
        let session = reader_session();
        session.reader_rtcp(0, &receiver_report(5));
        assert_eq!(session.info.counters.snapshot().packets_lost, 5);
        session.reader_rtcp(1, &receiver_report(2));
        assert_eq!(session.info.counters.snapshot().packets_lost, 7);
        session.reader_rtcp(0, &receiver_report(1));
        assert_eq!(session.info.counters.snapshot().packets_lost, 3);
        // Garbage and unknown tracks change nothing.
        session.reader_rtcp(0, &Bytes::from_static(b"garbage"));
        session.reader_rtcp(9, &receiver_report(100));
        assert_eq!(session.info.counters.snapshot().packets_lost, 3);
        assert_eq!(session.info.report().counters.packets_lost, 3);
    }
}
