//! One published stream and its fan-out to readers.
//!
//! The publisher parses each RTP packet once ([`RtpPacket`] over the received `Bytes`) and
//! hands it to [`Stream::publish`], which offers a reference-counted clone to every reader's
//! bounded queue. A full queue never blocks the publisher: the reader's [`FrameGate`] drops
//! whole frames (video resumes at the next keyframe) and the drop is counted.
//!
//! Sender reports: the publisher's are forwarded (rewritten to what readers see). For a track
//! whose publisher sends none, the stream generates its own on the publish path (no timer
//! task): with the track's first packet, then every few seconds (see
//! [`SenderReportGenerator`]), all with one CNAME per stream so players group the tracks.
//!
//! Architecture invariant: the fan-out lock is held only for non-blocking work (`try_send`,
//! GOP cache updates), never across an `.await`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use streamplane_media_core::gop::{Admit, FrameGate, GopCache, GopLimits, ResumeAt};
use streamplane_media_core::rtcp::{PT_SR, RtcpPacket, SenderReportGenerator};
use streamplane_media_core::rtp::{RtpPacket, RtpRewriter};
use streamplane_media_core::sdp::{Codec, Track};
use streamplane_media_core::{h264, h265};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::report::{Counters, SessionReport, SessionRole};

/// Packets a reader may have queued; about 2 s of a 4 Mbit/s stream of 1.4 KB packets.
pub const READER_QUEUE: usize = 1024;
/// Free slots a reader needs before a new video frame is started for it, so that frame can
/// finish (x264 zerolatency keyframes at 720p span ~100 packets).
const FRAME_HEADROOM: usize = 128;

/// What a reader's connection writes: RTP or RTCP of one track, shared with every reader.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub track: usize,
    pub rtcp: bool,
    pub data: Bytes,
}

/// Live counters of one session, read by reports without locks.
#[derive(Debug, Default)]
pub struct SessionCounters {
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub packets_received: AtomicU64,
    pub packets_sent: AtomicU64,
    pub frames_dropped: AtomicU64,
    pub packets_dropped: AtomicU64,
    /// A reader's losses as its RTCP receiver reports tell them (sum over tracks).
    pub packets_lost: AtomicU64,
}

impl SessionCounters {
    pub fn snapshot(&self) -> Counters {
        Counters {
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            packets_received: self.packets_received.load(Ordering::Relaxed),
            packets_sent: self.packets_sent.load(Ordering::Relaxed),
            packets_lost: self.packets_lost.load(Ordering::Relaxed),
            frames_dropped: self.frames_dropped.load(Ordering::Relaxed),
        }
    }
}

/// Who a session is, for reports and logs.
#[derive(Debug)]
pub struct SessionInfo {
    pub id: String,
    pub role: SessionRole,
    pub remote: SocketAddr,
    pub username: Option<String>,
    pub started_at: DateTime<Utc>,
    pub counters: SessionCounters,
    /// Whether the session's RTP goes over UDP (else TCP interleaved), for reports.
    pub udp: AtomicBool,
    /// Cancelled when the control plane kicks the session: its connection closes.
    pub kicked: CancellationToken,
}

impl SessionInfo {
    pub fn new(
        id: String,
        role: SessionRole,
        remote: SocketAddr,
        username: Option<String>,
    ) -> Arc<Self> {
        Arc::new(SessionInfo {
            id,
            role,
            remote,
            username,
            started_at: Utc::now(),
            counters: SessionCounters::default(),
            udp: AtomicBool::new(false),
            kicked: CancellationToken::new(),
        })
    }

    pub fn report(&self) -> SessionReport {
        SessionReport {
            id: self.id.clone(),
            role: self.role,
            protocol: "rtsp",
            remote_address: self.remote,
            username: self.username.clone(),
            transport: if self.udp.load(Ordering::Relaxed) {
                "udp"
            } else {
                "tcp"
            },
            counters: self.counters.snapshot(),
            started_at: self.started_at,
        }
    }
}

/// How a track's packets are classified: which start a keyframe, and whether readers must
/// resume at one after a drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrackKind {
    H264,
    H265,
    Other,
}

