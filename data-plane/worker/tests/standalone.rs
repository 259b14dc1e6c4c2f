//! Standalone mode from a MediaMTX-style YAML file, end to end: the real worker binary with
//! `--config`, ffmpeg publishing with and without credentials, an undefined path, RTSP Digest
//! as the only method (ffmpeg and GStreamer), and bad files refused with exit code 64 and
//! every problem located.
//!
//! Needs `cargo build -p streamplane-worker` first, ffmpeg and gst-launch-1.0.

#![allow(clippy::unwrap_used)]

mod common;

use common::{DEADLINE, RTSP, assert_decoded, assert_gst_decoded, clip, read_head};
use streamplane_testkit::media::{authenticated, ffmpeg_publisher, gst_reader_with};
use streamplane_testkit::{Process, Worker, WorkerBuilder};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

fn url(worker: &Worker, credentials: &str, path: &str) -> String {
    format!("rtsp://{credentials}{}/{path}", worker.address(RTSP))
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
    tokio::task::spawn_blocking(clip).await.unwrap();
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
    let anonymous = ffmpeg_publisher(&url(&worker, "", "cam1"), "anonymous-publisher", "tcp");
    assert_refused(&anonymous, "401").await;
    let wrong = ffmpeg_publisher(&url(&worker, "cam:wrong@", "cam1"), "wrong-password", "tcp");
    assert_refused(&wrong, "401").await;

    // The configured user publishes; anyone reads.
    let _publisher = ffmpeg_publisher(
        &url(&worker, "cam:s3cret-pass@", "cam1"),
        "publisher",
        "tcp",
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
    let stray = ffmpeg_publisher(&url(&worker, "cam:s3cret-pass@", "cam2"), "stray", "tcp");
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

const DIGEST_CONFIG: &str = r#"
rtspAuthMethods: [digest]
authInternalUsers:
  - user: cam
    pass: cam-digest-pass
    permissions:
      - action: publish
        path: cam1
  - user: viewer
    pass: viewer-digest-pass
    permissions:
      - action: read
paths:
  cam1:
"#;

#[tokio::test]
async fn digest_only_serves_ffmpeg_and_gstreamer() {
    tokio::task::spawn_blocking(clip).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("streamplane.yml");
    std::fs::write(&config, DIGEST_CONFIG).unwrap();
    let worker = WorkerBuilder::standalone()
        .listen(RTSP)
        .arg("--config")
        .arg(config.to_str().unwrap())
        .start()
        .await;

    // The challenge is Digest only, and Basic credentials (even right ones) are refused.
    let mut conn = TcpStream::connect(worker.address(RTSP)).await.unwrap();
    let basic = "Y2FtOmNhbS1kaWdlc3QtcGFzcw=="; // cam:cam-digest-pass
    let request = format!(
        "DESCRIBE {} RTSP/1.0\r\nCSeq: 1\r\nAuthorization: Basic {basic}\r\n\r\n",
        url(&worker, "", "cam1")
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut conn).await;
    assert!(head.starts_with("RTSP/1.0 401"), "{head}");
    let challenges: Vec<&str> = head
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("www-authenticate:"))
        .collect();
    assert_eq!(challenges.len(), 1, "{head}");
    assert!(
        challenges[0].contains("Digest realm=\"streamplane\", nonce=\""),
        "{head}"
    );
    worker
        .process()
        .wait_for_line(
            "basic authentication is not offered by this server",
            DEADLINE,
        )
        .await;

    // A wrong password under Digest: refused, and the log says why.
    let wrong = ffmpeg_publisher(
        &url(&worker, "cam:wrong-pass@", "cam1"),
        "wrong-password",
        "tcp",
    );
    assert_refused(&wrong, "401").await;
    worker
        .process()
        .wait_for_line("digest response does not match (wrong password)", DEADLINE)
        .await;

    // ffmpeg publishes with Digest, then ffmpeg and GStreamer read with Digest.
    let _publisher = ffmpeg_publisher(
        &url(&worker, "cam:cam-digest-pass@", "cam1"),
        "publisher",
        "tcp",
    );
    worker
        .process()
        .wait_for_line("publisher recording", DEADLINE)
        .await;
    let reader = common::ffmpeg_reader(
        &url(&worker, "viewer:viewer-digest-pass@", "cam1"),
        "ffmpeg-reader",
        "tcp",
    );
    assert_decoded(&reader).await;
    let gst = gst_reader_with(
        &url(&worker, "", "cam1"),
        "tcp",
        "viewer",
        "viewer-digest-pass",
    );
    assert_gst_decoded(&gst).await;

    let log = worker.process().output();
    assert!(
        authenticated(&log, "cam", "publish", "digest") >= 1,
        "{log}"
    );
    assert!(
        authenticated(&log, "viewer", "read", "digest") >= 2,
        "both readers, each with Digest:\n{log}"
    );
    assert!(!log.contains("method=basic"), "{log}");
    for secret in ["cam-digest-pass", "viewer-digest-pass", "response="] {
        assert!(!log.contains(secret), "{secret} reached the log:\n{log}");
    }
}

#[tokio::test]
async fn digest_only_with_a_hashed_password_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("digest.yml");
    // One file per problem, each refused on its own.
    let run = |text: &'static str| {
        let config = config.clone();
        async move {
            std::fs::write(&config, text).unwrap();
            let worker = WorkerBuilder::standalone()
                .arg("--config")
                .arg(config.to_str().unwrap())
                .spawn()
                .await;
            let status = worker.process().wait_exit(DEADLINE).await;
            let output = worker.process().output();
            assert_eq!(status.code(), Some(64), "{output}");
            output
        }
    };
    let at = |pos: &str| format!("{}:{pos}", config.display());

    let output = run("rtspAuthMethods: [digest, md5]\n").await;
    let line = format!(
        "{}: rtspAuthMethods: expected basic or digest, got \"md5\"",
        at("1:18")
    );
    assert!(output.contains(&line), "missing {line:?} in:\n{output}");

    let output = run("\
rtspAuthMethods: [digest]
authInternalUsers:
  - user: cam
    pass: argon2:$argon2id$v=19$m=4096,t=3,p=1$MTIzNDU2Nzg$OGGO0eCMN0ievb4YGSzvS/H+Vajx1pcbUmtLp2tRqRU
")
    .await;
    let line = format!(
        "{}: authInternalUsers[0].pass: a hashed password cannot answer Digest",
        at("4:11")
    );
    assert!(output.contains(&line), "missing {line:?} in:\n{output}");
    assert!(output.contains("add basic to rtspAuthMethods"), "{output}");
}
