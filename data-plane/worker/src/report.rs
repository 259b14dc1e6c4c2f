//! What the worker reports as really running, in domain types. The media layer implements
//! [`ReportSource`]; the agent turns its answer into a `WorkerReport` at the gRPC edge.

use std::net::SocketAddr;

use chrono::{DateTime, Utc};
use streamplane_proto::v1 as pb;

/// Supplies the running paths and counters for each report. Called once per heartbeat from the
/// agent's task: keep it cheap and non-blocking (read atomics or a snapshot, take no long locks).
pub trait ReportSource: Send + Sync + 'static {
    fn runtime(&self) -> Runtime;
}

/// Any `Fn() -> Runtime` closure is a source.
impl<F> ReportSource for F
where
    F: Fn() -> Runtime + Send + Sync + 'static,
{
    fn runtime(&self) -> Runtime {
        self()
    }
}

/// The source until the media layer exists: nothing runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct NothingRunning;

impl ReportSource for NothingRunning {
    fn runtime(&self) -> Runtime {
        Runtime::default()
    }
}

/// Everything running on the worker at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Runtime {
    pub paths: Vec<PathReport>,
    pub totals: Counters,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathReport {
    pub name: String,
    /// A publisher or source is up and streams are described.
    pub ready: bool,
    pub sessions: Vec<SessionReport>,
    pub counters: Counters,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionRole {
    Publisher,
    Reader,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionReport {
    pub id: String,
    pub role: SessionRole,
    /// e.g. `rtsp`, `webrtc`, `hls`.
    pub protocol: &'static str,
    pub remote_address: SocketAddr,
    /// `None` for an anonymous client.
    pub username: Option<String>,
    /// e.g. `udp`, `tcp`, `multicast`.
    pub transport: &'static str,
    pub counters: Counters,
    pub started_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub packets_received: u64,
    pub packets_sent: u64,
    pub packets_lost: u64,
    pub frames_dropped: u64,
}

pub(crate) fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        // Always below 2e9 (leap seconds included), so it fits.
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(i32::MAX),
    }
}

impl From<Counters> for pb::Counters {
    fn from(c: Counters) -> Self {
        pb::Counters {
            bytes_received: c.bytes_received,
            bytes_sent: c.bytes_sent,
            packets_received: c.packets_received,
            packets_sent: c.packets_sent,
            packets_lost: c.packets_lost,
            frames_dropped: c.frames_dropped,
        }
    }
}

impl From<SessionReport> for pb::MediaSession {
    fn from(s: SessionReport) -> Self {
        let role = match s.role {
            SessionRole::Publisher => pb::SessionRole::Publisher,
            SessionRole::Reader => pb::SessionRole::Reader,
        };
        pb::MediaSession {
            id: s.id,
            role: role.into(),
            protocol: s.protocol.to_string(),
            remote_address: s.remote_address.to_string(),
            username: s.username.unwrap_or_default(),
            transport: s.transport.to_string(),
            counters: Some(s.counters.into()),
            started_at: Some(timestamp(s.started_at)),
        }
    }
}

impl From<PathReport> for pb::PathStatus {
    fn from(p: PathReport) -> Self {
        pb::PathStatus {
            name: p.name,
            ready: p.ready,
            sessions: p.sessions.into_iter().map(Into::into).collect(),
            counters: Some(p.counters.into()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn converts_to_the_wire_format() {
        let started_at = DateTime::from_timestamp(1_700_000_000, 5).unwrap();
        let source = move || Runtime {
            paths: vec![PathReport {
                name: "cam1".into(),
                ready: true,
                sessions: vec![SessionReport {
                    id: "s1".into(),
                    role: SessionRole::Reader,
                    protocol: "rtsp",
                    remote_address: "10.0.0.9:50000".parse().unwrap(),
                    username: None,
                    transport: "tcp",
                    counters: Counters {
                        bytes_sent: 10,
                        ..Counters::default()
                    },
                    started_at,
                }],
                counters: Counters::default(),
            }],
            totals: Counters::default(),
        };
        let runtime = ReportSource::runtime(&source);
        let path: pb::PathStatus = runtime.paths[0].clone().into();
        let session = &path.sessions[0];
        assert_eq!(session.role, pb::SessionRole::Reader as i32);
        assert_eq!(session.remote_address, "10.0.0.9:50000");
        assert_eq!(session.username, "");
        assert_eq!(session.counters.unwrap().bytes_sent, 10);
        assert_eq!(
            session.started_at,
            Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 5
            })
        );
        assert_eq!(NothingRunning.runtime(), Runtime::default());
    }
}
