//! One RTSP session (RFC 2326 §A.1): its role, state, transport per track and timers.

use std::fmt;
use std::time::{Duration, Instant};

use crate::PathName;
use crate::rtsp::{LowerTransport, Target};

/// A session id as sent in the `Session` header.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(String);

impl SessionId {
    pub fn new(id: impl Into<String>) -> Self {
        SessionId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a session does with its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// After ANNOUNCE: `target` is the announced URL target and `controls` the tracks'
    /// `a=control` values, for matching SETUP URLs.
    Publish {
        target: Target,
        controls: Vec<Option<String>>,
    },
    Read,
}

/// RFC 2326 server states. A publisher is `Init` until its first SETUP; PAUSE returns a
/// reader to `Ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Init,
    Ready,
    Playing,
    Recording,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Init => "init",
            State::Ready => "ready",
            State::Playing => "playing",
            State::Recording => "recording",
        }
    }
}

/// How one track's packets travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackTransport {
    /// `$` frames on the RTSP connection: RTP on `rtp`, RTCP on `rtp + 1`.
    Interleaved { rtp: u8 },
    /// UDP unicast to or from the client's RTP and RTCP ports.
    Udp { client: (u16, u16) },
}

impl TrackTransport {
    pub fn lower(self) -> LowerTransport {
        match self {
            TrackTransport::Interleaved { .. } => LowerTransport::Tcp,
            TrackTransport::Udp { .. } => LowerTransport::Udp,
        }
    }
}

/// Why a session ended on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// No request (and, for a UDP reader, no RTCP) within the session timeout.
    Timeout,
    /// A UDP publisher sent nothing within the read timeout.
    NoUdpPackets,
}

impl Expiry {
    pub fn as_str(self) -> &'static str {
        match self {
            Expiry::Timeout => "session timed out",
            Expiry::NoUdpPackets => "no UDP packets received recently",
        }
    }
}

/// One session's protocol state. Owned by the [`super::Connection`] it is attached to, or
/// by the driver while parked between connections (a UDP reader whose connection closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    id: SessionId,
    path: PathName,
    role: Role,
    state: State,
    /// Per track, once set up. All set-up tracks share one lower transport.
    tracks: Vec<Option<TrackTransport>>,
    timeout: Duration,
    read_timeout: Duration,
    last_request: Instant,
    /// Latest media from the client: a UDP publisher's packets, a reader's RTCP.
    last_media: Instant,
    /// Whether PLAY ever succeeded (a paused UDP reader may outlive its connection).
    played: bool,
}

impl Session {
    pub(super) fn new(
        id: SessionId,
        path: PathName,
        role: Role,
        tracks: usize,
        timeouts: (Duration, Duration),
        now: Instant,
    ) -> Self {
        let state = match role {
            Role::Publish { .. } => State::Init,
            Role::Read => State::Ready,
        };
        Session {
            id,
            path,
            role,
            state,
            tracks: vec![None; tracks],
            timeout: timeouts.0,
            read_timeout: timeouts.1,
            last_request: now,
            last_media: now,
            played: false,
        }
    }

    pub fn id(&self) -> &SessionId {
        &self.id
    }

    pub fn path(&self) -> &PathName {
        &self.path
    }

    pub fn role(&self) -> &Role {
        &self.role
    }

    pub fn is_publisher(&self) -> bool {
        matches!(self.role, Role::Publish { .. })
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Per track: how it was set up.
    pub fn tracks(&self) -> &[Option<TrackTransport>] {
        &self.tracks
    }

    pub fn track(&self, track: usize) -> Option<TrackTransport> {
        self.tracks.get(track).copied().flatten()
    }

    /// The lower transport of the set-up tracks, if any is set up.
    pub fn lower(&self) -> Option<LowerTransport> {
        self.tracks.iter().flatten().next().map(|t| t.lower())
    }

    /// The RTP channel of an interleaved track.
    pub fn channel(&self, track: usize) -> Option<u8> {
        match self.track(track) {
            Some(TrackTransport::Interleaved { rtp }) => Some(rtp),
            _ => None,
        }
    }

    pub fn all_set_up(&self) -> bool {
        self.tracks.iter().all(Option::is_some)
    }

    /// Whether the session carries media now.
    pub fn is_streaming(&self) -> bool {
        matches!(self.state, State::Playing | State::Recording)
    }

    /// A UDP reader that has played goes on without its connection (some clients close it
    /// after PLAY); everything else ends with the connection.
    pub fn outlives_connection(&self) -> bool {
        self.role == Role::Read && self.lower() == Some(LowerTransport::Udp) && self.played
    }

    /// A request naming the session (or on its connection) arrived.
    pub fn touch(&mut self, now: Instant) {
        self.last_request = self.last_request.max(now);
    }

    /// Media from the client at `at`: keeps a UDP session alive.
    pub fn media(&mut self, at: Instant) {
        self.last_media = self.last_media.max(at);
    }

    /// When the session expires unless something happens first; `None` while the
    /// connection's liveness decides (TCP streaming).
    pub fn deadline(&self) -> Option<Instant> {
        let udp = self.lower() == Some(LowerTransport::Udp);
        match self.state {
            State::Recording if udp => Some(self.last_media + self.read_timeout),
            State::Playing if udp => Some(self.last_request.max(self.last_media) + self.timeout),
            State::Recording | State::Playing => None,
            State::Init | State::Ready => Some(self.last_request + self.timeout),
        }
    }

    /// Whether the session has expired at `now`, and why.
    pub fn expired(&self, now: Instant) -> Option<Expiry> {
        let deadline = self.deadline()?;
        if now < deadline {
            return None;
        }
        let udp_publisher = self.state == State::Recording;
        Some(if udp_publisher {
            Expiry::NoUdpPackets
        } else {
            Expiry::Timeout
        })
    }

    pub(super) fn set_track(&mut self, track: usize, transport: TrackTransport) {
        if let Some(slot) = self.tracks.get_mut(track) {
            *slot = Some(transport);
        }
        if self.state == State::Init && self.tracks.iter().any(Option::is_some) {
            self.state = State::Ready;
        }
    }

    pub(super) fn set_state(&mut self, state: State, now: Instant) {
        if state == State::Playing {
            self.played = true;
        }
        if self.is_streaming() != matches!(state, State::Playing | State::Recording) {
            // Media timers restart with streaming, or a silent past would expire it at once.
            self.last_media = now;
        }
        self.state = state;
    }
}
