//! The stream's own sender reports, with Tokio's paused clock as the stream's monotonic time.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use streamplane_media_core::rtcp::{NtpTimestamp, SenderReport};
use streamplane_media_core::rtp::{RtpHeader, Ssrc};
use streamplane_media_core::sdp::SessionDescription;

use super::*;
use crate::report::SessionRole;

const SDP: &[u8] = b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n\
m=audio 0 RTP/AVP 0\r\na=control:trackID=0\r\n\
m=audio 0 RTP/AVP 8\r\na=control:trackID=1\r\n";

fn stream() -> Stream {
    let tracks = SessionDescription::parse(SDP).unwrap().tracks;
    let peer = "127.0.0.1:1".parse().unwrap();
    Stream::new(
        tracks,
        SessionInfo::new("p".into(), SessionRole::Publisher, peer, None),
    )
}

fn reader(s: &Stream) -> Subscription {
    let peer = "127.0.0.1:2".parse().unwrap();
    let info = SessionInfo::new("r".into(), SessionRole::Reader, peer, None);
    s.subscribe(info, None).unwrap()
}

fn packet(ssrc: u32, seq: u16, ts: u32) -> RtpPacket {
    let header = RtpHeader {
        marker: false,
        payload_type: 0,
        sequence_number: seq,
        timestamp: ts,
        ssrc: Ssrc(ssrc),
        csrcs: Vec::new(),
        extension: None,
        padding: 0,
    };
    RtpPacket::new(&header, &[0xd5; 160]).unwrap()
}

/// What a reader got: per item, its track and the sender report (RTCP) or RTP timestamp.
fn drain(sub: &mut Subscription) -> Vec<(usize, Result<SenderReport, u32>)> {
    std::iter::from_fn(|| sub.rx.try_recv().ok())
        .map(|o| {
            if !o.rtcp {
                return (o.track, Err(RtpPacket::parse(o.data).unwrap().timestamp()));
            }
            let packets = RtcpPacket::parse_compound(&o.data).unwrap();
            let [
                RtcpPacket::SenderReport(sr),
                RtcpPacket::SourceDescription(sdes),
            ] = &packets[..]
            else {
                panic!("{packets:?}");
            };
            assert_eq!(sdes[0].ssrc, sr.ssrc);
            let cname = String::from_utf8(sdes[0].cname().unwrap().to_vec()).unwrap();
            assert!(cname.starts_with("streamplane-"), "{cname}");
            (o.track, Ok(sr.clone()))
        })
        .collect()
}

fn wall_now() -> NtpTimestamp {
    NtpTimestamp::from_unix(SystemTime::now().duration_since(UNIX_EPOCH).unwrap())
}

#[tokio::test(start_paused = true)]
async fn tracks_without_publisher_reports_get_ours_first_and_then_periodically() {
    let s = stream();
    s.set_ready();
    let mut sub = reader(&s);
    let before = wall_now();
    s.publish(0, &packet(7, 1, 1000));
    s.publish(1, &packet(8, 1, 50));
    let got = drain(&mut sub);
    assert_eq!(got.len(), 4, "{got:?}");
    let (Ok(video_sr), Ok(audio_sr)) = (&got[0].1, &got[2].1) else {
        panic!("a report precedes each track's first packet: {got:?}");
    };
    assert_eq!((got[0].0, got[1].0, got[2].0, got[3].0), (0, 0, 1, 1));
    assert_eq!((video_sr.ssrc, video_sr.rtp_time), (Ssrc(7), 1000));
    assert_eq!((audio_sr.ssrc, audio_sr.rtp_time), (Ssrc(8), 50));
    assert_eq!((video_sr.packet_count, video_sr.octet_count), (1, 160));
    assert!(video_sr.ntp_time >= before && video_sr.ntp_time <= wall_now());

    // 20 ms packets: the next report only after 5 s, extrapolated from the latest packet.
    for i in 1..=250u16 {
        tokio::time::advance(Duration::from_millis(20)).await;
        s.publish(0, &packet(7, 1 + i, 1000 + 160 * u32::from(i)));
    }
    let got = drain(&mut sub);
    let reports: Vec<&SenderReport> = got.iter().filter_map(|(_, r)| r.as_ref().ok()).collect();
    assert_eq!(reports.len(), 1, "{got:?}");
    assert_eq!(reports[0].rtp_time, 1000 + 160 * 250);
    assert_eq!(reports[0].packet_count, 251);

    // A new reader gets the latest report before anything else.
    let mut late = reader(&s);
    let got = drain(&mut late);
    assert!(
        matches!(&got[..], [(0, Ok(a)), (1, Ok(b))] if a == reports[0] && b == audio_sr),
        "{got:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn publisher_reports_are_forwarded_and_suppress_ours() {
    let s = stream();
    s.set_ready();
    let mut sub = reader(&s);
    let theirs = RtcpPacket::write_compound(&[
        RtcpPacket::SenderReport(SenderReport {
            ssrc: Ssrc(7),
            rtp_time: 999,
            ..SenderReport::default()
        }),
        RtcpPacket::cname(Ssrc(7), "camera"),
    ])
    .unwrap();
    s.publish_rtcp(0, theirs.clone());
    for i in 0..500u16 {
        s.publish(0, &packet(7, i, 1000 + 160 * u32::from(i)));
        tokio::time::advance(Duration::from_millis(20)).await;
    }
    let rtcp: Vec<Bytes> = std::iter::from_fn(|| sub.rx.try_recv().ok())
        .filter(|o| o.rtcp)
        .map(|o| o.data)
        .collect();
    assert_eq!(rtcp, [theirs], "only the publisher's report, for 10 s");
}
