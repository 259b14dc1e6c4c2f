//! The media layer's running state: which stream is published on which path, resolved against
//! the current desired state; and the [`ReportSource`] that reports it.
//!
//! Architecture invariant: a path has at most one publisher. A second one either replaces the
//! first (whose stream is closed, ending its readers) or is refused, per the path's
//! `override_publisher`.

pub mod stream;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use streamplane_media_core::PathName;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::report::{Counters, PathReport, ReportSource, Runtime, SessionRole};
use crate::state::{AppliedState, PathConfig, Source};
pub use stream::{Outgoing, SessionInfo, Stream, SubscribeError, Subscription};

/// Why a publisher cannot take a path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("path {path} is not configured")]
    UnknownPath { path: String },
    #[error("path {path} takes its stream from a URL; it cannot be published to")]
    NotPublishable { path: String },
    #[error("someone is already publishing to path {path} and overriding is disabled for it")]
    AlreadyPublishing { path: String },
}

/// Paths and their streams, shared by every RTSP connection.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    desired: watch::Receiver<Arc<AppliedState>>,
    streams: Mutex<HashMap<PathName, Arc<Stream>>>,
}

impl Registry {
    pub fn new(desired: watch::Receiver<Arc<AppliedState>>) -> Self {
        Registry {
            inner: Arc::new(Inner {
                desired,
                streams: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The current desired state (cheap clone of an `Arc`).
    pub fn desired(&self) -> Arc<AppliedState> {
        Arc::clone(&self.inner.desired.borrow())
    }

    fn streams(&self) -> MutexGuard<'_, HashMap<PathName, Arc<Stream>>> {
        self.inner
            .streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The configuration of `path`: exact name, patterns, then the catch-all (see `find_path`).
    pub fn resolve(&self, path: &PathName) -> Option<PathConfig> {
        let applied = self.desired();
        applied.desired.find_path(path).cloned()
    }

    /// Makes `stream` the publisher's stream on `path` (not yet ready for readers). Returns
    /// the stream the publisher must publish into: `stream`, or the stream of a publisher that
    /// left within the path's grace period when the tracks match (its readers continue).
    pub fn claim(&self, path: &PathName, stream: Arc<Stream>) -> Result<Arc<Stream>, PublishError> {
        let name = || path.as_str().to_owned();
        let config = self
            .resolve(path)
            .ok_or_else(|| PublishError::UnknownPath { path: name() })?;
        if !matches!(config.source, Source::Publisher) {
            return Err(PublishError::NotPublishable { path: name() });
        }
        let mut streams = self.streams();
        if let Some(old) = streams.get(path)
            && old.is_orphaned()
        {
            if old.compatible(stream.tracks()) {
                tracing::info!(
                    path = %path.as_str(),
                    readers = old.reader_count(),
                    "publisher back within the grace period; readers continue"
                );
                old.adopt(stream.publisher());
                return Ok(Arc::clone(old));
            }
            tracing::info!(
                path = %path.as_str(),
                "new publisher's tracks differ from the previous one's; closing its readers"
            );
            old.close();
            streams.remove(path);
        }
        if let Some(old) = streams.get(path) {
            if !config.override_publisher {
                return Err(PublishError::AlreadyPublishing { path: name() });
            }
            tracing::info!(
                path = %path.as_str(),
                old = %old.publisher().remote,
                new = %stream.publisher().remote,
                "publisher replaced"
            );
            old.close();
        }
        streams.insert(path.clone(), Arc::clone(&stream));
        Ok(stream)
    }

    /// Removes `stream` from `path` if it is still the one there, and closes it; or, when the
    /// path has a publisher grace period and the stream has readers, keeps it (and them) for
    /// a new publisher until the grace expires. Needs a Tokio runtime for the grace timer.
    pub fn release(&self, path: &PathName, stream: &Arc<Stream>) {
        let grace = self
            .resolve(path)
            .map_or(std::time::Duration::ZERO, |c| c.publisher_grace);
        let mut streams = self.streams();
        let current = streams.get(path).is_some_and(|s| Arc::ptr_eq(s, stream));
        if current
            && !grace.is_zero()
            && stream.reader_count() > 0
            && !stream.closed().is_cancelled()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let generation = stream.orphan();
            drop(streams);
            tracing::info!(
                path = %path.as_str(),
                grace_ms = grace.as_millis() as u64,
                "publisher left; readers wait for it within the grace period"
            );
            let (registry, path, stream) = (self.clone(), path.clone(), Arc::clone(stream));
            runtime.spawn(async move {
                tokio::time::sleep(grace).await;
                registry.expire(&path, &stream, generation);
            });
            return;
        }
        if current {
            streams.remove(path);
        }
        drop(streams);
        stream.close();
    }

    /// The grace period of an orphaned stream ran out: closes it unless a publisher took it.
    fn expire(&self, path: &PathName, stream: &Arc<Stream>, generation: u64) {
        let mut streams = self.streams();
        if !stream.orphaned_since(generation) {
            return;
        }
        if streams.get(path).is_some_and(|s| Arc::ptr_eq(s, stream)) {
            streams.remove(path);
        }
        drop(streams);
        tracing::info!(path = %path.as_str(), "publisher grace period expired; readers closed");
        stream.close();
    }

    /// Closes every session (publisher or reader) whose id is in `ids`: readers are detached
    /// at once and every kicked session's connection closes (see `SessionInfo::kicked`).
    pub fn kick(&self, ids: &HashSet<String>) -> usize {
        if ids.is_empty() {
            return 0;
        }
        let streams: Vec<Arc<Stream>> = self.streams().values().map(Arc::clone).collect();
        let mut kicked = 0;
        for stream in streams {
            let publisher = stream.publisher();
            if ids.contains(&publisher.id) && !publisher.kicked.is_cancelled() {
                publisher.kicked.cancel();
                kicked += 1;
            }
            kicked += stream.kick_readers(ids);
        }
        kicked
    }

    /// Applies the kicked sessions of every new desired state until `cancel`. A client that
    /// reconnects gets a new session id, so a kick never outlives the session it named.
    pub async fn enforce_kicks(self, cancel: CancellationToken) {
        let mut desired = self.inner.desired.clone();
        loop {
            let ids = desired.borrow_and_update().desired.kicked_sessions.clone();
            let kicked = self.kick(&ids);
            if kicked > 0 {
                tracing::info!(kicked, "closed sessions kicked through the control plane");
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                changed = desired.changed() => if changed.is_err() {
                    return;
                },
            }
        }
    }

    /// The ready stream on `path`, for readers.
    pub fn stream(&self, path: &PathName) -> Option<Arc<Stream>> {
        self.streams()
            .get(path)
            .filter(|s| s.is_ready())
            .map(Arc::clone)
    }
}

impl ReportSource for Registry {
    fn runtime(&self) -> Runtime {
        let streams: Vec<(String, Arc<Stream>)> = self
            .streams()
            .iter()
            .map(|(name, s)| (name.as_str().to_owned(), Arc::clone(s)))
            .collect();
        let mut runtime = Runtime::default();
        for (name, stream) in streams {
            let mut sessions = vec![stream.publisher().report()];
            sessions.extend(stream.reader_reports());
            let mut counters = Counters::default();
            for s in &sessions {
                let c = &s.counters;
                match s.role {
                    SessionRole::Publisher => {
                        counters.bytes_received += c.bytes_received;
                        counters.packets_received += c.packets_received;
                    }
                    SessionRole::Reader => {
                        counters.bytes_sent += c.bytes_sent;
                        counters.packets_sent += c.packets_sent;
                        counters.frames_dropped += c.frames_dropped;
                    }
                }
            }
            add(&mut runtime.totals, &counters);
            runtime.paths.push(PathReport {
                name,
                ready: stream.is_ready(),
                sessions,
                counters,
            });
        }
        runtime.paths.sort_by(|a, b| a.name.cmp(&b.name));
        runtime
    }
}

fn add(total: &mut Counters, c: &Counters) {
    total.bytes_received += c.bytes_received;
    total.bytes_sent += c.bytes_sent;
    total.packets_received += c.packets_received;
    total.packets_sent += c.packets_sent;
    total.packets_lost += c.packets_lost;
    total.frames_dropped += c.frames_dropped;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::state::DesiredState;
    use streamplane_media_core::rtp::{RtpHeader, RtpPacket, Ssrc};
    use streamplane_media_core::sdp::SessionDescription;
    use tokio::sync::mpsc;

    const SDP: &[u8] = b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:streamid=0\r\n";

    fn registry(override_publisher: bool) -> Registry {
        registry_with(override_publisher, std::time::Duration::ZERO)
    }

    fn registry_with(override_publisher: bool, publisher_grace: std::time::Duration) -> Registry {
        let mut state = DesiredState::standalone_default();
        let rules: Vec<_> = state
            .paths
            .iter()
            .map(|(p, c)| {
                (
                    p.clone(),
                    PathConfig {
                        override_publisher,
                        publisher_grace,
                        ..c.clone()
                    },
                )
            })
            .collect();
        state.paths = streamplane_media_core::PathRules::new(rules).unwrap();
        let (_tx, rx) = watch::channel(Arc::new(AppliedState::initial(state)));
        Registry::new(rx)
    }

    fn stream() -> Arc<Stream> {
        stream_of(SDP)
    }

    fn stream_of(sdp: &[u8]) -> Arc<Stream> {
        let tracks = SessionDescription::parse(sdp).unwrap().tracks;
        let info = SessionInfo::new(
            "p".into(),
            SessionRole::Publisher,
            "127.0.0.1:1".parse().unwrap(),
            None,
        );
        Arc::new(Stream::new(tracks, info))
    }

    /// An access unit of `packets` packets: an IDR (FU-A) when `key`, else a P slice.
    fn frame(seq: &mut u16, ts: u32, key: bool, packets: usize) -> Vec<RtpPacket> {
        frame_from(Ssrc(1), seq, ts, key, packets)
    }

    fn frame_from(ssrc: Ssrc, seq: &mut u16, ts: u32, key: bool, packets: usize) -> Vec<RtpPacket> {
        (0..packets)
            .map(|i| {
                let nal = if key { 5 } else { 1 };
                let start = if i == 0 { 0x80 } else { 0 };
                let end = if i + 1 == packets { 0x40 } else { 0 };
                let payload = [0x7c, start | end | nal, 0xaa, 0xbb];
                let header = RtpHeader {
                    marker: i + 1 == packets,
                    payload_type: 96,
                    sequence_number: *seq,
                    timestamp: ts,
                    ssrc,
                    csrcs: Vec::new(),
                    extension: None,
                    padding: 0,
                };
                *seq = seq.wrapping_add(1);
                RtpPacket::new(&header, &payload).unwrap()
            })
            .collect()
    }

    #[test]
    fn one_publisher_per_path_unless_override() {
        let path: PathName = "cam".parse().unwrap();
        let strict = registry(false);
        let (a, b) = (stream(), stream());
        strict.claim(&path, Arc::clone(&a)).unwrap();
        assert!(matches!(
            strict.claim(&path, Arc::clone(&b)),
            Err(PublishError::AlreadyPublishing { .. })
        ));
        assert!(strict.stream(&path).is_none(), "not ready before RECORD");
        a.set_ready();
        assert!(strict.stream(&path).is_some());

        let lenient = registry(true);
        lenient.claim(&path, Arc::clone(&a)).unwrap();
        lenient.claim(&path, Arc::clone(&b)).unwrap();
        assert!(a.closed().is_cancelled(), "the replaced stream is closed");
        lenient.release(&path, &a);
        assert!(
            lenient.runtime().paths.len() == 1,
            "releasing the old one keeps the new"
        );
    }

    #[test]
    fn kicked_sessions_are_signalled_and_readers_detached() {
        let path: PathName = "cam".parse().unwrap();
        let registry = registry(true);
        let s = stream();
        registry.claim(&path, Arc::clone(&s)).unwrap();
        s.set_ready();
        let reader = |id: &str| {
            SessionInfo::new(
                id.into(),
                SessionRole::Reader,
                "127.0.0.1:2".parse().unwrap(),
                None,
            )
        };
        let (r1, r2) = (reader("r1"), reader("r2"));
        let mut sub1 = s.subscribe(Arc::clone(&r1), None).unwrap();
        let _sub2 = s.subscribe(Arc::clone(&r2), None).unwrap();

        let ids = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<HashSet<_>>();
        assert_eq!(registry.kick(&ids(&[])), 0);
        assert_eq!(registry.kick(&ids(&["r1", "unknown"])), 1);
        assert!(r1.kicked.is_cancelled());
        assert!(!r2.kicked.is_cancelled());
        assert!(
            matches!(
                sub1.rx.try_recv(),
                Err(mpsc::error::TryRecvError::Disconnected)
            ),
            "the kicked reader's queue is closed"
        );
        assert_eq!(s.reader_count(), 1);
        assert!(!s.publisher().kicked.is_cancelled());

        assert_eq!(registry.kick(&ids(&["p", "r1"])), 1, "r1 is gone already");
        assert!(s.publisher().kicked.is_cancelled());
        assert_eq!(registry.kick(&ids(&["p"])), 0, "kicked once");
    }

    #[test]
    fn slow_reader_drops_whole_frames_and_new_reader_starts_at_keyframe() {
        let s = stream();
        s.set_ready();
        let mut seq = 0;
        for p in frame(&mut seq, 0, true, 3) {
            s.publish(0, &p);
        }
        for p in frame(&mut seq, 3000, false, 2) {
            s.publish(0, &p);
        }
        let info = SessionInfo::new(
            "r".into(),
            SessionRole::Reader,
            "127.0.0.1:2".parse().unwrap(),
            None,
        );
        let mut sub = s.subscribe(Arc::clone(&info), None).unwrap();
        assert_eq!(sub.first[0], Some((0, 0)), "starts at the cached keyframe");
        let mut got = Vec::new();
        while let Ok(p) = sub.rx.try_recv() {
            got.push(p);
        }
        // The stream's own sender report, cached from the first packet, comes first.
        assert!(got[0].rtcp, "{got:?}");
        assert!(got[1..].iter().all(|o| !o.rtcp));
        assert_eq!(got.len() - 1, 5, "the whole cached GOP");

        // Never read again: the publisher goes on, the reader's queue fills, frames drop.
        let mut ts = 6000;
        for i in 0..2000 {
            for p in frame(&mut seq, ts, i % 30 == 0, 4) {
                s.publish(0, &p);
            }
            ts += 3000;
        }
        let counters = info.counters.snapshot();
        assert!(counters.frames_dropped > 0, "{counters:?}");
        // RTP only: a slow run may have queued a periodic sender report too.
        let queued = std::iter::from_fn(|| sub.rx.try_recv().ok())
            .filter(|o| !o.rtcp)
            .count();
        assert!(queued <= stream::READER_QUEUE + 5, "bounded: {queued}");
        assert_eq!(queued % 4, 0, "only whole frames are queued: {queued}");

        let report = Registry::runtime(&{
            let r = registry(true);
            r.claim(&"cam".parse().unwrap(), Arc::clone(&s)).unwrap();
            r
        });
        let sessions = &report.paths[0].sessions;
        assert_eq!(sessions.len(), 2);
        assert_eq!(sessions[1].transport, "tcp");
        assert!(sessions[1].counters.frames_dropped > 0);
    }

    fn reader(s: &Stream) -> Subscription {
        let info = SessionInfo::new(
            "r".into(),
            SessionRole::Reader,
            "127.0.0.1:2".parse().unwrap(),
            None,
        );
        s.subscribe(info, None).unwrap()
    }

    fn drain(sub: &mut Subscription) -> Vec<RtpPacket> {
        std::iter::from_fn(|| sub.rx.try_recv().ok())
            .filter(|o| !o.rtcp)
            .map(|o| RtpPacket::parse(o.data).unwrap())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn readers_continue_when_the_publisher_returns_within_the_grace() {
        let path: PathName = "cam".parse().unwrap();
        let reg = registry_with(false, std::time::Duration::from_secs(5));
        let a = reg.claim(&path, stream()).unwrap();
        a.set_ready();
        let mut seq = 100;
        for p in frame_from(Ssrc(1), &mut seq, 1000, true, 2) {
            a.publish(0, &p);
        }
        let mut sub = reader(&a);
        let first = drain(&mut sub);
        assert_eq!(first.len(), 2);

        // The publisher leaves: the reader stays, new readers are refused meanwhile.
        reg.release(&path, &a);
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        assert!(!a.closed().is_cancelled(), "readers wait within the grace");
        assert!(reg.stream(&path).is_none(), "not ready for new readers");

        // A new publisher with the same tracks, another SSRC and numbering, takes over.
        let b = reg.claim(&path, stream()).unwrap();
        assert!(
            Arc::ptr_eq(&a, &b),
            "the new publisher publishes into the old stream"
        );
        b.set_ready();
        let mut seq2 = 40000;
        for p in frame_from(Ssrc(2), &mut seq2, 777, false, 1) {
            b.publish(0, &p); // not a keyframe: the reader waits for one
        }
        for p in frame_from(Ssrc(2), &mut seq2, 3777, true, 2) {
            b.publish(0, &p);
        }
        let got = drain(&mut sub);
        assert_eq!(got.len(), 2, "resumes at the new publisher's keyframe");
        let last = first.last().unwrap();
        assert!(
            got.iter().all(|p| p.ssrc() == Ssrc(1)),
            "one SSRC for readers"
        );
        // The non-keyframe was rewritten too (seq 102), then dropped by the gate.
        assert_eq!(
            got[0].sequence_number(),
            last.sequence_number().wrapping_add(2)
        );
        assert_eq!(
            got[1].sequence_number(),
            got[0].sequence_number().wrapping_add(1)
        );
        assert!(
            got[0].timestamp().wrapping_sub(last.timestamp()) >= 3 * 90_000,
            "timestamps advance by the wall-clock gap"
        );

        // It leaves too and nobody returns: readers are closed when the grace expires.
        reg.release(&path, &b);
        tokio::time::sleep(std::time::Duration::from_millis(4900)).await;
        assert!(!a.closed().is_cancelled());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(a.closed().is_cancelled(), "closed after the grace");
        assert!(reg.runtime().paths.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn different_tracks_or_no_grace_close_the_readers() {
        let path: PathName = "cam".parse().unwrap();
        let reg = registry_with(false, std::time::Duration::from_secs(5));
        let a = reg.claim(&path, stream()).unwrap();
        a.set_ready();
        let _sub = reader(&a);
        reg.release(&path, &a);
        assert!(!a.closed().is_cancelled());
        const H265: &[u8] = b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H265/90000\r\na=control:streamid=0\r\n";
        let b = reg.claim(&path, stream_of(H265)).unwrap();
        assert!(!Arc::ptr_eq(&a, &b));
        assert!(a.closed().is_cancelled(), "other codec: readers closed");

        let none = registry_with(false, std::time::Duration::ZERO);
        let c = none.claim(&path, stream()).unwrap();
        let _sub = reader(&c);
        none.release(&path, &c);
        assert!(c.closed().is_cancelled(), "no grace: closed at once");
    }
}
