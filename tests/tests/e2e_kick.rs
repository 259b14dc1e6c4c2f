//! Kicking a session end to end: the real control plane and a real worker with RTSP, ffmpeg
//! publishing and reading; `GET /api/v1/sessions` lists both, `DELETE /api/v1/sessions/{id}`
//! closes the reader's and then the publisher's connection (the worker applies the kick from its
//! desired state), and the sessions leave the list.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};
use streamplane_testkit::media::{clip, ffmpeg_publisher};
use streamplane_testkit::{ControlPlane, Process, Worker, eventually};

const RTSP: &str = "STREAMPLANE_RTSP_ADDRESS";
const DEADLINE: Duration = Duration::from_secs(60);

async fn api(
    cp: &ControlPlane,
    method: reqwest::Method,
    path: &str,
) -> (reqwest::StatusCode, Value) {
    let token = cp.admin_token().await;
    let resp = cp
        .http()
        .request(method, cp.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The sessions listed on `path` with `role`.
async fn listed(cp: &ControlPlane, role: &str) -> Vec<Value> {
    let (status, list) = api(
        cp,
        reqwest::Method::GET,
        &format!("/api/v1/sessions?path=cam1&role={role}"),
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{list}");
    list["items"].as_array().unwrap().clone()
}

/// Waits until exactly one session with `role` is listed, and returns it.
async fn one_listed(cp: &ControlPlane, role: &str) -> Value {
    eventually(DEADLINE, &format!("one {role} listed"), || async {
        match listed(cp, role).await.as_slice() {
            [one] => Ok(one.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

#[tokio::test]
async fn a_kicked_session_is_closed_by_its_worker() {
    tokio::task::spawn_blocking(clip).await.unwrap();
    // Frequent reports, so the list follows the worker closely.
    let cp = ControlPlane::builder()
        .env("STREAMPLANE_HEARTBEAT_INTERVAL", "300ms")
        .start()
        .await;
    let worker = Worker::builder(&cp).listen(RTSP).start().await;
    let token = cp.admin_token().await;
    let resp = cp
        .http()
        .post(cp.url("/api/v1/paths"))
        .bearer_auth(&token)
        .json(&json!({"name": "cam1"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{:?}", resp.text().await);
    let url = format!("rtsp://{}/cam1", worker.address(RTSP));
    let wanted = cp
        .http()
        .get(cp.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["generation"]
        .as_u64()
        .unwrap();
    eventually(DEADLINE, "the worker to apply path cam1", || async {
        worker.health().await["generation"].as_u64().unwrap_or(0) >= wanted
    })
    .await;

    let publisher = ffmpeg_publisher(&url, "publisher", "tcp");
    worker
        .process()
        .wait_for_line("publisher recording", DEADLINE)
        .await;
    let reader = Process::builder("ffmpeg")
        .name("reader")
        .args([
            "-hide_banner",
            "-v",
            "warning",
            "-rtsp_transport",
            "tcp",
            "-i",
        ])
        .arg(&url)
        .args(["-f", "null", "-"])
        .spawn();

    let published = one_listed(&cp, "publisher").await;
    assert_eq!(published["protocol"], "rtsp", "{published}");
    assert_eq!(published["transport"], "tcp", "{published}");
    assert_eq!(published["worker_name"], worker.name(), "{published}");
    let read = one_listed(&cp, "reader").await;
    let (publisher_id, reader_id) = (
        published["id"].as_str().unwrap().to_owned(),
        read["id"].as_str().unwrap().to_owned(),
    );

    // The reader first: its connection closes, the publisher goes on.
    let (status, body) = api(
        &cp,
        reqwest::Method::DELETE,
        &format!("/api/v1/sessions/{reader_id}"),
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{body}");
    reader.wait_exit(DEADLINE).await;
    eventually(DEADLINE, "the kicked reader to leave the list", || async {
        listed(&cp, "reader").await.is_empty()
    })
    .await;
    assert!(publisher.is_running(), "{}", publisher.output());

    // Then the publisher: ffmpeg sees the connection close and exits.
    let (status, body) = api(
        &cp,
        reqwest::Method::DELETE,
        &format!("/api/v1/sessions/{publisher_id}"),
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{body}");
    let exit = publisher.wait_exit(DEADLINE).await;
    assert!(!exit.success(), "{}", publisher.output());
    eventually(
        DEADLINE,
        "the kicked publisher to leave the list",
        || async { listed(&cp, "publisher").await.is_empty() },
    )
    .await;
    assert!(
        worker.process().output().contains("kicked"),
        "{}",
        worker.process().output()
    );

    // Kicked ids stay in the desired state; a new session (new id) is not affected.
    let again = ffmpeg_publisher(&url, "publisher-again", "tcp");
    let back = one_listed(&cp, "publisher").await;
    assert_ne!(back["id"], publisher_id.as_str(), "{back}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(again.is_running(), "{}", again.output());
    let (status, _) = api(
        &cp,
        reqwest::Method::DELETE,
        &format!("/api/v1/sessions/{publisher_id}"),
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND);
}
