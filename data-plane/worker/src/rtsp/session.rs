//! Requests and the session state machine of one connection.
//!
//! Publish: ANNOUNCE → SETUP (one per track, `mode=record`) → RECORD.
//! Read: DESCRIBE (optional) → SETUP (one or more tracks) → PLAY.
//! RTP over TCP (interleaved) and, with UDP sockets, over UDP unicast (`client_port`); one
//! transport per session. Multicast SETUPs get 461.

use std::sync::Arc;

use bytes::Bytes;
use streamplane_media_core::rtsp::{
    HeaderError, LowerTransport, Method, Profile, RANGE_LIVE, Request, Response, RtpInfoEntry,
    RtspUrl, SessionHeader, StatusCode, TransportSpec, choose_transport, format_rtp_info, names,
    respond_to,
};
use streamplane_media_core::sdp::SessionDescription;
use streamplane_media_core::{Action, PathName};
use tracing::{debug, info, warn};

use super::auth::{Denied, Granted};
use super::conn::{Connection, Next, Role, SESSION_TIMEOUT, Session};
use super::udp::{Dest, ReaderLosses, Route, UdpReader, spawn_reader};
use crate::media::{PublishError, SessionInfo, Stream, SubscribeError};
use crate::report::SessionRole;

const PUBLIC: &str = "OPTIONS, DESCRIBE, ANNOUNCE, SETUP, PLAY, PAUSE, RECORD, GET_PARAMETER, SET_PARAMETER, TEARDOWN";

/// A refused request: the status and why (logged, and sent as a text body).
struct Refusal {
    status: StatusCode,
    reason: String,
    /// `WWW-Authenticate` values to send (401 only).
    challenge: Vec<String>,
}

fn refuse(status: StatusCode, reason: impl Into<String>) -> Refusal {
    Refusal {
        status,
        reason: reason.into(),
        challenge: Vec::new(),
    }
}

impl From<HeaderError> for Refusal {
    fn from(e: HeaderError) -> Self {
        refuse(e.status_code(), e.to_string())
    }
}

type Handled = Result<(Response, Next), Refusal>;

impl Connection {
    /// Answers one request; never fails, misuse becomes an error status.
    pub(super) async fn handle(&mut self, request: &Request) -> (Response, Next) {
        let method = request.method.clone();
        if let Some(answer) = self.foreign_session(request) {
            return answer;
        }
        let result = match self.check_session(request) {
            Err(refusal) => Err(refusal),
            Ok(()) => match method {
                Method::Options => Ok((
                    self.ok(request).with_header(names::PUBLIC, PUBLIC),
                    Next::Continue,
                )),
                Method::Describe => self.describe(request).await,
                Method::Announce => self.announce(request).await,
                Method::Setup => self.setup(request).await,
                Method::Play => self.play(request),
                Method::Record => self.record(request),
                Method::Pause => self.pause(request),
                Method::GetParameter | Method::SetParameter => {
                    Ok((self.ok(request), Next::Continue))
                }
                Method::Teardown => {
                    if let Some(reader) = self.session.as_ref().and_then(|s| s.udp_reader.as_ref())
                    {
                        reader.stop.cancel();
                    }
                    Ok((self.ok(request), Next::Close))
                }
                _ => Err(refuse(
                    StatusCode::NotImplemented,
                    format!("method {} is not supported", <&str>::from(&method)),
                )),
            },
        };
        match result {
            Ok(answer) => answer,
            Err(refusal) => {
                if refusal.status == StatusCode::Unauthorized {
                    debug!(method = <&str>::from(&method), "credentials requested");
                } else {
                    info!(
                        method = <&str>::from(&method),
                        status = u16::from(refusal.status),
                        reason = %refusal.reason,
                        "request refused"
                    );
                }
                let mut response = respond_to(request, refusal.status);
                if !refusal.challenge.is_empty() {
                    for value in refusal.challenge {
                        response = response.with_header(names::WWW_AUTHENTICATE, value);
                    }
                } else if !refusal.reason.is_empty() {
                    response = response
                        .with_header(names::CONTENT_TYPE, "text/plain")
                        .with_body(Bytes::from(refusal.reason));
                }
                (response, Next::Continue)
            }
        }
    }

