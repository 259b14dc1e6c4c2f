//! The effects the RTSP session machine (media-core `rtsp::server`) asks for: authorization,
//! the path registry, subscribing readers, UDP routes and readers.
//!
//! Publish: ANNOUNCE → SETUP (one per track, `mode=record`) → RECORD.
//! Read: DESCRIBE (optional) → SETUP (one or more tracks) → PLAY ⇄ PAUSE.
//! The machine has already checked the request against the session's state and negotiated
//! the transport; what fails here is answered with the refusal's status.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use streamplane_media_core::rtsp::server::{
    Intent, Outcome, Pending, Refusal, SessionId, TrackTransport,
};
use streamplane_media_core::rtsp::{Method, Request, StatusCode};
use streamplane_media_core::sdp::SessionDescription;
use streamplane_media_core::{Action, PathName};
use tracing::{info, warn};

use super::auth::{Denied, Granted};
use super::conn::{Connection, Driven};
use super::udp::{Dest, LastSeen, ReaderLosses, Route, RouteGuard, Udp, UdpReader};
use crate::media::{PublishError, SessionInfo, Stream, SubscribeError};
use crate::report::SessionRole;

fn refuse(status: StatusCode, reason: impl Into<String>) -> Refusal {
    Refusal::new(status, reason)
}

fn not_published(path: &PathName) -> Refusal {
    refuse(
        StatusCode::NotFound,
        format!("no one is publishing to path {}", path.as_str()),
    )
}

impl Connection {
    /// Performs what the machine asks for; a failure is the refusal to answer with.
    pub(super) async fn perform(&mut self, pending: &Pending) -> Outcome {
        let request = pending.request();
        let result = match pending.intent() {
            Intent::Describe { path } => self.describe(request, path).await,
            Intent::Announce { path } => self.announce(request, path).await,
            Intent::SetupRead {
                session,
                path,
                track,
                transport,
            } => {
                self.setup_read(request, session.as_ref(), path, *track, *transport)
                    .await
            }
            Intent::SetupRecord {
                session,
                track,
                transport,
            } => self.setup_record(session, *track, *transport),
            Intent::Play { session } => self.play(session),
            Intent::Pause { session } => self.pause(session),
            Intent::Record { session } => self.record(session),
            Intent::Teardown { session } => {
                if let Some(index) = self.sessions.iter().position(|d| &d.id == session) {
                    self.queues.retain(|(q, _)| q != session);
                    let driven = self.sessions.swap_remove(index);
                    self.end(driven, "torn down");
                }
                Ok(Outcome::Done)
            }
            Intent::Probe { path } => match self.shared.registry.stream(path) {
                Some(_) => Ok(Outcome::Done),
                None => Err(not_published(path)),
            },
            Intent::Foreign { session, method } => Ok(self.foreign(session, method)),
        };
        result.unwrap_or_else(Outcome::Refused)
    }

