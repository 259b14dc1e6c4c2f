//! Scenarios against the session machine with a scripted driver and virtual time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use proptest::prelude::*;

use super::*;
use crate::rtsp::{Decoder, HeaderName, Item};

const SDP2: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:trackID=0\r\n\
m=audio 0 RTP/AVP 0\r\na=control:trackID=1\r\n";

/// The driver's world: published paths and their track counts, parked sessions, sessions
/// attached to other connections, and what the machine asked for.
struct World {
    published: HashMap<String, usize>,
    parked: HashMap<SessionId, Session>,
    elsewhere: Vec<SessionId>,
    next_id: u32,
    intents: Vec<Intent>,
    refuse_next: Option<Refusal>,
}

impl World {
    fn new() -> Self {
        World {
            published: HashMap::from([("cam".to_owned(), 2), ("other".to_owned(), 1)]),
            parked: HashMap::new(),
            elsewhere: Vec::new(),
            next_id: 0,
            intents: Vec::new(),
            refuse_next: None,
        }
    }

    fn id(&mut self) -> SessionId {
        self.next_id += 1;
        SessionId::new(format!("s{}", self.next_id))
    }

    fn perform(&mut self, intent: &Intent, request: &Request) -> Outcome {
        self.intents.push(intent.clone());
        if let Some(refusal) = self.refuse_next.take() {
            return Outcome::Refused(refusal);
        }
        let not_found = || Outcome::Refused(Refusal::new(StatusCode::NotFound, "not published"));
        match intent {
            Intent::Describe { path } => match self.published.get(path.as_str()) {
                Some(_) => Outcome::Sdp(SDP2.to_owned()),
                None => not_found(),
            },
            Intent::Announce { .. } => {
                let sdp = crate::sdp::SessionDescription::parse(&request.body);
                match sdp {
                    Ok(sdp) => Outcome::Announced {
                        id: self.id(),
                        controls: sdp.tracks.into_iter().map(|t| t.control).collect(),
                    },
                    Err(e) => Outcome::Refused(Refusal::new(StatusCode::BadRequest, e.to_string())),
                }
            }
            Intent::SetupRead {
                session,
                path,
                transport,
                ..
            } => {
                let Some(&tracks) = self.published.get(path.as_str()) else {
                    return not_found();
                };
                let new_session = session.is_none().then(|| (self.id(), tracks));
                let udp = matches!(transport, TrackTransport::Udp { .. });
                Outcome::SetUp {
                    new_session,
                    server_port: udp.then_some((8000, 8001)),
                    ssrc: Some(0x1234),
                }
            }
            Intent::SetupRecord { .. } => Outcome::SetUp {
                new_session: None,
                server_port: Some((8000, 8001)),
                ssrc: None,
            },
            Intent::Play { .. } => Outcome::Playing {
                first: vec![Some((100, 9000)), None],
            },
            Intent::Pause { .. } | Intent::Record { .. } | Intent::Teardown { .. } => Outcome::Done,
            Intent::Probe { path } => match self.published.get(path.as_str()) {
                Some(_) => Outcome::Done,
                None => not_found(),
            },
            Intent::Foreign { session, method } => {
                if let Some(parked) = self.parked.remove(session) {
                    Outcome::Adopt(Box::new(parked))
                } else if self.elsewhere.contains(session) {
                    match method {
                        Method::Options | Method::GetParameter | Method::Teardown => Outcome::Done,
                        _ => Outcome::Refused(Refusal::new(
                            StatusCode::MethodNotValidInThisState,
                            "attached to another connection",
                        )),
                    }
                } else {
                    Outcome::UnknownSession
                }
            }
        }
    }
}

struct Client {
    conn: Connection,
    world: World,
    t0: Instant,
    now: Instant,
    cseq: u32,
}

fn parse(text: &str) -> Request {
    let mut buf = BytesMut::from(text.as_bytes());
    match Decoder::default().decode(&mut buf) {
        Ok(Some(Item::Request(request))) => request,
        other => panic!("not a request: {other:?}\n{text}"),
    }
}

