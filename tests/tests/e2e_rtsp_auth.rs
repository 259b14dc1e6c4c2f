//! The RTSP auth matrix end to end: the real control plane (users, ACL rules and tokens through
//! REST), a real worker following it, and ffmpeg publishing and reading with right, wrong and
//! missing credentials, a control-plane JWT as `?token=`, and an ACL change taking effect on
//! the next session without restarting the worker; and RTSP Digest for users with
//! `rtsp_digest` on a worker whose `rtspAuthMethods` offers it, with ffmpeg and GStreamer,
//! while a worker with the default (Basic only) keeps serving every user with Basic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::ExitStatus;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use streamplane_testkit::media::{authenticated, clip, ffmpeg_publisher, gst_reader_with};
use streamplane_testkit::{ControlPlane, Process, Worker, eventually};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const RTSP: &str = "STREAMPLANE_RTSP_ADDRESS";
const DEADLINE: Duration = Duration::from_secs(60);
const CAM_PASSWORD: &str = "cam-secret-1";
const VIEWER_PASSWORD: &str = "viewer-secret-1";

struct Api<'a> {
    cp: &'a ControlPlane,
    token: String,
}

impl Api<'_> {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .cp
            .http()
            .request(method.clone(), self.cp.url(path))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn create_user(&self, username: &str, password: &str) -> String {
        self.create_media_user(username, password, false).await
    }

    async fn create_media_user(&self, username: &str, password: &str, digest: bool) -> String {
        // Media-only users: no API role, access through ACL rules alone.
        let user = self
            .send(
                reqwest::Method::POST,
                "/api/v1/users",
                Some(json!({"username": username, "password": password, "rtsp_digest": digest})),
            )
            .await;
        assert_eq!(user["rtsp_digest"], digest, "{user}");
        user["id"].as_str().unwrap().to_owned()
    }

    async fn create_acl(&self, user_id: &str, action: &str, path: &str) -> String {
        let rule = self
            .send(
                reqwest::Method::POST,
                "/api/v1/acls",
                Some(json!({"user_id": user_id, "action": action, "path": path})),
            )
            .await;
        rule["id"].as_str().unwrap().to_owned()
    }

    async fn delete_acl(&self, id: &str) {
        self.send(reqwest::Method::DELETE, &format!("/api/v1/acls/{id}"), None)
            .await;
    }
}

/// Waits until the worker applied the control plane's current generation.
async fn wait_synced(cp: &ControlPlane, worker: &Worker) {
    let url = cp.url("/readyz");
    let wanted = cp
        .http()
        .get(&url)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["generation"]
        .as_u64()
        .unwrap();
    eventually(
        DEADLINE,
        &format!("the worker to apply generation {wanted}"),
        || async { worker.health().await["generation"].as_u64().unwrap_or(0) >= wanted },
    )
    .await;
}

fn rtsp_url(worker: &Worker, credentials: Option<(&str, &str)>, rest: &str) -> String {
    let auth = credentials.map_or(String::new(), |(u, p)| format!("{u}:{p}@"));
    format!("rtsp://{auth}{}/{rest}", worker.address(RTSP))
}

fn publisher(url: &str, name: &str) -> Process {
    ffmpeg_publisher(url, name, "tcp")
}

fn reader(url: &str, name: &str) -> Process {
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
        .args(["-frames:v", "60", "-f", "null", "-"])
        .spawn()
}

