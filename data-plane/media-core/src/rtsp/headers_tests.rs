use super::*;
use crate::rtsp::message::Method;

fn spec(text: &str) -> TransportSpec {
    TransportSpec::parse(text).expect("valid transport")
}

#[test]
fn ffmpeg_tcp_record() {
    let t = spec("RTP/AVP/TCP;unicast;interleaved=0-1;mode=record");
    assert_eq!(t.lower, LowerTransport::Tcp);
    assert_eq!(t.profile, Profile::Avp);
    assert_eq!(t.delivery, Some(Delivery::Unicast));
    assert_eq!(t.interleaved, Some((0, 1)));
    assert!(t.is_record());
}

#[test]
fn ffmpeg_and_gstreamer_udp() {
    let t = spec("RTP/AVP/UDP;unicast;client_port=12000-12001;mode=record");
    assert_eq!(t.lower, LowerTransport::Udp);
    assert_eq!(t.client_port, Some((12000, 12001)));
    assert!(t.is_record());

    // GStreamer writes the profile without /UDP and quotes nothing; VLC the same for PLAY.
    let t = spec("RTP/AVP;unicast;client_port=57000-57001");
    assert_eq!(t.lower, LowerTransport::Udp);
    assert_eq!(t.mode, None);
    assert!(!t.is_record());
}

#[test]
fn mode_is_case_insensitive_and_may_be_quoted() {
    for text in [
        "RTP/AVP;mode=RECORD",
        "RTP/AVP;mode=\"record\"",
        "RTP/AVP;MODE=Record",
        "RTP/AVP;mode=receive",
    ] {
        assert!(spec(text).is_record(), "{text}");
    }
    assert_eq!(
        spec("rtp/avp/tcp;mode=\"PLAY\"").mode,
        Some(TransportMode::Play)
    );
    assert_eq!(
        TransportSpec::parse("RTP/AVP;mode=\"PLAY,RECORD\""),
        Err(HeaderError::UnsupportedMode {
            text: "PLAY,RECORD".into()
        })
    );
}

#[test]
fn camera_multicast_and_ssrc() {
    let t = spec("RTP/AVP;multicast;destination=224.1.0.7;port=8002-8003;ttl=16;ssrc=1a2B3c4D");
    assert!(t.is_multicast());
    assert_eq!(t.destination.as_deref(), Some("224.1.0.7"));
    assert_eq!(t.port, Some((8002, 8003)));
    assert_eq!(t.ttl, Some(16));
    assert_eq!(t.ssrc, Some(0x1a2b_3c4d));
    // Short SSRCs and single ports/channels.
    let t = spec("RTP/AVP/TCP;interleaved=4;ssrc=beef;server_port=8000");
    assert_eq!(t.interleaved, Some((4, 5)));
    assert_eq!(t.ssrc, Some(0xbeef));
    assert_eq!(t.server_port, Some((8000, 8001)));
}

#[test]
fn bad_values_name_the_offending_text() {
    assert_eq!(
        TransportSpec::parse("RTP/AVP/TCP;interleaved=0-300"),
        Err(HeaderError::Bad {
            header: "Transport",
            what: "interleaved",
            text: "0-300".into()
        })
    );
    assert_eq!(
        TransportSpec::parse("RTP/AVP/TCP;interleaved=255"),
        Err(HeaderError::Bad {
            header: "Transport",
            what: "interleaved",
            text: "255".into()
        })
    );
    assert!(matches!(
        TransportSpec::parse("RTP/AVP;client_port"),
        Err(HeaderError::Bad {
            what: "client_port",
            ..
        })
    ));
    assert!(matches!(
        TransportSpec::parse("RTP/AVP;ssrc=123456789"),
        Err(HeaderError::Bad { what: "ssrc", .. })
    ));
    let e = TransportSpec::parse("RAW/RAW/UDP;unicast").expect_err("not RTP");
    assert_eq!(
        e,
        HeaderError::UnsupportedTransport {
            text: "RAW/RAW/UDP".into()
        }
    );
    assert_eq!(e.status_code(), StatusCode::UnsupportedTransport);
}

