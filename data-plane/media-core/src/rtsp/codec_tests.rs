use bytes::{Bytes, BytesMut};

use super::*;
use crate::rtsp::message::names::{CONTENT_TYPE, CSEQ, SESSION, TRANSPORT, WWW_AUTHENTICATE};

fn decode_all(input: &[u8]) -> (Vec<Item>, Result<(), DecodeError>, BytesMut) {
    let mut decoder = Decoder::default();
    let mut buf = BytesMut::from(input);
    let mut items = Vec::new();
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(item)) => items.push(item),
            Ok(None) => return (items, Ok(()), buf),
            Err(e) => return (items, Err(e), buf),
        }
    }
}

fn one(input: &[u8]) -> Item {
    let (items, result, rest) = decode_all(input);
    assert_eq!(result, Ok(()));
    assert!(rest.is_empty(), "left over: {rest:?}");
    assert_eq!(items.len(), 1, "{items:?}");
    items.into_iter().next().expect("one item")
}

fn request(item: Item) -> Request {
    match item {
        Item::Request(r) => r,
        other => panic!("not a request: {other:?}"),
    }
}

fn error(input: &[u8]) -> DecodeError {
    let (_, result, _) = decode_all(input);
    result.expect_err("must not decode")
}

fn header<'a>(req: &'a Request, name: &'static str) -> Option<&'a str> {
    let name = HeaderName::from_static_str(name).expect("ascii");
    req.header(&name)
}

const FFMPEG_SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\na=tool:libavformat 61.7.100\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z2QAH6zZQFAFuwEQAAADABAAAAMDyPGDGWA=,aOvjyyLA; profile-level-id=64001F\r\na=control:streamid=0\r\nm=audio 0 RTP/AVP 97\r\nb=AS:128\r\na=rtpmap:97 MPEG4-GENERIC/44100/2\r\na=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=121056E500\r\na=control:streamid=1\r\n";

/// What `ffmpeg -f rtsp -rtsp_transport tcp rtsp://127.0.0.1:8554/mystream` sends, followed
/// by the first interleaved RTP packet, all in one read.
#[test]
fn ffmpeg_publish_sequence_in_one_buffer() {
    let mut wire = Vec::new();
    wire.extend_from_slice(
        b"OPTIONS rtsp://127.0.0.1:8554/mystream RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: Lavf61.7.100\r\n\r\n",
    );
    wire.extend_from_slice(
        format!(
            "ANNOUNCE rtsp://127.0.0.1:8554/mystream RTSP/1.0\r\nContent-Type: application/sdp\r\nCSeq: 2\r\nUser-Agent: Lavf61.7.100\r\nContent-Length: {}\r\n\r\n{FFMPEG_SDP}",
            FFMPEG_SDP.len()
        )
        .as_bytes(),
    );
    wire.extend_from_slice(b"SETUP rtsp://127.0.0.1:8554/mystream/streamid=0 RTSP/1.0\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1;mode=record\r\nCSeq: 3\r\nUser-Agent: Lavf61.7.100\r\n\r\n");
    wire.extend_from_slice(b"RECORD rtsp://127.0.0.1:8554/mystream RTSP/1.0\r\nRange: npt=0.000-\r\nCSeq: 5\r\nUser-Agent: Lavf61.7.100\r\nSession: 4b2d5f0c1a\r\n\r\n");
    wire.extend_from_slice(&[b'$', 0, 0, 4, 0x80, 96, 0, 1]);

    let (items, result, rest) = decode_all(&wire);
    assert_eq!(result, Ok(()));
    assert!(rest.is_empty());
    assert_eq!(items.len(), 5);

    let announce = request(items[1].clone());
    assert_eq!(announce.method, Method::Announce);
    assert_eq!(
        announce.uri.as_ref().map(|u| u.as_str()),
        Some("rtsp://127.0.0.1:8554/mystream")
    );
    assert_eq!(announce.body.as_ref(), FFMPEG_SDP.as_bytes());
    assert_eq!(announce.header(&CONTENT_TYPE), Some("application/sdp"));
    // Framing, not content: the body length says it.
    assert_eq!(header(&announce, "Content-Length"), None);

    let setup = request(items[2].clone());
    assert_eq!(
        setup.header(&TRANSPORT),
        Some("RTP/AVP/TCP;unicast;interleaved=0-1;mode=record")
    );
    let record = request(items[3].clone());
    assert_eq!(record.header(&SESSION), Some("4b2d5f0c1a"));
    assert_eq!(
        items[4],
        Item::Interleaved {
            channel: 0,
            payload: Bytes::from_static(&[0x80, 96, 0, 1])
        }
    );
}

