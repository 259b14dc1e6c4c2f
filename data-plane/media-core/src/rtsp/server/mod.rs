//! The RTSP 1.0 server side of one connection (RFC 2326), sans-IO: its table of sessions,
//! their state machines, transport negotiation and timers.
//!
//! The driver feeds requests with the time ([`Connection::handle`]) and gets a [`Step`]:
//! either a reply to send, or an [`Intent`] (authorize and describe a path, claim it for a
//! publisher, subscribe a reader, ...) that needs the driver's I/O. The driver performs it
//! and reports the [`Outcome`] with [`Connection::complete`], which commits the transition
//! (or answers the driver's refusal) and returns the next step:
//!
//! ```text
//! let mut step = conn.handle(now, request);
//! let reply = loop {
//!     match step {
//!         Step::Reply(reply) => break reply,
//!         Step::Intent(pending) => {
//!             let outcome = perform(pending.intent()).await;
//!             step = conn.complete(now, pending, outcome);
//!         }
//!     }
//! };
//! ```
//!
//! Timers run on the caller's clock: [`Connection::poll_timeout`] is the next deadline and
//! [`Connection::handle_timeout`] ends what expired. Media activity the driver sees on its
//! sockets is reported with [`Connection::media`].
//!
//! TEARDOWN ends a session, not the connection: the client closes it (as with MediaMTX), and
//! a request that crossed the TEARDOWN on the wire still gets an answer (454).
//!
//! Several sessions may share a connection (a SETUP without `Session` header starts another
//! one), and a UDP reader's session may move to another connection: the driver parks it
//! when its connection closes ([`Connection::close`]) and hands it to the connection whose
//! request names it ([`Outcome::Adopt`]).

mod request;
mod session;

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::PathName;
use crate::rtsp::{
    HeaderError, Method, Request, Response, RtspUrl, SessionHeader, StatusCode, TransportSpec,
    UrlError, names, respond_to,
};

pub use session::{Expiry, Role, Session, SessionId, State, TrackTransport};

/// The methods we answer, for `Public`.
pub const PUBLIC: &str = "OPTIONS, DESCRIBE, ANNOUNCE, SETUP, PLAY, PAUSE, RECORD, \
GET_PARAMETER, SET_PARAMETER, TEARDOWN";

/// Server settings the machine needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// A session without a request (or, for UDP readers, RTCP) for this long ends; also the
    /// idle timeout of a connection without sessions. Sent as `;timeout=`.
    pub session_timeout: Duration,
    /// A recording UDP publisher without packets for this long ends (MediaMTX `readTimeout`).
    pub read_timeout: Duration,
    /// Whether RTP over UDP is served; otherwise UDP transports are refused (461).
    pub udp: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            session_timeout: Duration::from_secs(60),
            read_timeout: Duration::from_secs(10),
            udp: true,
        }
    }
}

