//! `GET /api/v1/sessions`, `DELETE /api/v1/sessions/{id}` (kick) and the live state of
//! `GET /api/v1/paths/{name}`, against the real control plane and fake workers speaking gRPC.

#![allow(clippy::unwrap_used)]

mod common;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use streamplane_proto::v1 as pb;
use streamplane_testkit::{ControlPlane, eventually, unique_name};

use common::*;

fn session(id: &str, role: pb::SessionRole, protocol: &str, transport: &str) -> pb::MediaSession {
    pb::MediaSession {
        id: id.into(),
        role: role as i32,
        protocol: protocol.into(),
        remote_address: "192.0.2.7:50000".into(),
        username: if role == pb::SessionRole::Reader {
            "alice".into()
        } else {
            String::new()
        },
        transport: transport.into(),
        started_at: Some(prost_types::Timestamp {
            seconds: SENT_AT_SECONDS,
            nanos: 0,
        }),
        counters: Some(pb::Counters {
            bytes_received: 11,
            bytes_sent: 22,
            packets_received: 3,
            packets_sent: 4,
            packets_lost: 5,
            frames_dropped: 6,
        }),
    }
}

fn path_status(name: &str, ready: bool, sessions: Vec<pb::MediaSession>) -> pb::PathStatus {
    pb::PathStatus {
        name: name.into(),
        ready,
        sessions,
        counters: Some(pb::Counters::default()),
    }
}

fn worker_report(worker_id: &str, generation: u64, paths: Vec<pb::PathStatus>) -> pb::WorkerReport {
    pb::WorkerReport {
        worker_id: worker_id.into(),
        applied_generation: generation,
        paths,
        ..Default::default()
    }
}

