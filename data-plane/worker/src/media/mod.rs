//! The media layer's running state: which stream is published on which path, resolved against
//! the current desired state; and the [`ReportSource`] that reports it.
//!
//! Architecture invariant: a path has at most one publisher. A second one either replaces the
//! first (whose stream is closed, ending its readers) or is refused, per the path's
//! `override_publisher`.

pub mod stream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use streamplane_media_core::PathName;
use tokio::sync::watch;

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

    /// Makes `stream` the publisher's stream on `path` (not yet ready for readers).
    pub fn claim(&self, path: &PathName, stream: Arc<Stream>) -> Result<(), PublishError> {
        let name = || path.as_str().to_owned();
        let config = self
            .resolve(path)
            .ok_or_else(|| PublishError::UnknownPath { path: name() })?;
        if !matches!(config.source, Source::Publisher) {
            return Err(PublishError::NotPublishable { path: name() });
        }
        let mut streams = self.streams();
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
        streams.insert(path.clone(), stream);
        Ok(())
    }

    /// Removes `stream` from `path` if it is still the one there, and closes it.
    pub fn release(&self, path: &PathName, stream: &Arc<Stream>) {
        let mut streams = self.streams();
        if streams.get(path).is_some_and(|s| Arc::ptr_eq(s, stream)) {
            streams.remove(path);
        }
        drop(streams);
        stream.close();
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

    const SDP: &[u8] = b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:streamid=0\r\n";

    fn registry(override_publisher: bool) -> Registry {
        let mut state = DesiredState::standalone_default();
        let rules: Vec<_> = state
            .paths
            .iter()
            .map(|(p, c)| {
                (
                    p.clone(),
                    PathConfig {
                        override_publisher,
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
        let tracks = SessionDescription::parse(SDP).unwrap().tracks;
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
                    ssrc: Ssrc(1),
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
        assert_eq!(got.len(), 5, "the whole cached GOP");

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
        let queued = std::iter::from_fn(|| sub.rx.try_recv().ok()).count();
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
}
