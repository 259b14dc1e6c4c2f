use bytes::Bytes;

use super::codec::{base64_decode, base64_encode};
use super::*;

/// `ffmpeg -re -f lavfi -i testsrc2 -f lavfi -i sine -c:v libx264 -c:a aac -f rtsp ...`
const FFMPEG: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\na=tool:libavformat 61.7.100\r\nm=video 0 RTP/AVP 96\r\nb=AS:1200\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z2QAH6zZQFAFuwEQAAADABAAAAMDyPGDGWA=,aOvjyyLA; profile-level-id=64001F\r\na=control:streamid=0\r\nm=audio 0 RTP/AVP 97\r\nb=AS:128\r\na=rtpmap:97 MPEG4-GENERIC/44100/2\r\na=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=121056E500\r\na=control:streamid=1\r\n";

/// GStreamer `rtspclientsink` with x264enc.
const GSTREAMER: &str = "v=0\r\no=- 1188340656180883 1 IN IP4 127.0.0.1\r\ns=Session streamed with GStreamer\r\ni=rtsp-server\r\nt=0 0\r\na=tool:GStreamer\r\na=type:broadcast\r\nm=video 0 RTP/AVP 96\r\nc=IN IP4 127.0.0.1\r\na=rtpmap:96 H264/90000\r\na=framerate:30\r\na=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z0LAHtkDxWhAAAADAEAAAAwjxYuSAAAA,aMuMsg==;profile-level-id=42c01e;level-asymmetry-allowed=1\r\na=ts-refclk:local\r\na=mediaclk:sender\r\na=control:stream=0\r\n";

/// A Hikvision camera's DESCRIBE answer: absolute controls, static PCMA, vendor attributes.
const CAMERA: &str = "v=0\r\no=- 1109162014219182 1109162014219192 IN IP4 0.0.0.0\r\ns=Media Presentation\r\ne=NONE\r\nb=AS:5050\r\nt=0 0\r\na=control:rtsp://192.168.1.64:554/Streaming/Channels/101/?transportmode=unicast\r\nm=video 0 RTP/AVP 96\r\nc=IN IP4 0.0.0.0\r\nb=AS:5000\r\na=recvonly\r\na=x-dimensions:1920,1080\r\na=control:rtsp://192.168.1.64:554/Streaming/Channels/101/trackID=1?transportmode=unicast\r\na=rtpmap:96 H265/90000\r\na=fmtp:96 sprop-sps=QgEBAWAAAAMAsAAAAwAAAwB7oAPAgBDlja5JMvTcBAQEAg==; sprop-pps=RAHA8vA8kAA=; sprop-vps=QAEMAf//AWAAAAMAsAAAAwAAAwB7rAk=\r\nm=audio 0 RTP/AVP 8\r\nc=IN IP4 0.0.0.0\r\nb=AS:50\r\na=recvonly\r\na=control:rtsp://192.168.1.64:554/Streaming/Channels/101/trackID=2?transportmode=unicast\r\na=Media_header:MEDIAINFO=494D4B48010100000400010010710110401F000000FA000000000000000000000000000000000000;\r\na=appversion:1.0\r\nm=application 0 RTP/AVP 107\r\na=rtpmap:107 vnd.onvif.metadata/90000\r\na=control:rtsp://192.168.1.64:554/Streaming/Channels/101/trackID=3\r\n";

fn parse(text: &str) -> SessionDescription {
    SessionDescription::parse(text.as_bytes()).expect("valid SDP")
}