/// GStreamer's rtspclientsink and many cameras' clients: lowercase names, bare LF endings,
/// CRLF keep-alives between messages, no space after the colon.
#[test]
fn sloppy_clients_are_understood() {
    let wire =
        b"\r\n\r\nGET_PARAMETER rtsp://10.0.0.5/live RTSP/1.0\ncseq:7\nsession:  ABC123 \n\n\r\n";
    let req = request(one(wire));
    assert_eq!(req.method, Method::GetParameter);
    assert_eq!(header(&req, "CSeq"), Some("7"));
    assert_eq!(header(&req, "Session"), Some("ABC123"));
    assert!(req.body.is_empty());
}

/// `gst-launch-1.0 videotestsrc ! x264enc ! rtspclientsink location=rtsp://127.0.0.1:8554/test`
#[test]
fn gstreamer_rtspclientsink_announce() {
    let sdp = "v=0\r\no=- 1188340656180883 1 IN IP4 127.0.0.1\r\ns=Session streamed with GStreamer\r\ni=rtsp-server\r\nt=0 0\r\na=tool:GStreamer\r\na=type:broadcast\r\nm=video 0 RTP/AVP 96\r\nc=IN IP4 127.0.0.1\r\na=rtpmap:96 H264/90000\r\na=framerate:30\r\na=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z0LAHtkDxWhAAAADAEAAAAwjxYuSAAAA,aMuMsg==;profile-level-id=42c01e;level-asymmetry-allowed=1\r\na=control:stream=0\r\n";
    let wire = format!(
        "ANNOUNCE rtsp://127.0.0.1:8554/test RTSP/1.0\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\nCSeq: 1\r\nUser-Agent: GStreamer/1.22.0\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\n{sdp}",
        sdp.len()
    );
    let req = request(one(wire.as_bytes()));
    assert_eq!(req.method, Method::Announce);
    let described = crate::sdp::SessionDescription::parse(&req.body).expect("valid SDP");
    assert_eq!(described.tracks.len(), 1);
    assert_eq!(described.tracks[0].control.as_deref(), Some("stream=0"));
}

#[test]
fn vlc_describe() {
    let wire = b"DESCRIBE rtsp://127.0.0.1:8554/mystream RTSP/1.0\r\nCSeq: 3\r\nUser-Agent: LibVLC/3.0.20 (LIVE555 Streaming Media v2016.11.28)\r\nAccept: application/sdp\r\n\r\n";
    let req = request(one(wire));
    assert_eq!(req.method, Method::Describe);
    assert_eq!(header(&req, "accept"), Some("application/sdp"));
}

/// rtsp-types' header map would merge these (a name and its prefix compare equal there).
#[test]
fn headers_that_share_a_prefix_stay_apart() {
    let req = request(one(
        b"DESCRIBE rtsp://h/p RTSP/1.0\r\nC: x\r\nCSeq: 4\r\nAccept: application/sdp\r\nAccept-Language: en\r\n\r\n",
    ));
    assert_eq!(header(&req, "CSeq"), Some("4"));
    assert_eq!(header(&req, "Accept"), Some("application/sdp"));
    assert_eq!(header(&req, "Accept-Language"), Some("en"));
    assert_eq!(crate::rtsp::headers::cseq(&req.headers), Ok(4));
}

