//! RTSP over TCP (interleaved) end to end: the real worker binary, ffmpeg publishing an
//! H.264 + AAC clip, ffmpeg and GStreamer reading and decoding it.
//!
//! Needs `cargo build -p streamplane-worker` first, and ffmpeg and gst-launch-1.0.

#![allow(clippy::unwrap_used)]

mod common;

use common::{DEADLINE, RTSP, assert_decoded, gst_reader, publish, read_head, start_worker, url};
use streamplane_testkit::{Process, Worker};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

async fn start_worker_and_publish(path: &str) -> (Worker, Process) {
    let worker = start_worker().await;
    let publisher = publish(&worker, path, "tcp").await;
    (worker, publisher)
}

fn ffmpeg_reader(url: &str, name: &str) -> Process {
    common::ffmpeg_reader(url, name, "tcp")
}

#[tokio::test]
async fn ffmpeg_and_gstreamer_read_what_ffmpeg_publishes() {
    let (worker, _publisher) = start_worker_and_publish("cam1").await;
    let url = url(&worker, "cam1");

    let reader = ffmpeg_reader(&url, "ffmpeg-reader");
    assert_decoded(&reader).await;

    let gst = gst_reader(&url, "tcp");
    common::assert_gst_decoded(&gst).await;

    let readers: Vec<Process> = (0..5)
        .map(|i| ffmpeg_reader(&url, &format!("reader-{i}")))
        .collect();
    for reader in &readers {
        assert_decoded(reader).await;
    }
}

#[tokio::test]
async fn unpublished_path_is_404_and_garbage_does_not_disturb_readers() {
    let (worker, _publisher) = start_worker_and_publish("live").await;

    let probe = Process::builder("ffprobe")
        .name("ffprobe")
        .args(["-hide_banner", "-v", "error", "-rtsp_transport", "tcp"])
        .arg(url(&worker, "nobody-here"))
        .spawn();
    let status = probe.wait_exit(DEADLINE).await;
    assert!(
        !status.success(),
        "ffprobe of an unpublished path succeeded"
    );
    assert!(probe.output().contains("404"), "{}", probe.output());

    let reader = ffmpeg_reader(&url(&worker, "live"), "reader");
    let mut garbage = TcpStream::connect(worker.address(RTSP)).await.unwrap();
    garbage
        .write_all(b"\x16\x03\x01 this is not RTSP\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, garbage.read_to_end(&mut answer))
        .await
        .expect("the server closes a connection that sent garbage")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("RTSP/1.0 400"),
        "unexpected answer to garbage: {answer:?}"
    );
    assert_decoded(&reader).await;

    // Misuse on a well-formed connection gets a status, not a close.
    let mut conn = TcpStream::connect(worker.address(RTSP)).await.unwrap();
    let base = url(&worker, "live");
    let requests = [
        (
            format!("RECORD {base} RTSP/1.0\r\nCSeq: 1\r\n\r\n"),
            "RTSP/1.0 455",
        ),
        (
            format!(
                "SETUP {base}/trackID=0 RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP;multicast;port=5000-5001\r\n\r\n"
            ),
            "RTSP/1.0 461",
        ),
        (
            format!("PLAY {base} RTSP/1.0\r\nCSeq: 3\r\n\r\n"),
            "RTSP/1.0 455",
        ),
        (
            format!("DESCRIBE {base} RTSP/1.0\r\nCSeq: 4\r\n\r\n"),
            "RTSP/1.0 200",
        ),
    ];
    for (request, expected) in requests {
        conn.write_all(request.as_bytes()).await.unwrap();
        let head = read_head(&mut conn).await;
        assert!(head.starts_with(expected), "{request:?} got:\n{head}");
        let cseq = request.lines().find(|l| l.starts_with("CSeq")).unwrap();
        assert!(
            head.contains(cseq),
            "CSeq not echoed for {request:?}:\n{head}"
        );
        if let Some(len) = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
        {
            let mut body = vec![0; len.trim().parse().unwrap()];
            conn.read_exact(&mut body).await.unwrap();
        }
    }
}