/// A request the machine refuses on its own, with the status it answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("request URL is *")]
    NoUrl,
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("invalid path {path:?}")]
    Path { path: String },
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("session {id} does not exist")]
    UnknownSession { id: String },
    #[error("{method} needs a session")]
    NoSession { method: &'static str },
    #[error("several sessions on this connection; {method} needs a Session header")]
    AmbiguousSession { method: &'static str },
    #[error("{method} is not valid: {why}")]
    State {
        method: &'static str,
        why: &'static str,
    },
    #[error("all tracks of a session must be of one path (session {id} reads {path})")]
    Aggregate { id: SessionId, path: PathName },
    #[error("{why}")]
    UnsupportedTransport { why: &'static str },
    #[error("interleaved channels {rtp}-{rtcp} are not usable")]
    Channels { rtp: u8, rtcp: u8 },
    #[error("client ports {rtp}-{rtcp} are not usable")]
    ClientPorts { rtp: u16, rtcp: u16 },
    #[error("track {track} does not exist; the stream has {count}")]
    NoTrack { track: usize, count: usize },
    #[error("the driver answered {intent} with an unexpected outcome")]
    UnexpectedOutcome { intent: &'static str },
    #[error("SETUP URL names none of the announced tracks")]
    NoSuchTrack,
    #[error("not all announced tracks have been set up")]
    NotAllSetUp,
    #[error("method {method} is not supported")]
    NotImplemented { method: String },
}

impl RequestError {
    /// The status answered (RFC 2326 §7.1.1).
    pub fn status_code(&self) -> StatusCode {
        match self {
            Self::Header(e) => e.status_code(),
            Self::UnknownSession { .. } | Self::NoSession { .. } => StatusCode::SessionNotFound,
            Self::AmbiguousSession { .. } => StatusCode::SessionNotFound,
            Self::State { .. } => StatusCode::MethodNotValidInThisState,
            Self::Aggregate { .. } => StatusCode::AggregateOperationNotAllowed,
            Self::UnsupportedTransport { .. } => StatusCode::UnsupportedTransport,
            Self::NotImplemented { .. } => StatusCode::NotImplemented,
            Self::NoTrack { .. } => StatusCode::NotFound,
            Self::UnexpectedOutcome { .. } => StatusCode::InternalServerError,
            Self::NoUrl
            | Self::Url(_)
            | Self::Path { .. }
            | Self::Channels { .. }
            | Self::ClientPorts { .. }
            | Self::NoSuchTrack
            | Self::NotAllSetUp => StatusCode::BadRequest,
        }
    }
}

/// The driver's refusal of an intent: status, reason (sent as a text body) and, for 401,
/// the `WWW-Authenticate` values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub reason: String,
    pub challenge: Vec<String>,
}

impl Refusal {
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Refusal {
            status,
            reason: reason.into(),
            challenge: Vec::new(),
        }
    }
}

/// The effect a request needs from the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// Authorize reading `path` and describe its stream: [`Outcome::Sdp`].
    Describe { path: PathName },
    /// Authorize publishing to `path`, parse the SDP body and claim the path:
    /// [`Outcome::Announced`].
    Announce { path: PathName },
    /// Authorize reading `path` and set up `track` with `transport` for `session` (a new
    /// session when `None`: the driver picks its id and reports the track count):
    /// [`Outcome::SetUp`].
    SetupRead {
        session: Option<SessionId>,
        path: PathName,
        track: usize,
        transport: TrackTransport,
    },
    /// Set up a publisher's `track` (routes for UDP): [`Outcome::SetUp`].
    SetupRecord {
        session: SessionId,
        track: usize,
        transport: TrackTransport,
    },
    /// Subscribe a reader: [`Outcome::Playing`].
    Play { session: SessionId },
    /// Detach a playing reader from its stream: [`Outcome::Done`].
    Pause { session: SessionId },
    /// Start taking a publisher's packets: [`Outcome::Done`].
    Record { session: SessionId },
    /// End a session: [`Outcome::Done`].
    Teardown { session: SessionId },
    /// PLAY without a session: a path nobody publishes to is 404 whatever the state (like
    /// DESCRIBE), otherwise 455. [`Outcome::Done`] when it is published.
    Probe { path: PathName },
    /// A request names a session this connection does not have: the driver hands over a
    /// parked session ([`Outcome::Adopt`]), handles a keep-alive or TEARDOWN of a session
    /// attached elsewhere ([`Outcome::Done`]), or reports it unknown
    /// ([`Outcome::UnknownSession`]).
    Foreign { session: SessionId, method: Method },
}

/// What the driver reports after performing an [`Intent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// The stream's SDP.
    Sdp(String),
    /// The new publish session: its id and its tracks' `a=control` values.
    Announced {
        id: SessionId,
        controls: Vec<Option<String>>,
    },
    SetUp {
        /// For a new read session: its id and the stream's track count.
        new_session: Option<(SessionId, usize)>,
        /// Our RTP and RTCP ports, for UDP.
        server_port: Option<(u16, u16)>,
        /// The track's SSRC, for a reader.
        ssrc: Option<u32>,
    },
    /// Per track, the first packet's sequence number and RTP time (`RTP-Info`).
    Playing {
        first: Vec<Option<(u16, u32)>>,
    },
    Adopt(Box<Session>),
    UnknownSession,
    Refused(Refusal),
}

/// A response to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub response: Response,
    /// Why the request was refused, for the log; `None` when it succeeded.
    pub refused: Option<String>,
}

/// What to do next with a request.
#[derive(Debug)]
pub enum Step {
    Reply(Reply),
    Intent(Pending),
}

/// A request waiting for the driver to perform its intent.
#[derive(Debug)]
pub struct Pending {
    intent: Intent,
    request: Request,
    /// The URL of the request, when the reply needs it (Content-Base, RTP-Info).
    url: Option<RtspUrl>,
}