#[test]
fn camera_describe_response_with_latin1_server_header() {
    let sdp = "v=0\r\no=- 1109162014219182 1109162014219192 IN IP4 0.0.0.0\r\ns=Media Presentation\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n";
    let mut wire = format!(
        "RTSP/1.0 200 OK\r\nCSeq: 3\r\nContent-Type: application/sdp\r\nContent-Base: rtsp://192.168.1.64:554/Streaming/Channels/101/\r\nContent-Length: {}\r\nServer: ",
        sdp.len()
    )
    .into_bytes();
    wire.extend_from_slice(b"Cam\xe9ra\r\n\r\n");
    wire.extend_from_slice(sdp.as_bytes());
    let Item::Response(resp) = one(&wire) else {
        panic!("not a response");
    };
    assert_eq!(resp.status, StatusCode::Ok);
    assert_eq!(resp.reason, "OK");
    assert_eq!(resp.body.as_ref(), sdp.as_bytes());
    assert_eq!(resp.header(&names::SERVER), Some("Cam\u{fffd}ra"));
}

#[test]
fn responses_may_lack_cseq_and_reason() {
    let Item::Response(resp) = one(
        b"RTSP/1.0 401\r\nWWW-Authenticate: Digest realm=\"cam\", nonce=\"1\"\r\nWWW-Authenticate: Basic realm=\"cam\"\r\n\r\n",
    ) else {
        panic!("not a response");
    };
    assert_eq!(resp.status, StatusCode::Unauthorized);
    assert_eq!(resp.reason, "");
    let challenges: Vec<&str> = resp.headers.get_all(&WWW_AUTHENTICATE).collect();
    assert_eq!(
        challenges,
        ["Digest realm=\"cam\", nonce=\"1\"", "Basic realm=\"cam\""]
    );
}

#[test]
fn folded_header_lines_are_joined() {
    let req = request(one(
        b"SETUP rtsp://h/p/trackID=0 RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP;unicast;\r\n\tclient_port=5000-5001\r\n\r\n",
    ));
    assert_eq!(
        header(&req, "Transport"),
        Some("RTP/AVP;unicast; client_port=5000-5001")
    );
    // Joining never leaves blanks at either end, so the value survives a round trip.
    let req = request(one(
        b"OPTIONS * RTSP/1.0\r\nCSeq: 2\r\nX-Empty:\r\n  folded \r\nX-Tail: a\r\n \t \r\n\r\n",
    ));
    assert_eq!(header(&req, "X-Empty"), Some("folded"));
    assert_eq!(header(&req, "X-Tail"), Some("a"));
}

#[test]
fn incomplete_input_waits() {
    let wire = b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n";
    for cut in 0..wire.len() {
        let mut decoder = Decoder::default();
        let mut buf = BytesMut::from(&wire[..cut]);
        assert_eq!(decoder.decode(&mut buf), Ok(None), "cut at {cut}");
    }
    let mut decoder = Decoder::default();
    let mut buf = BytesMut::from(&[b'$', 1, 0, 10, 1, 2][..]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    buf.extend_from_slice(&[3, 4, 5, 6, 7, 8, 9, 10]);
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(Item::Interleaved {
            channel: 1,
            payload: Bytes::from_static(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
        }))
    );
}

#[test]
fn body_split_across_reads() {
    let mut decoder = Decoder::default();
    let mut buf = BytesMut::from(
        &b"SET_PARAMETER rtsp://h/p RTSP/1.0\r\nCSeq: 9\r\nContent-Length: 10\r\n\r\n01234"[..],
    );
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    buf.extend_from_slice(b"56789OPTIONS");
    let req = request(decoder.decode(&mut buf).expect("valid").expect("complete"));
    assert_eq!(req.body.as_ref(), b"0123456789");
    assert_eq!(&buf[..], b"OPTIONS");
}

#[test]
fn duplicate_content_length_is_rejected() {
    let e = error(b"ANNOUNCE rtsp://h/p RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\nabc");
    assert_eq!(
        e,
        DecodeError::DuplicateHeader {
            offset: 58,
            name: "Content-Length"
        }
    );
    assert_eq!(e.status_code(), StatusCode::BadRequest);
}