    /// A request naming a playing UDP reader's session from another connection (or after its
    /// own closed): keep-alives keep it, TEARDOWN ends it.
    fn foreign_session(&self, request: &Request) -> Option<(Response, Next)> {
        let header = SessionHeader::from_headers(&request.headers).ok()??;
        if self.session.as_ref().is_some_and(|s| s.id == header.id) {
            return None;
        }
        let reader = self.shared.udp.as_ref()?.reader(&header.id)?;
        let response = match request.method {
            Method::Options | Method::GetParameter | Method::SetParameter => {
                reader.touch();
                respond_to(request, StatusCode::Ok)
            }
            Method::Teardown => {
                reader.stop.cancel();
                respond_to(request, StatusCode::Ok)
            }
            _ => respond_to(request, StatusCode::MethodNotValidInThisState),
        };
        Some((
            response.with_header(names::SESSION, header.to_string()),
            Next::Continue,
        ))
    }

    /// A `Session` header must name this connection's session.
    fn check_session(&self, request: &Request) -> Result<(), Refusal> {
        let Some(header) = SessionHeader::from_headers(&request.headers)? else {
            return Ok(());
        };
        match &self.session {
            Some(session) if session.id == header.id => Ok(()),
            _ => Err(refuse(
                StatusCode::SessionNotFound,
                format!("session {} does not exist on this connection", header.id),
            )),
        }
    }

    /// 200 with CSeq and, once there is one, the session.
    fn ok(&self, request: &Request) -> Response {
        let response = respond_to(request, StatusCode::Ok);
        match &self.session {
            Some(session) => response.with_header(
                names::SESSION,
                SessionHeader {
                    id: session.id.clone(),
                    timeout: Some(SESSION_TIMEOUT.as_secs().try_into().unwrap_or(60)),
                }
                .to_string(),
            ),
            None => response,
        }
    }

    fn url(request: &Request) -> Result<RtspUrl, Refusal> {
        let url = request
            .uri
            .as_ref()
            .ok_or_else(|| refuse(StatusCode::BadRequest, "request URL is *"))?;
        RtspUrl::from_url(url).map_err(|e| refuse(StatusCode::BadRequest, e.to_string()))
    }

    fn path_name(path: &str) -> Result<PathName, Refusal> {
        path.parse::<PathName>()
            .map_err(|e| refuse(StatusCode::BadRequest, format!("invalid path: {e}")))
    }

    /// Resolves and authorizes `path` for `action`; records the path in the span.
    async fn authorize(
        &mut self,
        request: &Request,
        path: &PathName,
        action: Action,
    ) -> Result<Granted, Refusal> {
        if !self.path_in_span {
            // Recording again would append a second value to the span.
            tracing::Span::current().record("path", path.as_str());
            self.path_in_span = true;
        }
        if self.shared.registry.resolve(path).is_none() {
            return Err(refuse(
                StatusCode::NotFound,
                format!("path {} is not configured", path.as_str()),
            ));
        }
        if let Some((_, _, granted)) = self
            .granted
            .iter()
            .find(|(p, a, _)| p == path && *a == action)
        {
            return Ok(granted.clone());
        }
        let applied = self.shared.registry.desired();
        let ip = self.peer.ip();
        match self
            .shared
            .auth
            .check(&applied.desired, action, path, ip, request)
            .await
        {
            Ok(granted) => {
                self.granted.push((path.clone(), action, granted.clone()));
                Ok(granted)
            }
            Err((user, reason)) => {
                if reason != Denied::NoCredentials {
                    warn!(
                        user = user.as_deref().unwrap_or(""),
                        ip = %ip,
                        path = path.as_str(),
                        action = %action,
                        reason = %reason,
                        "authentication failed"
                    );
                }
                Err(Refusal {
                    status: StatusCode::Unauthorized,
                    reason: String::new(),
                    challenge: self.shared.auth.challenges(&applied.desired, &reason),
                })
            }
        }
    }

