//! What the session machine enables, on raw sockets against the real worker: several sessions
//! on one connection, PAUSE of a UDP reader (also from a second connection), the read
//! timeout of a silent UDP publisher, and PAUSE then TEARDOWN while packets flow.
//!
//! Needs `cargo build -p streamplane-worker` first, and ffmpeg.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::raw::{
    Item, PCMU_SDP, ask, ask_playing, in_session, next_response, read_item, rtp_info_seq, seq,
    session_id, status_line, udp_pair,
};
use common::{DEADLINE, RTP, RTSP, publish, start_worker, url};
use streamplane_testkit::{WorkerBuilder, eventually};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};

/// How long a paused reader must stay silent.
const QUIET: Duration = Duration::from_millis(500);

/// Waits until `socket` has been quiet for [`QUIET`] (packets in flight drain first).
async fn until_quiet(socket: &UdpSocket, what: &str) {
    eventually(DEADLINE, what, || async {
        match tokio::time::timeout(QUIET, socket.recv_from(&mut [0; 2048])).await {
            Err(_) => Ok(()),
            Ok(_) => Err("still receiving rtp".to_owned()),
        }
    })
    .await;
}

#[tokio::test]
async fn two_read_sessions_share_one_connection() {
    let worker = start_worker().await;
    let _a = publish(&worker, "a", "tcp").await;
    let _b = publish(&worker, "b", "tcp").await;
    let (a, b) = (url(&worker, "a"), url(&worker, "b"));
    let mut conn = TcpStream::connect(worker.address(RTSP)).await.unwrap();

    let head = ask(
        &mut conn,
        &format!(
            "SETUP {a}/trackID=0 RTSP/1.0\r\nCSeq: 1\r\n\
             Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");
    let first = session_id(&head);
    // A SETUP without `Session` header starts a second session; its channels must differ.
    let head = ask(
        &mut conn,
        &format!(
            "SETUP {b}/trackID=0 RTSP/1.0\r\nCSeq: 2\r\n\
             Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status_line(&head), "RTSP/1.0 400 Bad Request", "{head}");
    let head = ask(
        &mut conn,
        &format!(
            "SETUP {b}/trackID=0 RTSP/1.0\r\nCSeq: 3\r\n\
             Transport: RTP/AVP/TCP;unicast;interleaved=2-3\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");
    let second = session_id(&head);
    assert_ne!(first, second);

    let head = ask(&mut conn, &in_session("PLAY", &a, 4, &first)).await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");
    let head = ask_playing(&mut conn, &in_session("PLAY", &b, 5, &second)).await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");
    assert!(head.contains(&format!("url={b}/trackID=0")), "{head}");

    // Both receive RTP on their own channels.
    let (mut on_a, mut on_b) = (0, 0);
    while on_a < 20 || on_b < 20 {
        match read_item(&mut conn).await {
            Item::Frame {
                channel: 0,
                payload,
            } => {
                assert_eq!(payload[0] >> 6, 2, "rtp");
                on_a += 1;
            }
            Item::Frame {
                channel: 2,
                payload,
            } => {
                assert_eq!(payload[0] >> 6, 2, "rtp");
                on_b += 1;
            }
            Item::Frame { .. } => {}
            Item::Response(head) => panic!("unexpected response:\n{head}"),
            Item::Closed => panic!("connection closed"),
        }
    }

    // TEARDOWN of one: the connection stays, the other session goes on streaming; nothing
    // of the first comes after its answer.
    let head = ask_playing(&mut conn, &in_session("TEARDOWN", &a, 6, &first)).await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");
    let mut on_b = 0;
    while on_b < 50 {
        match read_item(&mut conn).await {
            Item::Frame { channel: 2, .. } => on_b += 1,
            Item::Frame { channel: 3, .. } => {}
            Item::Frame { channel, .. } => panic!("a frame on channel {channel} after TEARDOWN"),
            Item::Response(head) => panic!("unexpected response:\n{head}"),
            Item::Closed => panic!("connection closed"),
        }
    }
    let head = ask_playing(&mut conn, &in_session("GET_PARAMETER", &b, 7, &second)).await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");
    let head = ask_playing(&mut conn, &in_session("GET_PARAMETER", &a, 8, &first)).await;
    assert_eq!(
        status_line(&head),
        "RTSP/1.0 454 Session Not Found",
        "{head}"
    );
}

/// SETUP of `live`'s video track over UDP to `ports` and PLAY on `conn`: the session id.
async fn udp_reader(conn: &mut TcpStream, live: &str, ports: (u16, u16)) -> String {
    let head = ask(
        conn,
        &format!(
            "SETUP {live}/trackID=0 RTSP/1.0\r\nCSeq: 1\r\n\
             Transport: RTP/AVP;unicast;client_port={}-{}\r\n\r\n",
            ports.0, ports.1
        ),
    )
    .await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");
    let session = session_id(&head);
    // A repeated SETUP of the track with the same ports is harmless.
    let head = ask(
        conn,
        &format!(
            "SETUP {live}/trackID=0 RTSP/1.0\r\nCSeq: 2\r\nSession: {session}\r\n\
             Transport: RTP/AVP;unicast;client_port={}-{}\r\n\r\n",
            ports.0, ports.1
        ),
    )
    .await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");
    let head = ask(conn, &in_session("PLAY", live, 3, &session)).await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");
    session
}

/// The next RTP packet on `socket`, and where it came from.
async fn next_udp_rtp(socket: &UdpSocket) -> (Vec<u8>, std::net::SocketAddr) {
    let mut buf = vec![0u8; 2048];
    let (n, from) = tokio::time::timeout(DEADLINE, socket.recv_from(&mut buf))
        .await
        .expect("rtp over udp")
        .unwrap();
    buf.truncate(n);
    assert!(n >= 12 && buf[0] >> 6 == 2, "an rtp packet");
    (buf, from)
}

#[tokio::test]
async fn pause_stops_a_udp_reader_and_play_resumes_it_also_from_another_connection() {
    let worker = start_worker().await;
    let _publisher = publish(&worker, "live", "tcp").await;
    let live = url(&worker, "live");
    let server_rtp = worker.address(RTP);
    let (rtp, _rtcp, ports) = udp_pair().await;
    let mut conn = TcpStream::connect(worker.address(RTSP)).await.unwrap();
    let session = udp_reader(&mut conn, &live, ports).await;
    for _ in 0..20 {
        let (_, from) = next_udp_rtp(&rtp).await;
        assert_eq!(from, server_rtp);
    }

    // PAUSE: 200 with the session, then silence; the session and its ports stay.
    let head = ask(&mut conn, &in_session("PAUSE", &live, 3, &session)).await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");
    assert_eq!(session_id(&head), session);
    until_quiet(&rtp, "a paused udp reader to go quiet").await;
    let head = ask(&mut conn, &in_session("GET_PARAMETER", &live, 4, &session)).await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");

    // PLAY again: a new RTP-Info, and packets flow from the sequence number it names.
    let head = ask(&mut conn, &in_session("PLAY", &live, 5, &session)).await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");
    let expected = rtp_info_seq(&head);
    let (first, from) = next_udp_rtp(&rtp).await;
    assert_eq!(from, server_rtp, "same server port");
    assert_eq!(
        seq(&first),
        expected,
        "resumed elsewhere than RTP-Info says"
    );

    // The client closes its connection: the UDP session goes on, and a second connection
    // pauses and resumes it by its id.
    drop(conn);
    for _ in 0..10 {
        next_udp_rtp(&rtp).await;
    }
    // Until the server has seen the first connection close, the session is attached to it
    // and takes keep-alives only (455 for PAUSE); then it moves here.
    let mut other = TcpStream::connect(worker.address(RTSP)).await.unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut cseq = 1;
    let head = loop {
        cseq += 1;
        let head = ask(
            &mut other,
            &format!("PAUSE {live} RTSP/1.0\r\nCSeq: {cseq}\r\nSession: {session}\r\n\r\n"),
        )
        .await;
        if status_line(&head) == "RTSP/1.0 200 OK" {
            break head;
        }
        assert_eq!(
            status_line(&head),
            "RTSP/1.0 455 Method Not Valid In This State",
            "{head}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "never adopted: {head}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(session_id(&head), session);
    until_quiet(&rtp, "the udp reader paused from another connection").await;
    let head = ask(&mut other, &in_session("PLAY", &live, 100, &session)).await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");
    let expected = rtp_info_seq(&head);
    let (first, _) = next_udp_rtp(&rtp).await;
    assert_eq!(seq(&first), expected);

    let mark = worker.process().mark();
    let head = ask(&mut other, &in_session("TEARDOWN", &live, 101, &session)).await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");
    worker
        .process()
        .wait_for_line_since(mark, "udp reader left", DEADLINE)
        .await;
    until_quiet(&rtp, "rtp to stop after TEARDOWN").await;
}

#[tokio::test]
async fn a_udp_publisher_that_stops_sending_is_closed_after_the_read_timeout() {
    let worker = WorkerBuilder::standalone()
        .listen(RTSP)
        .env("STREAMPLANE_READ_TIMEOUT", "1s")
        .start()
        .await;
    let raw = url(&worker, "raw");
    let server_rtp = worker.address(RTP);
    let mut conn = TcpStream::connect(worker.address(RTSP)).await.unwrap();
    let head = ask(
        &mut conn,
        &format!(
            "ANNOUNCE {raw} RTSP/1.0\r\nCSeq: 1\r\nContent-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{PCMU_SDP}",
            PCMU_SDP.len()
        ),
    )
    .await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");
    let session = session_id(&head);
    let (rtp, _rtcp, ports) = udp_pair().await;
    let head = ask(
        &mut conn,
        &format!(
            "SETUP {raw}/trackID=0 RTSP/1.0\r\nCSeq: 2\r\nSession: {session}\r\n\
             Transport: RTP/AVP;unicast;client_port={}-{};mode=record\r\n\r\n",
            ports.0, ports.1
        ),
    )
    .await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");
    let head = ask(&mut conn, &in_session("RECORD", &raw, 3, &session)).await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");

    // Packets for three read timeouts keep it.
    let mark = worker.process().mark();
    let started = tokio::time::Instant::now();
    let mut seq: u16 = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let mut packet = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
        packet[2..4].copy_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(&[0xff; 160]);
        rtp.send_to(&packet, server_rtp).await.unwrap();
        seq = seq.wrapping_add(1);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !worker.process().output()[..].contains("no UDP packets received recently"),
        "closed while sending"
    );
    let head = ask(&mut conn, &in_session("GET_PARAMETER", &raw, 4, &session)).await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");

    // Then silence (keep-alives do not count): the server closes the connection.
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(DEADLINE, conn.read(&mut byte))
        .await
        .expect("the server closes the connection");
    assert!(matches!(read, Ok(0)), "{read:?}");
    worker
        .process()
        .wait_for_line_since(mark, "no UDP packets received recently", DEADLINE)
        .await;
    // The path is free again.
    let mut probe = TcpStream::connect(worker.address(RTSP)).await.unwrap();
    let head = ask(
        &mut probe,
        &format!("DESCRIBE {raw} RTSP/1.0\r\nCSeq: 1\r\n\r\n"),
    )
    .await;
    assert_eq!(status_line(&head), "RTSP/1.0 404 Not Found", "{head}");
}

/// GStreamer's rtspsrc sends PAUSE then TEARDOWN at shutdown while packets still flow, and
/// its commands can overtake each other: every request is answered, TEARDOWN included, and
/// the connection stays open for whatever crossed it (the client closes it, as with MediaMTX).
#[tokio::test]
async fn pause_then_teardown_while_streaming_are_both_answered() {
    let worker = start_worker().await;
    let _publisher = publish(&worker, "live", "tcp").await;
    let live = url(&worker, "live");
    for round in 0..20 {
        let mut conn = TcpStream::connect(worker.address(RTSP)).await.unwrap();
        let head = ask(
            &mut conn,
            &format!(
                "SETUP {live}/trackID=0 RTSP/1.0\r\nCSeq: 1\r\n\
                 Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
            ),
        )
        .await;
        let session = session_id(&head);
        let head = ask(&mut conn, &in_session("PLAY", &live, 2, &session)).await;
        assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");
        for _ in 0..round % 5 {
            let _ = read_item(&mut conn).await;
        }
        let both = format!(
            "PAUSE {live} RTSP/1.0\r\nCSeq: 3\r\nSession: {session}\r\n\r\n\
             TEARDOWN {live} RTSP/1.0\r\nCSeq: 4\r\nSession: {session}\r\n\r\n"
        );
        conn.write_all(both.as_bytes()).await.unwrap();
        let head = next_response(&mut conn).await;
        assert_eq!(
            status_line(&head),
            "RTSP/1.0 200 OK",
            "round {round}: {head}"
        );
        assert!(head.contains("CSeq: 3"), "{head}");
        let head = next_response(&mut conn).await;
        assert_eq!(
            status_line(&head),
            "RTSP/1.0 200 OK",
            "round {round}: {head}"
        );
        assert!(head.contains("CSeq: 4"), "{head}");
        // A late PAUSE gets an answer, not a closed connection; no frame follows TEARDOWN.
        let late = format!("PAUSE {live} RTSP/1.0\r\nCSeq: 5\r\nSession: {session}\r\n\r\n");
        conn.write_all(late.as_bytes()).await.unwrap();
        match read_item(&mut conn).await {
            Item::Response(head) => {
                assert_eq!(
                    status_line(&head),
                    "RTSP/1.0 454 Session Not Found",
                    "round {round}: {head}"
                );
                assert!(head.contains("CSeq: 5"), "{head}");
            }
            Item::Frame { channel, .. } => panic!("round {round}: a frame on {channel}"),
            Item::Closed => panic!("round {round}: closed after TEARDOWN"),
        }
    }
}

#[tokio::test]
async fn a_udp_reader_without_its_connection_gets_rtcp_bye_when_the_publisher_leaves() {
    use streamplane_media_core::rtcp::RtcpPacket;

    let worker = start_worker().await;
    let publisher = publish(&worker, "gone", "tcp").await;
    let live = url(&worker, "gone");
    let (rtp, rtcp, ports) = udp_pair().await;
    let mut conn = TcpStream::connect(worker.address(RTSP)).await.unwrap();
    udp_reader(&mut conn, &live, ports).await;
    let (packet, _) = next_udp_rtp(&rtp).await;
    let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
    // Only RTCP can tell this reader now: its RTSP connection is gone (the session goes on).
    drop(conn);
    publisher.kill();

    let mut buf = vec![0u8; 2048];
    let bye = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let n = rtcp.recv(&mut buf).await.unwrap();
            let Ok(packets) = RtcpPacket::parse_compound(&bytes::Bytes::copy_from_slice(&buf[..n]))
            else {
                continue;
            };
            if let Some(bye) = packets.into_iter().find_map(|p| match p {
                RtcpPacket::Bye(bye) => Some(bye),
                _ => None,
            }) {
                return bye;
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "no rtcp bye after the publisher left; worker log:\n{}",
            worker.process().tail()
        )
    });
    assert_eq!(bye.sources.iter().map(|s| s.0).collect::<Vec<_>>(), [ssrc]);
    assert_eq!(bye.reason.as_deref(), Some(&b"stream ended"[..]));
}
