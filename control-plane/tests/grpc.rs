//! The control plane's gRPC service (`WorkerControl`) against the real binary and a private Postgres:
//! enrollment, the desired-state stream and how fast REST changes reach it, reports and the worker
//! status they feed, two processes on one database, and a restart.
//!
//! Every test starts its own control plane on a fresh database, so generations and workers are
//! the test's own. Waits have deadlines; the only fixed windows are the ones that assert silence.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use streamplane_proto::v1 as pb;
use streamplane_testkit::unique_name;
use tokio::time::Instant;
use tonic::Code;

use common::*;

#[tokio::test]
async fn every_call_needs_the_enrollment_token() {
    let cp = control_plane().start().await;
    let mut good = Agent::connect(&cp).await;
    let worker_id = good.register(&unique_name("w")).await;

    let presented = [
        ("missing", None),
        ("wrong", Some("Bearer not-the-enrollment-token".to_string())),
        ("empty", Some("Bearer ".to_string())),
        (
            "other scheme",
            Some(format!("Basic {}", cp.enrollment_token())),
        ),
    ];
    for (case, authorization) in presented {
        let mut agent = Agent::with_authorization(&cp, authorization).await;
        assert_code(
            agent.try_register(&unique_name("intruder")).await,
            Code::Unauthenticated,
            "enrollment token",
            &format!("Register with a {case} token"),
        );
        assert_code(
            agent.try_watch(&worker_id, 0).await.map(|_| ()),
            Code::Unauthenticated,
            "enrollment token",
            &format!("WatchDesiredState with a {case} token"),
        );
        assert_code(
            agent.report_all(vec![report(&worker_id, 42, "")]).await,
            Code::Unauthenticated,
            "enrollment token",
            &format!("Report with a {case} token"),
        );
    }

    // Nothing a refused caller sent was recorded: no intruder registered, no report stored.
    let list = api_expect(&cp, Method::GET, "/api/v1/workers", None, StatusCode::OK).await;
    assert_eq!(
        list["total"], 1,
        "only the enrolled worker is registered: {list}"
    );
    let worker = &list["items"][0];
    assert_eq!(worker["id"], worker_id.as_str());
    assert_eq!(worker["applied_generation"], 0, "{worker}");
    assert_eq!(worker["last_report"], Value::Null, "{worker}");
}

