//! End to end: the real control plane, the real worker and a private Postgres, driven the way an
//! operator would (REST, process signals, kills) and observed through the worker's health and
//! metrics endpoints.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use streamplane_testkit::{
    ControlPlane, Process, Worker, WorkerBuilder, bin, eventually, free_port,
};

const DEADLINE: Duration = Duration::from_secs(20);

async fn generation(w: &Worker) -> u64 {
    w.health().await["generation"].as_u64().unwrap_or(0)
}

async fn readyz_generation(cp: &ControlPlane) -> u64 {
    let v: Value = cp
        .http()
        .get(cp.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["generation"].as_u64().unwrap()
}

async fn create_path(cp: &ControlPlane, name: &str) -> Value {
    let token = cp.admin_token().await;
    let resp = cp
        .http()
        .post(cp.url("/api/v1/paths"))
        .bearer_auth(&token)
        .json(&json!({"name": name}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    resp.json().await.unwrap()
}

async fn workers(cp: &ControlPlane) -> Value {
    let token = cp.admin_token().await;
    cp.http()
        .get(cp.url("/api/v1/workers"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn worker_follows_the_control_plane_and_survives_its_outage() {
    let cp = ControlPlane::start().await;
    let worker = cp.start_worker().await;
    worker.wait_connected(DEADLINE).await;

    // The worker runs the control plane's current generation and says so in /healthz and REST.
    let current = readyz_generation(&cp).await;
    eventually(
        DEADLINE,
        "worker applies the current generation",
        || async { generation(&worker).await == current },
    )
    .await;
    let listed = eventually(
        DEADLINE,
        "the worker online and in sync in GET /api/v1/workers",
        || async {
            let w = workers(&cp).await;
            let item = w["items"]
                .as_array()?
                .iter()
                .find(|i| i["name"] == worker.name())?
                .clone();
            (item["status"] == "online" && item["in_sync"] == true).then_some(item)
        },
    )
    .await;
    assert_eq!(listed["applied_generation"], current);

    // A change made through REST reaches the worker without polling.
    let started = Instant::now();
    create_path(&cp, "cam1").await;
    // The control plane learns of its own write through Postgres NOTIFY, like every other process.
    let after = eventually(
        DEADLINE,
        "the control plane publishes a newer generation",
        || async {
            let g = readyz_generation(&cp).await;
            (g > current).then_some(g)
        },
    )
    .await;
    eventually(DEADLINE, "worker applies the new generation", || async {
        generation(&worker).await >= after
    })
    .await;
    eprintln!(
        "REST write -> applied on the worker (through /healthz polling): {:?}",
        started.elapsed()
    );
    let metrics = worker.metrics().await;
    assert!(metrics.contains("streamplane_worker_paths 2"), "{metrics}");
    assert!(
        metrics.contains(&format!(
            "streamplane_worker_desired_state_generation {after}"
        )),
        "{metrics}"
    );

    // The control plane dies: the worker keeps its last good state.
    cp.process().kill();
    eventually(
        DEADLINE,
        "worker notices the control plane is gone",
        || async { worker.health().await["control_plane_connected"] == false },
    )
    .await;
    assert_eq!(
        generation(&worker).await,
        after,
        "the worker keeps serving the last snapshot"
    );

    // It comes back on the same database and a change made meanwhile reaches the worker.
    let cp2 = cp.restart_builder().start().await;
    create_path(&cp2, "cam2").await;
    let newest = eventually(
        DEADLINE,
        "the restarted control plane publishes a newer generation",
        || async {
            let g = readyz_generation(&cp2).await;
            (g > after).then_some(g)
        },
    )
    .await;
    eventually(DEADLINE, "worker reconnects and converges", || async {
        let h = worker.health().await;
        h["control_plane_connected"] == true && h["generation"].as_u64() == Some(newest)
    })
    .await;

    // A worker that stops is marked offline.
    worker.process().terminate(DEADLINE).await;
    eventually(DEADLINE, "the stopped worker is offline", || async {
        let w = workers(&cp2).await;
        w["items"]
            .as_array()?
            .iter()
            .any(|i| i["name"] == worker.name() && i["status"] == "offline")
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_killed_worker_goes_offline_after_missed_heartbeats_and_comes_back() {
    let cp = ControlPlane::builder()
        .env("STREAMPLANE_HEARTBEAT_INTERVAL", "200ms")
        .env("STREAMPLANE_HEARTBEAT_TIMEOUT", "1s")
        .start()
        .await;
    let worker = cp.start_worker().await;
    worker.wait_connected(DEADLINE).await;
    // SIGSTOP keeps the TCP connection open but silent: only the missed heartbeats tell.
    worker.process().signal("STOP");
    eventually(DEADLINE, "the silent worker is marked offline", || async {
        let w = workers(&cp).await;
        w["items"]
            .as_array()?
            .iter()
            .any(|i| i["name"] == worker.name() && i["status"] == "offline")
            .then_some(())
    })
    .await;
    worker.process().signal("CONT");
    eventually(DEADLINE, "the worker is online again", || async {
        let w = workers(&cp).await;
        w["items"]
            .as_array()?
            .iter()
            .any(|i| i["name"] == worker.name() && i["status"] == "online")
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_wrong_enrollment_token_is_refused_with_a_hint() {
    let cp = ControlPlane::start().await;
    let worker = WorkerBuilder::new(cp.grpc_url(), "this-is-not-the-right-token")
        .start()
        .await;
    worker
        .process()
        .wait_for_line("enrollment token", DEADLINE)
        .await;
    cp.process()
        .wait_for_line("wrong enrollment token", DEADLINE)
        .await;
    let h = worker.health().await;
    assert_eq!(h["control_plane_connected"], false);
    assert_eq!(h["generation"], 0);
    assert_eq!(workers(&cp).await["total"], 0);
    assert!(
        !worker
            .process()
            .output()
            .contains("this-is-not-the-right-token"),
        "the token reached a log"
    );
}

fn write_temp(name: &str, text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[tokio::test]
async fn bad_configuration_lists_every_problem_and_exits_64() {
    let (_d, file) = write_temp(
        "control.yml",
        "apiAddress: here\nheartbeatInterval: fast\nunknownKey: 1\n",
    );
    let cp = Process::builder(bin("streamplane-control"))
        .name("bad-control")
        .arg("--config")
        .arg(&file)
        .env("STREAMPLANE_GRPC_ADDRESS", "nowhere")
        .spawn();
    let status = cp.wait_exit(DEADLINE).await;
    assert_eq!(status.code(), Some(64), "{}", cp.output());
    let err = cp.stderr();
    for needle in [
        "control.yml:1:13: apiAddress",
        "control.yml:2:20: heartbeatInterval",
        "control.yml:3:1: unknownKey: unknown key",
        "environment variable STREAMPLANE_GRPC_ADDRESS: grpcAddress",
        "databaseUrl: required",
        "enrollmentToken: required",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }

    let (_d, file) = write_temp(
        "worker.yml",
        "metricsAddress: [1, 2]\ncontrolPlaneUrl: ftp://x\nbogus: true\n",
    );
    let w = Process::builder(bin("streamplane-worker"))
        .name("bad-worker")
        .arg("--config")
        .arg(&file)
        .spawn();
    assert_eq!(
        w.wait_exit(DEADLINE).await.code(),
        Some(64),
        "{}",
        w.output()
    );
    let err = w.stderr();
    for needle in [
        "worker.yml:1:",
        "metricsAddress",
        "worker.yml:2:",
        "controlPlaneUrl",
        "worker.yml:3:1: bogus",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }

    let (_d, file) = write_temp("broken.yml", "a: [1, 2\n");
    let w = Process::builder(bin("streamplane-worker"))
        .name("broken-yaml")
        .arg("--config")
        .arg(&file)
        .spawn();
    assert_eq!(w.wait_exit(DEADLINE).await.code(), Some(64));
    assert!(w.stderr().contains("broken.yml:"), "{}", w.stderr());
}

#[tokio::test]
async fn a_port_in_use_names_the_port_and_the_option() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let cp = Process::builder(bin("streamplane-control"))
        .name("port-in-use")
        .env(
            "STREAMPLANE_DATABASE_URL",
            "postgres://nobody@127.0.0.1:1/none",
        )
        .env("STREAMPLANE_ENROLLMENT_TOKEN", "0123456789abcdef0123")
        .env("STREAMPLANE_API_ADDRESS", format!("127.0.0.1:{port}"))
        .env(
            "STREAMPLANE_GRPC_ADDRESS",
            format!("127.0.0.1:{}", free_port()),
        )
        .spawn();
    let status = cp.wait_exit(DEADLINE).await;
    assert!(!status.success());
    let err = cp.stderr();
    assert!(
        err.contains(&format!("127.0.0.1:{port}"))
            && err.contains("apiAddress")
            && err.contains("STREAMPLANE_API_ADDRESS"),
        "{err}"
    );

    let w = Process::builder(bin("streamplane-worker"))
        .name("worker-port-in-use")
        .env("STREAMPLANE_METRICS_ADDRESS", format!("127.0.0.1:{port}"))
        .spawn();
    assert!(!w.wait_exit(DEADLINE).await.success());
    let err = w.stderr();
    assert!(
        err.contains(&port.to_string()) && err.contains("metricsAddress"),
        "{err}"
    );
    drop(taken);
}

#[tokio::test]
async fn help_and_version() {
    for name in ["streamplane-control", "streamplane-worker"] {
        for flag in ["--help", "--version"] {
            let out = std::process::Command::new(bin(name))
                .arg(flag)
                .output()
                .unwrap();
            assert!(out.status.success(), "{name} {flag}");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains(name) || text.contains("Usage"),
                "{name} {flag}: {text}"
            );
        }
    }
}
