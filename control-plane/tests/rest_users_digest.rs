//! Per-user RTSP Digest over REST: `rtsp_digest` on create and update, HA1 computed from the
//! password in the same request (422 otherwise), cleared when turned off, recomputed on a new
//! password or username, never returned or logged, and shipped to workers in the snapshot.
//! HA1 is checked against Postgres's own `md5()`, an implementation independent of ours.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod rest_support;

use common::Agent;
use reqwest::StatusCode;
use rest_support::{Api, assert_problem, pointers};
use serde_json::{Value, json};
use sqlx::PgPool;
use streamplane_testkit::ControlPlane;

/// MD5("user:streamplane:password") by Postgres, as 16 bytes.
async fn expected_ha1(pool: &PgPool, user: &str, password: &str) -> Vec<u8> {
    let (ha1,): (Vec<u8>,) = sqlx::query_as("SELECT decode(md5($1), 'hex')")
        .bind(format!("{user}:streamplane:{password}"))
        .fetch_one(pool)
        .await
        .unwrap();
    ha1
}

async fn stored_ha1(pool: &PgPool, id: &str) -> Option<Vec<u8>> {
    let (ha1,): (Option<Vec<u8>>,) =
        sqlx::query_as("SELECT digest_ha1 FROM users WHERE id = $1::uuid")
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap();
    ha1
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A user document exposes the flag, and nothing that looks like the credential.
fn assert_user_document(user: &Value, rtsp_digest: bool) {
    assert_eq!(user["rtsp_digest"], rtsp_digest, "{user}");
    let keys: Vec<&str> = user
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert!(
        keys.iter()
            .all(|k| !k.contains("ha1") && !k.contains("hash") && !k.contains("password")),
        "{user}"
    );
}

#[tokio::test]
async fn rtsp_digest_is_opt_in_and_follows_the_password() {
    let cp = ControlPlane::start().await;
    let api = Api { cp: &cp };
    let admin = cp.admin_token().await;
    let pool = PgPool::connect(cp.database_url()).await.unwrap();

    let (s, cam) = api
        .post(
            "/api/v1/users",
            &admin,
            json!({"username": "cam1", "password": "digest-pass-1", "rtsp_digest": true}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{cam}");
    assert_user_document(&cam, true);
    let cam_id = cam["id"].as_str().unwrap().to_string();
    let first = expected_ha1(&pool, "cam1", "digest-pass-1").await;
    assert_eq!(stored_ha1(&pool, &cam_id).await, Some(first.clone()));

    let (s, plain) = api
        .post(
            "/api/v1/users",
            &admin,
            json!({"username": "plain", "password": "plain-pass-1"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{plain}");
    assert_user_document(&plain, false);
    let plain_id = plain["id"].as_str().unwrap().to_string();
    assert_eq!(stored_ha1(&pool, &plain_id).await, None, "off by default");

    // Read back, one by one and listed.
    let (_, got) = api.get(&format!("/api/v1/users/{cam_id}"), &admin).await;
    assert_user_document(&got, true);
    let (_, list) = api.get("/api/v1/users", &admin).await;
    for user in list["items"].as_array().unwrap() {
        assert_user_document(user, user["username"] == "cam1");
    }
    // HA1 cannot be written directly either.
    let direct = api
        .post(
            "/api/v1/users",
            &admin,
            json!({"username": "x1", "password": "x-pass-123", "digest_ha1": hex(&first)}),
        )
        .await;
    assert_problem(
        &direct,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    assert_eq!(pointers(&direct.1), ["/digest_ha1"]);

    // Turning it on needs the password in the same request.
    let refused = api
        .patch(
            &format!("/api/v1/users/{plain_id}"),
            &admin,
            json!({"rtsp_digest": true}),
        )
        .await;
    assert_problem(
        &refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    assert_eq!(pointers(&refused.1), ["/password"]);
    let message = refused.1["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("required to turn rtsp_digest on"),
        "{message}"
    );
    assert_eq!(stored_ha1(&pool, &plain_id).await, None);
    let (s, on) = api
        .patch(
            &format!("/api/v1/users/{plain_id}"),
            &admin,
            json!({"rtsp_digest": true, "password": "plain-pass-2"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{on}");
    assert_user_document(&on, true);
    assert_eq!(
        stored_ha1(&pool, &plain_id).await,
        Some(expected_ha1(&pool, "plain", "plain-pass-2").await)
    );

    // A new password recomputes it, also when users change their own.
    let cam_token = cp.login("cam1", "digest-pass-1").await;
    let (s, own) = api
        .patch(
            &format!("/api/v1/users/{cam_id}"),
            &cam_token,
            json!({"password": "digest-pass-2"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{own}");
    assert_user_document(&own, true);
    assert_eq!(
        stored_ha1(&pool, &cam_id).await,
        Some(expected_ha1(&pool, "cam1", "digest-pass-2").await)
    );
    // ... but users cannot turn it on or off for themselves.
    let self_service = api
        .patch(
            &format!("/api/v1/users/{cam_id}"),
            &cam_token,
            json!({"rtsp_digest": false}),
        )
        .await;
    assert_problem(&self_service, StatusCode::FORBIDDEN, "forbidden");

    // HA1 includes the username: a rename needs the password.
    let rename = api
        .patch(
            &format!("/api/v1/users/{cam_id}"),
            &admin,
            json!({"username": "cam1b"}),
        )
        .await;
    assert_problem(
        &rename,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    assert_eq!(pointers(&rename.1), ["/password"]);
    let (s, renamed) = api
        .patch(
            &format!("/api/v1/users/{cam_id}"),
            &admin,
            json!({"username": "cam1b", "password": "digest-pass-3"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{renamed}");
    assert_eq!(
        stored_ha1(&pool, &cam_id).await,
        Some(expected_ha1(&pool, "cam1b", "digest-pass-3").await)
    );
    // Unrelated changes keep it.
    let (s, _) = api
        .patch(
            &format!("/api/v1/users/{cam_id}"),
            &admin,
            json!({"disabled": false, "rtsp_digest": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(stored_ha1(&pool, &cam_id).await.is_some());

    // Turning it off deletes it.
    let (s, off) = api
        .patch(
            &format!("/api/v1/users/{cam_id}"),
            &admin,
            json!({"rtsp_digest": false}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{off}");
    assert_user_document(&off, false);
    assert_eq!(stored_ha1(&pool, &cam_id).await, None);

    // Nothing derived from the passwords reached the audit log or the process log.
    let (audit,): (String,) =
        sqlx::query_as("SELECT coalesce(string_agg(detail::text, ' '), '') FROM audit_log")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(audit.contains("\"rtsp_digest\": true"), "{audit}");
    let log = cp.process().output();
    for secret in [
        hex(&first),
        hex(&expected_ha1(&pool, "plain", "plain-pass-2").await),
        "digest-pass-1".into(),
        "plain-pass-2".into(),
    ] {
        assert!(!audit.contains(&secret), "{secret} in the audit log");
        assert!(!log.contains(&secret), "{secret} in the log:\n{log}");
    }
}

#[tokio::test]
async fn workers_receive_ha1_only_for_users_who_opted_in() {
    let cp = ControlPlane::start().await;
    let api = Api { cp: &cp };
    let admin = cp.admin_token().await;
    let pool = PgPool::connect(cp.database_url()).await.unwrap();
    let mut agent = Agent::connect(&cp).await;
    let worker_id = agent.register("w-digest").await;
    let mut watch = agent.watch(&worker_id, 0).await;

    for (name, digest) in [("cam-digest", true), ("cam-basic", false)] {
        let (s, u) = api
            .post(
                "/api/v1/users",
                &admin,
                json!({"username": name, "password": "camera-pass-1", "rtsp_digest": digest}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{u}");
    }
    let (_, snapshot) = watch
        .until("both camera users", |s| {
            s.users
                .iter()
                .filter(|u| u.username.starts_with("cam-"))
                .count()
                == 2
        })
        .await;
    let user = |name: &str| {
        snapshot
            .users
            .iter()
            .find(|u| u.username == name)
            .unwrap()
            .clone()
    };
    assert_eq!(
        user("cam-digest").digest_ha1,
        Some(expected_ha1(&pool, "cam-digest", "camera-pass-1").await)
    );
    assert_eq!(user("cam-basic").digest_ha1, None);
    assert_eq!(user("admin").digest_ha1, None);
    // The wire type's Debug (what a log line would show) hides it.
    let shown = format!("{:?}", user("cam-digest"));
    assert!(shown.contains("digest_ha1: Some(\"***\")"), "{shown}");
}
