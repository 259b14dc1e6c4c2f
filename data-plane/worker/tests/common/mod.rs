//! Helpers shared by the RTSP end-to-end tests: a test clip, workers, ffmpeg publishers and
//! readers, decoder checks.

#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use streamplane_testkit::{Process, Worker, WorkerBuilder, free_udp_port_pair};
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;

pub const RTSP: &str = "STREAMPLANE_RTSP_ADDRESS";
pub const RTP: &str = "STREAMPLANE_RTP_ADDRESS";
pub const RTCP: &str = "STREAMPLANE_RTCP_ADDRESS";
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A 10 s H.264 (x264 zerolatency: several slices per frame) + AAC clip, made once per run.
pub fn clip() -> PathBuf {
    static CLIP: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = CLIP.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.mp4");
        let status = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-v", "error", "-f", "lavfi", "-i"])
            .arg("testsrc2=size=640x360:rate=30")
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args(["-t", "10", "-c:v", "libx264", "-preset", "veryfast"])
            .args([
                "-tune",
                "zerolatency",
                "-g",
                "30",
                "-c:a",
                "aac",
                "-shortest",
            ])
            .arg(&path)
            .status()
            .expect("ffmpeg is installed");
        assert!(status.success(), "ffmpeg could not make the test clip");
        (dir, path)
    });
    path.clone()
}

pub fn url(worker: &Worker, path: &str) -> String {
    format!("rtsp://{}/{path}", worker.address(RTSP))
}

/// A standalone worker with RTSP on a free port and RTP/RTCP on a free even/odd UDP pair.
pub async fn start_worker() -> Worker {
    let (rtp, rtcp) = free_udp_port_pair();
    WorkerBuilder::standalone()
        .listen(RTSP)
        .address(RTP, SocketAddr::from(([127, 0, 0, 1], rtp)))
        .address(RTCP, SocketAddr::from(([127, 0, 0, 1], rtcp)))
        .start()
        .await
}

/// ffmpeg publishing the clip in a loop to `path` over `transport` (`tcp` or `udp`); returns
/// once the worker logged the publisher as recording.
pub async fn publish(worker: &Worker, path: &str, transport: &str) -> Process {
    let clip = tokio::task::spawn_blocking(clip).await.unwrap();
    let mark = worker.process().mark();
    let publisher = Process::builder("ffmpeg")
        .name(format!("publisher-{transport}"))
        .args([
            "-hide_banner",
            "-v",
            "warning",
            "-re",
            "-stream_loop",
            "-1",
            "-i",
        ])
        .arg(&clip)
        .args(["-c", "copy", "-f", "rtsp", "-rtsp_transport", transport])
        .arg(url(worker, path))
        .spawn();
    worker
        .process()
        .wait_for_line_since(mark, "publisher recording", DEADLINE)
        .await;
    publisher
}

/// ffmpeg reading 100 video frames over `transport` and decoding them.
pub fn ffmpeg_reader(url: &str, name: &str, transport: &str) -> Process {
    Process::builder("ffmpeg")
        .name(name)
        .args(["-hide_banner", "-v", "warning", "-rtsp_transport"])
        .arg(transport)
        .arg("-i")
        .arg(url)
        .args(["-frames:v", "100", "-f", "null", "-"])
        .spawn()
}

/// GStreamer reading over `protocols` (`tcp` or `udp`) and decoding 100 video buffers.
pub fn gst_reader(url: &str, protocols: &str) -> Process {
    Process::builder("gst-launch-1.0")
        .name(format!("gst-reader-{protocols}"))
        .arg("rtspsrc")
        .arg(format!("location={url}"))
        .arg(format!("protocols={protocols}"))
        .args([
            "latency=0",
            "!",
            "rtph264depay",
            "!",
            "h264parse",
            "!",
            "avdec_h264",
            "!",
            "fakesink",
            "num-buffers=100",
        ])
        .spawn()
}

/// Exit status 0 and no decoder error in the output.
pub async fn assert_decoded(reader: &Process) {
    let status = reader.wait_exit(DEADLINE).await;
    let output = reader.output();
    assert!(
        status.success(),
        "{} failed ({status}):\n{output}",
        reader.name()
    );
    let bad: Vec<&str> = output
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("error") || l.contains("concealing")
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{} reported errors:\n{}",
        reader.name(),
        bad.join("\n")
    );
}

/// GStreamer finished (EOS after its buffers) without errors.
pub async fn assert_gst_decoded(gst: &Process) {
    let status = gst.wait_exit(DEADLINE).await;
    let output = gst.output();
    assert!(status.success(), "gst-launch failed ({status}):\n{output}");
    assert!(
        output.contains("Got EOS"),
        "gst-launch did not finish:\n{output}"
    );
    assert!(!output.to_ascii_lowercase().contains("error"), "{output}");
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