impl Client {
    fn new() -> Self {
        let t0 = Instant::now();
        Client {
            conn: Connection::new(Config::default(), t0),
            world: World::new(),
            t0,
            now: t0,
            cseq: 0,
        }
    }

    /// A second connection of the same driver world, later.
    fn other_connection(&self, world: World) -> Client {
        Client {
            conn: Connection::new(Config::default(), self.now),
            world,
            t0: self.t0,
            now: self.now,
            cseq: 100,
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    fn send(&mut self, method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        self.cseq += 1;
        let mut text = format!("{method} {url} RTSP/1.0\r\nCSeq: {}\r\n", self.cseq);
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() {
            text.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        text.push_str("\r\n");
        text.push_str(body);
        let request = parse(&text);
        let mut step = self.conn.handle(self.now, request);
        let reply = loop {
            match step {
                Step::Reply(reply) => break reply,
                Step::Intent(pending) => {
                    let outcome = self.world.perform(pending.intent(), pending.request());
                    step = self.conn.complete(self.now, pending, outcome);
                }
            }
        };
        let cseq = self.cseq.to_string();
        assert_eq!(
            reply.response.header(&names::CSEQ),
            Some(cseq.as_str()),
            "CSeq echoed"
        );
        reply
    }

    fn req(&mut self, method: &str, url: &str, headers: &[(&str, &str)]) -> Reply {
        self.send(method, url, headers, "")
    }
}

fn status(reply: &Reply) -> u16 {
    u16::from(reply.response.status)
}

fn header<'a>(reply: &'a Reply, name: &HeaderName) -> &'a str {
    reply.response.header(name).unwrap_or_default()
}

fn session_of(reply: &Reply) -> String {
    let value = header(reply, &names::SESSION);
    let parsed = SessionHeader::parse(value).expect("a Session header");
    assert_eq!(parsed.timeout, Some(60), "timeout advertised");
    parsed.id
}

const CAM: &str = "rtsp://h/cam";
const TCP01: &[(&str, &str)] = &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")];

#[test]
fn read_flow_over_tcp() {
    let mut c = Client::new();
    let r = c.req("OPTIONS", CAM, &[]);
    assert_eq!(status(&r), 200);
    assert!(header(&r, &names::PUBLIC).contains("PAUSE"));
    let r = c.req("DESCRIBE", CAM, &[]);
    assert_eq!(status(&r), 200);
    assert_eq!(header(&r, &names::CONTENT_BASE), "rtsp://h/cam/");
    assert_eq!(&r.response.body[..], SDP2.as_bytes());
    let r = c.req("SETUP", "rtsp://h/cam/trackID=0", TCP01);
    assert_eq!(status(&r), 200, "{r:?}");
    let id = session_of(&r);
    assert_eq!(
        header(&r, &names::TRANSPORT),
        "RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=00001234"
    );
    let session = [("Session", id.as_str())];
    let r = c.req(
        "SETUP",
        "rtsp://h/cam/trackID=1",
        &[
            ("Session", id.as_str()),
            ("Transport", "RTP/AVP/TCP;unicast"),
        ],
    );
    assert_eq!(status(&r), 200);
    assert!(header(&r, &names::TRANSPORT).contains("interleaved=2-3"));
    let r = c.req("PLAY", CAM, &session);
    assert_eq!(status(&r), 200);
    assert_eq!(header(&r, &names::RANGE), "npt=0-");
    assert_eq!(
        header(&r, &names::RTP_INFO),
        "url=rtsp://h/cam/trackID=0;seq=100;rtptime=9000,url=rtsp://h/cam/trackID=1"
    );
    let sid = SessionId::new(id.clone());
    assert_eq!(
        c.conn.session(&sid).map(Session::state),
        Some(State::Playing)
    );
    // Receiver reports arrive on the odd channels.
    let inbound = c.conn.inbound(3).expect("rtcp of track 1");
    assert_eq!(
        (inbound.track, inbound.rtcp, inbound.publisher),
        (1, true, false)
    );
    assert!(c.conn.inbound(2).is_none(), "a reader sends no RTP");
    // SETUP while playing is a state error; TEARDOWN of the last session closes.
    let r = c.req(
        "SETUP",
        "rtsp://h/cam/trackID=1",
        &[("Session", id.as_str()), TCP01[0]],
    );
    assert_eq!(status(&r), 455);
    let r = c.req("TEARDOWN", CAM, &session);
    assert_eq!(status(&r), 200);
    assert!(c.conn.sessions().is_empty());
    // The client closes the connection; a request that crossed TEARDOWN is answered, and an
    // idle connection times out.
    assert_eq!(status(&c.req("PAUSE", CAM, &session)), 454);
    assert_eq!(c.conn.poll_timeout(), Some(c.now + Duration::from_secs(60)));
}

#[test]
fn publish_flow_over_udp() {
    let mut c = Client::new();
    let r = c.send(
        "ANNOUNCE",
        "rtsp://h/new",
        &[("Content-Type", "application/sdp")],
        SDP2,
    );
    assert_eq!(status(&r), 200);
    let id = session_of(&r);
    let r = c.req("RECORD", "rtsp://h/new", &[("Session", id.as_str())]);
    assert_eq!(status(&r), 400, "tracks not set up yet");
    let r = c.req("PLAY", "rtsp://h/new", &[("Session", id.as_str())]);
    assert_eq!(status(&r), 455);
    // The first SETUP without `Session` header continues the announced session.
    let r = c.req(
        "SETUP",
        "rtsp://h/new/trackID=0",
        &[(
            "Transport",
            "RTP/AVP;unicast;client_port=5000-5001;mode=record",
        )],
    );
    assert_eq!(status(&r), 200, "{r:?}");
    assert_eq!(session_of(&r), id);
    assert_eq!(
        header(&r, &names::TRANSPORT),
        "RTP/AVP;unicast;client_port=5000-5001;server_port=8000-8001;mode=record"
    );
    // Another track on the same client ports, or over TCP: refused.
    let r = c.req(
        "SETUP",
        "rtsp://h/new/trackID=1",
        &[
            ("Session", id.as_str()),
            (
                "Transport",
                "RTP/AVP;unicast;client_port=5000-5001;mode=record",
            ),
        ],
    );
    assert_eq!(status(&r), 400);
    let r = c.req(
        "SETUP",
        "rtsp://h/new/trackID=1",
        &[
            ("Session", id.as_str()),
            ("Transport", "RTP/AVP/TCP;interleaved=2-3;mode=record"),
        ],
    );
    assert_eq!(status(&r), 461);
    let r = c.req(
        "SETUP",
        "rtsp://h/new/trackID=7",
        &[
            ("Session", id.as_str()),
            ("Transport", "RTP/AVP;client_port=5002-5003;mode=record"),
        ],
    );
    assert_eq!(status(&r), 400, "no such announced track");
    let r = c.req(
        "SETUP",
        "rtsp://h/new/trackID=1",
        &[
            ("Session", id.as_str()),
            ("Transport", "RTP/AVP;client_port=5002-5003;mode=record"),
        ],
    );
    assert_eq!(status(&r), 200);
    let r = c.req("RECORD", "rtsp://h/new", &[("Session", id.as_str())]);
    assert_eq!(status(&r), 200);
    let r = c.req("PAUSE", "rtsp://h/new", &[("Session", id.as_str())]);
    assert_eq!(status(&r), 455, "publishers cannot pause");
    assert!(r.refused.is_some());
    let r = c.req("RECORD", "rtsp://h/new", &[("Session", id.as_str())]);
    assert_eq!(status(&r), 200, "RECORD again is harmless");
    assert!(c.conn.is_streaming());
}

#[test]
fn pause_play_pause() {
    let mut c = Client::new();
    let r = c.req(
        "SETUP",
        "rtsp://h/cam/trackID=0",
        &[("Transport", "RTP/AVP;unicast;client_port=6000-6001")],
    );
    let id = session_of(&r);
    let s = [("Session", id.as_str())];
    assert_eq!(
        status(&c.req("PAUSE", CAM, &s)),
        200,
        "PAUSE when ready is a no-op"
    );
    for _ in 0..2 {
        assert_eq!(status(&c.req("PLAY", CAM, &s)), 200);
        assert_eq!(status(&c.req("PLAY", CAM, &s)), 200, "PLAY while playing");
        assert_eq!(status(&c.req("PAUSE", CAM, &s)), 200);
        let sid = SessionId::new(id.clone());
        assert_eq!(c.conn.session(&sid).map(Session::state), Some(State::Ready));
    }
    let kinds: Vec<&str> = c
        .world
        .intents
        .iter()
        .map(|i| match i {
            Intent::Play { .. } => "play",
            Intent::Pause { .. } => "pause",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["other", "play", "pause", "play", "pause"]);
}

#[test]
fn two_sessions_on_one_connection() {
    let mut c = Client::new();
    let r = c.req("SETUP", "rtsp://h/cam/trackID=0", TCP01);
    let first = session_of(&r);
    // A SETUP without `Session` header starts another session: channels 0-1 are taken.
    let r = c.req("SETUP", "rtsp://h/other/trackID=0", TCP01);
    assert_eq!(status(&r), 400, "channel conflict across sessions");
    assert!(c.conn.sessions().len() == 1);
    let r = c.req(
        "SETUP",
        "rtsp://h/other/trackID=0",
        &[("Transport", "RTP/AVP/TCP;unicast")],
    );
    assert_eq!(status(&r), 200);
    let second = session_of(&r);
    assert_ne!(first, second);
    assert!(header(&r, &names::TRANSPORT).contains("interleaved=2-3"));
    // A session is of one path: another path in it is an aggregate we refuse.
    let r = c.req(
        "SETUP",
        "rtsp://h/other/trackID=0",
        &[
            ("Session", first.as_str()),
            ("Transport", "RTP/AVP/TCP;interleaved=4-5"),
        ],
    );
    assert_eq!(status(&r), 459);
    // Without `Session` header, PLAY is ambiguous now.
    assert_eq!(status(&c.req("PLAY", CAM, &[])), 454);
    assert_eq!(
        status(&c.req("PLAY", CAM, &[("Session", first.as_str())])),
        200
    );
    let r = c.req("PLAY", "rtsp://h/other", &[("Session", second.as_str())]);
    assert_eq!(status(&r), 200);
    assert_eq!(
        c.conn.inbound(1).map(|i| i.session.to_string()),
        Some(first.clone())
    );
    assert_eq!(
        c.conn.inbound(3).map(|i| i.session.to_string()),
        Some(second.clone())
    );
    let r = c.req("TEARDOWN", CAM, &[("Session", first.as_str())]);
    assert_eq!(status(&r), 200);
    assert_eq!(c.conn.sessions().len(), 1, "the other session goes on");
    assert!(c.conn.is_streaming());
    let r = c.req(
        "TEARDOWN",
        "rtsp://h/other",
        &[("Session", second.as_str())],
    );
    assert_eq!(status(&r), 200);
    assert!(c.conn.sessions().is_empty());
}

#[test]
fn a_udp_session_continues_on_another_connection() {
    let mut a = Client::new();
    let r = a.req(
        "SETUP",
        "rtsp://h/cam/trackID=0",
        &[("Transport", "RTP/AVP;unicast;client_port=6000-6001")],
    );
    let id = session_of(&r);
    assert_eq!(
        status(&a.req("PLAY", CAM, &[("Session", id.as_str())])),
        200
    );
    // The client closes the connection: its UDP reader is parked by the driver.
    let sessions = a.conn.close();
    assert_eq!(sessions.len(), 1);
    assert!(sessions[0].outlives_connection());
    let mut world = World::new();
    world.next_id = 10;
    for s in sessions {
        world.parked.insert(s.id().clone(), s);
    }
    a.advance(Duration::from_secs(30));
    let mut b = a.other_connection(world);
    let s = [("Session", id.as_str())];
    let r = b.req("GET_PARAMETER", CAM, &s);
    assert_eq!(status(&r), 200);
    assert_eq!(session_of(&r), id, "adopted with its id");
    assert_eq!(status(&b.req("PAUSE", CAM, &s)), 200);
    assert_eq!(status(&b.req("PLAY", CAM, &s)), 200);
    let r = b.req("TEARDOWN", CAM, &s);
    assert_eq!(status(&r), 200);
    assert!(b.conn.sessions().is_empty());
    // Unknown ids are 454; a session attached elsewhere takes keep-alives only.
    assert_eq!(status(&b.req("GET_PARAMETER", CAM, &s)), 454);
    b.world.elsewhere.push(SessionId::new("busy"));
    let busy = [("Session", "busy")];
    assert_eq!(status(&b.req("OPTIONS", CAM, &busy)), 200);
    assert_eq!(status(&b.req("PLAY", CAM, &busy)), 455);
    assert_eq!(status(&b.req("TEARDOWN", CAM, &busy)), 200);
}

#[test]
fn state_and_session_errors() {
    let mut c = Client::new();
    assert_eq!(status(&c.req("PAUSE", CAM, &[])), 454);
    assert_eq!(status(&c.req("RECORD", CAM, &[])), 455);
    assert_eq!(
        status(&c.req("PLAY", CAM, &[])),
        455,
        "published, but no SETUP"
    );
    assert_eq!(status(&c.req("PLAY", "rtsp://h/nobody", &[])), 404);
    let r = c.req(
        "SETUP",
        "rtsp://h/cam/trackID=0",
        &[("Transport", "RTP/AVP/TCP;interleaved=0-1;mode=record")],
    );
    assert_eq!(status(&r), 455, "record without ANNOUNCE");
    assert_eq!(status(&c.req("SETUP", "rtsp://h/cam/trackID=0", &[])), 400);
    let multicast = [("Transport", "RTP/AVP;multicast;port=5000-5001")];
    assert_eq!(
        status(&c.req("SETUP", "rtsp://h/cam/trackID=0", &multicast)),
        461
    );
    let no_ports = [("Transport", "RTP/AVP;unicast")];
    assert_eq!(
        status(&c.req("SETUP", "rtsp://h/cam/trackID=0", &no_ports)),
        461
    );
    let zero = [("Transport", "RTP/AVP;unicast;client_port=0-1")];
    assert_eq!(
        status(&c.req("SETUP", "rtsp://h/cam/trackID=0", &zero)),
        400
    );
    let bad_pair = [("Transport", "RTP/AVP/TCP;interleaved=0-5")];
    assert_eq!(
        status(&c.req("SETUP", "rtsp://h/cam/trackID=0", &bad_pair)),
        400
    );
    assert_eq!(
        status(&c.req("SETUP", "rtsp://h/cam/trackID=x", TCP01)),
        400
    );
    let r = c.req("SETUP", "rtsp://h/cam/trackID=0", TCP01);
    let id = session_of(&r);
    let r = c.req(
        "SETUP",
        "rtsp://h/cam/trackID=5",
        &[("Session", id.as_str()), TCP01[0]],
    );
    assert_eq!(status(&r), 404, "no such track");
    let r = c.req(
        "SETUP",
        "rtsp://h/cam/trackID=1",
        &[
            ("Session", id.as_str()),
            ("Transport", "RTP/AVP;client_port=7000-7001"),
        ],
    );
    assert_eq!(status(&r), 461, "one lower transport per session");
    assert_eq!(
        status(&c.req("RECORD", CAM, &[("Session", id.as_str())])),
        455
    );
    assert_eq!(status(&c.req("PLAY", CAM, &[("Session", "nope")])), 454);
    assert_eq!(status(&c.req("PLAY", CAM, &[("Session", "a b")])), 400);
    assert_eq!(status(&c.req("REDIRECT", CAM, &[])), 501);
    // The driver's refusals come back with their status and reason.
    c.world.refuse_next = Some(Refusal {
        status: StatusCode::Unauthorized,
        reason: String::new(),
        challenge: vec!["Basic realm=\"x\"".to_owned()],
    });
    let r = c.req("DESCRIBE", CAM, &[]);
    assert_eq!(status(&r), 401);
    assert_eq!(header(&r, &names::WWW_AUTHENTICATE), "Basic realm=\"x\"");
    c.world.refuse_next = Some(Refusal::new(
        StatusCode::ServiceUnavailable,
        "too many readers",
    ));
    let r = c.req("PLAY", CAM, &[("Session", id.as_str())]);
    assert_eq!(status(&r), 503);
    assert_eq!(&r.response.body[..], b"too many readers");
    let sid = SessionId::new(id);
    assert_eq!(
        c.conn.session(&sid).map(Session::state),
        Some(State::Ready),
        "not committed"
    );
}

#[test]
fn idle_sessions_and_connections_time_out() {
    let mut c = Client::new();
    assert_eq!(c.conn.poll_timeout(), Some(c.t0 + Duration::from_secs(60)));
    c.advance(Duration::from_secs(59));
    assert!(!c.conn.handle_timeout(c.now).close);
    let r = c.req("SETUP", "rtsp://h/cam/trackID=0", TCP01);
    let id = session_of(&r);
    // Keep-alives extend the session.
    for _ in 0..3 {
        c.advance(Duration::from_secs(50));
        assert!(c.conn.handle_timeout(c.now).expired.is_empty());
        let r = c.req("GET_PARAMETER", CAM, &[("Session", id.as_str())]);
        assert_eq!(status(&r), 200);
    }
    assert_eq!(c.conn.poll_timeout(), Some(c.now + Duration::from_secs(60)));
    c.advance(Duration::from_secs(60));
    let timeouts = c.conn.handle_timeout(c.now);
    assert_eq!(timeouts.expired.len(), 1);
    assert_eq!(timeouts.expired[0].1, Expiry::Timeout);
    assert!(timeouts.close, "its last session expired");
}

#[test]
fn a_playing_tcp_reader_never_expires_but_a_udp_one_does() {
    let mut c = Client::new();
    let r = c.req("SETUP", "rtsp://h/cam/trackID=0", TCP01);
    let tcp = session_of(&r);
    c.req("PLAY", CAM, &[("Session", tcp.as_str())]);
    let r = c.req(
        "SETUP",
        "rtsp://h/other/trackID=0",
        &[("Transport", "RTP/AVP;unicast;client_port=6000-6001")],
    );
    let udp = session_of(&r);
    c.req("PLAY", "rtsp://h/other", &[("Session", udp.as_str())]);
    let start = c.now;
    // RTCP from the UDP reader keeps it, like requests do.
    c.advance(Duration::from_secs(40));
    c.conn.media(&SessionId::new(udp.clone()), c.now);
    c.advance(Duration::from_secs(40));
    assert!(c.conn.handle_timeout(c.now).expired.is_empty());
    assert_eq!(
        c.conn.poll_timeout(),
        Some(start + Duration::from_secs(100))
    );
    c.advance(Duration::from_secs(20));
    let timeouts = c.conn.handle_timeout(c.now);
    assert_eq!(timeouts.expired.len(), 1);
    assert_eq!(timeouts.expired[0].0.id().as_str(), udp);
    assert!(!timeouts.close, "the TCP reader goes on");
    assert_eq!(c.conn.poll_timeout(), None);
    c.advance(Duration::from_secs(3600));
    assert!(c.conn.handle_timeout(c.now).expired.is_empty());
}

#[test]
fn a_silent_udp_publisher_expires_after_the_read_timeout() {
    let mut c = Client::new();
    let r = c.send(
        "ANNOUNCE",
        "rtsp://h/new",
        &[("Content-Type", "application/sdp")],
        SDP2,
    );
    let id = session_of(&r);
    let s = ("Session", id.as_str());
    for (track, ports) in [(0, "5000-5001"), (1, "5002-5003")] {
        let transport = format!("RTP/AVP;unicast;client_port={ports};mode=record");
        let url = format!("rtsp://h/new/trackID={track}");
        let r = c.req("SETUP", &url, &[s, ("Transport", transport.as_str())]);
        assert_eq!(status(&r), 200);
    }
    c.advance(Duration::from_secs(5));
    c.req("RECORD", "rtsp://h/new", &[s]);
    let sid = SessionId::new(id.clone());
    // Packets keep it; keep-alive requests alone do not.
    for _ in 0..5 {
        c.advance(Duration::from_secs(8));
        c.conn.media(&sid, c.now);
        c.req("GET_PARAMETER", "rtsp://h/new", &[s]);
        assert!(c.conn.handle_timeout(c.now).expired.is_empty());
    }
    c.advance(Duration::from_secs(9));
    c.req("GET_PARAMETER", "rtsp://h/new", &[s]);
    assert!(c.conn.handle_timeout(c.now).expired.is_empty());
    c.advance(Duration::from_secs(1));
    let timeouts = c.conn.handle_timeout(c.now);
    assert_eq!(timeouts.expired.len(), 1);
    assert_eq!(timeouts.expired[0].1, Expiry::NoUdpPackets);
    assert_eq!(
        timeouts.expired[0].1.as_str(),
        "no UDP packets received recently"
    );
    assert!(timeouts.close);
}

#[test]
fn the_read_timeout_is_configurable() {
    let t0 = Instant::now();
    let config = Config {
        read_timeout: Duration::from_secs(2),
        ..Config::default()
    };
    let mut c = Client::new();
    c.conn = Connection::new(config, t0);
    c.now = t0;
    let sdp = "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=x\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n";
    let r = c.send("ANNOUNCE", "rtsp://h/a", &[], sdp);
    let id = session_of(&r);
    let s = ("Session", id.as_str());
    let transport = ("Transport", "RTP/AVP;client_port=5000-5001;mode=record");
    assert_eq!(status(&c.req("SETUP", "rtsp://h/a", &[s, transport])), 200);
    assert_eq!(status(&c.req("RECORD", "rtsp://h/a", &[s])), 200);
    assert_eq!(c.conn.poll_timeout(), Some(t0 + Duration::from_secs(2)));
}

fn arbitrary_request() -> impl Strategy<Value = (usize, usize, usize, u8)> {
    (0usize..12, 0usize..4, 0usize..8, any::<u8>())
}

proptest! {
    /// Arbitrary request sequences (methods, URLs, session ids, transports, outcomes and
    /// time steps) never panic, and replies always echo CSeq.
    #[test]
    fn request_sequences_never_panic(steps in proptest::collection::vec(arbitrary_request(), 1..40)) {
        let methods = [
            "OPTIONS", "DESCRIBE", "ANNOUNCE", "SETUP", "PLAY", "PAUSE", "RECORD",
            "TEARDOWN", "GET_PARAMETER", "SET_PARAMETER", "REDIRECT", "FOO",
        ];
        let urls = ["rtsp://h/cam", "rtsp://h/cam/trackID=1", "rtsp://h/other/trackID=0", "rtsp://h/new"];
        let transports = [
            "RTP/AVP/TCP;unicast",
            "RTP/AVP/TCP;interleaved=0-1",
            "RTP/AVP/TCP;interleaved=2-3;mode=record",
            "RTP/AVP;unicast;client_port=5000-5001",
            "RTP/AVP;client_port=5002-5003;mode=record",
            "RTP/AVP;multicast",
            "garbage",
            "RTP/AVP/TCP;interleaved=255",
        ];
        let mut c = Client::new();
        for (method, url, transport, extra) in steps {
            let mut headers: Vec<(&str, String)> = vec![("Transport", transports[transport].to_owned())];
            let known: Vec<String> = c.conn.sessions().iter().map(|s| s.id().to_string()).collect();
            match extra % 4 {
                0 => {}
                1 => if let Some(id) = known.first() { headers.push(("Session", id.clone())) },
                2 => if let Some(id) = known.last() { headers.push(("Session", id.clone())) },
                _ => headers.push(("Session", format!("s{}", extra % 7))),
            }
            if extra % 5 == 0 {
                c.world.refuse_next = Some(Refusal::new(StatusCode::Forbidden, "no"));
            }
            let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let body = if methods[method] == "ANNOUNCE" && extra % 3 != 0 { SDP2 } else { "" };
            c.send(methods[method], urls[url], &headers, body);
            c.advance(Duration::from_secs(u64::from(extra % 32)));
            if let Some(deadline) = c.conn.poll_timeout() {
                prop_assert!(deadline >= c.t0);
            }
            let timeouts = c.conn.handle_timeout(c.now);
            for (session, _) in timeouts.expired {
                prop_assert!(c.conn.session(session.id()).is_none());
            }
            for channel in 0..=u8::MAX {
                let _ = c.conn.inbound(channel);
            }
        }
    }
}
