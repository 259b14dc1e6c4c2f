//! The REST API for paths and ACL rules against the real binary and a private Postgres:
//! validation, roles, conflicts, URL-encoded names, pagination and filters.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod rest_support;

use reqwest::StatusCode;
use rest_support::{Api, assert_problem, pointers};
use serde_json::{Value, json};
use streamplane_testkit::ControlPlane;

#[tokio::test]
async fn paths_crud_validation_and_pagination() {
    let cp = ControlPlane::start().await;
    let api = Api { cp: &cp };
    let admin = cp.admin_token().await;
    let (_, viewer) = api.user_with_role(&admin, "watcher", Some("viewer")).await;

    // The first start created MediaMTX's catch-all.
    let (s, list) = api.get("/api/v1/paths", &viewer).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["items"][0]["name"], "all_others");

    let (s, p) = api.post("/api/v1/paths", &admin, json!({"name": "site1/cam1", "source": {"kind": "url", "url": "rtsp://10.0.0.5:554/s"}, "source_on_demand": true, "max_readers": 10})).await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    assert_eq!(
        p["source"],
        json!({"kind": "url", "url": "rtsp://10.0.0.5:554/s"})
    );
    assert_eq!(
        (p["max_readers"].as_u64(), p["override_publisher"].as_bool()),
        (Some(10), Some(true))
    );
    let (s, _) = api
        .post("/api/v1/paths", &admin, json!({"name": "~^live/(.+)$"}))
        .await;
    assert_eq!(s, StatusCode::CREATED);

    assert_problem(
        &api.post("/api/v1/paths", &viewer, json!({"name": "x"}))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_problem(
        &api.post("/api/v1/paths", &admin, json!({"name": "site1/cam1"}))
            .await,
        StatusCode::CONFLICT,
        "conflict",
    );
    for bad in [
        "/a", "a/", "a//b", "../x", "a/./b", "a b", "~(", "", "cam?1",
    ] {
        let r = api
            .post("/api/v1/paths", &admin, json!({"name": bad}))
            .await;
        assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(pointers(&r.1), ["/name"], "{bad:?}: {}", r.1);
    }
    let r = api.post("/api/v1/paths", &admin, json!({"name": "ok", "source": {"kind": "url", "url": "file:///etc/passwd"}, "source_on_demand_start_timeout_ms": 0, "publisher_grace_ms": 99999999})).await;
    assert_eq!(
        pointers(&r.1),
        [
            "/source/url",
            "/source_on_demand_start_timeout_ms",
            "/publisher_grace_ms"
        ]
    );
    let r = api
        .post(
            "/api/v1/paths",
            &admin,
            json!({"name": "ok", "source_on_demand": true}),
        )
        .await;
    assert_eq!(pointers(&r.1), ["/source_on_demand"]);
    let r = api
        .post(
            "/api/v1/paths",
            &admin,
            json!({"name": "ok", "source": {"kind": "ftp"}}),
        )
        .await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");

    // Names with slashes and regex names work in URLs.
    let (s, got) = api.get("/api/v1/paths/site1/cam1", &viewer).await;
    assert_eq!(
        (s, got["name"].as_str()),
        (StatusCode::OK, Some("site1/cam1"))
    );
    let (s, got) = api.get("/api/v1/paths/~%5Elive%2F(.%2B)%24", &viewer).await;
    assert_eq!(
        (s, got["name"].as_str()),
        (StatusCode::OK, Some("~^live/(.+)$")),
        "{got}"
    );
    assert_problem(
        &api.get("/api/v1/paths/nope", &viewer).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    // PATCH: rename, change source (publisher clears on-demand), partial fields stay.
    let (s, p) = api
        .patch(
            "/api/v1/paths/site1/cam1",
            &admin,
            json!({"name": "site1/cam-a", "source": {"kind": "publisher"}, "record": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(
        (
            p["name"].as_str(),
            p["source"]["kind"].as_str(),
            p["source_on_demand"].as_bool(),
            p["record"].as_bool(),
            p["max_readers"].as_u64()
        ),
        (
            Some("site1/cam-a"),
            Some("publisher"),
            Some(false),
            Some(true),
            Some(10)
        )
    );
    assert_problem(
        &api.patch(
            "/api/v1/paths/site1/cam-a",
            &admin,
            json!({"source_on_demand": true}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    assert_problem(
        &api.patch(
            "/api/v1/paths/site1/cam-a",
            &admin,
            json!({"name": "~^live/(.+)$"}),
        )
        .await,
        StatusCode::CONFLICT,
        "conflict",
    );
    assert_problem(
        &api.patch("/api/v1/paths/missing", &admin, json!({"record": true}))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_problem(
        &api.patch(
            "/api/v1/paths/site1/cam-a",
            &viewer,
            json!({"record": false}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );

    // Pagination: stable order by name over pages, filters.
    for i in 0..7 {
        api.post("/api/v1/paths", &admin, json!({"name": format!("p{i}")}))
            .await;
    }
    let mut seen = Vec::new();
    for page in 1..=4 {
        let (_, l) = api
            .get(&format!("/api/v1/paths?per_page=3&page={page}"), &viewer)
            .await;
        assert_eq!(l["total"], 10);
        seen.extend(
            l["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["name"].as_str().unwrap().to_string()),
        );
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted);
    assert_eq!(seen.len(), 10);
    let (_, regex_only) = api.get("/api/v1/paths?regex=true", &viewer).await;
    assert_eq!(
        regex_only["total"], 1,
        "only ~^live/(.+)$; all_others is an exact name"
    );
    assert_eq!(regex_only["items"][0]["name"], "~^live/(.+)$");
    let (_, q) = api.get("/api/v1/paths?q=cam", &viewer).await;
    assert_eq!(q["total"], 1);
    assert_problem(
        &api.get("/api/v1/paths?per_page=501", &viewer).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    assert_problem(
        &api.get("/api/v1/paths?page=x", &viewer).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );

    assert_eq!(
        api.delete("/api/v1/paths/site1/cam-a", &admin).await.0,
        StatusCode::NO_CONTENT
    );
    assert_problem(
        &api.delete("/api/v1/paths/site1/cam-a", &admin).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_problem(
        &api.delete("/api/v1/paths/p1", &viewer).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
}

#[tokio::test]
async fn acls_crud_and_validation() {
    let cp = ControlPlane::start().await;
    let api = Api { cp: &cp };
    let admin = cp.admin_token().await;
    let (cam_id, _) = api.user_with_role(&admin, "camera1", None).await;
    let (_, operator) = api.user_with_role(&admin, "op", Some("operator")).await;
    let (_, viewer) = api.user_with_role(&admin, "view", Some("viewer")).await;

    let (s, list) = api.get("/api/v1/acls?anonymous=true", &operator).await;
    assert_eq!(
        (s, list["total"].as_i64()),
        (StatusCode::OK, Some(3)),
        "MediaMTX defaults: anyone may publish, read, play back"
    );
    assert_problem(
        &api.get("/api/v1/acls", &viewer).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );

    let (s, rule) = api.post("/api/v1/acls", &admin, json!({"user_id": cam_id, "action": "publish", "path": "~^cam1/", "ip_networks": ["192.168.1.7", "10.1.0.0/16"]})).await;
    assert_eq!(s, StatusCode::CREATED, "{rule}");
    assert_eq!(
        rule["ip_networks"],
        json!(["192.168.1.7/32", "10.1.0.0/16"])
    );
    let id = rule["id"].as_str().unwrap().to_string();
    assert_problem(
        &api.post("/api/v1/acls", &operator, json!({"action": "read"}))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );

    let bad = api.post("/api/v1/acls", &admin, json!({"action": "read", "path": "a//b", "ip_networks": ["10.0.0.0/8", "300.1.1.1", "::1/129"]})).await;
    assert_problem(&bad, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(
        pointers(&bad.1),
        ["/path", "/ip_networks/1", "/ip_networks/2"]
    );
    let bad = api
        .post("/api/v1/acls", &admin, json!({"action": "fly"}))
        .await;
    assert_eq!(pointers(&bad.1), ["/action"]);
    let ghost = api
        .post(
            "/api/v1/acls",
            &admin,
            json!({"action": "read", "user_id": "00000000-0000-0000-0000-000000000001"}),
        )
        .await;
    assert_problem(
        &ghost,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    assert_eq!(pointers(&ghost.1), ["/user_id"]);

    let (s, r) = api
        .patch(
            &format!("/api/v1/acls/{id}"),
            &admin,
            json!({"path": null, "action": "read"}),
        )
        .await;
    assert_eq!(
        (s, &r["path"], r["action"].as_str()),
        (StatusCode::OK, &Value::Null, Some("read"))
    );
    let (_, by_user) = api
        .get(&format!("/api/v1/acls?user_id={cam_id}"), &operator)
        .await;
    assert_eq!(by_user["total"], 1);
    assert_eq!(
        api.get(&format!("/api/v1/acls/{id}"), &operator).await.0,
        StatusCode::OK
    );
    assert_problem(
        &api.get("/api/v1/acls/00000000-0000-0000-0000-000000000000", &admin)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    // Deleting the user deletes its rules.
    let (_, users) = api.get("/api/v1/users?q=camera1", &admin).await;
    let uid = users["items"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        api.delete(&format!("/api/v1/users/{uid}"), &admin).await.0,
        StatusCode::NO_CONTENT
    );
    assert_problem(
        &api.get(&format!("/api/v1/acls/{id}"), &admin).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_problem(
        &api.delete(&format!("/api/v1/acls/{id}"), &admin).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}
