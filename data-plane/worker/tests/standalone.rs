//! Standalone mode from a MediaMTX-style YAML file, end to end: the real worker binary with
//! `--config`, ffmpeg publishing with and without credentials, an undefined path, and a bad
//! file refused with exit code 64 and every problem located.
//!
//! Needs `cargo build -p streamplane-worker` first, and ffmpeg.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{DEADLINE, RTSP, clip};
use streamplane_testkit::{Process, Worker, WorkerBuilder};

fn url(worker: &Worker, credentials: &str, path: &str) -> String {
    format!("rtsp://{credentials}{}/{path}", worker.address(RTSP))
}

fn publisher(clip: &Path, url: &str, name: &str) -> Process {
    Process::builder("ffmpeg")
        .name(name)
        .args(["-hide_banner", "-v", "warning", "-re", "-stream_loop", "-1"])
        .arg("-i")
        .arg(clip)
        .args(["-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp"])
        .arg(url)
        .spawn()
}

/// Fails, and says `status` (ffmpeg prints e.g. "401 Unauthorized").
async fn assert_refused(process: &Process, status: &str) {
    let exit = process.wait_exit(DEADLINE).await;
    let output = process.output();
    assert!(!exit.success(), "{} succeeded:\n{output}", process.name());
    assert!(
        output.contains(status),
        "{} without {status}:\n{output}",
        process.name()
    );
}

const CONFIG: &str = r#"# MediaMTX key names
logLevel: debug
rtspTransports: [tcp]
authInternalUsers:
  - user: cam
    pass: s3cret-pass
    permissions:
      - action: publish
        path: cam1
  - user: any
    pass:
    permissions:
      - action: read
paths:
  cam1:
    source: publisher
  "~^relay/(.+)$":
    source: rtsp://127.0.0.1:1/$G1
"#;

#[tokio::test]
async fn paths_and_users_come_from_the_file() {
    let clip = tokio::task::spawn_blocking(clip).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("streamplane.yml");
    std::fs::write(&config, CONFIG).unwrap();
    let worker = WorkerBuilder::standalone()
        .listen(RTSP)
        .arg("--config")
        .arg(config.to_str().unwrap())
        .start()
        .await;
    worker
        .process()
        .wait_for_line("pulling from a URL source is not implemented yet", DEADLINE)
        .await;

    // No credentials, and a user without publish rights there: 401.
    let anonymous = publisher(&clip, &url(&worker, "", "cam1"), "anonymous-publisher");
    assert_refused(&anonymous, "401").await;
    let wrong = publisher(&clip, &url(&worker, "cam:wrong@", "cam1"), "wrong-password");
    assert_refused(&wrong, "401").await;

    // The configured user publishes; anyone reads.
    let _publisher = publisher(
        &clip,
        &url(&worker, "cam:s3cret-pass@", "cam1"),
        "publisher",
    );
    worker
        .process()
        .wait_for_line("publisher recording", DEADLINE)
        .await;
    let reader = Process::builder("ffmpeg")
        .name("reader")
        .args(["-hide_banner", "-v", "warning", "-rtsp_transport", "tcp"])
        .arg("-i")
        .arg(url(&worker, "", "cam1"))
        .args(["-frames:v", "30", "-f", "null", "-"])
        .spawn();
    let status = reader.wait_exit(DEADLINE).await;
    assert!(status.success(), "reader failed:\n{}", reader.output());

    // A path the file does not define (and no all_others): 404, credentials or not.
    let probe = Process::builder("ffprobe")
        .name("ffprobe")
        .args(["-hide_banner", "-v", "error", "-rtsp_transport", "tcp"])
        .arg(url(&worker, "", "elsewhere"))
        .spawn();
    assert_refused(&probe, "404").await;
    let stray = publisher(&clip, &url(&worker, "cam:s3cret-pass@", "cam2"), "stray");
    assert_refused(&stray, "404").await;

    let log = worker.process().output();
    assert!(
        !log.contains("s3cret-pass"),
        "a password reached the log:\n{log}"
    );
}

#[tokio::test]
async fn a_bad_file_is_refused_with_every_problem_located() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.yml");
    std::fs::write(
        &config,
        "\
paths:
  \"~^cam(\":
  cam1:
    maxReders: 3
authInternalUsers:
  - user: cam
    pass: s3cret-pass
    permissions:
      - action: broadcast
hls: yes
",
    )
    .unwrap();
    let worker = WorkerBuilder::standalone()
        .arg("--config")
        .arg(config.to_str().unwrap())
        .spawn()
        .await;
    let status = worker.process().wait_exit(DEADLINE).await;
    let output = worker.process().output();
    assert_eq!(status.code(), Some(64), "{output}");
    let at = |pos: &str| format!("{}:{pos}", config.display());
    for line in [
        format!(
            "{}: paths.~^cam(: invalid regular expression '^cam('",
            at("2:11")
        ),
        format!(
            "{}: paths.cam1.maxReders: unknown key; did you mean \"maxReaders\"?",
            at("4:5")
        ),
        format!(
            "{}: authInternalUsers[0].permissions[0].action: unknown action 'broadcast'",
            at("9:17")
        ),
        format!("{}: hls: not supported yet", at("10:6")),
    ] {
        assert!(output.contains(&line), "missing {line:?} in:\n{output}");
    }
    assert!(output.contains("(4 problems)"), "{output}");
    assert!(!output.contains("s3cret-pass"), "{output}");
}