#[test]
fn bad_content_lengths() {
    for value in ["-1", "abc", "5, 5", "+5", "", "99999999999999999999999"] {
        let wire =
            format!("ANNOUNCE rtsp://h/p RTSP/1.0\r\nCSeq: 1\r\nContent-Length: {value}\r\n\r\n");
        assert_eq!(
            error(wire.as_bytes()),
            DecodeError::BadContentLength {
                offset: 39,
                value: value.to_owned()
            }
        );
    }
}

#[test]
fn missing_and_bad_cseq() {
    assert_eq!(
        error(b"OPTIONS * RTSP/1.0\r\nUser-Agent: x\r\n\r\n"),
        DecodeError::MissingCSeq { offset: 0 }
    );
    assert_eq!(
        error(b"OPTIONS * RTSP/1.0\r\nCSeq: one\r\n\r\n"),
        DecodeError::BadCSeq {
            offset: 20,
            value: "one".into()
        }
    );
    assert!(matches!(
        error(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nCSeq: 2\r\n\r\n"),
        DecodeError::DuplicateHeader { name: "CSeq", .. }
    ));
}

#[test]
fn limits_are_enforced() {
    let mut big = b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX-Pad: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 9000));
    assert_eq!(
        error(&big),
        DecodeError::HeaderTooLarge {
            offset: 0,
            limit: 8192
        }
    );

    let wire = b"ANNOUNCE rtsp://h/p RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 70000\r\n\r\n";
    let e = error(wire);
    assert_eq!(
        e,
        DecodeError::BodyTooLarge {
            offset: 39,
            length: 70000,
            limit: 65536
        }
    );
    assert_eq!(e.status_code(), StatusCode::RequestMessageBodyTooLarge);

    let mut many = b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n".to_vec();
    for i in 0..64 {
        many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert!(matches!(
        error(&many),
        DecodeError::TooManyHeaders { limit: 64, .. }
    ));

    let limits = Limits {
        max_interleaved: 1500,
        ..Limits::default()
    };
    let mut decoder = Decoder::new(limits);
    let mut buf = BytesMut::from(&[b'$', 2, 0x10, 0][..]);
    assert_eq!(
        decoder.decode(&mut buf),
        Err(DecodeError::InterleavedTooLarge {
            offset: 0,
            channel: 2,
            length: 4096,
            limit: 1500
        })
    );
}