    async fn describe(&mut self, request: &Request) -> Handled {
        let url = Self::url(request)?;
        let target = url
            .target(&request.method)
            .map_err(|e| refuse(StatusCode::BadRequest, e.to_string()))?;
        let path = Self::path_name(&target.path)?;
        self.authorize(request, &path, Action::Read).await?;
        let stream = self.shared.registry.stream(&path).ok_or_else(|| {
            refuse(
                StatusCode::NotFound,
                format!("no one is publishing to path {}", path.as_str()),
            )
        })?;
        let sdp = SessionDescription::generate(stream.tracks());
        let response = self
            .ok(request)
            .with_header(
                names::CONTENT_BASE,
                format!("{}/", url.url_for(&target.path)),
            )
            .with_header(names::CONTENT_TYPE, "application/sdp")
            .with_body(Bytes::from(sdp));
        Ok((response, Next::Continue))
    }

    async fn announce(&mut self, request: &Request) -> Handled {
        if self.session.is_some() {
            return Err(refuse(
                StatusCode::MethodNotValidInThisState,
                "this connection already has a session",
            ));
        }
        let url = Self::url(request)?;
        let target = url
            .target(&request.method)
            .map_err(|e| refuse(StatusCode::BadRequest, e.to_string()))?;
        let path = Self::path_name(&target.path)?;
        let user = self.authorize(request, &path, Action::Publish).await?;
        let sdp = SessionDescription::parse(&request.body)
            .map_err(|e| refuse(StatusCode::BadRequest, format!("invalid SDP: {e}")))?;
        let id = new_session_id();
        let info = SessionInfo::new(id.clone(), SessionRole::Publisher, self.peer, user);
        let tracks = sdp.tracks;
        let count = tracks.len();
        let stream = Arc::new(Stream::new(tracks, info.clone()));
        let stream = self.shared.registry.claim(&path, stream).map_err(|e| {
            let status = match e {
                PublishError::UnknownPath { .. } => StatusCode::NotFound,
                _ => StatusCode::BadRequest,
            };
            refuse(status, e.to_string())
        })?;
        let codecs: Vec<&str> = stream.tracks().iter().map(|t| t.codec.name()).collect();
        info!(session = %id, codecs = ?codecs, "publisher announced");
        self.session = Some(Session {
            id,
            path,
            info,
            stream,
            role: Role::Publish {
                target,
                recording: false,
            },
            channels: vec![None; count],
            udp_ports: vec![None; count],
            udp_routes: Vec::new(),
            udp_reader: None,
            losses: ReaderLosses::new(count),
        });
        Ok((self.ok(request), Next::Continue))
    }

