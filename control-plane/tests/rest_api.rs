//! The REST API against the real binary and a private Postgres: login and tokens, users, health,
//! documentation. Paths and ACL rules are in `rest_paths_acls.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod rest_support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use reqwest::{Method, StatusCode};
use rest_support::{Api, assert_problem, pointers};
use serde_json::{Value, json};
use streamplane_testkit::ControlPlane;

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