    /// A request naming a session this connection does not have: a parked UDP reader moves
    /// here; one attached to another connection takes keep-alives and TEARDOWN.
    fn foreign(&mut self, id: &SessionId, method: &Method) -> Outcome {
        let Some(udp) = self.shared.udp.clone() else {
            return Outcome::UnknownSession;
        };
        if let Some((session, driven)) = udp.unpark(id) {
            info!(session = %id, "udp reader's session continued on another connection");
            self.sessions.push(driven);
            return Outcome::Adopt(Box::new(session));
        }
        let Some(reader) = udp.reader(id.as_str()) else {
            return Outcome::UnknownSession;
        };
        match method {
            Method::Options | Method::GetParameter | Method::SetParameter => {
                reader.seen.touch();
                Outcome::Done
            }
            Method::Teardown => {
                reader.stop.cancel();
                Outcome::Done
            }
            _ => Outcome::Refused(refuse(
                StatusCode::MethodNotValidInThisState,
                "the session is attached to another connection",
            )),
        }
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

    async fn describe(&mut self, request: &Request, path: &PathName) -> Result<Outcome, Refusal> {
        self.authorize(request, path, Action::Read).await?;
        let stream = self
            .shared
            .registry
            .stream(path)
            .ok_or_else(|| not_published(path))?;
        Ok(Outcome::Sdp(SessionDescription::generate(stream.tracks())))
    }

    async fn announce(&mut self, request: &Request, path: &PathName) -> Result<Outcome, Refusal> {
        let user = self.authorize(request, path, Action::Publish).await?;
        let sdp = SessionDescription::parse(&request.body)
            .map_err(|e| refuse(StatusCode::BadRequest, format!("invalid SDP: {e}")))?;
        let id = new_session_id();
        let info = SessionInfo::new(id.to_string(), SessionRole::Publisher, self.peer, user);
        let tracks = sdp.tracks;
        let count = tracks.len();
        let stream = Arc::new(Stream::new(tracks, info.clone()));
        let stream = self.shared.registry.claim(path, stream).map_err(|e| {
            let status = match e {
                PublishError::UnknownPath { .. } => StatusCode::NotFound,
                _ => StatusCode::BadRequest,
            };
            refuse(status, e.to_string())
        })?;
        let codecs: Vec<&str> = stream.tracks().iter().map(|t| t.codec.name()).collect();
        let controls = stream.tracks().iter().map(|t| t.control.clone()).collect();
        info!(session = %id, codecs = ?codecs, "publisher announced");
        self.sessions.push(Driven {
            id: id.clone(),
            path: path.clone(),
            info,
            stream,
            publisher: true,
            udp_routes: Vec::new(),
            udp_reader: None,
            seen: None,
            losses: ReaderLosses::new(count),
        });
        Ok(Outcome::Announced { id, controls })
    }

    /// SETUP of a track for reading; a new read session on its first one.
    async fn setup_read(
        &mut self,
        request: &Request,
        session: Option<&SessionId>,
        path: &PathName,
        track: usize,
        transport: TrackTransport,
    ) -> Result<Outcome, Refusal> {
        let user = self.authorize(request, path, Action::Read).await?;
        let mut new_session = None;
        let mut created = None;
        if session.is_none() {
            let stream = self
                .shared
                .registry
                .stream(path)
                .ok_or_else(|| not_published(path))?;
            let count = stream.tracks().len();
            if track >= count {
                return Err(refuse(
                    StatusCode::NotFound,
                    format!("track {track} does not exist; the stream has {count}"),
                ));
            }
            let id = new_session_id();
            let info = SessionInfo::new(id.to_string(), SessionRole::Reader, self.peer, user);
            new_session = Some((id.clone(), count));
            created = Some(Driven {
                id,
                path: path.clone(),
                info,
                stream,
                publisher: false,
                udp_routes: Vec::new(),
                udp_reader: None,
                seen: None,
                losses: ReaderLosses::new(count),
            });
        }
        let peer = self.peer;
        let udp = self.shared.udp.clone();
        let again = self.set_up_already(session, track, transport);
        let driven = match (created.as_mut(), session) {
            (Some(driven), _) => driven,
            (None, Some(id)) => self
                .driven_mut(id)
                .ok_or_else(|| refuse(StatusCode::SessionNotFound, "session is gone"))?,
            (None, None) => return Err(refuse(StatusCode::InternalServerError, "no session")),
        };
        let mut server_port = None;
        let mut ssrc = None;
        if let TrackTransport::Udp { client } = transport {
            let udp =
                udp.ok_or_else(|| refuse(StatusCode::UnsupportedTransport, "UDP is not served"))?;
            let reader = driven.udp_reader.get_or_insert_with(|| {
                UdpReader::new(
                    driven.id.to_string(),
                    Arc::clone(&driven.info),
                    driven.stream.tracks().len(),
                )
            });
            let route = Route::Read {
                reader: Arc::clone(reader),
                track,
            };
            if !again {
                driven
                    .udp_routes
                    .push(register_route(&udp, peer.ip(), client, route)?);
            }
            driven.info.udp.store(true, Ordering::Relaxed);
            reader.set_dest(track, Dest::new(peer.ip(), client));
            server_port = Some(udp.ports);
            ssrc = driven.stream.ssrc(track);
        }
        if let Some(driven) = created {
            self.sessions.push(driven);
        }
        Ok(Outcome::SetUp {
            new_session,
            server_port,
            ssrc,
        })
    }

    fn setup_record(
        &mut self,
        id: &SessionId,
        track: usize,
        transport: TrackTransport,
    ) -> Result<Outcome, Refusal> {
        let TrackTransport::Udp { client } = transport else {
            return Ok(Outcome::SetUp {
                new_session: None,
                server_port: None,
                ssrc: None,
            });
        };
        let peer = self.peer;
        let udp = self
            .shared
            .udp
            .clone()
            .ok_or_else(|| refuse(StatusCode::UnsupportedTransport, "UDP is not served"))?;
        if self.set_up_already(Some(id), track, transport) {
            // A repeated SETUP: the route is in place.
            return Ok(Outcome::SetUp {
                new_session: None,
                server_port: Some(udp.ports),
                ssrc: None,
            });
        }
        let driven = self
            .driven_mut(id)
            .ok_or_else(|| refuse(StatusCode::SessionNotFound, "session is gone"))?;
        let seen = Arc::clone(driven.seen.get_or_insert_with(LastSeen::new));
        let route = Route::Publish {
            stream: Arc::clone(&driven.stream),
            track,
            seen,
        };
        driven
            .udp_routes
            .push(register_route(&udp, peer.ip(), client, route)?);
        driven.info.udp.store(true, Ordering::Relaxed);
        Ok(Outcome::SetUp {
            new_session: None,
            server_port: Some(udp.ports),
            ssrc: None,
        })
    }

    /// Whether `track` of `session` is set up with `transport` already (a repeated SETUP).
    fn set_up_already(
        &self,
        session: Option<&SessionId>,
        track: usize,
        transport: TrackTransport,
    ) -> bool {
        session
            .and_then(|id| self.machine.session(id))
            .and_then(|s| s.track(track))
            == Some(transport)
    }

    fn play(&mut self, id: &SessionId) -> Result<Outcome, Refusal> {
        let shutdown = self.shared.shutdown.clone();
        let udp = self.shared.udp.clone();
        let registry = self.shared.registry.clone();
        let driven = self
            .driven_mut(id)
            .ok_or_else(|| refuse(StatusCode::SessionNotFound, "session is gone"))?;
        let max_readers = registry
            .resolve(&driven.path)
            .and_then(|c| c.max_readers)
            .map(std::num::NonZeroU32::get);
        let subscription = driven
            .stream
            .subscribe(Arc::clone(&driven.info), max_readers)
            .map_err(|e| match e {
                SubscribeError::Closed => refuse(StatusCode::NotFound, e.to_string()),
                SubscribeError::TooManyReaders { .. } => {
                    refuse(StatusCode::ServiceUnavailable, e.to_string())
                }
            })?;
        match (udp, &driven.udp_reader) {
            (Some(udp), Some(reader)) => {
                let routes = std::mem::take(&mut driven.udp_routes);
                reader.play(
                    &udp,
                    subscription.rx,
                    Arc::clone(&driven.stream),
                    routes,
                    shutdown,
                );
            }
            _ => self.queues.push((id.clone(), subscription.rx)),
        }
        info!(session = %id, "reader started");
        Ok(Outcome::Playing {
            first: subscription.first,
        })
    }

    /// PAUSE (RFC 2326 §10.6) of a playing reader: it leaves the stream (its queue dropped;
    /// a UDP reader keeps its ports and task) and a later PLAY subscribes it again, from the
    /// cached GOP with a new `RTP-Info`.
    fn pause(&mut self, id: &SessionId) -> Result<Outcome, Refusal> {
        self.queues.retain(|(q, _)| q != id);
        let driven = self
            .driven(id)
            .ok_or_else(|| refuse(StatusCode::SessionNotFound, "session is gone"))?;
        if let Some(reader) = &driven.udp_reader {
            // Before unsubscribing, so the task never takes the closed queue for an end.
            reader.pause();
        }
        driven.stream.unsubscribe(&driven.info);
        info!(session = %id, "reader paused");
        Ok(Outcome::Done)
    }

    fn record(&mut self, id: &SessionId) -> Result<Outcome, Refusal> {
        let driven = self
            .driven(id)
            .ok_or_else(|| refuse(StatusCode::SessionNotFound, "session is gone"))?;
        if let Some(seen) = &driven.seen {
            seen.touch();
        }
        driven.stream.set_ready();
        info!(session = %id, "publisher recording");
        Ok(Outcome::Done)
    }
}

fn new_session_id() -> SessionId {
    SessionId::new(format!("{:016x}", rand::random::<u64>()))
}

/// Routes the client's UDP ports at `ip` to a session; refused while another session has them.
fn register_route(
    udp: &Arc<Udp>,
    ip: std::net::IpAddr,
    client: (u16, u16),
    route: Route,
) -> Result<RouteGuard, Refusal> {
    udp.register(ip, client, route).ok_or_else(|| {
        refuse(
            StatusCode::BadRequest,
            format!(
                "client ports {}-{} of {ip} are already in use by another session",
                client.0, client.1
            ),
        )
    })
}
