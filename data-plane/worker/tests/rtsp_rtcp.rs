//! Sender reports to TCP readers, against the real worker on raw sockets: a publisher that
//! sends no RTCP gets the worker's own reports (first before any RTP, then every 5 s) whose
//! NTP/RTP pairs match the packets' timing; ffmpeg, which sends its own, keeps having them
//! forwarded and none of ours mixed in.
//!
//! Needs `cargo build -p streamplane-worker` first, and ffmpeg.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::raw::{frame, in_session, session_id, status_line};
use common::{DEADLINE, RTSP, publish, read_response, start_worker, url};
use streamplane_media_core::rtcp::{RtcpPacket, SenderReport};
use streamplane_media_core::rtp::{RtpHeader, RtpPacket, Ssrc};
use streamplane_testkit::Worker;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// H.264 video (90 kHz) and PCMU audio (8 kHz).
const SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=raw\r\nt=0 0\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\n\
a=control:trackID=0\r\n\
m=audio 0 RTP/AVP 0\r\na=control:trackID=1\r\n";
const CLOCK: [u32; 2] = [90_000, 8_000];
const SSRC: [u32; 2] = [0x0101_0101, 0x0202_0202];
/// One packet per track every 20 ms.
const TICK: Duration = Duration::from_millis(20);

async fn ask(conn: &mut TcpStream, request: &str) -> String {
    conn.write_all(request.as_bytes()).await.unwrap();
    let head = read_response(conn).await.0;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{request}\n{head}");
    head
}

/// The next `$` frame and the wall-clock time it was read; responses are not expected.
async fn next_frame(conn: &mut TcpStream) -> (u8, Bytes, Duration) {
    let mut header = [0u8; 4];
    tokio::time::timeout(DEADLINE, conn.read_exact(&mut header))
        .await
        .expect("a frame from the server")
        .unwrap();
    assert_eq!(header[0], b'$', "not a frame: {header:?}");
    let mut payload = vec![0; usize::from(u16::from_be_bytes([header[2], header[3]]))];
    conn.read_exact(&mut payload).await.unwrap();
    let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    (header[1], payload.into(), wall)
}

/// An SR + CNAME compound: the report and the CNAME.
fn sender_report(data: &Bytes) -> (SenderReport, String) {
    let packets = RtcpPacket::parse_compound(data).unwrap();
    let sr = match packets.first() {
        Some(RtcpPacket::SenderReport(sr)) => sr.clone(),
        _ => panic!("not a sender report: {packets:?}"),
    };
    let cname = packets
        .iter()
        .find_map(|p| match p {
            RtcpPacket::SourceDescription(chunks) => chunks.first()?.cname(),
            _ => None,
        })
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .unwrap_or_default();
    (sr, cname)
}

/// Seconds since 1900 of an NTP timestamp.
fn ntp_seconds(sr: &SenderReport) -> f64 {
    sr.ntp_time.0 as f64 / (1u64 << 32) as f64
}

const NTP_UNIX: f64 = 2_208_988_800.0;

/// Publishes video and audio in real time over TCP, no RTCP, until the connection drops.
async fn raw_publisher(worker: &Worker, path: &str) -> tokio::task::JoinHandle<()> {
    let target = url(worker, path);
    let mut conn = TcpStream::connect(worker.address(RTSP)).await.unwrap();
    let head = ask(
        &mut conn,
        &format!(
            "ANNOUNCE {target} RTSP/1.0\r\nCSeq: 1\r\nContent-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{SDP}",
            SDP.len()
        ),
    )
    .await;
    let session = session_id(&head);
    for track in 0..2 {
        ask(
            &mut conn,
            &format!(
                "SETUP {target}/trackID={track} RTSP/1.0\r\nCSeq: {}\r\nSession: {session}\r\n\
                 Transport: RTP/AVP/TCP;unicast;interleaved={}-{};mode=record\r\n\r\n",
                2 + track,
                2 * track,
                2 * track + 1
            ),
        )
        .await;
    }
    ask(&mut conn, &in_session("RECORD", &target, 4, &session)).await;
    tokio::spawn(async move {
        let start = Instant::now();
        for i in 0u32.. {
            tokio::time::sleep_until((start + TICK * i).into()).await;
            let mut out = Vec::new();
            for track in 0..2 {
                // Timestamps follow the send time, so the worker's mapping is checkable.
                let ticks = (CLOCK[track] as u64 * TICK.as_millis() as u64 / 1000) as u32;
                let header = RtpHeader {
                    marker: true,
                    payload_type: [96, 0][track],
                    sequence_number: i as u16,
                    timestamp: 0x4000_0000_u32.wrapping_add(ticks.wrapping_mul(i)),
                    ssrc: Ssrc(SSRC[track]),
                    csrcs: Vec::new(),
                    extension: None,
                    padding: 0,
                };
                // Video: a single-NAL IDR slice, so readers start at once.
                let payload: &[u8] = if track == 0 {
                    &[0x65, 0x88, 0x84, 0x00]
                } else {
                    &[0xd5; 160]
                };
                let packet = RtpPacket::new(&header, payload).unwrap();
                out.extend(frame(u8::try_from(2 * track).unwrap(), packet.as_bytes()));
            }
            if conn.write_all(&out).await.is_err() {
                return;
            }
        }
    })
}

