//! Requests against the session table: which session a request addresses, whether its
//! method is valid in that session's state, transport negotiation, and the replies.

use std::time::Instant;

use bytes::Bytes;

use super::{
    Committed, Connection, Dispatch, Intent, Outcome, PUBLIC, RequestError, Role, Session,
    SessionId, State, TrackTransport, acceptable, method_name, ok, path_of, url_of,
};
use crate::rtsp::{
    Delivery, HeaderError, LowerTransport, Method, Profile, RANGE_LIVE, Request, RtpInfoEntry,
    RtspUrl, SessionHeader, StatusCode, TransportSpec, choose_transport, format_rtp_info, names,
    respond_to,
};

/// The session a request addresses.
enum Addressed {
    /// No `Session` header.
    None,
    Local(usize),
    Foreign(SessionId),
}

impl Connection {
    pub(super) fn dispatch(&self, request: &Request) -> Result<Dispatch, RequestError> {
        let addressed = match SessionHeader::from_headers(&request.headers)? {
            None => Addressed::None,
            Some(header) => match self
                .sessions
                .iter()
                .position(|s| s.id().as_str() == header.id)
            {
                Some(index) => Addressed::Local(index),
                None => Addressed::Foreign(SessionId::new(header.id)),
            },
        };
        if let Addressed::Foreign(session) = addressed {
            let method = request.method.clone();
            return Ok(Dispatch::Intent(Intent::Foreign { session, method }, None));
        }
        let local = match addressed {
            Addressed::Local(index) => Some(index),
            _ => None,
        };
        let method = method_name(&request.method);
        match request.method {
            Method::Options => {
                let response = ok(request, local.and_then(|i| self.sessions.get(i)))
                    .with_header(names::PUBLIC, PUBLIC);
                Ok(Dispatch::Reply(response))
            }
            Method::GetParameter | Method::SetParameter => {
                let response = ok(request, local.and_then(|i| self.sessions.get(i)));
                Ok(Dispatch::Reply(response))
            }
            Method::Describe => {
                let url = url_of(request)?;
                let path = path_of(&url, &request.method)?;
                Ok(Dispatch::Intent(Intent::Describe { path }, Some(url)))
            }
            Method::Announce => {
                let url = url_of(request)?;
                let path = path_of(&url, &request.method)?;
                Ok(Dispatch::Intent(Intent::Announce { path }, Some(url)))
            }
            Method::Setup => self.setup(request, local),
            Method::Play => {
                let url = url_of(request)?;
                let Some(index) = self.pick(local, method)? else {
                    let path = path_of(&url, &request.method)?;
                    return Ok(Dispatch::Intent(Intent::Probe { path }, None));
                };
                let session = &self.sessions[index];
                match (session.role(), session.state()) {
                    (Role::Publish { .. }, _) => Err(state(method, "not on a publishing session")),
                    (Role::Read, State::Playing) => Ok(Dispatch::Reply(ok(request, Some(session)))),
                    (Role::Read, _) => Ok(Dispatch::Intent(
                        Intent::Play {
                            session: session.id().clone(),
                        },
                        Some(url),
                    )),
                }
            }
            Method::Pause => {
                let index = self
                    .pick(local, method)?
                    .ok_or(RequestError::NoSession { method })?;
                let session = &self.sessions[index];
                match (session.role(), session.state()) {
                    (Role::Publish { .. }, _) => {
                        Err(state(method, "a publishing session cannot be paused"))
                    }
                    (Role::Read, State::Playing) => Ok(Dispatch::Intent(
                        Intent::Pause {
                            session: session.id().clone(),
                        },
                        None,
                    )),
                    (Role::Read, _) => Ok(Dispatch::Reply(ok(request, Some(session)))),
                }
            }
            Method::Record => {
                let Some(index) = self.pick(local, method)? else {
                    return Err(state(method, "RECORD needs ANNOUNCE and SETUP first"));
                };
                let session = &self.sessions[index];
                match (session.role(), session.state()) {
                    (Role::Read, _) => Err(state(method, "not on a reading session")),
                    (_, State::Recording) => Ok(Dispatch::Reply(ok(request, Some(session)))),
                    _ if !session.all_set_up() => Err(RequestError::NotAllSetUp),
                    _ => Ok(Dispatch::Intent(
                        Intent::Record {
                            session: session.id().clone(),
                        },
                        None,
                    )),
                }
            }
            Method::Teardown => match self.pick(local, method)? {
                Some(index) => Ok(Dispatch::Intent(
                    Intent::Teardown {
                        session: self.sessions[index].id().clone(),
                    },
                    None,
                )),
                // Nothing to end.
                None => Ok(Dispatch::Reply(respond_to(request, StatusCode::Ok))),
            },
            _ => Err(RequestError::NotImplemented {
                method: <&str>::from(&request.method).to_owned(),
            }),
        }
    }

