//! Load: 2 publishers × 20 readers at once. Each reader (ffmpeg `-c copy`, half over TCP,
//! half over UDP) must get at least 100 video frames of the stream of its own path: path `av`
//! carries video + audio, path `v` video only, so a crossed stream shows.
//!
//! Needs `cargo build -p streamplane-worker` first, and ffmpeg.

#![allow(clippy::unwrap_used)]

mod common;

use common::{DEADLINE, clip, start_worker, url};
use streamplane_testkit::{Process, Worker};

const READERS_PER_PATH: usize = 20;

async fn publish(worker: &Worker, path: &str, video_only: bool) -> Process {
    let clip = tokio::task::spawn_blocking(clip).await.unwrap();
    let mark = worker.process().mark();
    let mut builder = Process::builder("ffmpeg")
        .name(format!("publisher-{path}"))
        .args([
            "-hide_banner",
            "-v",
            "warning",
            "-re",
            "-stream_loop",
            "-1",
            "-i",
        ])
        .arg(&clip);
    if video_only {
        builder = builder.args(["-map", "0:v"]);
    }
    let publisher = builder
        .args(["-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp"])
        .arg(url(worker, path))
        .spawn();
    worker
        .process()
        .wait_for_line_since(mark, "publisher recording", DEADLINE)
        .await;
    publisher
}

fn copy_reader(url: &str, name: &str, transport: &str) -> Process {
    Process::builder("ffmpeg")
        .name(name)
        .args([
            "-hide_banner",
            "-nostats",
            "-rtsp_transport",
            transport,
            "-i",
        ])
        .arg(url)
        .args(["-c", "copy", "-frames:v", "100", "-f", "null", "-"])
        .spawn()
}

#[tokio::test]
async fn two_publishers_and_twenty_readers_each() {
    let worker = start_worker().await;
    let _av = publish(&worker, "av", false).await;
    let _v = publish(&worker, "v", true).await;

    let mut readers = Vec::new();
    for path in ["av", "v"] {
        let url = url(&worker, path);
        for i in 0..READERS_PER_PATH {
            let transport = if i % 2 == 0 { "tcp" } else { "udp" };
            let name = format!("reader-{path}-{i}-{transport}");
            readers.push((path, copy_reader(&url, &name, transport)));
        }
    }
    for (path, reader) in &readers {
        let status = reader.wait_exit(DEADLINE).await;
        let output = reader.output();
        assert!(
            status.success(),
            "{} failed ({status}):\n{output}",
            reader.name()
        );
        let frames = output
            .lines()
            .filter_map(|l| l.split("frame=").nth(1))
            .rev()
            .find_map(|n| n.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
        assert!(
            frames >= 100,
            "{} got {frames} frames:\n{output}",
            reader.name()
        );
        let has_video = output.contains("Video: h264");
        let has_audio = output.contains("Audio: aac");
        assert!(has_video, "{}: no video:\n{output}", reader.name());
        assert_eq!(
            has_audio,
            *path == "av",
            "{} read the wrong stream:\n{output}",
            reader.name()
        );
    }
}
