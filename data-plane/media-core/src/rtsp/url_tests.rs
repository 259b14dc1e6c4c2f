use crate::rtsp::message::Method;

use super::*;

fn url(text: &str) -> RtspUrl {
    RtspUrl::parse(text).expect("valid URL")
}

fn target(path: &str, query: Option<&str>) -> Target {
    Target {
        path: path.into(),
        query: query.map(str::to_owned),
    }
}

#[test]
fn plain_requests() {
    let u = url("rtsp://127.0.0.1:8554/mystream");
    assert_eq!(u.scheme(), Scheme::Rtsp);
    assert_eq!(u.authority(), "127.0.0.1:8554");
    assert_eq!(u.target(&Method::Describe), Ok(target("mystream", None)));
    assert_eq!(
        u.target(&Method::Describe)
            .ok()
            .and_then(|t| t.path_name().ok())
            .map(|n| n.into_string()),
        Some("mystream".into())
    );
    let u = url("rtsps://cam.example:322/site-a/door.2?token=abc");
    assert_eq!(u.scheme(), Scheme::Rtsps);
    assert_eq!(
        u.target(&Method::Options),
        Ok(target("site-a/door.2", Some("token=abc")))
    );
    assert_eq!(
        u.url_for("site-a/door.2"),
        "rtsps://cam.example:322/site-a/door.2"
    );
}

#[test]
fn trailing_slash_is_dropped_except_on_announce() {
    // GStreamer's aggregate PLAY and ffmpeg's aggregate requests with a query.
    let u = url("rtsp://127.0.0.1:8554/mystream/");
    assert_eq!(u.target(&Method::Play), Ok(target("mystream", None)));
    assert_eq!(u.target(&Method::Announce), Ok(target("mystream/", None)));
    let u = url("rtsp://127.0.0.1:8554/mystream?token=abc/");
    assert_eq!(
        u.target(&Method::Play),
        Ok(target("mystream", Some("token=abc")))
    );
}

#[test]
fn percent_encoding_is_decoded() {
    let u = url("rtsp://h/my%5Fstream/cam%2F1");
    assert_eq!(
        u.target(&Method::Describe),
        Ok(target("my_stream/cam/1", None))
    );
    assert_eq!(
        url("rtsp://h/bad%zz").target(&Method::Describe),
        Err(UrlError::BadPercentEncoding {
            path: "/bad%zz".into()
        })
    );
    assert_eq!(
        url("rtsp://h/bad%FF").target(&Method::Describe),
        Err(UrlError::BadPercentEncoding {
            path: "/bad%FF".into()
        })
    );
}

#[test]
fn token_query_parameter() {
    let t = url("rtsp://h/cam?foo=1&token=eyJ.a%2Bb.c&x").target(&Method::Describe);
    assert_eq!(t.ok().and_then(|t| t.token()), Some("eyJ.a+b.c".into()));
    let t = url("rtsp://h/cam?token=a+b").target(&Method::Describe);
    assert_eq!(t.ok().and_then(|t| t.token()), Some("a b".into()));
    let t = url("rtsp://h/cam").target(&Method::Describe);
    assert_eq!(t.ok().and_then(|t| t.token()), None);
}

#[test]
fn setup_controls_of_real_clients() {
    // ffmpeg publishing, GStreamer rtspclientsink publishing, VLC reading.
    for (text, path, control) in [
        (
            "rtsp://127.0.0.1:8554/mystream/streamid=0",
            "mystream",
            "streamid=0",
        ),
        (
            "rtsp://127.0.0.1:8554/mystream/stream=0",
            "mystream",
            "stream=0",
        ),
        (
            "rtsp://127.0.0.1:8554/mystream/trackID=1",
            "mystream",
            "trackID=1",
        ),
        ("rtsp://127.0.0.1:8554/a/b/trackID=1", "a/b", "trackID=1"),
    ] {
        assert_eq!(
            url(text).setup_target(),
            Ok(SetupTarget {
                target: target(path, None),
                control: Some(control.into())
            }),
            "{text}"
        );
    }
    // ffmpeg with a query puts the control after it.
    let s = url("rtsp://127.0.0.1:8554/mystream?token=abc/trackID=0").setup_target();
    assert_eq!(
        s,
        Ok(SetupTarget {
            target: target("mystream", Some("token=abc")),
            control: Some("trackID=0".into())
        })
    );
    assert_eq!(s.and_then(|s| s.track_id()), Ok(0));
    // Aggregate-looking SETUPs (ffmpeg reading MPEG-TS; a single-track path).
    for text in [
        "rtsp://h/mystream/",
        "rtsp://h/mystream",
        "rtsp://h/mystream?token=x/",
    ] {
        let s = url(text).setup_target().expect("valid");
        assert_eq!(s.target.path, "mystream", "{text}");
        assert_eq!(s.control, None, "{text}");
        assert_eq!(s.track_id(), Ok(0));
    }
}

#[test]
fn play_setup_needs_our_track_ids() {
    let s = url("rtsp://h/mystream/trackID=3")
        .setup_target()
        .expect("valid");
    assert_eq!(s.track_id(), Ok(3));
    let s = url("rtsp://h/mystream/streamid=0")
        .setup_target()
        .expect("valid");
    assert_eq!(
        s.track_id(),
        Err(UrlError::BadTrackId {
            control: "streamid=0".into()
        })
    );
}

#[test]
fn record_setup_matches_announced_controls() {
    let announced = target("mystream", None);
    let controls = [Some("streamid=0"), Some("streamid=1")];
    let u = url("rtsp://127.0.0.1:8554/mystream/streamid=1");
    assert_eq!(u.record_track(&announced, controls), Some(1));
    let u = url("rtsp://127.0.0.1:8554/other/streamid=1");
    assert_eq!(u.record_track(&announced, controls), None);

    // ffmpeg with a token: control after the query.
    let announced = target("mystream", Some("token=abc"));
    let u = url("rtsp://127.0.0.1:8554/mystream?token=abc/streamid=0");
    assert_eq!(u.record_track(&announced, controls), Some(0));
    // GStreamer with a token: control on the path, query after it.
    let u = url("rtsp://127.0.0.1:8554/mystream/stream=0?token=abc");
    assert_eq!(u.record_track(&announced, [Some("stream=0")]), Some(0));

    // Absolute controls match on path and query, whatever host the client used.
    let announced = target("cam", None);
    let abs = [Some(
        "rtsp://192.168.1.64:554/cam/trackID=1?transportmode=unicast",
    )];
    let u = url("rtsp://10.0.0.1:8554/cam/trackID=1?transportmode=unicast");
    assert_eq!(u.record_track(&announced, abs), Some(0));

    // A single track without a control is set up on the announced URL itself.
    let u = url("rtsp://h/cam");
    assert_eq!(u.record_track(&announced, [None]), Some(0));
}

#[test]
fn bad_urls() {
    assert_eq!(
        RtspUrl::parse("http://h/p"),
        Err(UrlError::UnsupportedScheme {
            scheme: "http".into()
        })
    );
    assert!(matches!(
        RtspUrl::parse("/just/a/path"),
        Err(UrlError::Invalid { .. })
    ));
    assert_eq!(RtspUrl::parse("rtsp:/p"), Err(UrlError::MissingHost));
}

#[test]
fn debug_output_masks_tokens() {
    let u = url("rtsp://h/cam?x=1&token=eyJhbGciOi.e30.sig/trackID=0");
    let printed = format!("{u:?} {:?}", u.setup_target());
    assert!(!printed.contains("eyJ"), "{printed}");
    assert!(printed.contains("token=***/trackID=0"), "{printed}");
}