    /// The session a request without `Session` header means: the only one, if any.
    fn pick(
        &self,
        local: Option<usize>,
        method: &'static str,
    ) -> Result<Option<usize>, RequestError> {
        if local.is_some() {
            return Ok(local);
        }
        match self.sessions.len() {
            0 => Ok(None),
            1 => Ok(Some(0)),
            _ => Err(RequestError::AmbiguousSession { method }),
        }
    }

    fn setup(&self, request: &Request, local: Option<usize>) -> Result<Dispatch, RequestError> {
        let url = url_of(request)?;
        let value = request
            .header(&names::TRANSPORT)
            .ok_or(HeaderError::Missing {
                header: "Transport",
            })?;
        let udp = self.config.udp;
        let spec = choose_transport(value, |s| acceptable(s, udp)).map_err(|e| match e {
            HeaderError::NoAcceptableTransport { .. } => RequestError::UnsupportedTransport {
                why: "only RTP/AVP over TCP (interleaved) or UDP unicast (with client_port) \
                      is supported",
            },
            other => other.into(),
        })?;
        // Without `Session` header, a SETUP continues an announced publisher that is not
        // fully set up yet (some encoders omit the header), or starts a new read session.
        let index = local.or_else(|| {
            self.sessions
                .iter()
                .rposition(|s| s.is_publisher() && s.state() != State::Recording && !s.all_set_up())
        });
        let Some(index) = index else {
            if spec.is_record() {
                return Err(state(
                    "SETUP",
                    "SETUP with mode=record needs an ANNOUNCE first",
                ));
            }
            let setup = url.setup_target()?;
            let path = setup.target.path_name().map_err(|_| RequestError::Path {
                path: setup.target.path.clone(),
            })?;
            let track = setup.track_id()?;
            let transport = self.transport(None, track, &spec)?;
            return Ok(Dispatch::Intent(
                Intent::SetupRead {
                    session: None,
                    path,
                    track,
                    transport,
                },
                Some(url),
            ));
        };
        let session = &self.sessions[index];
        if session.is_streaming() {
            return Err(state("SETUP", "SETUP is not valid while streaming"));
        }
        let id = session.id().clone();
        let intent = match session.role() {
            Role::Publish { target, controls } => {
                let controls = controls.iter().map(Option::as_deref);
                let track = url
                    .record_track(target, controls)
                    .ok_or(RequestError::NoSuchTrack)?;
                let transport = self.transport(Some(session), track, &spec)?;
                Intent::SetupRecord {
                    session: id,
                    track,
                    transport,
                }
            }
            Role::Read => {
                if spec.is_record() {
                    return Err(state("SETUP", "mode=record on a reading session"));
                }
                let setup = url.setup_target()?;
                let path = setup.target.path_name().map_err(|_| RequestError::Path {
                    path: setup.target.path.clone(),
                })?;
                if &path != session.path() {
                    return Err(RequestError::Aggregate {
                        id,
                        path: session.path().clone(),
                    });
                }
                let track = setup.track_id()?;
                if track >= session.tracks().len() {
                    return Err(RequestError::NoTrack {
                        track,
                        count: session.tracks().len(),
                    });
                }
                let transport = self.transport(Some(session), track, &spec)?;
                Intent::SetupRead {
                    session: Some(id),
                    path,
                    track,
                    transport,
                }
            }
        };
        Ok(Dispatch::Intent(intent, Some(url)))
    }