#[test]
fn ffmpeg_h264_and_aac() {
    let sd = parse(FFMPEG);
    assert_eq!(sd.tracks.len(), 2);
    let video = &sd.tracks[0];
    assert_eq!(video.media, MediaKind::Video);
    assert_eq!(video.payload_type, 96);
    assert_eq!(video.clock_rate, 90_000);
    assert_eq!(video.control.as_deref(), Some("streamid=0"));
    let Codec::H264(h264) = &video.codec else {
        panic!("not H.264: {:?}", video.codec);
    };
    assert_eq!(h264.packetization_mode, 1);
    assert_eq!(h264.profile_level_id, Some([0x64, 0x00, 0x1f]));
    assert_eq!(h264.sps.as_ref().map(|s| s[0]), Some(0x67));
    assert_eq!(
        h264.pps.as_deref(),
        Some(&[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0][..])
    );
    assert!(
        video
            .raw
            .starts_with("m=video 0 RTP/AVP 96\r\nb=AS:1200\r\n")
    );
    assert!(video.raw.ends_with("a=control:streamid=0\r\n"));

    let audio = &sd.tracks[1];
    assert_eq!(audio.media, MediaKind::Audio);
    assert_eq!(audio.clock_rate, 44_100);
    assert_eq!(
        audio.codec,
        Codec::Mpeg4Audio(Mpeg4AudioParams {
            config: Bytes::from_static(&[0x12, 0x10, 0x56, 0xe5, 0x00]),
            sample_rate: 44_100,
            channels: 2,
            size_length: 13,
            index_length: 3,
            index_delta_length: 3,
        })
    );
    assert_eq!(audio.rtpmap.as_deref(), Some("97 MPEG4-GENERIC/44100/2"));
}

#[test]
fn gstreamer_rtspclientsink() {
    let sd = parse(GSTREAMER);
    let [video] = &sd.tracks[..] else {
        panic!("one track expected");
    };
    assert_eq!(video.control.as_deref(), Some("stream=0"));
    let Codec::H264(h264) = &video.codec else {
        panic!("not H.264");
    };
    assert_eq!(h264.profile_level_id, Some([0x42, 0xc0, 0x1e]));
    assert!(h264.sps.is_some() && h264.pps.is_some());
    // Unknown parameters survive for readers.
    assert!(
        video
            .fmtp
            .as_deref()
            .is_some_and(|f| f.ends_with("level-asymmetry-allowed=1"))
    );
}

#[test]
fn camera_describe_with_h265_pcma_and_metadata() {
    let sd = parse(CAMERA);
    assert_eq!(
        sd.control.as_deref(),
        Some("rtsp://192.168.1.64:554/Streaming/Channels/101/?transportmode=unicast")
    );
    assert_eq!(sd.tracks.len(), 3);
    let Codec::H265(h265) = &sd.tracks[0].codec else {
        panic!("not H.265");
    };
    assert_eq!(h265.vps.as_ref().map(|v| v[0] >> 1 & 0x3f), Some(32));
    assert_eq!(h265.sps.as_ref().map(|v| v[0] >> 1 & 0x3f), Some(33));
    assert_eq!(h265.pps.as_ref().map(|v| v[0] >> 1 & 0x3f), Some(34));

    let pcma = &sd.tracks[1];
    assert_eq!(pcma.codec, Codec::Pcma { channels: 1 });
    assert_eq!(pcma.clock_rate, 8_000);
    assert_eq!(pcma.rtpmap, None);

    let metadata = &sd.tracks[2];
    assert_eq!(metadata.media, MediaKind::Application);
    assert_eq!(
        metadata.codec,
        Codec::Other {
            encoding_name: "vnd.onvif.metadata".into(),
            clock_rate: 90_000,
            channels: None,
            fmtp: None
        }
    );
}

#[test]
fn sloppy_line_endings_and_encodings() {
    let text = "v=0 \no=- 0 0 IN IP4 127.0.0.1\ns=Cam\u{e9}ra\nm=audio 0 RTP/AVP 0\n\na=control:trackID=0  \n";
    let mut bytes = text.as_bytes().to_vec();
    // Latin-1 in the session name.
    let pos = bytes.iter().position(|&b| b == 0xc3).expect("é");
    bytes.splice(pos..pos + 2, [0xe9]);
    let sd = SessionDescription::parse(&bytes).expect("lenient");
    assert_eq!(sd.tracks[0].codec, Codec::Pcmu { channels: 1 });
    assert_eq!(sd.tracks[0].control.as_deref(), Some("trackID=0"));
}

#[test]
fn undecodable_parameter_sets_fall_back_to_in_band() {
    let text = "v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 sprop-parameter-sets=!!!,???\r\n";
    let Codec::H264(h264) = &parse(text).tracks[0].codec else {
        panic!("not H.264");
    };
    assert_eq!(
        (&h264.sps, &h264.pps, h264.packetization_mode),
        (&None, &None, 0)
    );
}

