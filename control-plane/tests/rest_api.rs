//! The REST API against the real binary and a private Postgres: every route's happy path,
//! validation errors, missing/wrong credentials and roles, not found, conflicts and pagination.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use streamplane_testkit::ControlPlane;

struct Api<'a> {
    cp: &'a ControlPlane,
}

impl Api<'_> {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.cp.http().request(method.clone(), self.cp.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status();
        let ctype = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or("").to_string())
            .unwrap_or_default();
        let text = resp.text().await.unwrap();
        if status.is_client_error() || status.is_server_error() {
            assert_eq!(
                ctype, "application/problem+json",
                "{method} {path} -> {status}: {text}"
            );
        }
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }
    async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }
    async fn patch(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }
    async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// Creates a user with `role` and returns (id, token).
    async fn user_with_role(
        &self,
        admin: &str,
        name: &str,
        role: Option<&str>,
    ) -> (String, String) {
        let (s, u) = self
            .post(
                "/api/v1/users",
                admin,
                json!({"username": name, "password": "password-123", "role": role}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{u}");
        let token = self.cp.login(name, "password-123").await;
        (u["id"].as_str().unwrap().to_string(), token)
    }
}

fn assert_problem(got: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(got.0, status, "expected {status} {code}, got {}", got.1);
    assert_eq!(got.1["code"], code, "{}", got.1);
    assert_eq!(got.1["status"], status.as_u16(), "{}", got.1);
    assert!(
        got.1["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{}",
        got.1
    );
}

fn pointers(v: &Value) -> Vec<String> {
    v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn login_and_token_checks() {
    let cp = ControlPlane::start().await;
    let api = Api { cp: &cp };
    let api = &api;
    let login = |body: Value| async move {
        api.call(Method::POST, "/api/v1/auth/login", None, Some(body))
            .await
    };

    let (s, ok) = login(json!({"username": "admin", "password": cp.admin_password()})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ok["token_type"], "Bearer");
    assert_eq!(ok["expires_in"], 3600);
    let token = ok["access_token"].as_str().unwrap().to_string();

    assert_problem(
        &login(json!({"username": "admin", "password": "wrong-password"})).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    );
    assert_problem(
        &login(json!({"username": "nobody", "password": "wrong-password"})).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    );
    let unknown = login(json!({"username": "admin", "password": "x", "otp": 1})).await;
    assert_problem(
        &unknown,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    assert_eq!(pointers(&unknown.1), ["/otp"]);
    let wrong_type = login(json!({"username": 7, "password": "x"})).await;
    assert_eq!(pointers(&wrong_type.1), ["/username"]);
    let missing = login(json!({"username": "admin"})).await;
    assert_eq!(pointers(&missing.1), ["/password"]);

    // Raw bodies: malformed JSON, wrong content type, oversized.
    let raw = |ctype: &'static str, body: Vec<u8>| {
        let http = cp.http().clone();
        let url = cp.url("/api/v1/auth/login");
        async move {
            let r = http
                .post(url)
                .header("content-type", ctype)
                .body(body)
                .send()
                .await
                .unwrap();
            let s = r.status();
            (
                s,
                serde_json::from_str::<Value>(&r.text().await.unwrap()).unwrap(),
            )
        }
    };
    assert_problem(
        &raw("application/json", b"{\"username\": ".to_vec()).await,
        StatusCode::BAD_REQUEST,
        "malformed_json",
    );
    assert_problem(
        &raw("text/plain", b"{}".to_vec()).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    assert_problem(
        &raw("application/json", vec![b' '; 200_000]).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );

    // Bearer tokens on a protected route.
    let none = api.call(Method::GET, "/api/v1/paths", None, None).await;
    assert_problem(&none, StatusCode::UNAUTHORIZED, "missing_token");
    assert_problem(
        &api.get("/api/v1/paths", "not-a-jwt").await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    );
    let resp = cp
        .http()
        .get(cp.url("/api/v1/paths"))
        .header("authorization", "Basic YWRtaW46eA==")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(
        resp.headers()
            .get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );

    let parts: Vec<&str> = token.split('.').collect();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(claims["role"], "admin");

    // alg: none with the same claims.
    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let unsigned = format!("{none_header}.{}.", parts[1]);
    assert_problem(
        &api.get("/api/v1/paths", &unsigned).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    );

    // Signed by another key under the server's kid: a forgery.
    let other = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let der = other.to_pkcs8_der().unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    h.kid = header["kid"].as_str().map(str::to_string);
    let forged = jsonwebtoken::encode(
        &h,
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes()),
    )
    .unwrap();
    assert_problem(
        &api.get("/api/v1/paths", &forged).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    );

    // Expired, signed with the real key (read from the database).
    let pool = sqlx::PgPool::connect(cp.database_url()).await.unwrap();
    let (key,): (Vec<u8>,) = sqlx::query_as("SELECT private_key FROM signing_keys WHERE active")
        .fetch_one(&pool)
        .await
        .unwrap();
    let mut expired_claims = claims.clone();
    expired_claims["exp"] = json!(chrono::Utc::now().timestamp() - 3600);
    let expired = jsonwebtoken::encode(
        &h,
        &expired_claims,
        &jsonwebtoken::EncodingKey::from_ed_der(&key),
    )
    .unwrap();
    assert_problem(
        &api.get("/api/v1/paths", &expired).await,
        StatusCode::UNAUTHORIZED,
        "token_expired",
    );
    // And the same key with a valid expiry works: the rejections above were for the right reasons.
    let fresh =
        jsonwebtoken::encode(&h, &claims, &jsonwebtoken::EncodingKey::from_ed_der(&key)).unwrap();
    assert_eq!(api.get("/api/v1/paths", &fresh).await.0, StatusCode::OK);

    // JWKS publishes the verifying key.
    let (s, jwks) = api
        .call(Method::GET, "/.well-known/jwks.json", None, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");

    // Secrets never reach the log.
    let out = cp.process().output();
    assert!(
        !out.contains(&cp.admin_password()),
        "admin password in the log"
    );
    assert!(!out.contains(&token), "token in the log");
}

#[tokio::test]
async fn users_crud_roles_and_last_admin() {
    let cp = ControlPlane::start().await;
    let api = Api { cp: &cp };
    let admin = cp.admin_token().await;

    let (s, u) = api
        .post(
            "/api/v1/users",
            &admin,
            json!({"username": "alice", "password": "alice-password", "role": "operator"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{u}");
    assert_eq!(u["role"], "operator");
    assert!(u.get("password_hash").is_none() && u.get("password").is_none());
    let alice = u["id"].as_str().unwrap().to_string();

    let dup = api
        .post(
            "/api/v1/users",
            &admin,
            json!({"username": "alice", "password": "another-password"}),
        )
        .await;
    assert_problem(&dup, StatusCode::CONFLICT, "conflict");
    let bad = api
        .post(
            "/api/v1/users",
            &admin,
            json!({"username": "bad name", "password": "short"}),
        )
        .await;
    assert_problem(&bad, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(
        pointers(&bad.1),
        ["/username", "/password"],
        "every invalid field is reported"
    );
    let bad_role = api
        .post(
            "/api/v1/users",
            &admin,
            json!({"username": "bob", "password": "bob-password", "role": "root"}),
        )
        .await;
    assert_eq!(pointers(&bad_role.1), ["/role"]);

    let (s, got) = api.get(&format!("/api/v1/users/{alice}"), &admin).await;
    assert_eq!(
        (s, got["username"].as_str()),
        (StatusCode::OK, Some("alice"))
    );
    assert_problem(
        &api.get("/api/v1/users/00000000-0000-0000-0000-000000000000", &admin)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_problem(
        &api.get("/api/v1/users/not-a-uuid", &admin).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    // Roles: an operator may not manage users but may read itself and change its own password.
    let alice_token = cp.login("alice", "alice-password").await;
    assert_problem(
        &api.get("/api/v1/users", &alice_token).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_eq!(
        api.get(&format!("/api/v1/users/{alice}"), &alice_token)
            .await
            .0,
        StatusCode::OK
    );
    let promote = api
        .patch(
            &format!("/api/v1/users/{alice}"),
            &alice_token,
            json!({"role": "admin"}),
        )
        .await;
    assert_problem(&promote, StatusCode::FORBIDDEN, "forbidden");
    let (s, _) = api
        .patch(
            &format!("/api/v1/users/{alice}"),
            &alice_token,
            json!({"password": "alice-password-2"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    cp.login("alice", "alice-password-2").await;

    // Admin updates: demote to no API role (null), then disable: the old token stops working.
    let (s, u) = api
        .patch(
            &format!("/api/v1/users/{alice}"),
            &admin,
            json!({"role": null}),
        )
        .await;
    assert_eq!((s, &u["role"]), (StatusCode::OK, &Value::Null));
    assert_problem(
        &api.get("/api/v1/paths", &alice_token).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let (s, _) = api
        .patch(
            &format!("/api/v1/users/{alice}"),
            &admin,
            json!({"disabled": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_problem(
        &api.get("/api/v1/paths", &alice_token).await,
        StatusCode::UNAUTHORIZED,
        "user_disabled",
    );
    let login = api
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "alice", "password": "alice-password-2"})),
        )
        .await;
    assert_problem(&login, StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert_problem(
        &api.patch(
            &format!("/api/v1/users/{alice}"),
            &admin,
            json!({"nope": 1}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );

    // The last enabled admin can be neither demoted, disabled nor deleted.
    let (_, me) = api.get("/api/v1/users?role=admin", &admin).await;
    let admin_id = me["items"][0]["id"].as_str().unwrap().to_string();
    for body in [json!({"role": "viewer"}), json!({"disabled": true})] {
        assert_problem(
            &api.patch(&format!("/api/v1/users/{admin_id}"), &admin, body)
                .await,
            StatusCode::CONFLICT,
            "conflict",
        );
    }
    assert_problem(
        &api.delete(&format!("/api/v1/users/{admin_id}"), &admin)
            .await,
        StatusCode::CONFLICT,
        "conflict",
    );

    // Filters, pagination, delete.
    for i in 0..5 {
        api.post("/api/v1/users", &admin, json!({"username": format!("viewer{i}"), "password": "viewer-password", "role": "viewer"})).await;
    }
    let (_, page1) = api
        .get("/api/v1/users?role=viewer&per_page=2", &admin)
        .await;
    let (_, page3) = api
        .get("/api/v1/users?role=viewer&per_page=2&page=3", &admin)
        .await;
    assert_eq!(page1["total"], 5);
    assert_eq!(page1["items"].as_array().unwrap().len(), 2);
    assert_eq!(page1["items"][0]["username"], "viewer0");
    assert_eq!(page3["items"].as_array().unwrap().len(), 1);
    assert_eq!(page3["items"][0]["username"], "viewer4");
    let (_, found) = api.get("/api/v1/users?q=EWER3", &admin).await;
    assert_eq!(found["total"], 1);
    assert_eq!(
        api.delete(&format!("/api/v1/users/{alice}"), &admin)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_problem(
        &api.delete(&format!("/api/v1/users/{alice}"), &admin).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_problem(
        &api.get("/api/v1/users?per_page=0", &admin).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    assert_problem(
        &api.get("/api/v1/users?bogus=1", &admin).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
}

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

#[tokio::test]
async fn health_workers_docs_and_unknown_routes() {
    let cp = ControlPlane::start().await;
    let api = Api { cp: &cp };
    let admin = cp.admin_token().await;
    let (s, h) = api.call(Method::GET, "/healthz", None, None).await;
    assert_eq!((s, h["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, r) = api.call(Method::GET, "/readyz", None, None).await;
    assert_eq!((s, r["status"].as_str()), (StatusCode::OK, Some("ready")));
    assert!(r["generation"].as_u64().unwrap() >= 1);

    let (s, w) = api.get("/api/v1/workers", &admin).await;
    assert_eq!((s, w["total"].as_i64()), (StatusCode::OK, Some(0)));
    assert_problem(
        &api.get(
            "/api/v1/workers/00000000-0000-0000-0000-000000000000",
            &admin,
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_problem(
        &api.get("/api/v1/workers?status=dancing", &admin).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_problem(
        &api.get("/api/v1/nothing-here", &admin).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    // The docs page and its assets are served locally (no CDN).
    let page = cp.http().get(cp.url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(
        !html.contains("https://"),
        "the docs page must not load anything from the internet:\n{html}"
    );
    let css = cp
        .http()
        .get(cp.url("/docs/swagger-ui.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), StatusCode::OK);
    let (s, doc) = api.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["paths"]["/api/v1/paths"].is_object());
}

#[test]
fn committed_openapi_document_matches_the_server() {
    let generated = streamplane_control::api::openapi_json();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/openapi.json is out of date; regenerate it with:\n  cargo run -p streamplane-control -- openapi > openapi/openapi.json"
    );
}