impl Pending {
    pub fn intent(&self) -> &Intent {
        &self.intent
    }

    pub fn request(&self) -> &Request {
        &self.request
    }
}

/// Sessions expired by [`Connection::handle_timeout`].
#[derive(Debug, Default)]
pub struct Timeouts {
    pub expired: Vec<(Session, Expiry)>,
    /// The connection should close: idle past the timeout without sessions, or its last
    /// session expired.
    pub close: bool,
}

/// Where an interleaved frame from the client goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inbound<'a> {
    pub session: &'a SessionId,
    pub track: usize,
    pub rtcp: bool,
    pub publisher: bool,
}

/// One RTSP connection's sessions and protocol state.
#[derive(Debug)]
pub struct Connection {
    config: Config,
    sessions: Vec<Session>,
    last_request: Instant,
}

impl Connection {
    pub fn new(config: Config, now: Instant) -> Self {
        Connection {
            config,
            sessions: Vec::new(),
            last_request: now,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn sessions(&self) -> &[Session] {
        &self.sessions
    }

    pub fn session(&self, id: &SessionId) -> Option<&Session> {
        self.sessions.iter().find(|s| s.id() == id)
    }

    fn session_mut(&mut self, id: &SessionId) -> Option<&mut Session> {
        self.sessions.iter_mut().find(|s| s.id() == id)
    }

    /// Whether any session carries media now.
    pub fn is_streaming(&self) -> bool {
        self.sessions.iter().any(Session::is_streaming)
    }

    /// Answers one request, or asks the driver for an effect first.
    pub fn handle(&mut self, now: Instant, request: Request) -> Step {
        self.last_request = self.last_request.max(now);
        // Any request on the connection is a sign of life for its sessions: some clients
        // send their keep-alive OPTIONS without a `Session` header.
        for session in &mut self.sessions {
            session.touch(now);
        }
        match self.dispatch(&request) {
            Ok(Dispatch::Reply(response)) => Step::Reply(Reply {
                response,
                refused: None,
            }),
            Ok(Dispatch::Intent(intent, url)) => Step::Intent(Pending {
                intent,
                request,
                url,
            }),
            Err(e) => Step::Reply(refused(&request, e.status_code(), e.to_string(), &[])),
        }
    }

    /// Commits `pending`'s transition with the driver's `outcome`.
    pub fn complete(&mut self, now: Instant, pending: Pending, outcome: Outcome) -> Step {
        let Pending {
            intent,
            request,
            url,
        } = pending;
        if let Outcome::Refused(refusal) = outcome {
            return Step::Reply(refused(
                &request,
                refusal.status,
                refusal.reason,
                &refusal.challenge,
            ));
        }
        match self.commit(now, &request, intent, url.as_ref(), outcome) {
            Ok(Committed::Reply(response)) => Step::Reply(Reply {
                response,
                refused: None,
            }),
            Ok(Committed::Again) => self.handle(now, request),
            Err(e) => Step::Reply(refused(&request, e.status_code(), e.to_string(), &[])),
        }
    }

    /// The route of an interleaved frame on `channel`: a recording publisher's RTP and
    /// RTCP, a playing reader's RTCP (receiver reports).
    pub fn inbound(&self, channel: u8) -> Option<Inbound<'_>> {
        self.sessions.iter().find_map(|s| {
            let publisher = match s.state() {
                State::Recording => true,
                State::Playing => false,
                _ => return None,
            };
            s.tracks().iter().enumerate().find_map(|(track, t)| {
                let Some(TrackTransport::Interleaved { rtp }) = t else {
                    return None;
                };
                let rtcp = *rtp != channel;
                let matches = (publisher && *rtp == channel) || rtp.wrapping_add(1) == channel;
                matches.then_some(Inbound {
                    session: s.id(),
                    track,
                    rtcp,
                    publisher,
                })
            })
        })
    }

    /// Media from the client for `session` at `at` (UDP RTP or RTCP, interleaved RTCP).
    pub fn media(&mut self, session: &SessionId, at: Instant) {
        if let Some(s) = self.session_mut(session) {
            s.media(at);
        }
    }

    /// The next instant at which [`Connection::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let sessions = self.sessions.iter().filter_map(Session::deadline).min();
        let idle = self
            .sessions
            .is_empty()
            .then(|| self.last_request + self.config.session_timeout);
        sessions.into_iter().chain(idle).min()
    }