#[test]
fn first_acceptable_spec_wins() {
    // GStreamer rtspsrc offering everything; the server has no UDP listener.
    let offered = "RTP/AVP;multicast, RTP/AVP;unicast;client_port=5000-5001, RTP/AVP/TCP;unicast;interleaved=0-1";
    let chosen = choose_transport(offered, |t| t.lower == LowerTransport::Tcp).expect("tcp");
    assert_eq!(chosen.interleaved, Some((0, 1)));
    let chosen = choose_transport(offered, |t| !t.is_multicast()).expect("unicast");
    assert_eq!(chosen.client_port, Some((5000, 5001)));

    // An exotic first offer is skipped, not fatal.
    let chosen =
        choose_transport("RTP/AVPF;unicast,RTP/AVP/TCP;interleaved=2-3", |_| true).expect("second");
    assert_eq!(chosen.interleaved, Some((2, 3)));

    let refused = choose_transport(offered, |_| false).expect_err("none");
    assert!(matches!(refused, HeaderError::NoAcceptableTransport { .. }));
    assert_eq!(refused.status_code(), StatusCode::UnsupportedTransport);
    assert!(matches!(
        choose_transport("RAW/RAW/UDP", |_| true),
        Err(HeaderError::UnsupportedTransport { .. })
    ));
    assert!(matches!(
        choose_transport(" ", |_| true),
        Err(HeaderError::Bad { .. })
    ));
}

#[test]
fn response_transports_are_canonical() {
    let mut t = TransportSpec::new(Profile::Avp, LowerTransport::Udp);
    t.delivery = Some(Delivery::Unicast);
    t.client_port = Some((5000, 5001));
    t.server_port = Some((8000, 8001));
    t.ssrc = Some(0xdead_beef);
    assert_eq!(
        t.to_string(),
        "RTP/AVP;unicast;client_port=5000-5001;server_port=8000-8001;ssrc=DEADBEEF"
    );
    assert_eq!(spec(&t.to_string()), t);

    let mut t = TransportSpec::new(Profile::Avp, LowerTransport::Tcp);
    t.delivery = Some(Delivery::Unicast);
    t.interleaved = Some((2, 3));
    t.mode = Some(TransportMode::Record);
    assert_eq!(
        t.to_string(),
        "RTP/AVP/TCP;unicast;interleaved=2-3;mode=record"
    );
}

#[test]
fn session_header() {
    assert_eq!(
        SessionHeader::parse(" 4b2d5f0c1a ;timeout=60"),
        Ok(SessionHeader {
            id: "4b2d5f0c1a".into(),
            timeout: Some(60)
        })
    );
    let s = SessionHeader {
        id: "abc".into(),
        timeout: Some(60),
    };
    assert_eq!(s.to_string(), "abc;timeout=60");
    assert_eq!(SessionHeader::parse("abc").map(|s| s.timeout), Ok(None));
    assert!(matches!(
        SessionHeader::parse(";timeout=60"),
        Err(HeaderError::Bad { what: "id", .. })
    ));
    assert!(matches!(
        SessionHeader::parse("abc;timeout=soon"),
        Err(HeaderError::Bad {
            what: "timeout",
            ..
        })
    ));
    assert_eq!(
        HeaderError::Missing { header: "Session" }.status_code(),
        StatusCode::SessionNotFound
    );
}

#[test]
fn rtp_info_round_trip() {
    let entries = vec![
        RtpInfoEntry {
            url: "rtsp://127.0.0.1:8554/mystream/trackID=0".into(),
            seq: Some(17),
            rtptime: Some(3_000_000_000),
        },
        RtpInfoEntry {
            url: "rtsp://127.0.0.1:8554/mystream/trackID=1".into(),
            seq: None,
            rtptime: None,
        },
    ];
    let text = format_rtp_info(&entries);
    assert_eq!(
        text,
        "url=rtsp://127.0.0.1:8554/mystream/trackID=0;seq=17;rtptime=3000000000,url=rtsp://127.0.0.1:8554/mystream/trackID=1"
    );
    assert_eq!(parse_rtp_info(&text), Ok(entries));
    assert!(matches!(
        parse_rtp_info("url=rtsp://h/p;seq=70000"),
        Err(HeaderError::Bad { what: "seq", .. })
    ));
}

#[test]
fn cseq_is_echoed() {
    let req = Request::new(Method::Options, None).with_header(CSEQ, "42");
    assert_eq!(cseq(&req.headers), Ok(42));
    let resp = respond_to(&req, StatusCode::Ok);
    assert_eq!(resp.header(&CSEQ), Some("42"));
    assert_eq!(resp.reason, "OK");
    let resp = respond_to(&req, StatusCode::NotFound);
    assert_eq!(resp.reason, "Not Found");
    assert_eq!(
        cseq(&Request::new(Method::Options, None).headers),
        Err(HeaderError::Missing { header: "CSeq" })
    );
}
