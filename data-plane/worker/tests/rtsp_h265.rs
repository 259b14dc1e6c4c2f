//! H.265 end to end: ffmpeg publishes a libx265 clip over TCP; ffmpeg reads it over TCP and
//! over UDP and decodes at least 100 frames without errors.
//!
//! Needs `cargo build -p streamplane-worker` first, and ffmpeg with libx265.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use common::{DEADLINE, assert_decoded, ffmpeg_reader, start_worker, url};
use streamplane_testkit::Process;

/// A 5 s H.265 clip (keyframe every 30 frames), made once per run.
fn clip_h265() -> PathBuf {
    static CLIP: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = CLIP.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip265.mp4");
        let status = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-v", "error", "-f", "lavfi", "-i"])
            .arg("testsrc2=size=640x360:rate=30")
            .args(["-t", "5", "-c:v", "libx265", "-preset", "ultrafast"])
            .args([
                "-x265-params",
                "keyint=30:log-level=error",
                "-tag:v",
                "hvc1",
            ])
            .arg(&path)
            .status()
            .expect("ffmpeg is installed");
        assert!(status.success(), "ffmpeg could not make the H.265 clip");
        (dir, path)
    });
    path.clone()
}

#[tokio::test]
async fn h265_published_over_tcp_reads_over_tcp_and_udp() {
    let clip = tokio::task::spawn_blocking(clip_h265).await.unwrap();
    let worker = start_worker().await;
    let mark = worker.process().mark();
    let _publisher = Process::builder("ffmpeg")
        .name("publisher-h265")
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
        .arg(url(&worker, "hevc"))
        .spawn();
    let line = worker
        .process()
        .wait_for_line_since(mark, "publisher announced", DEADLINE)
        .await;
    assert!(line.contains("H265"), "{line}");
    worker
        .process()
        .wait_for_line_since(mark, "publisher recording", DEADLINE)
        .await;

    let url = url(&worker, "hevc");
    let tcp = ffmpeg_reader(&url, "reader-h265-tcp", "tcp");
    let udp = ffmpeg_reader(&url, "reader-h265-udp", "udp");
    assert_decoded(&tcp).await;
    assert_decoded(&udp).await;
}