    async fn setup(&mut self, request: &Request) -> Handled {
        let url = Self::url(request)?;
        let value = request
            .header(&names::TRANSPORT)
            .ok_or(HeaderError::Missing {
                header: "Transport",
            })?;
        let udp_available = self.shared.udp.is_some();
        let spec = choose_transport(value, |s| {
            let lower = match s.lower {
                LowerTransport::Tcp => true,
                LowerTransport::Udp => udp_available && s.client_port.is_some(),
            };
            lower && s.profile == Profile::Avp && !s.is_multicast()
        })
        .map_err(|e| match e {
            HeaderError::NoAcceptableTransport { .. } => refuse(
                StatusCode::UnsupportedTransport,
                "only RTP/AVP over TCP (interleaved) or UDP unicast (with client_port) \
                 is supported",
            ),
            other => other.into(),
        })?;
        let track = match &self.session {
            Some(Session {
                role:
                    Role::Publish {
                        target,
                        recording: false,
                    },
                stream,
                ..
            }) => {
                let controls = stream.tracks().iter().map(|t| t.control.as_deref());
                url.record_track(target, controls).ok_or_else(|| {
                    refuse(
                        StatusCode::BadRequest,
                        "SETUP URL names none of the announced tracks",
                    )
                })?
            }
            Some(Session {
                role: Role::Read { playing: false },
                ..
            })
            | None => {
                if spec.is_record() {
                    return Err(refuse(
                        StatusCode::MethodNotValidInThisState,
                        "SETUP with mode=record needs an ANNOUNCE first",
                    ));
                }
                self.setup_read(request, &url).await?
            }
            Some(_) => {
                return Err(refuse(
                    StatusCode::MethodNotValidInThisState,
                    "SETUP is not valid while streaming",
                ));
            }
        };
        if spec.lower == LowerTransport::Udp {
            return self.setup_udp(request, &spec, track);
        }
        let Some(session) = &mut self.session else {
            return Err(refuse(StatusCode::InternalServerError, "no session"));
        };
        if session.uses_udp() {
            return Err(refuse(
                StatusCode::UnsupportedTransport,
                "all tracks of a session must use one transport (this one uses UDP)",
            ));
        }
        let pair = match spec.interleaved {
            Some(pair) => pair,
            None => {
                let rtp = u8::try_from(track * 2)
                    .map_err(|_| refuse(StatusCode::BadRequest, "too many tracks"))?;
                (rtp, rtp.wrapping_add(1))
            }
        };
        let taken = session
            .channels
            .iter()
            .enumerate()
            .any(|(i, c)| i != track && *c == Some(pair.0));
        if taken || pair.1 != pair.0.wrapping_add(1) {
            return Err(refuse(
                StatusCode::BadRequest,
                format!("interleaved channels {}-{} are not usable", pair.0, pair.1),
            ));
        }
        if let Some(slot) = session.channels.get_mut(track) {
            *slot = Some(pair.0);
        }
        let mut answer = TransportSpec::new(Profile::Avp, LowerTransport::Tcp);
        answer.delivery = Some(streamplane_media_core::rtsp::Delivery::Unicast);
        answer.interleaved = Some(pair);
        answer.mode = spec.mode;
        let response = self
            .ok(request)
            .with_header(names::TRANSPORT, answer.to_string());
        Ok((response, Next::Continue))
    }

    /// The rest of a UDP SETUP of `track`: routes the client's ports to the session and answers
    /// with our ports.
    fn setup_udp(&mut self, request: &Request, spec: &TransportSpec, track: usize) -> Handled {
        let (Some(udp), Some(client)) = (self.shared.udp.clone(), spec.client_port) else {
            return Err(refuse(
                StatusCode::UnsupportedTransport,
                "UDP is not served",
            ));
        };
        let ip = self.peer.ip();
        let Some(session) = &mut self.session else {
            return Err(refuse(StatusCode::InternalServerError, "no session"));
        };
        if session.channels.iter().any(Option::is_some) {
            return Err(refuse(
                StatusCode::UnsupportedTransport,
                "all tracks of a session must use one transport (this one uses TCP)",
            ));
        }
        if client.0 == 0 || client.1 == 0 {
            return Err(refuse(
                StatusCode::BadRequest,
                "client_port must name two non-zero ports",
            ));
        }
        let route = match &session.role {
            Role::Publish { .. } => Route::Publish {
                stream: Arc::clone(&session.stream),
                track,
            },
            Role::Read { .. } => {
                let count = session.channels.len();
                let reader = session.udp_reader.get_or_insert_with(|| {
                    UdpReader::new(session.id.clone(), Arc::clone(&session.info), count)
                });
                Route::Read {
                    reader: Arc::clone(reader),
                    track,
                }
            }
        };
        if session.udp_ports.get(track).copied().flatten() != Some(client) {
            let guard = udp.register(ip, client, route).ok_or_else(|| {
                refuse(
                    StatusCode::BadRequest,
                    format!(
                        "client ports {}-{} of {ip} are already in use by another session",
                        client.0, client.1
                    ),
                )
            })?;
            session.udp_routes.push(guard);
        }
        if let Some(slot) = session.udp_ports.get_mut(track) {
            *slot = Some(client);
        }
        session
            .info
            .udp
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let mut answer = TransportSpec::new(Profile::Avp, LowerTransport::Udp);
        answer.delivery = Some(streamplane_media_core::rtsp::Delivery::Unicast);
        answer.client_port = Some(client);
        answer.server_port = Some(udp.ports);
        if let Role::Read { .. } = session.role {
            answer.ssrc = session.stream.ssrc(track);
        }
        answer.mode = spec.mode;
        let response = self
            .ok(request)
            .with_header(names::TRANSPORT, answer.to_string());
        Ok((response, Next::Continue))
    }