impl TrackKind {
    fn of(track: &Track) -> Self {
        match track.codec {
            Codec::H264(_) => TrackKind::H264,
            Codec::H265(_) => TrackKind::H265,
            _ => TrackKind::Other,
        }
    }

    fn keyframe_start(self, payload: &[u8]) -> bool {
        match self {
            TrackKind::H264 => h264::is_keyframe_start(payload),
            TrackKind::H265 => h265::is_keyframe_start(payload),
            TrackKind::Other => false,
        }
    }

    fn is_video(self) -> bool {
        self != TrackKind::Other
    }
}

struct Reader {
    info: Arc<SessionInfo>,
    tx: mpsc::Sender<Outgoing>,
    /// One per track: frames are dropped per track, the queue is shared.
    gates: Vec<FrameGate>,
}

struct Fanout {
    gops: Vec<Option<GopCache>>,
    /// The latest sender report per track. A new reader gets these before any RTP, so a
    /// player maps timestamps to wall clock from its first packet on (ffmpeg otherwise
    /// re-bases timestamps when the first report arrives, and they jump backwards).
    sender_reports: Vec<Option<Bytes>>,
    readers: Vec<Reader>,
    /// Per track: keeps sequence numbers, timestamps and SSRC continuous for readers when a
    /// publisher comes back within the grace period (a pass-through until then).
    rewriters: Vec<RtpRewriter>,
    /// Per track: a new publisher took over and has not sent RTP yet; its RTCP is not
    /// forwarded until then (the timestamp mapping is not known yet).
    awaiting_source: Vec<bool>,
    /// Per track: our own sender reports, while the publisher sends none.
    generators: Vec<SenderReportGenerator>,
}

/// A reader could not be attached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    #[error("the publisher has left")]
    Closed,
    #[error("the path already has its maximum of {max} readers")]
    TooManyReaders { max: u32 },
}

/// What a new reader gets: its queue and, per track, the first packet it will receive when
/// that is already known (from the GOP cache), for `RTP-Info`.
pub struct Subscription {
    pub rx: mpsc::Receiver<Outgoing>,
    pub first: Vec<Option<(u16, u32)>>,
}

/// A stream on a path, owned by its publisher's session.
pub struct Stream {
    tracks: Vec<Track>,
    kinds: Vec<TrackKind>,
    publisher: Mutex<Arc<SessionInfo>>,
    /// The publisher left and the stream waits (grace period) for a new one; bumped
    /// `generation` tells a grace timer whether its wait is still the current one.
    orphaned: AtomicBool,
    generation: AtomicU64,
    /// Origin of the monotonic time given to the rewriters.
    created: tokio::time::Instant,
    /// Set at RECORD: only then do readers see the stream.
    ready: AtomicBool,
    /// Cancelled when the publisher leaves or is replaced; readers' connections close.
    closed: CancellationToken,
    /// Per track, the SSRC of the latest RTP packet (`NO_SSRC` before the first), for the
    /// `ssrc` of UDP readers' `Transport`.
    ssrcs: Vec<AtomicU64>,
    /// The SDES CNAME of generated sender reports: one per stream, so players sync its tracks.
    cname: String,
    fanout: Mutex<Fanout>,
}

const NO_SSRC: u64 = u64::MAX;

