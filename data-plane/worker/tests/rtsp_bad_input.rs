//! Bad input on raw TCP connections against the real worker: each case gets its exact status
//! (or a close), the worker never panics, and an ffmpeg reader decoding a published stream at
//! the same time is not disturbed.
//!
//! Needs `cargo build -p streamplane-worker` first, and ffmpeg.

#![allow(clippy::unwrap_used)]

mod common;

use common::raw::{PCMU_SDP, connect, frame, in_session, session_id, status_line};
use common::{DEADLINE, assert_decoded, publish, read_response, start_worker, url};
use streamplane_testkit::{Process, Worker, eventually};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Sends `request` on `conn` and returns the response head and body.
async fn ask(conn: &mut TcpStream, request: &str) -> (String, String) {
    conn.write_all(request.as_bytes()).await.unwrap();
    let (head, body) = read_response(conn).await;
    (head, String::from_utf8_lossy(&body).into_owned())
}

/// The server closes the connection (after whatever it still sends).
async fn assert_closed(conn: &mut TcpStream) {
    let mut rest = Vec::new();
    tokio::time::timeout(DEADLINE, conn.read_to_end(&mut rest))
        .await
        .expect("the server closes the connection")
        .unwrap();
}

/// One request on a fresh connection; the exact status line.
async fn one(worker: &Worker, request: &str) -> (String, String) {
    let mut conn = connect(worker).await;
    ask(&mut conn, request).await
}