    /// Removes the sessions expired at `now`; the driver ends them.
    pub fn handle_timeout(&mut self, now: Instant) -> Timeouts {
        let had_sessions = !self.sessions.is_empty();
        let mut expired = Vec::new();
        let mut kept = Vec::with_capacity(self.sessions.len());
        for session in self.sessions.drain(..) {
            match session.expired(now) {
                Some(why) => expired.push((session, why)),
                None => kept.push(session),
            }
        }
        self.sessions = kept;
        let idle = self.sessions.is_empty()
            && (had_sessions || now >= self.last_request + self.config.session_timeout);
        Timeouts {
            close: idle && (!expired.is_empty() || !had_sessions),
            expired,
        }
    }

    /// Ends a session on the driver's initiative (kicked, stream ended); returns it.
    pub fn remove(&mut self, id: &SessionId) -> Option<Session> {
        let index = self.sessions.iter().position(|s| s.id() == id)?;
        Some(self.sessions.remove(index))
    }

    /// The connection closed: every session, for the driver to end or park
    /// ([`Session::outlives_connection`]).
    pub fn close(&mut self) -> Vec<Session> {
        std::mem::take(&mut self.sessions)
    }
}

enum Dispatch {
    Reply(Response),
    Intent(Intent, Option<RtspUrl>),
}

enum Committed {
    Reply(Response),
    /// Handle the request again (after adopting its session).
    Again,
}

/// 200 with the session, when there is one.
fn ok(request: &Request, session: Option<&Session>) -> Response {
    let response = respond_to(request, StatusCode::Ok);
    match session {
        Some(s) => response.with_header(names::SESSION, session_header(s)),
        None => response,
    }
}

fn session_header(session: &Session) -> String {
    SessionHeader {
        id: session.id().to_string(),
        timeout: Some(u32::try_from(session.timeout().as_secs()).unwrap_or(u32::MAX)),
    }
    .to_string()
}

fn refused(request: &Request, status: StatusCode, reason: String, challenge: &[String]) -> Reply {
    let mut response = respond_to(request, status);
    if !challenge.is_empty() {
        for value in challenge {
            response = response.with_header(names::WWW_AUTHENTICATE, value.clone());
        }
    } else if !reason.is_empty() {
        response = response
            .with_header(names::CONTENT_TYPE, "text/plain")
            .with_body(Bytes::from(reason.clone()));
    }
    Reply {
        response,
        refused: Some(reason),
    }
}

fn method_name(method: &Method) -> &'static str {
    match method {
        Method::Describe => "DESCRIBE",
        Method::Announce => "ANNOUNCE",
        Method::GetParameter => "GET_PARAMETER",
        Method::Options => "OPTIONS",
        Method::Pause => "PAUSE",
        Method::Play => "PLAY",
        Method::PlayNotify => "PLAY_NOTIFY",
        Method::Redirect => "REDIRECT",
        Method::Setup => "SETUP",
        Method::SetParameter => "SET_PARAMETER",
        Method::Record => "RECORD",
        Method::Teardown => "TEARDOWN",
        Method::Extension(_) => "extension method",
    }
}

fn path_of(url: &RtspUrl, method: &Method) -> Result<PathName, RequestError> {
    let target = url.target(method)?;
    target
        .path_name()
        .map_err(|_| RequestError::Path { path: target.path })
}

fn url_of(request: &Request) -> Result<RtspUrl, RequestError> {
    let url = request.uri.as_ref().ok_or(RequestError::NoUrl)?;
    Ok(RtspUrl::from_url(url)?)
}

/// A transport offer the server takes: RTP/AVP, unicast, TCP or (when served, with
/// `client_port`) UDP.
fn acceptable(spec: &TransportSpec, udp: bool) -> bool {
    let lower = match spec.lower {
        crate::rtsp::LowerTransport::Tcp => true,
        crate::rtsp::LowerTransport::Udp => udp && spec.client_port.is_some(),
    };
    lower && spec.profile == crate::rtsp::Profile::Avp && !spec.is_multicast()
}

#[cfg(test)]
#[path = "scenario_tests.rs"]
mod scenario_tests;