#[test]
fn errors_name_the_line() {
    let cases: [(&str, SdpError); 7] = [
        ("o=- 0 0 IN IP4 h\r\n", SdpError::NoVersion),
        ("v=0\r\ns=x\r\n", SdpError::NoMedia),
        (
            "v=0\r\nm=video 0 RTP/AVP 96\r\nbogus\r\n",
            SdpError::Syntax {
                line: 3,
                text: "bogus".into(),
                reason: "Invalid formatted line 3: \"Line not in key=value format\"".into(),
            },
        ),
        (
            "v=0\r\nm=video 0 RTP/AVP 96\r\n",
            SdpError::MissingRtpmap {
                line: 2,
                payload_type: 96,
            },
        ),
        (
            "v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264\r\n",
            SdpError::BadRtpmap {
                line: 3,
                text: "96 H264".into(),
            },
        ),
        (
            "v=0\r\nm=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\na=fmtp:97 mode=AAC-hbr;config=12z0\r\n",
            SdpError::BadFmtp {
                line: 4,
                param: "config",
                text: "12z0".into(),
            },
        ),
        (
            "v=0\r\nm=application 0 udp wb\r\n",
            SdpError::NotRtp {
                line: 2,
                text: "m=application 0 udp wb".into(),
            },
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(
            SessionDescription::parse(text.as_bytes()),
            Err(expected),
            "{text}"
        );
    }
    assert_eq!(
        SessionDescription::parse(
            b"v=0\r\nm=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\n"
        ),
        Err(SdpError::MissingFmtp {
            line: 2,
            param: "config"
        })
    );
    assert!(matches!(
        SessionDescription::parse(b"v=0\r\nm=video 0 RTP/AVP 200\r\n"),
        Err(SdpError::BadPayloadType { line: 2, .. })
    ));
}

#[test]
fn describe_passes_rtpmap_and_fmtp_through() {
    let announced = parse(GSTREAMER);
    let camera = parse(CAMERA);
    let tracks: Vec<Track> = announced.tracks.into_iter().chain(camera.tracks).collect();
    let sdp = SessionDescription::generate(&tracks);
    assert!(sdp.starts_with(
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=Stream\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
    ));
    assert!(sdp.contains("m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z0LAHtkDxWhAAAADAEAAAAwjxYuSAAAA,aMuMsg==;profile-level-id=42c01e;level-asymmetry-allowed=1\r\na=control:trackID=0\r\n"), "{sdp}");
    assert!(
        sdp.contains("m=audio 0 RTP/AVP 8\r\na=control:trackID=2\r\n"),
        "{sdp}"
    );
    assert!(sdp.contains("a=rtpmap:107 vnd.onvif.metadata/90000\r\na=control:trackID=3\r\n"));

    let reparsed = parse(&sdp);
    assert_eq!(reparsed.tracks.len(), tracks.len());
    for (i, (a, b)) in tracks.iter().zip(&reparsed.tracks).enumerate() {
        assert_eq!(a.codec, b.codec);
        assert_eq!((&a.rtpmap, &a.fmtp), (&b.rtpmap, &b.fmtp));
        assert_eq!(b.control, Some(format!("trackID={i}")));
    }
}

#[test]
fn tracks_from_codecs() {
    let track = Track::from_codec(MediaKind::Audio, 111, Codec::Opus { channels: 2 });
    assert_eq!(track.rtpmap.as_deref(), Some("111 opus/48000/2"));
    assert_eq!(track.fmtp, None);
    assert_eq!(track.clock_rate, 48_000);
    let track = Track::from_codec(MediaKind::Audio, 0, Codec::Pcmu { channels: 1 });
    assert_eq!(track.rtpmap.as_deref(), Some("0 PCMU/8000"));
}

#[test]
fn base64_matches_rfc_4648_vectors() {
    for (plain, encoded) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64_encode(plain.as_bytes()), encoded);
        assert_eq!(base64_decode(encoded).as_deref(), Some(plain.as_bytes()));
    }
    assert_eq!(base64_decode("Zm9vYg").as_deref(), Some(&b"foob"[..]));
    assert_eq!(base64_decode("Z"), None);
    assert_eq!(base64_decode("Zm9v!"), None);
}