/// Sends `DESCRIBE rtsp://.../cam1` with `headers` on a fresh connection; returns the response
/// head.
async fn describe(worker: &Worker, headers: &[String]) -> String {
    let addr = worker.address(RTSP);
    let mut request = format!("DESCRIBE rtsp://{addr}/cam1 RTSP/1.0\r\nCSeq: 1\r\n");
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(DEADLINE, async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed after {head:?}");
            head.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("an answer to DESCRIBE");
    String::from_utf8_lossy(&head).into_owned()
}

/// ffmpeg gave up because the server answered 401.
async fn assert_unauthorized(p: &Process) {
    let status: ExitStatus = p.wait_exit(DEADLINE).await;
    let output = p.output();
    assert!(!status.success(), "{} succeeded:\n{output}", p.name());
    assert!(
        output.contains("401"),
        "{} failed without a 401 ({status}):\n{output}",
        p.name()
    );
}

/// ffmpeg read and decoded its frames without decoder errors.
async fn assert_decoded(p: &Process) {
    let status = p.wait_exit(DEADLINE).await;
    let output = p.output();
    assert!(
        status.success(),
        "{} failed ({status}):\n{output}",
        p.name()
    );
    assert!(
        !output.to_ascii_lowercase().contains("concealing"),
        "{} decoded broken frames:\n{output}",
        p.name()
    );
}

#[tokio::test]
async fn rtsp_auth_matrix_with_basic_jwt_and_live_acl_changes() {
    tokio::task::spawn_blocking(clip).await.unwrap();
    let cp = ControlPlane::start().await;
    let worker = Worker::builder(&cp).listen(RTSP).start().await;
    let api = Api {
        cp: &cp,
        token: cp.admin_token().await,
    };

    // Only named users from now on: remove the default rules for anonymous clients.
    let anonymous = api
        .send(reqwest::Method::GET, "/api/v1/acls?anonymous=true", None)
        .await;
    for rule in anonymous["items"].as_array().unwrap() {
        api.delete_acl(rule["id"].as_str().unwrap()).await;
    }
    api.send(
        reqwest::Method::POST,
        "/api/v1/paths",
        Some(json!({"name": "cam1"})),
    )
    .await;
    let cam = api.create_user("cam", CAM_PASSWORD).await;
    let viewer = api.create_user("viewer1", VIEWER_PASSWORD).await;
    api.create_acl(&cam, "publish", "cam1").await;
    let viewer_read = api.create_acl(&viewer, "read", "cam1").await;
    wait_synced(&cp, &worker).await;

    // The challenge: Basic only, the default rtspAuthMethods.
    let response = describe(&worker, &[]).await;
    assert!(response.starts_with("RTSP/1.0 401"), "{response}");
    let challenges: Vec<&str> = response
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("www-authenticate:"))
        .collect();
    assert_eq!(
        challenges,
        ["WWW-Authenticate: Basic realm=\"streamplane\""],
        "{response}"
    );

    // Publish: missing, wrong and not-allowed credentials are refused with 401.
    let p = publisher(&rtsp_url(&worker, None, "cam1"), "publish-anonymous");
    assert_unauthorized(&p).await;
    let url = rtsp_url(&worker, Some(("cam", "wrong-password")), "cam1");
    assert_unauthorized(&publisher(&url, "publish-wrong-password")).await;
    let url = rtsp_url(&worker, Some(("viewer1", VIEWER_PASSWORD)), "cam1");
    assert_unauthorized(&publisher(&url, "publish-as-viewer")).await;
    let log = worker.process().output();
    assert!(log.contains("authentication failed"), "{log}");
    assert!(
        !log.contains("wrong-password") && !log.contains(VIEWER_PASSWORD),
        "a password reached the log:\n{log}"
    );

    // The right credentials publish.
    let url = rtsp_url(&worker, Some(("cam", CAM_PASSWORD)), "cam1");
    let _publisher = publisher(&url, "publish-cam");
    worker
        .process()
        .wait_for_line("publisher recording", DEADLINE)
        .await;

    // Read: right credentials decode; wrong and missing ones get 401.
    let url = rtsp_url(&worker, Some(("viewer1", VIEWER_PASSWORD)), "cam1");
    assert_decoded(&reader(&url, "read-viewer")).await;
    let url = rtsp_url(&worker, Some(("viewer1", "wrong-password")), "cam1");
    assert_unauthorized(&reader(&url, "read-wrong-password")).await;
    assert_unauthorized(&reader(&rtsp_url(&worker, None, "cam1"), "read-anonymous")).await;

    // A control-plane token in the URL reads too, and never reaches the log.
    let jwt = cp.login("viewer1", VIEWER_PASSWORD).await;
    let url = rtsp_url(&worker, None, &format!("cam1?token={jwt}"));
    assert_decoded(&reader(&url, "read-token")).await;
    // So does the token as the Basic password (any username). Not through ffmpeg: it cuts
    // URL credentials at 127 bytes (`char auth[128]` in libavformat/rtsp.c), shorter than a JWT.
    let basic = BASE64.encode(format!("any:{jwt}"));
    let response = describe(&worker, &[format!("Authorization: Basic {basic}")]).await;
    assert!(response.starts_with("RTSP/1.0 200"), "{response}");
    let basic = BASE64.encode(format!("any:{}x", &jwt[..jwt.len() - 1]));
    let response = describe(&worker, &[format!("Authorization: Basic {basic}")]).await;
    assert!(response.starts_with("RTSP/1.0 401"), "{response}");
    // A tampered token does not.
    let forged = format!("{}x", jwt.trim_end_matches(|c: char| c != '.'));
    let url = rtsp_url(&worker, None, &format!("cam1?token={forged}"));
    assert_unauthorized(&reader(&url, "read-forged-token")).await;
    assert!(
        !worker.process().output().contains(&jwt),
        "a token reached the log"
    );

    // An ACL change through REST applies to the next session, without a restart: neither the
    // password nor the token (whose claim still says read) is enough any more.
    api.delete_acl(&viewer_read).await;
    wait_synced(&cp, &worker).await;
    let url = rtsp_url(&worker, Some(("viewer1", VIEWER_PASSWORD)), "cam1");
    assert_unauthorized(&reader(&url, "read-after-acl-change")).await;
    let url = rtsp_url(&worker, None, &format!("cam1?token={jwt}"));
    assert_unauthorized(&reader(&url, "read-token-after-acl-change")).await;
    assert!(worker.process().is_running(), "the worker restarted");
}