/// DESCRIBE, SETUP of `tracks` over TCP (channels 2i, 2i+1), PLAY.
async fn tcp_reader(worker: &Worker, path: &str, tracks: usize) -> TcpStream {
    let target = url(worker, path);
    let mut conn = TcpStream::connect(worker.address(RTSP)).await.unwrap();
    ask(
        &mut conn,
        &format!("DESCRIBE {target} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n"),
    )
    .await;
    let mut session: Option<String> = None;
    for track in 0..tracks {
        let session_header = session
            .as_ref()
            .map(|s| format!("Session: {s}\r\n"))
            .unwrap_or_default();
        let head = ask(
            &mut conn,
            &format!(
                "SETUP {target}/trackID={track} RTSP/1.0\r\nCSeq: {}\r\n{session_header}\
                 Transport: RTP/AVP/TCP;unicast;interleaved={}-{}\r\n\r\n",
                2 + track,
                2 * track,
                2 * track + 1
            ),
        )
        .await;
        session.get_or_insert_with(|| session_id(&head));
    }
    let session = session.unwrap();
    ask(&mut conn, &in_session("PLAY", &target, 9, &session)).await;
    conn
}

#[tokio::test]
async fn a_publisher_without_rtcp_gets_sender_reports_matching_its_packets() {
    let worker = start_worker().await;
    let publisher = raw_publisher(&worker, "raw").await;
    // Let the stream run a little, so the reader starts from cached reports.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut reader = tcp_reader(&worker, "raw", 2).await;

    // Per track: reports received, and (RTP timestamp, arrival) of its packets.
    let mut reports: HashMap<usize, Vec<SenderReport>> = HashMap::new();
    let mut packets: HashMap<usize, Vec<(u32, Duration)>> = HashMap::new();
    let mut cnames = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while reports.values().map(Vec::len).min().unwrap_or(0) < 2 || reports.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no periodic reports: {reports:?}"
        );
        let (channel, data, wall) = next_frame(&mut reader).await;
        let track = usize::from(channel / 2);
        assert!(track < 2, "channel {channel}");
        if channel % 2 == 1 {
            let (sr, cname) = sender_report(&data);
            assert_eq!(sr.ssrc, Ssrc(SSRC[track]), "the SSRC readers see");
            assert!(
                packets.contains_key(&track) || !reports.contains_key(&track),
                "a second report before any RTP on track {track}"
            );
            reports.entry(track).or_default().push(sr);
            cnames.push(cname);
        } else {
            assert!(
                reports.contains_key(&track),
                "RTP on track {track} before its sender report"
            );
            let rtp = RtpPacket::parse(data).unwrap();
            assert_eq!(rtp.ssrc(), Ssrc(SSRC[track]));
            packets
                .entry(track)
                .or_default()
                .push((rtp.timestamp(), wall));
        }
    }
    publisher.abort();

    assert!(
        cnames
            .iter()
            .all(|c| c.starts_with("streamplane-") && *c == cnames[0]),
        "one CNAME for the stream's tracks: {cnames:?}"
    );
    for track in 0..2 {
        let clock = f64::from(CLOCK[track]);
        let (first, second) = (&reports[&track][0], &reports[&track][1]);
        // Every packet's arrival agrees with both reports' mapping (same clock, no drift).
        for sr in [first, second] {
            for &(ts, wall) in &packets[&track] {
                let ticks = f64::from(ts.wrapping_sub(sr.rtp_time) as i32);
                let expected = ntp_seconds(sr) - NTP_UNIX + ticks / clock;
                let error = wall.as_secs_f64() - expected;
                assert!(
                    (-0.1..0.25).contains(&error),
                    "track {track}: packet ts {ts} arrived {error:.3} s off the mapping of {sr:?}"
                );
            }
        }
        // The next report 5 s later, on the same clock.
        let gap = ntp_seconds(second) - ntp_seconds(first);
        assert!(
            (5.0..5.5).contains(&gap),
            "track {track}: reports {gap:.3} s apart"
        );
        let ticks = f64::from(second.rtp_time.wrapping_sub(first.rtp_time));
        assert!(
            (ticks / clock - gap).abs() < 0.05,
            "track {track}: {ticks} ticks in {gap:.3} s"
        );
        let sent = second.packet_count - first.packet_count;
        assert!(
            (240..=280).contains(&sent),
            "track {track}: {sent} packets in {gap:.3} s of 20 ms packets"
        );
        let payload = if track == 0 { 4 } else { 160 };
        assert_eq!(
            second.octet_count - first.octet_count,
            sent * payload,
            "track {track}: payload octets"
        );
    }
}

#[tokio::test]
async fn ffmpeg_sender_reports_are_forwarded_and_none_of_ours_mixed_in() {
    let worker = start_worker().await;
    let _publisher = publish(&worker, "cam", "tcp").await;
    let mut reader = tcp_reader(&worker, "cam", 1).await;
    let mut reports = Vec::new();
    let mut ssrc = None;
    let deadline = Instant::now() + DEADLINE;
    // ffmpeg reports about every 5 s: two of them cover more than one of our periods.
    while reports.len() < 3 {
        assert!(Instant::now() < deadline, "too few reports: {reports:?}");
        let (channel, data, _) = next_frame(&mut reader).await;
        match channel {
            0 => ssrc = Some(RtpPacket::parse(data).unwrap().ssrc()),
            1 => reports.push(sender_report(&data)),
            other => panic!("channel {other}"),
        }
    }
    let ssrc = ssrc.expect("rtp between the reports");
    for (sr, cname) in &reports {
        assert_eq!(sr.ssrc, ssrc);
        assert!(
            // ffmpeg's reports carry no SDES; ours always carry our CNAME.
            !cname.starts_with("streamplane-"),
            "a report that is not ffmpeg's: {cname:?} {sr:?}"
        );
    }
}
