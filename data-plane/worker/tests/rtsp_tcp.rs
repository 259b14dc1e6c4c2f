//! RTSP over TCP (interleaved) end to end: the real worker binary, ffmpeg publishing an
//! H.264 + AAC clip, ffmpeg and GStreamer reading and decoding it.
//!
//! Needs `cargo build -p streamplane-worker` first, and ffmpeg and gst-launch-1.0.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use streamplane_testkit::{Process, Worker, WorkerBuilder};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const RTSP: &str = "STREAMPLANE_RTSP_ADDRESS";
const DEADLINE: Duration = Duration::from_secs(60);

/// A 10 s H.264 (x264 zerolatency: several slices per frame) + AAC clip, made once per run.
fn clip() -> PathBuf {
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

fn url(worker: &Worker, path: &str) -> String {
    format!("rtsp://{}/{path}", worker.address(RTSP))
}

async fn start_worker_and_publish(path: &str) -> (Worker, Process) {
    let clip = tokio::task::spawn_blocking(clip).await.unwrap();
    let worker = WorkerBuilder::standalone().listen(RTSP).start().await;
    let publisher = Process::builder("ffmpeg")
        .name("publisher")
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
        .args(["-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp"])
        .arg(url(&worker, path))
        .spawn();
    worker
        .process()
        .wait_for_line("publisher recording", DEADLINE)
        .await;
    (worker, publisher)
}

fn ffmpeg_reader(url: &str, name: &str) -> Process {
    Process::builder("ffmpeg")
        .name(name)
        .args([
            "-hide_banner",
            "-v",
            "warning",
            "-rtsp_transport",
            "tcp",
            "-i",
        ])
        .arg(url)
        .args(["-frames:v", "100", "-f", "null", "-"])
        .spawn()
}

/// Exit status 0 and no decoder error in the output.
async fn assert_decoded(reader: &Process) {
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

#[tokio::test]
async fn ffmpeg_and_gstreamer_read_what_ffmpeg_publishes() {
    let (worker, _publisher) = start_worker_and_publish("cam1").await;
    let url = url(&worker, "cam1");

    let reader = ffmpeg_reader(&url, "ffmpeg-reader");
    assert_decoded(&reader).await;

    let gst = Process::builder("gst-launch-1.0")
        .name("gst-reader")
        .arg("rtspsrc")
        .arg(format!("location={url}"))
        .args([
            "protocols=tcp",
            "latency=0",
            "!",
            "rtph264depay",
            "!",
            "h264parse",
            "!",
        ])
        .args(["avdec_h264", "!", "fakesink", "num-buffers=100"])
        .spawn();
    let status = gst.wait_exit(DEADLINE).await;
    let output = gst.output();
    assert!(status.success(), "gst-launch failed ({status}):\n{output}");
    assert!(
        output.contains("Got EOS"),
        "gst-launch did not finish:\n{output}"
    );
    assert!(!output.to_ascii_lowercase().contains("error"), "{output}");

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
                "SETUP {base}/trackID=0 RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n"
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

/// Reads a response head (up to the blank line).
async fn read_head(conn: &mut TcpStream) -> String {
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