/// The `WWW-Authenticate` lines of a 401 to a DESCRIBE without credentials.
async fn challenges(worker: &Worker) -> Vec<String> {
    let response = describe(worker, &[]).await;
    assert!(response.starts_with("RTSP/1.0 401"), "{response}");
    response
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("www-authenticate:"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn rtsp_digest_for_users_who_opted_in() {
    tokio::task::spawn_blocking(clip).await.unwrap();
    let cp = ControlPlane::start().await;
    // Digest is the worker operator's choice; the default worker offers Basic only.
    let worker = Worker::builder(&cp)
        .listen(RTSP)
        .env("STREAMPLANE_RTSP_AUTH_METHODS", "basic,digest")
        .start()
        .await;
    let basic_worker = Worker::builder(&cp).listen(RTSP).start().await;
    let api = Api {
        cp: &cp,
        token: cp.admin_token().await,
    };
    let anonymous = api
        .send(reqwest::Method::GET, "/api/v1/acls?anonymous=true", None)
        .await;
    for rule in anonymous["items"].as_array().unwrap() {
        api.delete_acl(rule["id"].as_str().unwrap()).await;
    }
    api.send(
        reqwest::Method::POST,
        "/api/v1/paths",
        Some(json!({"name": "cam1"})),
    )
    .await;
    let cam = api.create_media_user("dcam", CAM_PASSWORD, true).await;
    let viewer = api
        .create_media_user("dviewer", VIEWER_PASSWORD, true)
        .await;
    let plain = api
        .create_media_user("bviewer", VIEWER_PASSWORD, false)
        .await;
    api.create_acl(&cam, "publish", "cam1").await;
    api.create_acl(&viewer, "read", "cam1").await;
    api.create_acl(&plain, "read", "cam1").await;
    wait_synced(&cp, &worker).await;
    wait_synced(&cp, &basic_worker).await;

    // Default rtspAuthMethods: users have HA1 values, yet only Basic is offered, so ffmpeg
    // uses Basic for users with and without rtsp_digest alike.
    assert_eq!(
        challenges(&basic_worker).await,
        ["WWW-Authenticate: Basic realm=\"streamplane\""]
    );
    let url = rtsp_url(&basic_worker, Some(("dcam", CAM_PASSWORD)), "cam1");
    let basic_publisher = publisher(&url, "publish-basic-worker");
    basic_worker
        .process()
        .wait_for_line("publisher recording", DEADLINE)
        .await;
    let url = rtsp_url(&basic_worker, Some(("dviewer", VIEWER_PASSWORD)), "cam1");
    assert_decoded(&reader(&url, "read-basic-worker-digest-user")).await;
    let url = rtsp_url(&basic_worker, Some(("bviewer", VIEWER_PASSWORD)), "cam1");
    assert_decoded(&reader(&url, "read-basic-worker-plain-user")).await;
    drop(basic_publisher);
    let log = basic_worker.process().output();
    assert_eq!(authenticated(&log, "dcam", "publish", "basic"), 1, "{log}");
    assert_eq!(authenticated(&log, "dviewer", "read", "basic"), 1, "{log}");
    assert_eq!(authenticated(&log, "bviewer", "read", "basic"), 1, "{log}");
    assert!(!log.contains("method=digest"), "{log}");

    // The worker with rtspAuthMethods [basic, digest] offers Digest (first) and Basic.
    let offered = challenges(&worker).await;
    assert_eq!(offered.len(), 2, "{offered:?}");
    assert!(
        offered[0].starts_with("WWW-Authenticate: Digest realm=\"streamplane\", nonce=\""),
        "{offered:?}"
    );
    assert_eq!(offered[1], "WWW-Authenticate: Basic realm=\"streamplane\"");

    // A wrong password under Digest is refused, and the log says why.
    let url = rtsp_url(&worker, Some(("dcam", "wrong-password")), "cam1");
    assert_unauthorized(&publisher(&url, "publish-digest-wrong-password")).await;
    worker
        .process()
        .wait_for_line("digest response does not match (wrong password)", DEADLINE)
        .await;

    // ffmpeg publishes, ffmpeg and GStreamer read: all with Digest.
    let url = rtsp_url(&worker, Some(("dcam", CAM_PASSWORD)), "cam1");
    let _publisher = publisher(&url, "publish-digest");
    worker
        .process()
        .wait_for_line("publisher recording", DEADLINE)
        .await;
    let url = rtsp_url(&worker, Some(("dviewer", VIEWER_PASSWORD)), "cam1");
    assert_decoded(&reader(&url, "read-digest")).await;
    let gst = gst_reader_with(
        &rtsp_url(&worker, None, "cam1"),
        "tcp",
        "dviewer",
        VIEWER_PASSWORD,
    );
    let status = gst.wait_exit(DEADLINE).await;
    assert!(status.success(), "gst-launch failed:\n{}", gst.output());
    let log = worker.process().output();
    assert_eq!(authenticated(&log, "dcam", "publish", "digest"), 1, "{log}");
    assert_eq!(authenticated(&log, "dviewer", "read", "digest"), 2, "{log}");

    // The trade-off of offering Digest on a worker: ffmpeg prefers it, so a user without
    // rtsp_digest cannot log in there with ffmpeg, and the log says what to change ...
    let url = rtsp_url(&worker, Some(("bviewer", VIEWER_PASSWORD)), "cam1");
    assert_unauthorized(&reader(&url, "read-no-ha1")).await;
    worker
        .process()
        .wait_for_line(
            "digest credentials for a user without rtsp_digest",
            DEADLINE,
        )
        .await;
    // ... while Basic itself still works for that user, and a token works with any scheme.
    let basic = BASE64.encode(format!("bviewer:{VIEWER_PASSWORD}"));
    let response = describe(&worker, &[format!("Authorization: Basic {basic}")]).await;
    assert!(response.starts_with("RTSP/1.0 200"), "{response}");
    let jwt = cp.login("bviewer", VIEWER_PASSWORD).await;
    let url = rtsp_url(&worker, None, &format!("cam1?token={jwt}"));
    assert_decoded(&reader(&url, "read-token")).await;

    // Turning it off for the viewer takes Digest away from it on the next session.
    api.send(
        reqwest::Method::PATCH,
        &format!("/api/v1/users/{viewer}"),
        Some(json!({"rtsp_digest": false})),
    )
    .await;
    wait_synced(&cp, &worker).await;
    let url = rtsp_url(&worker, Some(("dviewer", VIEWER_PASSWORD)), "cam1");
    assert_unauthorized(&reader(&url, "read-digest-turned-off")).await;

    for w in [&worker, &basic_worker] {
        let log = w.process().output();
        for secret in [CAM_PASSWORD, VIEWER_PASSWORD, "response=", jwt.as_str()] {
            assert!(!log.contains(secret), "{secret} reached the log:\n{log}");
        }
    }
}
