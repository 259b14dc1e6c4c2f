//! Real media clients for tests: a test clip made once per run with ffmpeg, ffmpeg and GStreamer
//! readers, and checks that they decoded without errors.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use crate::Process;

const DEADLINE: Duration = Duration::from_secs(60);

/// A 10 s H.264 (x264 zerolatency: several slices per frame) + AAC clip, made once per run.
pub fn clip() -> PathBuf {
    static CLIP: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = CLIP.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
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

/// ffmpeg publishing [`clip`] in a loop at its own pace to `url` over `transport` (`tcp` or
/// `udp`).
pub fn ffmpeg_publisher(url: &str, name: &str, transport: &str) -> Process {
    Process::builder("ffmpeg")
        .name(name)
        .args(["-hide_banner", "-v", "warning", "-re", "-stream_loop", "-1"])
        .arg("-i")
        .arg(clip())
        .args(["-c", "copy", "-f", "rtsp", "-rtsp_transport", transport])
        .arg(url)
        .spawn()
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
    gst_reader_as(url, protocols, None)
}

/// [`gst_reader`] with credentials; rtspsrc answers the strongest challenge it knows.
pub fn gst_reader_with(url: &str, protocols: &str, user: &str, password: &str) -> Process {
    gst_reader_as(url, protocols, Some((user, password)))
}

fn gst_reader_as(url: &str, protocols: &str, credentials: Option<(&str, &str)>) -> Process {
    let mut builder = Process::builder("gst-launch-1.0")
        .name(format!("gst-reader-{protocols}"))
        .arg("rtspsrc")
        .arg(format!("location={url}"));
    if let Some((user, password)) = credentials {
        builder = builder
            .arg(format!("user-id={user}"))
            .arg(format!("user-pw={password}"));
    }
    builder
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

/// How many worker log lines say `user` was let in for `action` with `method`
/// (`basic`, `digest`, `jwt`).
pub fn authenticated(log: &str, user: &str, action: &str, method: &str) -> usize {
    log.lines()
        .filter(|l| {
            l.contains("authenticated")
                && l.contains(&format!("user=\"{user}\""))
                && l.contains(&format!("action={action}"))
                && l.contains(&format!("method={method}"))
        })
        .count()
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
