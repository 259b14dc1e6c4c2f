//! Publisher reconnect grace period (MediaMTX #2214) end to end: ffmpeg publishes, an ffmpeg
//! reader decodes, the publisher is killed and comes back within the grace, and the same
//! reader goes on decoding the new publisher's frames.
//!
//! Needs `cargo build -p streamplane-worker` first, and ffmpeg.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{DEADLINE, RTSP, publish, url};
use streamplane_testkit::{Process, Worker, WorkerBuilder, eventually};

const CONFIG: &str = "paths:\n  all_others:\n    publisherGrace: 5s\n";

async fn worker_with_grace(dir: &tempfile::TempDir) -> Worker {
    let config = dir.path().join("streamplane.yml");
    std::fs::write(&config, CONFIG).unwrap();
    WorkerBuilder::standalone()
        .listen(RTSP)
        .arg("--config")
        .arg(config.to_str().unwrap())
        .start()
        .await
}

/// An ffmpeg reader that decodes video until killed and reports progress on stdout.
fn endless_reader(url: &str) -> Process {
    Process::builder("ffmpeg")
        .name("reader")
        .args(["-hide_banner", "-v", "warning", "-nostats"])
        .args(["-rtsp_transport", "tcp", "-i"])
        .arg(url)
        .args(["-map", "0:v", "-f", "null", "-", "-progress", "pipe:1"])
        .spawn()
}

/// The latest `frame=` count the reader reported.
fn frames(reader: &Process) -> u64 {
    reader
        .stdout()
        .lines()
        .filter_map(|l| l.strip_prefix("frame="))
        .rev()
        .find_map(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn readers_stay_and_continue_when_the_publisher_returns_within_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let worker = worker_with_grace(&dir).await;
    let url = url(&worker, "cam");

    let started = Instant::now();
    let first = publish(&worker, "cam", "tcp").await;
    let reader = endless_reader(&url);
    eventually(
        DEADLINE,
        "the reader decodes the first publisher",
        || async { frames(&reader) >= 45 },
    )
    .await;
    let mark = worker.process().mark();
    first.kill();
    first.wait_exit(DEADLINE).await;
    // The most the first publisher can have delivered: real time at 30 fps plus a cached GOP.
    let provided = (started.elapsed().as_secs_f64() * 30.0) as u64 + 30;
    worker
        .process()
        .wait_for_line_since(
            mark,
            "readers wait for it within the grace period",
            DEADLINE,
        )
        .await;

    // A gap (input, not a wait), then the publisher comes back.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        reader.is_running(),
        "reader left during the grace:\n{}",
        reader.output()
    );
    let mark = worker.process().mark();
    let _second = publish(&worker, "cam", "tcp").await;
    worker
        .process()
        .wait_for_line_since(mark, "publisher back within the grace period", DEADLINE)
        .await;

    let target = provided + 60;
    eventually(
        DEADLINE,
        "the reader decodes the second publisher",
        || async {
            assert!(reader.is_running(), "reader ended:\n{}", reader.output());
            frames(&reader) > target
        },
    )
    .await;
    let errors: Vec<String> = reader
        .stderr()
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("concealing"))
        .map(str::to_owned)
        .collect();
    assert!(errors.is_empty(), "decoder errors:\n{}", errors.join("\n"));
    reader.kill();
}