    /// The transport of `track` of `session` (`None`: a new session) for the client's
    /// `spec`: one lower transport per session, interleaved channels and client ports
    /// unique on the connection.
    fn transport(
        &self,
        session: Option<&Session>,
        track: usize,
        spec: &TransportSpec,
    ) -> Result<TrackTransport, RequestError> {
        if let Some(lower) = session.and_then(Session::lower)
            && lower != spec.lower
        {
            return Err(RequestError::UnsupportedTransport {
                why: "all tracks of a session must use one transport",
            });
        }
        // Everything already set up on the connection, but this very track (a repeated SETUP).
        let others = self.sessions.iter().flat_map(|s| {
            s.tracks()
                .iter()
                .enumerate()
                .filter(move |(t, _)| !(session.is_some_and(|me| me.id() == s.id()) && *t == track))
                .filter_map(|(_, t)| *t)
        });
        match spec.lower {
            LowerTransport::Tcp => {
                let used: Vec<u8> = others
                    .filter_map(|t| match t {
                        TrackTransport::Interleaved { rtp } => Some(rtp),
                        TrackTransport::Udp { .. } => None,
                    })
                    .flat_map(|rtp| [rtp, rtp.wrapping_add(1)])
                    .collect();
                let free =
                    |rtp: u8| rtp < u8::MAX && !used.contains(&rtp) && !used.contains(&(rtp + 1));
                let rtp = match spec.interleaved {
                    Some((rtp, rtcp)) => {
                        if !free(rtp) || rtcp != rtp.wrapping_add(1) {
                            return Err(RequestError::Channels { rtp, rtcp });
                        }
                        rtp
                    }
                    None => {
                        let preferred = u8::try_from(track.saturating_mul(2)).ok();
                        preferred
                            .filter(|&c| free(c))
                            .or_else(|| (0..u8::MAX).step_by(2).find(|&c| free(c)))
                            .ok_or(RequestError::Channels { rtp: 0, rtcp: 1 })?
                    }
                };
                Ok(TrackTransport::Interleaved { rtp })
            }
            LowerTransport::Udp => {
                let Some((rtp, rtcp)) = spec.client_port else {
                    return Err(RequestError::UnsupportedTransport {
                        why: "UDP needs client_port",
                    });
                };
                let taken = others.into_iter().any(|t| match t {
                    TrackTransport::Udp { client } => {
                        client.0 == rtp || client.1 == rtcp || client.0 == rtcp || client.1 == rtp
                    }
                    TrackTransport::Interleaved { .. } => false,
                });
                if rtp == 0 || rtcp == 0 || taken {
                    return Err(RequestError::ClientPorts { rtp, rtcp });
                }
                Ok(TrackTransport::Udp {
                    client: (rtp, rtcp),
                })
            }
        }
    }