fn rtp(version: u8, seq: u16) -> Vec<u8> {
    let mut p = vec![version << 6, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend_from_slice(&[0xff; 160]);
    p
}

async fn invalid_rtp_metric(worker: &Worker) -> Option<u64> {
    worker
        .metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix("streamplane_rtp_invalid_packets_total "))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn bad_input_gets_the_right_status_and_leaves_readers_alone() {
    let worker = start_worker().await;
    let _publisher = publish(&worker, "live", "tcp").await;
    let reader = Process::builder("ffmpeg")
        .name("reader")
        .args([
            "-hide_banner",
            "-v",
            "warning",
            "-rtsp_transport",
            "tcp",
            "-i",
        ])
        .arg(url(&worker, "live"))
        .args(["-frames:v", "150", "-f", "null", "-"])
        .spawn();
    let base = url(&worker, "nobody");

    // Oversized request line: 400, then the connection closes.
    let mut conn = connect(&worker).await;
    let long = format!(
        "OPTIONS {base}/{} RTSP/1.0\r\nCSeq: 1\r\n\r\n",
        "a".repeat(10_000)
    );
    let (head, _) = ask(&mut conn, &long).await;
    assert_eq!(status_line(&head), "RTSP/1.0 400 Bad Request", "{head}");
    assert_closed(&mut conn).await;

    // Too many header lines: 400 and close.
    let mut conn = connect(&worker).await;
    let headers: String = (0..100).map(|i| format!("X-Pad-{i}: x\r\n")).collect();
    let (head, _) = ask(
        &mut conn,
        &format!("OPTIONS {base} RTSP/1.0\r\nCSeq: 1\r\n{headers}\r\n"),
    )
    .await;
    assert_eq!(status_line(&head), "RTSP/1.0 400 Bad Request", "{head}");
    assert_closed(&mut conn).await;

    // A truncated interleaved frame, then the client goes away: no answer, no harm.
    let mut conn = connect(&worker).await;
    conn.write_all(&[b'$', 0, 0x04, 0x00, 0x80, 0x60, 0x00])
        .await
        .unwrap();
    conn.shutdown().await.unwrap();
    drop(conn);

    // Missing and malformed CSeq: 400 and close.
    for request in [
        format!("OPTIONS {base} RTSP/1.0\r\n\r\n"),
        format!("OPTIONS {base} RTSP/1.0\r\nCSeq: abc\r\n\r\n"),
        format!("OPTIONS {base} RTSP/1.0\r\nCSeq: -1\r\n\r\n"),
    ] {
        let mut conn = connect(&worker).await;
        let (head, _) = ask(&mut conn, &request).await;
        assert_eq!(
            status_line(&head),
            "RTSP/1.0 400 Bad Request",
            "{request:?}"
        );
        assert_closed(&mut conn).await;
    }

    // State errors: a status, CSeq echoed, the connection stays usable.
    let mut conn = connect(&worker).await;
    let cases = [
        (
            format!(
                "SETUP {base}/trackID=0 RTSP/1.0\r\nCSeq: 1\r\n\
                 Transport: RTP/AVP/TCP;unicast;interleaved=0-1;mode=record\r\n\r\n"
            ),
            "RTSP/1.0 455 Method Not Valid In This State",
        ),
        (
            format!(
                "SETUP {base}/trackID=0 RTSP/1.0\r\nCSeq: 2\r\n\
                 Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
            ),
            "RTSP/1.0 404 Not Found",
        ),
        (
            format!("RECORD {base} RTSP/1.0\r\nCSeq: 3\r\n\r\n"),
            "RTSP/1.0 455 Method Not Valid In This State",
        ),
        (
            format!("PLAY {base} RTSP/1.0\r\nCSeq: 4\r\n\r\n"),
            "RTSP/1.0 404 Not Found",
        ),
        (
            format!(
                "ANNOUNCE {base} RTSP/1.0\r\nCSeq: 5\r\nContent-Type: application/sdp\r\n\
                 Content-Length: 11\r\n\r\nnot an sdp!"
            ),
            "RTSP/1.0 400 Bad Request",
        ),
        (
            format!("OPTIONS {base} RTSP/1.0\r\nCSeq: 6\r\n\r\n"),
            "RTSP/1.0 200 OK",
        ),
    ];
    for (request, expected) in &cases {
        let (head, body) = ask(&mut conn, request).await;
        assert_eq!(status_line(&head), *expected, "{request:?}:\n{head}{body}");
        let cseq = request.lines().find(|l| l.starts_with("CSeq")).unwrap();
        assert!(head.contains(cseq), "CSeq not echoed:\n{head}");
        if request.starts_with("ANNOUNCE") {
            assert!(body.contains("invalid SDP"), "no reason given: {body:?}");
        }
    }

    // SETUP for reading needs no DESCRIBE first (as in MediaMTX): allowed on a live path.
    let live = url(&worker, "live");
    let (head, _) = one(
        &worker,
        &format!(
            "SETUP {live}/trackID=0 RTSP/1.0\r\nCSeq: 1\r\n\
             Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");

    // A publisher sending RTP with a bad version over TCP: dropped and counted; its stream
    // goes on for its readers.
    let raw = url(&worker, "raw");
    let mut publisher = connect(&worker).await;
    let (head, _) = ask(
        &mut publisher,
        &format!(
            "ANNOUNCE {raw} RTSP/1.0\r\nCSeq: 1\r\nContent-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{PCMU_SDP}",
            PCMU_SDP.len()
        ),
    )
    .await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");
    let session = session_id(&head);
    let (head, _) = ask(
        &mut publisher,
        &format!(
            "SETUP {raw}/trackID=0 RTSP/1.0\r\nCSeq: 2\r\nSession: {session}\r\n\
             Transport: RTP/AVP/TCP;unicast;interleaved=0-1;mode=record\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");
    let (head, _) = ask(&mut publisher, &in_session("RECORD", &raw, 3, &session)).await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");

    let mut player = connect(&worker).await;
    let (head, _) = ask(
        &mut player,
        &format!(
            "SETUP {raw}/trackID=0 RTSP/1.0\r\nCSeq: 1\r\n\
             Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");
    let play_session = session_id(&head);
    let (head, _) = ask(&mut player, &in_session("PLAY", &raw, 2, &play_session)).await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");

    let before = invalid_rtp_metric(&worker).await.unwrap_or(0);
    let mut wire = Vec::new();
    wire.extend(frame(0, &rtp(0, 1)));
    wire.extend(frame(0, &rtp(3, 2)));
    wire.extend(frame(0, &[0x80, 0x00])); // too short for a header
    wire.extend(frame(0, &rtp(2, 7)));
    publisher.write_all(&wire).await.unwrap();

    // The reader gets the one valid packet, and only it (after the worker's own sender report
    // on the RTCP channel: this publisher sends none).
    let packet = loop {
        let mut header = [0u8; 4];
        tokio::time::timeout(DEADLINE, player.read_exact(&mut header))
            .await
            .expect("the valid packet arrives")
            .unwrap();
        let mut packet = vec![0; usize::from(u16::from_be_bytes([header[2], header[3]]))];
        player.read_exact(&mut packet).await.unwrap();
        assert_eq!(header[0], b'$');
        match header[1] {
            0 => break packet,
            1 => assert_eq!(
                packet.get(1),
                Some(&200),
                "only a sender report: {packet:?}"
            ),
            channel => panic!("a frame on channel {channel}"),
        }
    };
    assert_eq!(packet[0] >> 6, 2);
    assert_eq!(u16::from_be_bytes([packet[2], packet[3]]), 7);
    eventually(DEADLINE, "three invalid packets in /metrics", || async {
        invalid_rtp_metric(&worker).await == Some(before + 3)
    })
    .await;
    // The publisher's connection is still served.
    let (head, _) = ask(
        &mut publisher,
        &in_session("GET_PARAMETER", &raw, 4, &session),
    )
    .await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");

    // The worker still serves new connections, and the reader decoded throughout.
    let (head, _) = one(
        &worker,
        &format!("OPTIONS {base} RTSP/1.0\r\nCSeq: 9\r\n\r\n"),
    )
    .await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");
    assert!(worker.process().is_running(), "worker died");
    assert!(
        !worker.process().output().contains("panicked"),
        "the worker panicked"
    );
    assert_decoded(&reader).await;
}