/// A REST call with `token`; returns the status and the JSON body (`Null` when empty).
async fn call(cp: &ControlPlane, token: &str, method: Method, path: &str) -> (StatusCode, Value) {
    let resp = cp
        .http()
        .request(method.clone(), cp.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = resp.status();
    if status.is_client_error() {
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert_eq!(ct, "application/problem+json", "{method} {path}");
    }
    let text = resp.text().await.unwrap();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (status, value)
}

fn ids(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

async fn user(cp: &ControlPlane, name: &str, role: &str) -> String {
    api_expect(
        cp,
        Method::POST,
        "/api/v1/users",
        Some(json!({"username": name, "password": "password-123", "role": role})),
        StatusCode::CREATED,
    )
    .await;
    cp.login(name, "password-123").await
}

#[tokio::test]
async fn sessions_of_online_workers_are_listed_filtered_paginated_and_kicked() {
    // Offline must come from the end of a report stream, not from the reaper.
    let cp = control_plane_with_heartbeat_timeout("60s").start().await;
    let admin = cp.admin_token().await;
    let viewer = user(&cp, "watcher", "viewer").await;
    let operator = user(&cp, "oper", "operator").await;
    api_expect(
        &cp,
        Method::POST,
        "/api/v1/paths",
        Some(json!({"name": "cam"})),
        StatusCode::CREATED,
    )
    .await;

    let mut agent = Agent::connect(&cp).await;
    let (name_a, name_b) = (unique_name("wa"), unique_name("wb"));
    let wa = agent.register(&name_a).await;
    let wb = agent.register(&name_b).await;
    let mut watch = agent.watch(&wa, 0).await;
    let (_, first) = watch.next().await;
    assert!(first.kicked_session_ids.is_empty(), "{first:?}");
    let g = first.generation;

    use pb::SessionRole::{Publisher, Reader};
    let reports_a = agent.open_reports();
    reports_a
        .send(worker_report(
            &wa,
            g,
            vec![
                path_status(
                    "cam",
                    true,
                    vec![
                        session("a-pub", Publisher, "rtsp", "tcp"),
                        session("a-r2", Reader, "rtsp", "tcp"),
                        session("a-r1", Reader, "rtsp", "udp"),
                    ],
                ),
                path_status(
                    "other",
                    true,
                    vec![session("o-pub", Publisher, "webrtc", "udp")],
                ),
            ],
        ))
        .await;
    let reports_b = agent.open_reports();
    reports_b
        .send(worker_report(
            &wb,
            g,
            vec![path_status(
                "cam",
                false,
                vec![session("b-r1", Reader, "rtsp", "tcp")],
            )],
        ))
        .await;

    let all = eventually(DEADLINE, "five sessions listed", || async {
        let (s, list) = call(&cp, &viewer, Method::GET, "/api/v1/sessions").await;
        if s == StatusCode::OK && list["total"] == 5 {
            Ok(list)
        } else {
            Err(format!("{s} {list}"))
        }
    })
    .await;
    // Ordered by path, then id.
    assert_eq!(
        ids(&all),
        ["a-pub", "a-r1", "a-r2", "b-r1", "o-pub"],
        "{all}"
    );
    assert_eq!(all["page"], 1);
    assert_eq!(all["per_page"], 50);
    let r1 = &all["items"][1];
    assert_eq!(r1["worker_id"], wa.as_str(), "{r1}");
    assert_eq!(r1["worker_name"], name_a.as_str(), "{r1}");
    assert_eq!(r1["path"], "cam", "{r1}");
    assert_eq!(r1["role"], "reader", "{r1}");
    assert_eq!(r1["protocol"], "rtsp", "{r1}");
    assert_eq!(r1["transport"], "udp", "{r1}");
    assert_eq!(r1["remote_address"], "192.0.2.7:50000", "{r1}");
    assert_eq!(r1["username"], "alice", "{r1}");
    assert_eq!(r1["started_at"], "2026-01-01T00:00:00Z", "{r1}");
    assert_eq!(r1["bytes_received"], 11, "{r1}");
    assert_eq!(r1["bytes_sent"], 22, "{r1}");
    assert_eq!(r1["packets_lost"], 5, "{r1}");
    assert_eq!(r1["frames_dropped"], 6, "{r1}");
    assert_eq!(all["items"][0]["username"], Value::Null, "{all}");

    // Filters and pages.
    let get = |q: &'static str| {
        let (cp, viewer) = (&cp, &viewer);
        async move { call(cp, viewer, Method::GET, &format!("/api/v1/sessions{q}")).await }
    };
    let (s, l) = get("?path=cam").await;
    assert_eq!(
        (s, ids(&l)),
        (
            StatusCode::OK,
            vec!["a-pub".into(), "a-r1".into(), "a-r2".into(), "b-r1".into()]
        )
    );
    let (_, l) = call(
        &cp,
        &viewer,
        Method::GET,
        &format!("/api/v1/sessions?worker_id={wb}"),
    )
    .await;
    assert_eq!(ids(&l), ["b-r1"], "{l}");
    let (_, l) = get("?role=publisher").await;
    assert_eq!(ids(&l), ["a-pub", "o-pub"], "{l}");
    let (_, l) = get("?protocol=webrtc").await;
    assert_eq!(ids(&l), ["o-pub"], "{l}");
    let (_, l) = get("?path=cam&role=reader&per_page=2&page=2").await;
    assert_eq!(ids(&l), ["b-r1"], "{l}");
    assert_eq!(
        (l["total"].clone(), l["page"].clone(), l["per_page"].clone()),
        (json!(3), json!(2), json!(2))
    );
    let (_, l) = get("?per_page=2&page=9").await;
    assert_eq!((ids(&l).len(), l["total"].clone()), (0, json!(5)), "{l}");
    let (s, l) = get("?per_page=501").await;
    assert_eq!(
        (s, l["code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("validation_failed")),
        "{l}"
    );
    let (s, l) = get("?role=admin").await;
    assert_eq!(
        (s, l["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("bad_request")),
        "{l}"
    );
    let (s, l) = get("?bogus=1").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{l}");
    let (s, _) = cp
        .http()
        .get(cp.url("/api/v1/sessions"))
        .send()
        .await
        .map(|r| (r.status(), ()))
        .unwrap();
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Live state of the path: both workers, only the first has a publisher.
    let (s, p) = call(&cp, &viewer, Method::GET, "/api/v1/paths/cam").await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let live = &p["live"];
    assert_eq!(live["online"], true, "{p}");
    let workers = live["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2, "{p}");
    let on = |id: &str| {
        workers
            .iter()
            .find(|w| w["worker_id"] == id)
            .unwrap()
            .clone()
    };
    let (a, b) = (on(&wa), on(&wb));
    assert_eq!(a["worker_name"], name_a.as_str(), "{a}");
    assert_eq!(a["ready"], true, "{a}");
    assert_eq!(a["publisher"]["id"], "a-pub", "{a}");
    assert_eq!(a["readers"], 2, "{a}");
    assert_eq!(b["ready"], false, "{b}");
    assert_eq!(b["publisher"], Value::Null, "{b}");
    assert_eq!(b["readers"], 1, "{b}");
    assert_eq!(a["path"], "cam", "{a}");
    // The listing has no live state.
    let (_, l) = call(&cp, &viewer, Method::GET, "/api/v1/paths").await;
    assert!(l["items"][0].get("live").is_none(), "{l}");
    // A name no pattern matches is live under the catch-all; once a regex matches it, under
    // the regex (the order workers resolve names in), and `cam` stays with its exact path.
    let live_paths = |p: &Value| -> Vec<String> {
        p["live"]["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["path"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, p) = call(&cp, &viewer, Method::GET, "/api/v1/paths/all_others").await;
    assert_eq!(live_paths(&p), ["other"], "{p}");
    assert_eq!(p["live"]["online"], true, "{p}");
    api_expect(
        &cp,
        Method::POST,
        "/api/v1/paths",
        Some(json!({"name": "~^(cam|oth.*)$"})),
        StatusCode::CREATED,
    )
    .await;
    let (s, p) = call(
        &cp,
        &viewer,
        Method::GET,
        "/api/v1/paths/~%5E(cam%7Coth.*)%24",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(live_paths(&p), ["other"], "{p}");
    assert_eq!(p["live"]["workers"][0]["publisher"]["id"], "o-pub", "{p}");
    let (_, p) = call(&cp, &viewer, Method::GET, "/api/v1/paths/all_others").await;
    assert_eq!(live_paths(&p), Vec::<String>::new(), "{p}");
    assert_eq!(p["live"]["online"], false, "{p}");
    let (_, p) = call(&cp, &viewer, Method::GET, "/api/v1/paths/cam").await;
    assert_eq!(live_paths(&p), ["cam", "cam"], "{p}");

    // Kicks: roles, unknown ids, then a real one reaches the worker's desired state.
    let (s, l) = call(&cp, &viewer, Method::DELETE, "/api/v1/sessions/a-r1").await;
    assert_eq!(
        (s, l["code"].clone()),
        (StatusCode::FORBIDDEN, json!("forbidden")),
        "{l}"
    );
    let (s, l) = call(&cp, &operator, Method::DELETE, "/api/v1/sessions/nope").await;
    assert_eq!(
        (s, l["code"].clone()),
        (StatusCode::NOT_FOUND, json!("not_found")),
        "{l}"
    );
    let (s, l) = call(&cp, &operator, Method::DELETE, "/api/v1/sessions/a-r1").await;
    assert_eq!(s, StatusCode::ACCEPTED, "{l}");
    assert_eq!(l["id"], "a-r1", "{l}");
    assert_eq!(l["worker_id"], wa.as_str(), "{l}");
    let (_, kicked) = watch
        .until("a-r1 kicked", |s| {
            s.kicked_session_ids.iter().any(|id| id == "a-r1")
        })
        .await;
    assert!(kicked.generation > g, "{kicked:?}");
    assert_eq!(kicked.kicked_session_ids, ["a-r1"]);
    // The admin may kick too; every recent kick stays in the snapshot.
    let (s, l) = call(&cp, &admin, Method::DELETE, "/api/v1/sessions/b-r1").await;
    assert_eq!(s, StatusCode::ACCEPTED, "{l}");
    let (_, kicked) = watch
        .until("b-r1 kicked", |s| {
            s.kicked_session_ids.iter().any(|id| id == "b-r1")
        })
        .await;
    assert_eq!(kicked.kicked_session_ids, ["a-r1", "b-r1"]);

    // The kick is in the audit log.
    let pool = sqlx::PgPool::connect(cp.database_url()).await.unwrap();
    let (actor, entity): (String, String) = sqlx::query_as(
        "SELECT actor_name, entity FROM audit_log WHERE action = 'kick' AND entity_id = 'a-r1'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((actor.as_str(), entity.as_str()), ("oper", "session"));

    // Only online workers count: the second one's report stream ends, its sessions go.
    reports_b.close().await.unwrap();
    wait_worker(&cp, &wb, "offline", |w| w["status"] == "offline").await;
    let (_, l) = get("").await;
    assert_eq!(ids(&l), ["a-pub", "a-r1", "a-r2", "o-pub"], "{l}");
    let (s, _) = call(&cp, &operator, Method::DELETE, "/api/v1/sessions/b-r1").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, p) = call(&cp, &viewer, Method::GET, "/api/v1/paths/cam").await;
    assert_eq!(p["live"]["workers"].as_array().unwrap().len(), 1, "{p}");
    drop(reports_a);
}