    pub(super) fn commit(
        &mut self,
        now: Instant,
        request: &Request,
        intent: Intent,
        url: Option<&RtspUrl>,
        outcome: Outcome,
    ) -> Result<Committed, RequestError> {
        let unexpected = |intent: &Intent| RequestError::UnexpectedOutcome {
            intent: intent_name(intent),
        };
        match (intent, outcome) {
            (Intent::Describe { path }, Outcome::Sdp(sdp)) => {
                let base = url.map(|u| format!("{}/", u.url_for(path.as_str())));
                let mut response = respond_to(request, StatusCode::Ok);
                if let Some(base) = base {
                    response = response.with_header(names::CONTENT_BASE, base);
                }
                let response = response
                    .with_header(names::CONTENT_TYPE, "application/sdp")
                    .with_body(Bytes::from(sdp));
                Ok(Committed::Reply(response))
            }
            (Intent::Announce { path }, Outcome::Announced { id, controls }) => {
                let url = url.ok_or(RequestError::NoUrl)?;
                let target = url.target(&Method::Announce)?;
                let tracks = controls.len();
                let role = Role::Publish { target, controls };
                let session = Session::new(id, path, role, tracks, self.timeouts(), now);
                let response = ok(request, Some(&session));
                self.sessions.push(session);
                Ok(Committed::Reply(response))
            }
            (
                intent @ (Intent::SetupRead { .. } | Intent::SetupRecord { .. }),
                Outcome::SetUp {
                    new_session,
                    server_port,
                    ssrc,
                },
            ) => {
                let (id, track, transport) = match intent {
                    Intent::SetupRead {
                        session: None,
                        path,
                        track,
                        transport,
                    } => {
                        let (id, tracks) = new_session.ok_or(RequestError::UnexpectedOutcome {
                            intent: "SETUP of a new session",
                        })?;
                        if track >= tracks {
                            return Err(RequestError::NoTrack {
                                track,
                                count: tracks,
                            });
                        }
                        let timeouts = self.timeouts();
                        self.sessions.push(Session::new(
                            id.clone(),
                            path,
                            Role::Read,
                            tracks,
                            timeouts,
                            now,
                        ));
                        (id, track, transport)
                    }
                    Intent::SetupRead {
                        session: Some(id),
                        track,
                        transport,
                        ..
                    }
                    | Intent::SetupRecord {
                        session: id,
                        track,
                        transport,
                    } => (id, track, transport),
                    other => return Err(unexpected(&other)),
                };
                let session = self
                    .session_mut(&id)
                    .ok_or(RequestError::UnknownSession { id: id.to_string() })?;
                session.set_track(track, transport);
                let spec = request
                    .header(&names::TRANSPORT)
                    .and_then(|v| choose_transport(v, |s| acceptable(s, true)).ok());
                let mut answer = TransportSpec::new(Profile::Avp, transport.lower());
                answer.delivery = Some(Delivery::Unicast);
                match transport {
                    TrackTransport::Interleaved { rtp } => {
                        answer.interleaved = Some((rtp, rtp.wrapping_add(1)));
                    }
                    TrackTransport::Udp { client } => {
                        answer.client_port = Some(client);
                        answer.server_port = server_port;
                    }
                }
                answer.ssrc = ssrc;
                answer.mode = spec.and_then(|s| s.mode);
                let session = &*session;
                let response =
                    ok(request, Some(session)).with_header(names::TRANSPORT, answer.to_string());
                Ok(Committed::Reply(response))
            }
            (Intent::Play { session: id }, Outcome::Playing { first }) => {
                let session = self
                    .session_mut(&id)
                    .ok_or(RequestError::UnknownSession { id: id.to_string() })?;
                session.set_state(State::Playing, now);
                let session = &*session;
                let base = url.map(|u| u.url_for(session.path().as_str()));
                let rtp_info: Vec<RtpInfoEntry> = session
                    .tracks()
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| t.is_some())
                    .map(|(i, _)| {
                        let first = first.get(i).copied().flatten();
                        RtpInfoEntry {
                            url: format!("{}/trackID={i}", base.as_deref().unwrap_or_default()),
                            seq: first.map(|(seq, _)| seq),
                            rtptime: first.map(|(_, ts)| ts),
                        }
                    })
                    .collect();
                let response = ok(request, Some(session))
                    .with_header(names::RANGE, RANGE_LIVE)
                    .with_header(names::RTP_INFO, format_rtp_info(&rtp_info));
                Ok(Committed::Reply(response))
            }
            (Intent::Pause { session: id }, Outcome::Done) => {
                self.transition(request, &id, State::Ready, now)
            }
            (Intent::Record { session: id }, Outcome::Done) => {
                self.transition(request, &id, State::Recording, now)
            }
            (Intent::Teardown { session: id }, Outcome::Done) => {
                let session = self
                    .remove(&id)
                    .ok_or(RequestError::UnknownSession { id: id.to_string() })?;
                let response = ok(request, Some(&session));
                Ok(Committed::Reply(response))
            }
            (Intent::Probe { .. }, Outcome::Done) => Err(state("PLAY", "PLAY needs a SETUP first")),
            (Intent::Foreign { session: id, .. }, Outcome::Adopt(session)) => {
                if session.id() != &id || self.session(&id).is_some() {
                    return Err(RequestError::UnexpectedOutcome {
                        intent: "adoption of another session",
                    });
                }
                let mut session = *session;
                session.touch(now);
                self.sessions.push(session);
                Ok(Committed::Again)
            }
            (Intent::Foreign { session: id, .. }, Outcome::Done) => {
                let header = SessionHeader {
                    id: id.to_string(),
                    timeout: None,
                };
                let response = respond_to(request, StatusCode::Ok)
                    .with_header(names::SESSION, header.to_string());
                Ok(Committed::Reply(response))
            }
            (Intent::Foreign { session: id, .. }, Outcome::UnknownSession) => {
                Err(RequestError::UnknownSession { id: id.to_string() })
            }
            (intent, _) => Err(unexpected(&intent)),
        }
    }

    fn transition(
        &mut self,
        request: &Request,
        id: &SessionId,
        to: State,
        now: Instant,
    ) -> Result<Committed, RequestError> {
        let session = self
            .session_mut(id)
            .ok_or(RequestError::UnknownSession { id: id.to_string() })?;
        session.set_state(to, now);
        Ok(Committed::Reply(ok(request, Some(session))))
    }

    fn timeouts(&self) -> (std::time::Duration, std::time::Duration) {
        (self.config.session_timeout, self.config.read_timeout)
    }
}

fn state(method: &'static str, why: &'static str) -> RequestError {
    RequestError::State { method, why }
}

fn intent_name(intent: &Intent) -> &'static str {
    match intent {
        Intent::Describe { .. } => "DESCRIBE",
        Intent::Announce { .. } => "ANNOUNCE",
        Intent::SetupRead { .. } | Intent::SetupRecord { .. } => "SETUP",
        Intent::Play { .. } | Intent::Probe { .. } => "PLAY",
        Intent::Pause { .. } => "PAUSE",
        Intent::Record { .. } => "RECORD",
        Intent::Teardown { .. } => "TEARDOWN",
        Intent::Foreign { .. } => "a request for another connection's session",
    }
}
