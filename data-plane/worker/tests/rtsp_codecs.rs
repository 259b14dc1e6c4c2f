//! Payloads the worker does not depacketize pass through unchanged: ffmpeg publishes Opus,
//! G.711 µ-law and A-law and AAC as MP4A-LATM in one session; ffprobe sees the same codecs
//! through the worker and ffmpeg decodes every track over TCP and UDP.
//!
//! Needs `cargo build -p streamplane-worker` first, and ffmpeg with libopus.

#![allow(clippy::unwrap_used)]

mod common;

use common::{DEADLINE, start_worker, url};
use streamplane_testkit::Process;

/// Codec names and sample rates as ffprobe prints them, in track order.
const TRACKS: [&str; 4] = ["opus,48000", "pcm_mulaw,8000", "pcm_alaw,8000", "aac,48000"];

fn publish_audio(url: &str) -> Process {
    Process::builder("ffmpeg")
        .name("audio-publisher")
        .args(["-hide_banner", "-v", "warning", "-re"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-f", "lavfi", "-i", "sine=frequency=880:sample_rate=8000"])
        .args(["-map", "0:a", "-map", "1:a", "-map", "1:a", "-map", "0:a"])
        .args(["-c:a:0", "libopus", "-b:a:0", "64k"])
        .args(["-c:a:1", "pcm_mulaw", "-c:a:2", "pcm_alaw"])
        .args(["-c:a:3", "aac", "-rtpflags", "latm"])
        .args(["-f", "rtsp", "-rtsp_transport", "tcp"])
        .arg(url)
        .spawn()
}

/// ffprobe's `codec_name,sample_rate` per stream, in order.
async fn probe(url: &str, transport: &str) -> Vec<String> {
    let probe = Process::builder("ffprobe")
        .name(format!("ffprobe-{transport}"))
        .args(["-v", "error", "-rtsp_transport", transport])
        .args([
            "-show_entries",
            "stream=codec_name,sample_rate",
            "-of",
            "csv=p=0",
        ])
        .arg(url)
        .spawn();
    let status = probe.wait_exit(DEADLINE).await;
    assert!(status.success(), "ffprobe failed:\n{}", probe.output());
    probe.stdout().lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn opus_g711_and_latm_pass_through_and_decode() {
    let worker = start_worker().await;
    let url = url(&worker, "audio");
    let mark = worker.process().mark();
    let publisher = publish_audio(&url);
    worker
        .process()
        .wait_for_line_since(mark, "publisher recording", DEADLINE)
        .await;

    // The SDP the worker generates keeps the publisher's formats, LATM config included.
    let sdp = Process::builder("ffprobe")
        .name("ffprobe-sdp")
        .args(["-v", "debug", "-rtsp_transport", "tcp"])
        .arg(&url)
        .spawn();
    sdp.wait_exit(DEADLINE).await;
    let sdp = sdp.output();
    assert!(sdp.contains("a=rtpmap:96 opus/48000/2"), "{sdp}");
    assert!(sdp.contains("MP4A-LATM/48000"), "{sdp}");
    assert!(sdp.contains("config="), "{sdp}");

    for transport in ["tcp", "udp"] {
        assert_eq!(probe(&url, transport).await, TRACKS, "over {transport}");
        // Two seconds of every track, decoded; `-progress` reports how far it got.
        let reader = Process::builder("ffmpeg")
            .name(format!("audio-reader-{transport}"))
            .args([
                "-hide_banner",
                "-v",
                "warning",
                "-rtsp_transport",
                transport,
            ])
            .arg("-i")
            .arg(&url)
            .args([
                "-map",
                "0:a",
                "-t",
                "2",
                "-progress",
                "pipe:1",
                "-f",
                "null",
                "-",
            ])
            .spawn();
        let status = reader.wait_exit(DEADLINE).await;
        let output = reader.output();
        assert!(
            status.success(),
            "reader over {transport} failed:\n{output}"
        );
        let decoded_us: u64 = reader
            .stdout()
            .lines()
            .filter_map(|l| l.strip_prefix("out_time_us="))
            .filter_map(|v| v.trim().parse().ok())
            .max()
            .unwrap_or(0);
        assert!(
            decoded_us >= 1_900_000,
            "only {decoded_us} µs decoded over {transport}:\n{output}"
        );
        let stderr = reader.stderr();
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.to_ascii_lowercase().contains("error"))
            .map(str::trim)
            .collect();
        assert!(
            errors.is_empty(),
            "decoder errors over {transport}: {errors:?}"
        );
    }
    assert!(publisher.is_running(), "{}", publisher.output());
}