#[test]
fn versions_other_than_1_0_are_refused() {
    for (wire, version) in [
        (&b"OPTIONS * RTSP/2.0\r\nCSeq: 1\r\n\r\n"[..], "RTSP/2.0"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1"),
        (b"RTSP/2.0 200 OK\r\nCSeq: 1\r\n\r\n", "RTSP/2.0"),
    ] {
        let e = error(wire);
        assert_eq!(
            e,
            DecodeError::UnsupportedVersion {
                offset: 0,
                version: version.into()
            }
        );
        assert_eq!(e.status_code(), StatusCode::RTSPVersionNotSupported);
    }
}

#[test]
fn garbage_fails_fast_with_the_offset_on_the_connection() {
    // A complete message, then RTP without a `$` frame: rejected at its first byte, without
    // waiting for a line end.
    let mut wire = b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n".to_vec();
    let first_len = wire.len() as u64;
    wire.extend_from_slice(&[0x80, 0x60, 0x00, 0x01]);
    let (items, result, _) = decode_all(&wire);
    assert_eq!(items.len(), 1);
    assert_eq!(
        result,
        Err(DecodeError::BadStartLine {
            offset: first_len,
            expected: "a method or RTSP/1.0"
        })
    );

    assert_eq!(
        error(b"HELLO\r\n\r\n"),
        DecodeError::BadStartLine {
            offset: 0,
            expected: "'METHOD URI RTSP/1.0'"
        }
    );
    assert!(matches!(
        error(b"OPTIONS not-a-url RTSP/1.0\r\nCSeq: 1\r\n\r\n"),
        DecodeError::BadRequestUri { offset: 0, .. }
    ));
    assert_eq!(
        error(b"OPTIONS * RTSP/1.0\r\nCSeq 1\r\n\r\n"),
        DecodeError::BadHeader {
            offset: 20,
            expected: "':' after the header name"
        }
    );
    assert_eq!(
        error(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\rX: y\r\n\r\n"),
        DecodeError::BadHeader {
            offset: 27,
            expected: "printable text"
        }
    );
}

#[test]
fn errors_are_final() {
    let mut decoder = Decoder::default();
    let mut buf = BytesMut::from(&b"\x00OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n"[..]);
    let first = decoder.decode(&mut buf);
    assert!(first.is_err());
    assert_eq!(decoder.decode(&mut buf), first);
}

fn options_request() -> Request {
    let url = Url::parse("rtsp://127.0.0.1:8554/mystream").expect("url");
    Request::new(Method::Options, Some(url)).with_header(CSEQ, "1")
}

#[test]
fn encoded_messages_decode_to_themselves() {
    let mut buf = BytesMut::new();
    let req = options_request();
    encode_request(&req, &mut buf).expect("valid");
    let resp = Response::new(StatusCode::Ok)
        .with_header(CSEQ, "2")
        .with_header(CONTENT_TYPE, "application/sdp")
        .with_body(Bytes::from_static(b"v=0\r\n"));
    encode_response(&resp, &mut buf).expect("valid");
    encode_interleaved(3, b"rtcp", &mut buf).expect("small");
    assert!(buf.starts_with(b"OPTIONS rtsp://127.0.0.1:8554/mystream RTSP/1.0\r\nCSeq: 1\r\n\r\n"));

    let (items, result, rest) = decode_all(&buf);
    assert_eq!(result, Ok(()));
    assert!(rest.is_empty());
    assert_eq!(
        items,
        vec![
            Item::Request(req),
            Item::Response(resp),
            Item::Interleaved {
                channel: 3,
                payload: Bytes::from_static(b"rtcp")
            }
        ]
    );
}

#[test]
fn encoder_refuses_what_would_break_framing() {
    let mut buf = BytesMut::new();
    let req = options_request().with_header(
        HeaderName::from_static_str("X-Evil").expect("ascii"),
        "a\r\nCSeq: 9",
    );
    assert_eq!(
        encode_request(&req, &mut buf),
        Err(EncodeError::BadHeaderValue {
            name: "X-Evil".into()
        })
    );
    let mut resp = Response::new(StatusCode::Ok);
    resp.reason = "OK\r\n".into();
    assert!(matches!(
        encode_response(&resp, &mut buf),
        Err(EncodeError::BadReasonPhrase { .. })
    ));
    let odd = Response::new(StatusCode::Extension(1234));
    assert_eq!(
        encode_response(&odd, &mut buf),
        Err(EncodeError::BadStatusCode { code: 1234 })
    );
    assert_eq!(
        encode_interleaved(0, &vec![0; 70000], &mut buf),
        Err(EncodeError::PayloadTooLarge { length: 70000 })
    );
    assert!(buf.is_empty());
}

#[test]
fn content_length_is_derived_from_the_body() {
    let req = options_request()
        .with_body(Bytes::from_static(b"abc"))
        .with_header(names::CONTENT_LENGTH, "999");
    let mut buf = BytesMut::new();
    encode_request(&req, &mut buf).expect("valid");
    let text = String::from_utf8(buf.to_vec()).expect("utf-8");
    assert!(text.contains("Content-Length: 3\r\n"), "{text}");
    assert!(!text.contains("999"));
}

#[test]
fn debug_output_hides_credentials() {
    let req = request(one(
        b"DESCRIBE rtsp://admin:hunter2@cam/live?token=eyJx.y.z RTSP/1.0\r\nCSeq: 1\r\nAuthorization: Basic YWRtaW46aHVudGVyMg==\r\n\r\n",
    ));
    let printed = format!("{:?}", Item::Request(req));
    for secret in ["hunter2", "YWRtaW46aHVudGVyMg", "eyJx"] {
        assert!(!printed.contains(secret), "{printed}");
    }
    assert!(printed.contains("rtsp://cam/live?token=***"), "{printed}");
}
