//! Helpers shared by the RTSP end-to-end tests: a test clip, workers, ffmpeg publishers and
//! readers, decoder checks.

#![allow(dead_code, unused_imports, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

pub use streamplane_testkit::media::{
    assert_decoded, assert_gst_decoded, clip, ffmpeg_publisher, ffmpeg_reader, gst_reader,
};
use streamplane_testkit::{Process, Worker, WorkerBuilder};
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;

pub const RTSP: &str = "STREAMPLANE_RTSP_ADDRESS";
pub const RTP: &str = "STREAMPLANE_RTP_ADDRESS";
pub const RTCP: &str = "STREAMPLANE_RTCP_ADDRESS";
pub const DEADLINE: Duration = Duration::from_secs(60);

pub fn url(worker: &Worker, path: &str) -> String {
    format!("rtsp://{}/{path}", worker.address(RTSP))
}

/// A standalone worker with RTSP, RTP and RTCP on free ports (the test kit retries with other
/// ports if a parallel test takes one first).
pub async fn start_worker() -> Worker {
    WorkerBuilder::standalone().listen(RTSP).start().await
}

/// ffmpeg publishing the clip in a loop to `path` over `transport` (`tcp` or `udp`); returns
/// once the worker logged the publisher as recording.
pub async fn publish(worker: &Worker, path: &str, transport: &str) -> Process {
    // Made off the runtime's threads (ffmpeg encodes it once per run).
    tokio::task::spawn_blocking(clip).await.unwrap();
    let mark = worker.process().mark();
    let publisher = ffmpeg_publisher(
        &url(worker, path),
        &format!("publisher-{transport}"),
        transport,
    );
    worker
        .process()
        .wait_for_line_since(mark, "publisher recording", DEADLINE)
        .await;
    publisher
}

/// Reads a response head (up to the blank line).
pub async fn read_head(conn: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(DEADLINE, conn.read(&mut byte))
            .await
            .expect("a response")
            .unwrap();
        assert!(
            n == 1,
            "connection closed after:\n{}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Reads a response: the head, then its body if it has one.
pub async fn read_response(conn: &mut TcpStream) -> (String, Vec<u8>) {
    let head = read_head(conn).await;
    let mut body = Vec::new();
    if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
    {
        body = vec![0; len.trim().parse().unwrap()];
        conn.read_exact(&mut body).await.unwrap();
    }
    (head, body)
}
pub mod raw;
