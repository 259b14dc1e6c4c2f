//! PAUSE (RFC 2326 §10.6) on raw TCP connections against the real worker: a playing TCP
//! reader stops receiving `$` frames, a later PLAY resumes it from a keyframe with a new
//! `RTP-Info`; a recording publisher cannot pause (455), PAUSE without a session is 454. The
//! reader also sends a receiver report on its RTCP channel, which the worker takes quietly
//! (its losses are checked by the unit tests in `rtsp::conn`; they are only observable in the
//! control-plane report).
//!
//! Needs `cargo build -p streamplane-worker` first, and ffmpeg.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::raw::{
    PCMU_SDP, ask, ask_playing, connect, frame, in_session, next_rtp, rtp_info_seq, seq,
    session_id, status_line,
};
use common::{publish, start_worker, url};
use streamplane_media_core::rtcp::{ReceiverReport, ReportBlock, RtcpPacket};
use streamplane_media_core::rtp::Ssrc;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// How long a paused reader must stay silent.
const QUIET: Duration = Duration::from_millis(500);

fn receiver_report(lost: i32) -> Bytes {
    RtcpPacket::write_compound(&[RtcpPacket::ReceiverReport(ReceiverReport {
        ssrc: Ssrc(0x5eed),
        reports: vec![ReportBlock {
            ssrc: Ssrc(1),
            cumulative_lost: lost,
            ..ReportBlock::default()
        }],
        extension: Bytes::new(),
    })])
    .unwrap()
}

#[tokio::test]
async fn pause_stops_a_tcp_reader_and_play_resumes_it() {
    let worker = start_worker().await;
    let _publisher = publish(&worker, "live", "tcp").await;
    let live = url(&worker, "live");

    // PAUSE without a session: 454.
    let mut conn = connect(&worker).await;
    let head = ask(
        &mut conn,
        &format!("PAUSE {live} RTSP/1.0\r\nCSeq: 1\r\n\r\n"),
    )
    .await;
    assert_eq!(
        status_line(&head),
        "RTSP/1.0 454 Session Not Found",
        "{head}"
    );

    // A reader: DESCRIBE, SETUP of the video track over TCP, PLAY; frames arrive.
    let mut reader = connect(&worker).await;
    let head = ask(
        &mut reader,
        &format!("DESCRIBE {live} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n"),
    )
    .await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");
    let head = ask(
        &mut reader,
        &format!(
            "SETUP {live}/trackID=0 RTSP/1.0\r\nCSeq: 2\r\n\
             Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");
    let session = session_id(&head);
    let head = ask(&mut reader, &in_session("PLAY", &live, 3, &session)).await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");
    for _ in 0..20 {
        next_rtp(&mut reader, 0).await;
    }

    // A receiver report on the track's RTCP channel is taken without harm.
    reader
        .write_all(&frame(1, &receiver_report(5)))
        .await
        .unwrap();
    for _ in 0..5 {
        next_rtp(&mut reader, 0).await;
    }

    // PAUSE: 200 with the session, then silence.
    let head = ask_playing(&mut reader, &in_session("PAUSE", &live, 4, &session)).await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");
    assert_eq!(session_id(&head), session, "{head}");
    assert!(head.contains("CSeq: 4"), "{head}");
    let mut byte = [0u8; 1];
    // Asserting an absence: a bounded quiet period is the only way.
    match tokio::time::timeout(QUIET, reader.read(&mut byte)).await {
        Err(_) => {}
        Ok(read) => panic!("a paused reader received something: {read:?} {byte:?}"),
    }

    // The paused session is still there: keep-alives work.
    let head = ask(
        &mut reader,
        &in_session("GET_PARAMETER", &live, 5, &session),
    )
    .await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");

    // PLAY again: a new RTP-Info, and packets flow from the sequence number it names.
    let head = ask(&mut reader, &in_session("PLAY", &live, 6, &session)).await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");
    let expected = rtp_info_seq(&head);
    let first = next_rtp(&mut reader, 0).await;
    assert_eq!(
        seq(&first),
        expected,
        "resumed elsewhere than RTP-Info says"
    );
    for _ in 0..20 {
        next_rtp(&mut reader, 0).await;
    }

    // PAUSE twice is harmless; TEARDOWN ends it.
    let head = ask_playing(&mut reader, &in_session("PAUSE", &live, 7, &session)).await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");
    let head = ask(&mut reader, &in_session("PAUSE", &live, 8, &session)).await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");
    let head = ask(&mut reader, &in_session("TEARDOWN", &live, 9, &session)).await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");
}

#[tokio::test]
async fn a_recording_publisher_cannot_pause() {
    let worker = start_worker().await;
    let raw = url(&worker, "raw");
    let mut publisher = connect(&worker).await;
    let head = ask(
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
    let head = ask(
        &mut publisher,
        &format!(
            "SETUP {raw}/trackID=0 RTSP/1.0\r\nCSeq: 2\r\nSession: {session}\r\n\
             Transport: RTP/AVP/TCP;unicast;interleaved=0-1;mode=record\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");
    let head = ask(&mut publisher, &in_session("RECORD", &raw, 3, &session)).await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");
    let head = ask(&mut publisher, &in_session("PAUSE", &raw, 4, &session)).await;
    assert_eq!(
        status_line(&head),
        "RTSP/1.0 455 Method Not Valid In This State",
        "{head}"
    );
    // The connection stays usable.
    let head = ask(&mut publisher, &in_session("OPTIONS", &raw, 5, &session)).await;
    assert_eq!(status_line(&head), "RTSP/1.0 200 OK", "{head}");
}