    /// SETUP of a track for reading; creates the read session on the first one.
    async fn setup_read(&mut self, request: &Request, url: &RtspUrl) -> Result<usize, Refusal> {
        let setup = url
            .setup_target()
            .map_err(|e| refuse(StatusCode::BadRequest, e.to_string()))?;
        let path = Self::path_name(&setup.target.path)?;
        let track = setup
            .track_id()
            .map_err(|e| refuse(StatusCode::BadRequest, e.to_string()))?;
        let user = self.authorize(request, &path, Action::Read).await?;
        if let Some(session) = &self.session {
            if session.path != path {
                return Err(refuse(
                    StatusCode::BadRequest,
                    "all tracks of a session must be of one path",
                ));
            }
        } else {
            let stream = self.shared.registry.stream(&path).ok_or_else(|| {
                refuse(
                    StatusCode::NotFound,
                    format!("no one is publishing to path {}", path.as_str()),
                )
            })?;
            let id = new_session_id();
            let info = SessionInfo::new(id.clone(), SessionRole::Reader, self.peer, user);
            let count = stream.tracks().len();
            self.session = Some(Session {
                id,
                path,
                info,
                stream,
                role: Role::Read { playing: false },
                channels: vec![None; count],
                udp_ports: vec![None; count],
                udp_routes: Vec::new(),
                udp_reader: None,
                losses: ReaderLosses::new(count),
            });
        }
        let count = self.session.as_ref().map_or(0, |s| s.channels.len());
        if track >= count {
            return Err(refuse(
                StatusCode::NotFound,
                format!("track {track} does not exist; the stream has {count}"),
            ));
        }
        Ok(track)
    }

    fn play(&mut self, request: &Request) -> Handled {
        let max_readers = match &self.session {
            Some(session) => self
                .shared
                .registry
                .resolve(&session.path)
                .and_then(|c| c.max_readers)
                .map(std::num::NonZeroU32::get),
            None => None,
        };
        let url = Self::url(request)?;
        let Some(session) = &mut self.session else {
            // A path nobody publishes to is "not found" whatever the state (like DESCRIBE).
            let published = url
                .target(&request.method)
                .ok()
                .and_then(|t| t.path.parse::<PathName>().ok())
                .is_some_and(|p| self.shared.registry.stream(&p).is_some());
            if !published {
                return Err(refuse(
                    StatusCode::NotFound,
                    "no one is publishing to this path",
                ));
            }
            return Err(refuse(
                StatusCode::MethodNotValidInThisState,
                "PLAY needs a SETUP first",
            ));
        };
        match session.role {
            Role::Read { playing: false } => {}
            Role::Read { playing: true } => return Ok((self.ok(request), Next::Continue)),
            Role::Publish { .. } => {
                return Err(refuse(
                    StatusCode::MethodNotValidInThisState,
                    "PLAY is not valid on a publishing session",
                ));
            }
        }
        let subscription = session
            .stream
            .subscribe(Arc::clone(&session.info), max_readers)
            .map_err(|e| match e {
                SubscribeError::Closed => refuse(StatusCode::NotFound, e.to_string()),
                SubscribeError::TooManyReaders { .. } => {
                    refuse(StatusCode::ServiceUnavailable, e.to_string())
                }
            })?;
        let base = url.url_for(session.path.as_str());
        let rtp_info: Vec<RtpInfoEntry> = (0..session.channels.len())
            .filter(|&i| session.is_set_up(i))
            .map(|i| {
                let first = subscription.first.get(i).copied().flatten();
                RtpInfoEntry {
                    url: format!("{base}/trackID={i}"),
                    seq: first.map(|(seq, _)| seq),
                    rtptime: first.map(|(_, ts)| ts),
                }
            })
            .collect();
        session.role = Role::Read { playing: true };
        match (&self.shared.udp, &session.udp_reader) {
            (Some(udp), Some(reader)) => {
                let ip = self.peer.ip();
                let dests = session
                    .udp_ports
                    .iter()
                    .map(|p| p.map(|client| Dest::new(ip, client)))
                    .collect();
                spawn_reader(
                    Arc::clone(udp),
                    Arc::clone(reader),
                    dests,
                    subscription.rx,
                    session.stream.closed().clone(),
                    std::mem::take(&mut session.udp_routes),
                    self.shared.shutdown.clone(),
                );
            }
            _ => {
                // The odd channel of each track carries the reader's receiver reports.
                let mut inbound = vec![None; 256];
                for (track, channel) in session.channels.iter().enumerate() {
                    if let Some(rtp) = channel {
                        inbound[usize::from(rtp.wrapping_add(1))] = Some((track, true));
                    }
                }
                self.inbound = inbound;
                self.queue = Some(subscription.rx);
            }
        }
        info!(session = %session.id, "reader started");
        let response = self
            .ok(request)
            .with_header(names::RANGE, RANGE_LIVE)
            .with_header(names::RTP_INFO, format_rtp_info(&rtp_info));
        Ok((response, Next::Continue))
    }