#[tokio::test]
async fn a_registered_worker_gets_the_current_snapshot_first() {
    let cp = control_plane().start().await;
    let mut agent = Agent::connect(&cp).await;
    let name = unique_name("w");
    let first = agent.try_register(&name).await.unwrap();
    assert_eq!(
        first.heartbeat_interval_ms, HEARTBEAT_INTERVAL_MS,
        "the configured heartbeatInterval"
    );
    let worker_id = first.worker_id;
    uuid::Uuid::parse_str(&worker_id).unwrap_or_else(|e| panic!("worker_id {worker_id:?}: {e}"));
    assert_eq!(
        agent.register(&name).await,
        worker_id,
        "Register is idempotent by name"
    );
    assert_ne!(
        agent.register(&unique_name("w")).await,
        worker_id,
        "another name, another worker"
    );

    let mut watch = agent.watch(&worker_id, 0).await;
    let (_, s) = watch.next().await;
    assert!(s.generation >= 1, "generation {}", s.generation);
    let desired = listed_worker(&cp, &worker_id).await.unwrap()["desired_generation"].clone();
    assert_eq!(
        desired, s.generation,
        "the first snapshot is the current generation"
    );
    assert!(s.created_at.is_some(), "created_at is set");

    let catch_all = path(&s, "all_others")
        .unwrap_or_else(|| panic!("no default catch-all path: {:?}", s.paths));
    assert_eq!(
        catch_all.source_kind,
        pb::SourceKind::Publisher as i32,
        "{catch_all:?}"
    );
    assert_eq!(s.paths.len(), 1, "{:?}", s.paths);

    let anonymous: Vec<&pb::AclRule> = s
        .acl_rules
        .iter()
        .filter(|r| r.user_id.is_empty())
        .collect();
    let actions: BTreeSet<i32> = anonymous.iter().map(|r| r.action).collect();
    let expected: BTreeSet<i32> = [
        pb::AclAction::Publish,
        pb::AclAction::Read,
        pb::AclAction::Playback,
    ]
    .map(|a| a as i32)
    .into();
    assert_eq!(anonymous.len(), 3, "{:?}", s.acl_rules);
    assert_eq!(actions, expected, "{:?}", s.acl_rules);
    for rule in &anonymous {
        assert!(
            rule.path_pattern.is_empty() && rule.ip_networks.is_empty(),
            "any path, anywhere: {rule:?}"
        );
    }

    assert_eq!(s.jwt_public_keys.len(), 1, "{:?}", s.jwt_public_keys);
    let key = &s.jwt_public_keys[0];
    assert_eq!(key.algorithm, "EdDSA");
    assert_eq!(key.public_key.len(), 32, "raw Ed25519 public key");
    // The same key the REST API publishes, so workers verify exactly the tokens the API issues.
    let jwks: Value = cp
        .http()
        .get(cp.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let published = &jwks["keys"][0];
    assert_eq!(published["kid"], key.kid.as_str(), "{jwks}");
    assert_eq!(
        published["x"],
        URL_SAFE_NO_PAD.encode(&key.public_key),
        "{jwks}"
    );

    let admin = s
        .users
        .iter()
        .find(|u| u.username == "admin")
        .unwrap_or_else(|| panic!("{:?}", s.users));
    assert_eq!(admin.role, pb::UserRole::Admin as i32);
    assert!(!admin.disabled);
    assert!(
        admin.password_hash.starts_with("$argon2id$"),
        "PHC argon2id hash: {:?}",
        admin.password_hash
    );

    watch
        .assert_silent("nothing changed after the first snapshot")
        .await;
}

#[tokio::test]
async fn rest_changes_reach_a_watching_worker_within_a_second() {
    let cp = control_plane().start().await;
    cp.admin_token().await; // log in before timing anything
    let mut agent = Agent::connect(&cp).await;
    let worker_id = agent.register(&unique_name("w")).await;
    let mut watch = agent.watch(&worker_id, 0).await;
    let (_, initial) = watch.next().await;
    let name = "cam1";
    assert!(path(&initial, name).is_none());

    // Create.
    let sent = Instant::now();
    api_expect(
        &cp,
        Method::POST,
        "/api/v1/paths",
        Some(json!({ "name": name })),
        StatusCode::CREATED,
    )
    .await;
    let answered = Instant::now();
    let (arrived, created) = watch.until("path cam1", |s| path(s, name).is_some()).await;
    let after_response = arrived.saturating_duration_since(answered);
    println!(
        "path creation reached the worker {:?} after the REST response ({:?} after the request was sent)",
        after_response,
        arrived.saturating_duration_since(sent)
    );
    assert!(
        after_response < PROPAGATION_BUDGET,
        "a created path took {after_response:?} after the REST response to reach the worker"
    );
    assert!(
        created.generation > initial.generation,
        "{} after {}",
        created.generation,
        initial.generation
    );
    assert_eq!(
        path(&created, name).unwrap().source_kind,
        pb::SourceKind::Publisher as i32
    );
    assert_eq!(path(&created, name).unwrap().max_readers, 0);

    // Update.
    let body = json!({ "max_readers": 7, "record": true });
    api_expect(
        &cp,
        Method::PATCH,
        "/api/v1/paths/cam1",
        Some(body),
        StatusCode::OK,
    )
    .await;
    let answered = Instant::now();
    let (arrived, patched) = watch
        .until("cam1 with max_readers 7", |s| {
            path(s, name).is_some_and(|p| p.max_readers == 7)
        })
        .await;
    let took = arrived.saturating_duration_since(answered);
    println!("path update reached the worker {took:?} after the REST response");
    assert!(
        took < PROPAGATION_BUDGET,
        "an updated path took {took:?} to reach the worker"
    );
    assert!(patched.generation > created.generation);
    assert!(path(&patched, name).unwrap().record);

    // Delete.
    api_expect(
        &cp,
        Method::DELETE,
        "/api/v1/paths/cam1",
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    let answered = Instant::now();
    let (arrived, deleted) = watch
        .until("no path cam1", |s| path(s, name).is_none())
        .await;
    let took = arrived.saturating_duration_since(answered);
    println!("path deletion reached the worker {took:?} after the REST response");
    assert!(
        took < PROPAGATION_BUDGET,
        "a deleted path took {took:?} to leave the worker's snapshot"
    );
    assert!(deleted.generation > patched.generation);
    assert!(
        path(&deleted, "all_others").is_some(),
        "other paths stay: {:?}",
        deleted.paths
    );
}

#[tokio::test]
async fn a_worker_that_knows_the_current_generation_waits_for_a_change() {
    let cp = control_plane().start().await;
    let mut agent = Agent::connect(&cp).await;
    let worker_id = agent.register(&unique_name("w")).await;
    let (_, current) = agent.watch(&worker_id, 0).await.next().await;
    let g = current.generation;

    // One generation behind: the current snapshot at once.
    let (_, s) = agent.watch(&worker_id, g - 1).await.next().await;
    assert_eq!(s.generation, g);

    let mut watch = agent.watch(&worker_id, g).await;
    watch
        .assert_silent(&format!("the worker already runs generation {g}"))
        .await;
    api_expect(
        &cp,
        Method::POST,
        "/api/v1/paths",
        Some(json!({ "name": "cam2" })),
        StatusCode::CREATED,
    )
    .await;
    let (_, s) = watch.next().await;
    assert!(s.generation > g, "generation {} after {g}", s.generation);
    assert!(
        path(&s, "cam2").is_some(),
        "the first snapshot after a change has it: {:?}",
        s.paths
    );
}

#[tokio::test]
async fn two_control_planes_on_one_database_serve_the_same_state() {
    let cp1 = control_plane().name("control-1").start().await;
    let cp2 = control_plane()
        .name("control-2")
        .database_url(cp1.database_url())
        .enrollment_token(cp1.enrollment_token())
        .admin_password(cp1.admin_password())
        .start()
        .await;
    cp1.admin_token().await;

    let mut agent = Agent::connect(&cp2).await;
    let name = unique_name("w");
    let worker_id = agent.register(&name).await;
    let mut watch = agent.watch(&worker_id, 0).await;
    let (_, initial) = watch.next().await;
    let (_, on_cp1) = Agent::connect(&cp1)
        .await
        .watch(&worker_id, 0)
        .await
        .next()
        .await;
    assert_eq!(
        initial.generation, on_cp1.generation,
        "both processes serve the same generation"
    );
    assert!(
        listed_worker(&cp1, &worker_id).await.is_some(),
        "a worker registered on cp2 is listed by cp1"
    );

    api_expect(
        &cp1,
        Method::POST,
        "/api/v1/paths",
        Some(json!({ "name": "shared" })),
        StatusCode::CREATED,
    )
    .await;
    let answered = Instant::now();
    let (arrived, s) = watch
        .until("path shared", |s| path(s, "shared").is_some())
        .await;
    let took = arrived.saturating_duration_since(answered);
    println!("a path created on cp1 reached a worker of cp2 {took:?} after the REST response");
    assert!(
        took < PROPAGATION_BUDGET,
        "a path created on cp1 took {took:?} to reach cp2's worker"
    );
    assert!(s.generation > initial.generation);
    // Registration is idempotent by name across processes too.
    assert_eq!(Agent::connect(&cp1).await.register(&name).await, worker_id);
}

#[tokio::test]
async fn reports_feed_the_worker_status() {
    // Offline must come from the end of the stream, not from the reaper.
    let cp = control_plane_with_heartbeat_timeout("60s").start().await;
    let mut agent = Agent::connect(&cp).await;
    let worker_id = agent.register(&unique_name("w")).await;
    let (_, s) = agent.watch(&worker_id, 0).await.next().await;
    let g = s.generation;

    let reports = agent.open_reports();
    reports.send(report(&worker_id, g, "")).await;
    let w = wait_worker(
        &cp,
        &worker_id,
        &format!("online with applied_generation {g}"),
        |w| w["status"] == "online" && w["applied_generation"] == g,
    )
    .await;
    assert_eq!(w["desired_generation"], g, "{w}");
    assert_eq!(w["in_sync"], true, "{w}");
    assert_eq!(w["apply_error"], Value::Null, "{w}");
    assert!(w["last_heartbeat_at"].is_string(), "{w}");
    let last = &w["last_report"];
    assert_eq!(last["applied_generation"], g, "{last}");
    assert_eq!(last["sent_at"], "2026-01-01T00:00:00+00:00", "{last}");
    assert_eq!(last["totals"]["bytes_received"], 1000, "{last}");
    assert_eq!(last["totals"]["bytes_sent"], 2000, "{last}");
    assert_eq!(last["paths"][0]["name"], "cam", "{last}");
    assert_eq!(last["paths"][0]["ready"], true, "{last}");
    assert_eq!(
        last["paths"][0]["sessions"][0]["role"], "publisher",
        "{last}"
    );
    assert_eq!(
        last["paths"][0]["sessions"][0]["remote_address"], "192.0.2.7:50000",
        "{last}"
    );

    // A worker that fails to apply the current generation is out of sync and says why.
    reports
        .send(report(&worker_id, g - 1, "path cam: bad regex"))
        .await;
    let w = wait_worker(&cp, &worker_id, "out of sync", |w| {
        w["applied_generation"] == g - 1
    })
    .await;
    assert_eq!(w["in_sync"], false, "{w}");
    assert_eq!(w["apply_error"], "path cam: bad regex", "{w}");
    assert_eq!(w["status"], "online", "{w}");

    // A newer desired state leaves a worker that still runs g behind.
    reports.send(report(&worker_id, g, "")).await;
    wait_worker(&cp, &worker_id, "in sync again", |w| w["in_sync"] == true).await;
    api_expect(
        &cp,
        Method::POST,
        "/api/v1/paths",
        Some(json!({ "name": "cam3" })),
        StatusCode::CREATED,
    )
    .await;
    let w = wait_worker(&cp, &worker_id, "behind the new generation", |w| {
        w["in_sync"] == false
    })
    .await;
    assert!(w["desired_generation"].as_u64().unwrap() > g, "{w}");
    assert_eq!(
        w["apply_error"],
        Value::Null,
        "an empty apply_error clears the last one: {w}"
    );

    // The end of the stream marks the worker offline.
    let ack = reports.close().await;
    assert!(
        ack.is_ok(),
        "a stream that ends normally is acknowledged: {ack:?}"
    );
    wait_worker(
        &cp,
        &worker_id,
        "offline after its report stream ended",
        |w| w["status"] == "offline",
    )
    .await;
}

#[tokio::test]
async fn a_silent_worker_goes_offline() {
    let cp = control_plane().start().await;
    let mut agent = Agent::connect(&cp).await;
    let worker_id = agent.register(&unique_name("w")).await;
    let reports = agent.open_reports();

    let sent = Instant::now();
    reports.send(report(&worker_id, 1, "")).await;
    wait_worker(&cp, &worker_id, "online after a report", |w| {
        w["status"] == "online" && w["last_report"].is_object()
    })
    .await;
    // The stream stays open, but no heartbeat comes: the reaper steps in after heartbeatTimeout.
    wait_worker(&cp, &worker_id, "offline after missing heartbeats", |w| {
        w["status"] == "offline"
    })
    .await;
    let silent_for = sent.elapsed();
    println!(
        "a silent worker was marked offline after {silent_for:?} (heartbeatTimeout {HEARTBEAT_TIMEOUT:?})"
    );
    // The database clock and ours may differ by a little; a generous margin still catches a reaper
    // that ignores the timeout.
    assert!(
        silent_for >= HEARTBEAT_TIMEOUT.mul_f64(0.8),
        "offline after {silent_for:?}, before heartbeatTimeout {HEARTBEAT_TIMEOUT:?}"
    );

    // A heartbeat on the same stream brings it back.
    reports.send(report(&worker_id, 1, "")).await;
    wait_worker(&cp, &worker_id, "online again after a heartbeat", |w| {
        w["status"] == "online"
    })
    .await;
    reports.close().await.unwrap();
}

#[tokio::test]
async fn reports_for_unknown_or_malformed_workers_are_refused() {
    let cp = control_plane_with_heartbeat_timeout("60s").start().await;
    let mut agent = Agent::connect(&cp).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    assert_code(
        agent.report_all(vec![report(&unknown, 1, "")]).await,
        Code::NotFound,
        &unknown,
        "Report for an unregistered worker",
    );
    assert_code(
        agent.report_all(vec![report("not-a-uuid", 1, "")]).await,
        Code::InvalidArgument,
        "not-a-uuid",
        "Report with a malformed worker_id",
    );
    assert_code(
        agent.try_watch(&unknown, 0).await.map(|_| ()),
        Code::NotFound,
        &unknown,
        "WatchDesiredState for an unregistered worker",
    );
    assert_code(
        agent.try_watch("not-a-uuid", 0).await.map(|_| ()),
        Code::InvalidArgument,
        "not-a-uuid",
        "WatchDesiredState with a malformed worker_id",
    );

    // One stream carries one worker's reports, and its end (whatever the reason) marks that worker offline.
    let worker_id = agent.register(&unique_name("w")).await;
    let other = agent.register(&unique_name("w")).await;
    assert_code(
        agent
            .report_all(vec![report(&worker_id, 1, ""), report(&other, 1, "")])
            .await,
        Code::InvalidArgument,
        "one worker",
        "Report stream switching workers",
    );
    wait_worker(
        &cp,
        &worker_id,
        "offline after its stream switched workers",
        |w| w["status"] == "offline",
    )
    .await;
}

/// A worker that gives up on its report call (RST_STREAM, the connection stays up) is marked offline
/// at once, as when its stream ends normally, not only by the reaper after heartbeatTimeout.
#[tokio::test]
async fn a_worker_whose_report_call_is_cancelled_goes_offline_at_once() {
    // The reaper must not be the reason the worker goes offline.
    let cp = control_plane_with_heartbeat_timeout("60s").start().await;

    let agent = Agent::connect(&cp).await;
    let worker_id = agent.clone().register(&unique_name("w")).await;
    let reports = agent.open_reports();
    reports.send(report(&worker_id, 1, "")).await;
    wait_worker(&cp, &worker_id, "online after a report", |w| {
        w["last_report"].is_object()
    })
    .await;
    drop(reports);
    wait_worker(
        &cp,
        &worker_id,
        "offline after its report call was cancelled",
        |w| w["status"] == "offline",
    )
    .await;
}

/// A worker whose connection breaks (its process died, the network failed) is marked offline at
/// once, not only by the reaper after heartbeatTimeout.
#[tokio::test]
async fn a_worker_whose_connection_closes_goes_offline_at_once() {
    // The reaper must not be the reason the worker goes offline.
    let cp = control_plane_with_heartbeat_timeout("60s").start().await;
    let proxy = CuttableProxy::start(cp.grpc_addr()).await;
    let bearer = format!("Bearer {}", cp.enrollment_token());
    let agent = Agent::connect_url(proxy.url(), Some(bearer)).await;
    let worker_id = agent.clone().register(&unique_name("w")).await;
    let reports = agent.open_reports();
    reports.send(report(&worker_id, 1, "")).await;
    wait_worker(&cp, &worker_id, "online after a report", |w| {
        w["last_report"].is_object()
    })
    .await;
    proxy.cut();
    wait_worker(
        &cp,
        &worker_id,
        "offline after its connection closed",
        |w| w["status"] == "offline",
    )
    .await;
    assert!(
        reports.close().await.is_err(),
        "the call failed with the connection"
    );
}

/// A report stream that ends in an error marks its worker offline, like one that ends normally.
#[tokio::test]
async fn a_report_stream_with_a_malformed_worker_id_marks_its_worker_offline() {
    let cp = control_plane_with_heartbeat_timeout("60s").start().await;
    let mut agent = Agent::connect(&cp).await;
    let worker_id = agent.register(&unique_name("w")).await;
    assert_code(
        agent
            .report_all(vec![report(&worker_id, 1, ""), report("not-a-uuid", 1, "")])
            .await,
        Code::InvalidArgument,
        "not-a-uuid",
        "Report stream with a malformed worker_id after a good report",
    );
    wait_worker(
        &cp,
        &worker_id,
        "offline after its stream carried a malformed worker_id",
        |w| w["status"] == "offline",
    )
    .await;
}

#[tokio::test]
async fn a_restarted_control_plane_resumes_where_it_stopped() {
    let cp = control_plane().start().await;
    let token = cp.admin_token().await;
    let first_password = cp.admin_password();
    let mut agent = Agent::connect(&cp).await;
    let name = unique_name("w");
    let worker_id = agent.register(&name).await;
    let mut watch = agent.watch(&worker_id, 0).await;
    watch.next().await;
    api_expect(
        &cp,
        Method::POST,
        "/api/v1/paths",
        Some(json!({ "name": "kept" })),
        StatusCode::CREATED,
    )
    .await;
    let (_, before) = watch
        .until("path kept", |s| path(s, "kept").is_some())
        .await;

    cp.process().kill();
    assert!(
        watch.ended().await.is_err(),
        "a killed control plane breaks the stream"
    );
    // Another configured admin password: the database, not the configuration, holds the admin.
    let cp = cp
        .restart_builder()
        .admin_password("not-the-first-password")
        .start()
        .await;

    let mut agent = Agent::connect(&cp).await;
    assert_eq!(
        agent.register(&name).await,
        worker_id,
        "the worker keeps its id across restarts"
    );
    let (_, after) = agent.watch(&worker_id, 0).await.next().await;
    assert!(
        after.generation >= before.generation,
        "generation went back from {} to {}",
        before.generation,
        after.generation
    );
    assert!(path(&after, "kept").is_some(), "{:?}", after.paths);
    assert_eq!(
        after.jwt_public_keys, before.jwt_public_keys,
        "the signing key survives the restart"
    );
    assert_eq!(after.users, before.users, "no admin is created again");
    // A worker that reconnects with what it runs gets nothing new.
    agent
        .watch(&worker_id, before.generation)
        .await
        .assert_silent("nothing changed across the restart")
        .await;

    cp.login("admin", &first_password).await;
    let (status, _) = login(&cp, "admin", "not-the-first-password").await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "bootstrap must not reset an existing admin"
    );
    // The token issued before the restart still verifies: same key.
    let resp = cp
        .http()
        .get(cp.url("/api/v1/workers"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn register_refuses_invalid_names() {
    let cp = control_plane().start().await;
    let mut agent = Agent::connect(&cp).await;
    let too_long = "w".repeat(65);
    for name in [
        "",
        " ",
        "a b",
        "cam/1",
        "caf\u{e9}",
        "tab\t",
        too_long.as_str(),
    ] {
        assert_code(
            agent.try_register(name).await,
            Code::InvalidArgument,
            "worker name",
            &format!("Register {name:?}"),
        );
    }
    for name in ["worker-1.eu_2", &"w".repeat(64)] {
        agent
            .try_register(name)
            .await
            .unwrap_or_else(|s| panic!("Register {name:?}: {s:?}"));
    }
    let list = api_expect(&cp, Method::GET, "/api/v1/workers", None, StatusCode::OK).await;
    assert_eq!(
        list["total"], 2,
        "only the valid names are registered: {list}"
    );
}