impl Stream {
    pub fn new(tracks: Vec<Track>, publisher: Arc<SessionInfo>) -> Self {
        let kinds: Vec<TrackKind> = tracks.iter().map(TrackKind::of).collect();
        let count = tracks.len();
        let gops = kinds
            .iter()
            .map(|k| k.is_video().then(|| GopCache::new(GopLimits::default())))
            .collect();
        let rewriters = tracks
            .iter()
            .map(|t| RtpRewriter::new(t.clock_rate.max(1)))
            .collect();
        let generators = tracks
            .iter()
            .map(|t| SenderReportGenerator::new(t.clock_rate))
            .collect();
        Stream {
            tracks,
            kinds,
            publisher: Mutex::new(publisher),
            orphaned: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            created: tokio::time::Instant::now(),
            ready: AtomicBool::new(false),
            closed: CancellationToken::new(),
            ssrcs: (0..count).map(|_| AtomicU64::new(NO_SSRC)).collect(),
            cname: format!("streamplane-{:016x}", rand::random::<u64>()),
            fanout: Mutex::new(Fanout {
                gops,
                sender_reports: vec![None; count],
                readers: Vec::new(),
                rewriters,
                awaiting_source: vec![false; count],
                generators,
            }),
        }
    }

    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// The current publisher (a new one takes over after a reconnect within the grace).
    pub fn publisher(&self) -> Arc<SessionInfo> {
        Arc::clone(
            &self
                .publisher
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Whether a new publisher with `tracks` can take over this stream's readers: the same
    /// number of tracks with the same codecs and payload types.
    pub fn compatible(&self, tracks: &[Track]) -> bool {
        self.tracks.len() == tracks.len()
            && self.tracks.iter().zip(tracks).all(|(a, b)| {
                a.payload_type == b.payload_type
                    && a.clock_rate == b.clock_rate
                    && a.codec.name().eq_ignore_ascii_case(b.codec.name())
            })
    }

    /// The publisher left; readers stay attached while the path waits for a new one. New
    /// readers are not admitted meanwhile. Returns the generation a grace timer checks.
    pub fn orphan(&self) -> u64 {
        self.ready.store(false, Ordering::Release);
        self.orphaned.store(true, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Whether the stream still waits for a publisher since `generation`'s orphaning.
    pub fn orphaned_since(&self, generation: u64) -> bool {
        self.orphaned.load(Ordering::Acquire)
            && self.generation.load(Ordering::Acquire) == generation
    }

    pub fn is_orphaned(&self) -> bool {
        self.orphaned.load(Ordering::Acquire)
    }

    /// A new publisher takes over an orphaned stream: readers continue at its next keyframe,
    /// with sequence numbers, timestamps and SSRC made continuous by the rewriters.
    pub fn adopt(&self, publisher: Arc<SessionInfo>) {
        *self
            .publisher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = publisher;
        let mut fanout = self.lock();
        let Fanout {
            gops,
            sender_reports,
            readers,
            rewriters,
            awaiting_source,
            generators,
        } = &mut *fanout;
        for gop in gops.iter_mut().flatten() {
            *gop = GopCache::new(GopLimits::default());
        }
        sender_reports.iter_mut().for_each(|r| *r = None);
        rewriters.iter_mut().for_each(RtpRewriter::source_changed);
        awaiting_source.iter_mut().for_each(|a| *a = true);
        generators
            .iter_mut()
            .for_each(SenderReportGenerator::source_changed);
        for reader in readers.iter_mut() {
            for (gate, kind) in reader.gates.iter_mut().zip(&self.kinds) {
                if kind.is_video() {
                    gate.wait_for_keyframe();
                }
            }
        }
        drop(fanout);
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.orphaned.store(false, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// The SSRC the publisher uses on `track`, once a packet arrived.
    pub fn ssrc(&self, track: usize) -> Option<u32> {
        let value = self.ssrcs.get(track)?.load(Ordering::Relaxed);
        u32::try_from(value).ok()
    }

    pub fn closed(&self) -> &CancellationToken {
        &self.closed
    }

    /// Ends the stream: readers' queues close and their connections end.
    pub fn close(&self) {
        self.closed.cancel();
        self.lock().readers.clear();
    }

    fn lock(&self) -> MutexGuard<'_, Fanout> {
        // A panic while holding the lock leaves only counters half-updated; keep serving.
        self.fanout
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The reports of the readers attached now.
    pub fn reader_reports(&self) -> Vec<SessionReport> {
        self.lock()
            .readers
            .iter()
            .map(|r| r.info.report())
            .collect()
    }

    /// Detaches and signals the readers whose session id is in `ids` (kicked); their queues
    /// close. Returns how many there were.
    pub fn kick_readers(&self, ids: &std::collections::HashSet<String>) -> usize {
        let mut fanout = self.lock();
        let before = fanout.readers.len();
        fanout.readers.retain(|r| {
            let kicked = ids.contains(&r.info.id);
            if kicked {
                r.info.kicked.cancel();
            }
            !kicked
        });
        before - fanout.readers.len()
    }

    /// Detaches a reader (PAUSE); its queue closes.
    pub fn unsubscribe(&self, info: &Arc<SessionInfo>) {
        self.lock().readers.retain(|r| !Arc::ptr_eq(&r.info, info));
    }

    pub fn reader_count(&self) -> usize {
        self.lock().readers.len()
    }

    /// Attaches a reader: its queue starts with the cached GOP of each video track, so it can
    /// decode at once; tracks without a cached keyframe wait for the next one.
    pub fn subscribe(
        &self,
        info: Arc<SessionInfo>,
        max_readers: Option<u32>,
    ) -> Result<Subscription, SubscribeError> {
        let mut fanout = self.lock();
        if self.closed.is_cancelled() {
            return Err(SubscribeError::Closed);
        }
        if let Some(max) = max_readers
            && fanout.readers.len() >= usize::try_from(max).unwrap_or(usize::MAX)
        {
            return Err(SubscribeError::TooManyReaders { max });
        }
        let cached: usize = fanout
            .gops
            .iter()
            .flatten()
            .map(|g| g.snapshot().len())
            .sum();
        let (tx, rx) = mpsc::channel(READER_QUEUE + cached + self.tracks.len());
        for (track, report) in fanout.sender_reports.iter().enumerate() {
            if let Some(data) = report {
                let _ = tx.try_send(Outgoing {
                    track,
                    rtcp: true,
                    data: data.clone(),
                });
            }
        }
        let mut gates = Vec::with_capacity(self.tracks.len());
        let mut first = vec![None; self.tracks.len()];
        for (track, kind) in self.kinds.iter().enumerate() {
            let mut gate = if kind.is_video() {
                FrameGate::new(ResumeAt::NextKeyframe, FRAME_HEADROOM)
            } else {
                FrameGate::new(ResumeAt::NextFrame, 1)
            };
            let snapshot = fanout.gops[track].as_ref().map(GopCache::snapshot);
            match snapshot {
                Some(packets) if !packets.is_empty() => {
                    for packet in packets {
                        // Cannot fail: the queue was sized for the whole cache.
                        let _ = tx.try_send(Outgoing {
                            track,
                            rtcp: false,
                            data: packet.to_bytes(),
                        });
                    }
                    if let (Some(head), Some(last)) = (packets.first(), packets.last()) {
                        first[track] = Some((head.sequence_number(), head.timestamp()));
                        gate.continue_after(last);
                    }
                }
                Some(_) => gate.wait_for_keyframe(),
                None => {}
            }
            gates.push(gate);
        }
        fanout.readers.push(Reader { info, tx, gates });
        Ok(Subscription { rx, first })
    }

    /// Offers an RTP packet of `track` to every reader; never waits.
    pub fn publish(&self, track: usize, packet: &RtpPacket) {
        let Some(kind) = self.kinds.get(track).copied() else {
            return;
        };
        let keyframe = kind.keyframe_start(packet.payload());
        let now = self.created.elapsed();
        let mut fanout = self.lock();
        let Fanout {
            gops,
            sender_reports,
            readers,
            rewriters,
            awaiting_source,
            generators,
        } = &mut *fanout;
        let rewritten;
        let packet = match rewriters.get_mut(track) {
            Some(rewriter) => {
                rewritten = rewriter.rewrite(packet, now);
                &rewritten
            }
            None => packet,
        };
        if let Some(awaiting) = awaiting_source.get_mut(track) {
            *awaiting = false;
        }
        if let Some(ssrc) = self.ssrcs.get(track) {
            ssrc.store(u64::from(packet.ssrc().0), Ordering::Relaxed);
        }
        if let Some(Some(gop)) = gops.get_mut(track) {
            gop.push(packet, keyframe);
        }
        // Before the packet: a player that learns the mapping with its first packets need
        // not re-base timestamps later.
        if let Some(generator) = generators.get_mut(track)
            && generator.on_rtp(packet, now)
            && let Some(data) = self.generated_report(generator, now)
        {
            if let Some(slot) = sender_reports.get_mut(track) {
                *slot = Some(data.clone());
            }
            send_rtcp(readers, track, &data);
        }
        readers.retain_mut(|reader| {
            let free = reader.tx.capacity();
            let Some(gate) = reader.gates.get_mut(track) else {
                return true;
            };
            let before = gate.stats();
            match gate.admit(packet, keyframe, free) {
                Admit::Send => {
                    let out = Outgoing {
                        track,
                        rtcp: false,
                        data: packet.to_bytes(),
                    };
                    match reader.tx.try_send(out) {
                        Ok(()) => true,
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            // The gate saw room; only a race with nothing else can fill it.
                            reader
                                .info
                                .counters
                                .packets_dropped
                                .fetch_add(1, Ordering::Relaxed);
                            true
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => false,
                    }
                }
                Admit::Drop => {
                    let after = gate.stats();
                    let counters = &reader.info.counters;
                    counters
                        .frames_dropped
                        .fetch_add(after.frames - before.frames, Ordering::Relaxed);
                    counters.packets_dropped.fetch_add(1, Ordering::Relaxed);
                    !reader.tx.is_closed()
                }
            }
        });
    }

    /// Forwards the publisher's RTCP (sender reports, so players can sync tracks). RTP is
    /// relayed with its SSRC unchanged, so the reports stay valid. Dropped when a queue is full.
    pub fn publish_rtcp(&self, track: usize, data: Bytes) {
        if track >= self.tracks.len() {
            return;
        }
        let now = self.created.elapsed();
        let mut fanout = self.lock();
        if fanout.awaiting_source.get(track).copied().unwrap_or(false) {
            return;
        }
        let data = match fanout.rewriters.get(track) {
            Some(rewriter) => rewrite_sender_report(rewriter, data),
            None => data,
        };
        // A compound RTCP packet from a sender starts with its sender report.
        if data.get(1) == Some(&PT_SR) {
            if let Some(slot) = fanout.sender_reports.get_mut(track) {
                *slot = Some(data.clone());
            }
            if let Some(generator) = fanout.generators.get_mut(track) {
                generator.on_publisher_report(now);
            }
        }
        send_rtcp(&fanout.readers, track, &data);
    }

    /// Our sender report for a track at `now` (SR + SDES CNAME), reading the wall clock.
    fn generated_report(
        &self,
        generator: &mut SenderReportGenerator,
        now: Duration,
    ) -> Option<Bytes> {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let report = generator.report(now, wall)?;
        let ssrc = report.ssrc;
        let compound = [
            RtcpPacket::SenderReport(report),
            RtcpPacket::cname(ssrc, &self.cname),
        ];
        match RtcpPacket::write_compound(&compound) {
            Ok(data) => {
                tracing::trace!(%ssrc, "generated sender report");
                Some(data)
            }
            Err(e) => {
                tracing::warn!(%ssrc, error = %e, "cannot write a sender report");
                None
            }
        }
    }
}

/// Offers RTCP to every reader; dropped for a reader whose queue is full.
fn send_rtcp(readers: &[Reader], track: usize, data: &Bytes) {
    for reader in readers {
        let _ = reader.tx.try_send(Outgoing {
            track,
            rtcp: true,
            data: data.clone(),
        });
    }
}

/// A sender report with the SSRC and RTP timestamp readers see (after a publisher change);
/// untouched while the rewriter passes packets through.
fn rewrite_sender_report(rewriter: &RtpRewriter, data: Bytes) -> Bytes {
    let Some(ssrc) = rewriter.output_ssrc() else {
        return data;
    };
    if data.len() < 20 || data.get(1) != Some(&200) {
        return data;
    }
    let source_ssrc = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
    let ts = u32::from_be_bytes([data[16], data[17], data[18], data[19]]);
    let mapped = rewriter.map_timestamp(ts);
    if source_ssrc == ssrc.0 && mapped == ts {
        return data;
    }
    let mut buf = bytes::BytesMut::from(&data[..]);
    buf[4..8].copy_from_slice(&ssrc.0.to_be_bytes());
    buf[16..20].copy_from_slice(&mapped.to_be_bytes());
    buf.freeze()
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