    /// PAUSE (RFC 2326 §10.6) of a playing TCP reader: it is detached from the stream (its
    /// queue dropped) and a later PLAY subscribes it again, from the next keyframe (the cached
    /// GOP) with a new `RTP-Info`. Publishers cannot pause (455, like MediaMTX).
    fn pause(&mut self, request: &Request) -> Handled {
        let Some(session) = &mut self.session else {
            return Err(refuse(StatusCode::SessionNotFound, "PAUSE needs a session"));
        };
        match session.role {
            Role::Read { playing: true } => {}
            Role::Read { playing: false } => return Ok((self.ok(request), Next::Continue)),
            Role::Publish { .. } => {
                return Err(refuse(
                    StatusCode::MethodNotValidInThisState,
                    "a publishing session cannot be paused",
                ));
            }
        }
        if session.udp_reader.is_some() {
            return Err(refuse(
                StatusCode::NotImplemented,
                "PAUSE of a UDP reader is not supported",
            ));
        }
        self.queue = None;
        session.stream.unsubscribe(&session.info);
        session.role = Role::Read { playing: false };
        info!(session = %session.id, "reader paused");
        Ok((self.ok(request), Next::Continue))
    }

    fn record(&mut self, request: &Request) -> Handled {
        let Some(session) = &mut self.session else {
            return Err(refuse(
                StatusCode::MethodNotValidInThisState,
                "RECORD needs ANNOUNCE and SETUP first",
            ));
        };
        match session.role {
            Role::Publish {
                recording: false, ..
            } => {}
            Role::Publish {
                recording: true, ..
            } => return Ok((self.ok(request), Next::Continue)),
            Role::Read { .. } => {
                return Err(refuse(
                    StatusCode::MethodNotValidInThisState,
                    "RECORD is not valid on a reading session",
                ));
            }
        }
        if (0..session.channels.len()).any(|i| !session.is_set_up(i)) {
            return Err(refuse(
                StatusCode::BadRequest,
                "not all announced tracks have been set up",
            ));
        }
        let mut inbound = vec![None; 256];
        for (track, channel) in session.channels.iter().enumerate() {
            if let Some(rtp) = channel {
                inbound[usize::from(*rtp)] = Some((track, false));
                inbound[usize::from(rtp.wrapping_add(1))] = Some((track, true));
            }
        }
        if let Role::Publish { recording, .. } = &mut session.role {
            *recording = true;
        }
        session.stream.set_ready();
        self.inbound = inbound;
        info!(session = %session.id, "publisher recording");
        Ok((self.ok(request), Next::Continue))
    }
}

fn new_session_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}
