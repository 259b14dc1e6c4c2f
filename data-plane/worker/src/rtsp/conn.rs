//! One RTSP connection: reads and decodes requests and interleaved frames, answers requests
//! (see [`super::session`]), relays a publisher's packets into its stream and writes a
//! reader's queued packets in batches.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use streamplane_media_core::rtcp::RtcpPacket;
use streamplane_media_core::rtp::RtpPacket;
use streamplane_media_core::rtsp::{
    Decoder, Item, Limits, Response, StatusCode, encode_response, interleaved_header, names,
};
use streamplane_media_core::{Action, PathName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Shared;
use super::auth::Granted;
use super::udp;
use crate::media::{Outgoing, SessionInfo, Stream};

/// A connection without a streaming session is closed after this long without a request.
pub(super) const SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// Packets written per batch (two iovecs each, well under IOV_MAX).
const BATCH: usize = 64;

/// The session on this connection (one per connection for now).
pub(super) struct Session {
    pub id: String,
    pub path: PathName,
    pub info: Arc<SessionInfo>,
    pub stream: Arc<Stream>,
    pub role: Role,
    /// Per track: its RTP channel (RTCP is the next one), once set up over TCP.
    pub channels: Vec<Option<u8>>,
    /// Per track: the client's RTP and RTCP ports, once set up over UDP.
    pub udp_ports: Vec<Option<(u16, u16)>>,
    /// The UDP demultiplexer's entries for this session, removed when it ends.
    pub udp_routes: Vec<udp::RouteGuard>,
    /// A UDP reader's state, created at its first SETUP.
    pub udp_reader: Option<Arc<udp::UdpReader>>,
    /// A TCP reader's losses, from the receiver reports on its tracks' RTCP channels.
    pub losses: udp::ReaderLosses,
}

impl Session {
    pub fn is_set_up(&self, track: usize) -> bool {
        matches!(self.channels.get(track), Some(Some(_)))
            || matches!(self.udp_ports.get(track), Some(Some(_)))
    }

    pub fn uses_udp(&self) -> bool {
        self.udp_ports.iter().any(Option::is_some)
    }

    /// RTCP from a TCP reader on `track`'s RTCP channel: its receiver reports' losses.
    fn reader_rtcp(&self, track: usize, payload: &Bytes) {
        match RtcpPacket::parse_compound(payload) {
            Ok(packets) => self.losses.on_rtcp(&self.info, track, &packets),
            Err(e) => debug!(track, error = %e, "invalid rtcp from a reader"),
        }
    }
}

pub(super) enum Role {
    /// After ANNOUNCE: `target` is the announced URL target, for matching SETUP controls.
    Publish {
        target: streamplane_media_core::rtsp::Target,
        recording: bool,
    },
    Read {
        playing: bool,
    },
}

/// What handling a request asks the connection to do next.
pub(super) enum Next {
    Continue,
    /// Send the response, then close (TEARDOWN, fatal errors).
    Close,
}

pub(crate) struct Connection {
    pub(super) shared: Arc<Shared>,
    pub(super) peer: SocketAddr,
    pub(super) session: Option<Session>,
    /// Access already granted on this connection, so a request sequence is checked once.
    pub(super) granted: Vec<(PathName, Action, Granted)>,
    /// Whether the connection's span carries the path yet.
    pub(super) path_in_span: bool,
    socket: Option<TcpStream>,
    /// For a playing reader: its queue and, per track, the channel pair packets go out on.
    pub(super) queue: Option<mpsc::Receiver<Outgoing>>,
    /// For a recording publisher: channel → (track, is RTCP); for a TCP reader, its RTCP
    /// channels.
    pub(super) inbound: Vec<Option<(usize, bool)>>,
    /// Invalid RTP packets received, for the log at the end.
    invalid_rtp: u64,
}

impl Connection {
    pub(crate) fn new(shared: Arc<Shared>, socket: TcpStream, peer: SocketAddr) -> Self {
        Connection {
            shared,
            peer,
            session: None,
            granted: Vec::new(),
            path_in_span: false,
            socket: Some(socket),
            queue: None,
            inbound: Vec::new(),
            invalid_rtp: 0,
        }
    }

    pub(crate) async fn run(mut self, cancel: CancellationToken) {
        let Some(socket) = self.socket.take() else {
            return;
        };
        let (mut reader, mut writer) = socket.into_split();
        debug!("connection opened");
        let reason = self.serve(&mut reader, &mut writer, cancel).await;
        if let Some(session) = self.session.take() {
            if let Some(reader) = &session.udp_reader {
                // A playing UDP reader goes on without its connection (see `udp`).
                reader.detach();
            }
            if let (Some(reader), Role::Read { playing: true }) =
                (&session.udp_reader, &session.role)
                && !reader.stop.is_cancelled()
            {
                info!(
                    reason,
                    "reader's connection closed; its udp session goes on"
                );
            } else if let Role::Publish { .. } = session.role {
                self.shared.registry.release(&session.path, &session.stream);
                info!(reason, "publisher left");
            } else {
                info!(reason, "reader left");
            }
        } else {
            debug!(reason, "connection closed");
        }
        if self.invalid_rtp > 0 {
            warn!(count = self.invalid_rtp, "dropped invalid rtp packets");
        }
        let _ = writer.shutdown().await;
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
        let mut deadline = Instant::now() + SESSION_TIMEOUT;
        loop {
            loop {
                match decoder.decode(&mut buf) {
                    Ok(None) => break,
                    Ok(Some(Item::Request(request))) => {
                        deadline = Instant::now() + SESSION_TIMEOUT;
                        let (response, next) = self.handle(&request).await;
                        if write_response(writer, &response, &mut out).await.is_err() {
                            return "write failed";
                        }
                        if let Next::Close = next {
                            return "closed by request";
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
            let streaming = self.is_streaming();
            let closed = self.session.as_ref().map(|s| s.stream.closed().clone());
            let kicked = self.session.as_ref().map(|s| s.info.kicked.clone());
            tokio::select! {
                () = cancel.cancelled() => return "shutting down",
                () = async { match &kicked { Some(k) => k.cancelled().await, None => std::future::pending().await } } => {
                    return "kicked";
                }
                () = async { match &closed { Some(c) => c.cancelled().await, None => std::future::pending().await } } => {
                    return "stream ended";
                }
                read = reader.read_buf(&mut buf) => match read {
                    Ok(0) => return "closed by peer",
                    Ok(_) => {
                        if streaming {
                            deadline = Instant::now() + SESSION_TIMEOUT;
                        }
                    }
                    Err(_) => return "read failed",
                },
                n = recv_batch(&mut self.queue, &mut batch) => {
                    if n == 0 {
                        return "stream ended";
                    }
                    if self.write_batch(writer, &mut batch).await.is_err() {
                        return "write failed";
                    }
                }
                () = tokio::time::sleep_until(deadline), if !streaming => {
                    return "session timed out";
                }
            }
        }
    }

    fn is_streaming(&self) -> bool {
        matches!(
            self.session.as_ref().map(|s| &s.role),
            Some(Role::Publish {
                recording: true,
                ..
            }) | Some(Role::Read { playing: true })
        )
    }

    /// A `$` frame from the client: a publisher's RTP/RTCP, or a reader's receiver reports.
    fn interleaved(&mut self, channel: u8, payload: Bytes) {
        let Some(session) = &self.session else {
            return;
        };
        let Some(&Some((track, rtcp))) = self.inbound.get(usize::from(channel)) else {
            return;
        };
        let counters = &session.info.counters;
        counters
            .bytes_received
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        if let Role::Read { .. } = session.role {
            if rtcp {
                session.reader_rtcp(track, &payload);
            }
            return;
        }
        if rtcp {
            session.stream.publish_rtcp(track, payload);
            return;
        }
        match RtpPacket::parse(payload) {
            Ok(packet) => {
                counters.packets_received.fetch_add(1, Ordering::Relaxed);
                session.stream.publish(track, &packet);
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

    /// Writes queued packets as `$` frames with one vectored write per batch (partial writes
    /// continue where they stopped); payloads are the shared buffers, never copied.
    async fn write_batch(
        &mut self,
        writer: &mut OwnedWriteHalf,
        batch: &mut Vec<Outgoing>,
    ) -> std::io::Result<()> {
        let Some(session) = &self.session else {
            batch.clear();
            return Ok(());
        };
        let mut headers: Vec<[u8; 4]> = Vec::with_capacity(batch.len());
        let mut payloads: Vec<&Bytes> = Vec::with_capacity(batch.len());
        let mut packets = 0u64;
        for item in batch.iter() {
            let Some(Some(rtp)) = session.channels.get(item.track) else {
                continue;
            };
            let channel = if item.rtcp { rtp.wrapping_add(1) } else { *rtp };
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

/// Waits for queued packets and takes up to [`BATCH`]; 0 when the queue closed. Pending
/// forever without a queue, so it can sit in a `select!` for every connection.
async fn recv_batch(
    queue: &mut Option<mpsc::Receiver<Outgoing>>,
    batch: &mut Vec<Outgoing>,
) -> usize {
    match queue {
        Some(rx) => rx.recv_many(batch, BATCH).await,
        None => std::future::pending().await,
    }
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

    fn reader_session() -> Session {
        let tracks = SessionDescription::parse(SDP).unwrap().tracks;
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let publisher = SessionInfo::new("p".into(), SessionRole::Publisher, peer, None);
        let count = tracks.len();
        Session {
            id: "r".into(),
            path: "live".parse().unwrap(),
            info: SessionInfo::new("r".into(), SessionRole::Reader, peer, None),
            stream: Arc::new(Stream::new(tracks, publisher)),
            role: Role::Read { playing: true },
            channels: vec![Some(0), Some(2)],
            udp_ports: vec![None; count],
            udp_routes: Vec::new(),
            udp_reader: None,
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
