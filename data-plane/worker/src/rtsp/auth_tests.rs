#![allow(clippy::unwrap_used)]
use super::*;
use argon2::PasswordHasher;
use streamplane_config::Secret;
use streamplane_media_core::{AclRule, UserId};

use super::super::jwt::tests::{TestKey, claims};
use crate::state::{DigestHa1, RtspAuthMethods, User, UserRole};

fn state(hash: String) -> DesiredState {
    let mut s = DesiredState::empty();
    s.users = vec![User {
        id: UserId::new("u1"),
        username: "alice".into(),
        password_hash: Secret::new(hash),
        role: Some(UserRole::Viewer),
        disabled: false,
        digest_ha1: None,
    }];
    s.acl = vec![AclRule {
        user: Some(UserId::new("u1")),
        action: Action::Read,
        path: None,
        networks: Vec::new(),
    }];
    s
}

fn request(method: Method, url: &str, authorization: Option<String>) -> Request {
    let request = Request::new(method, Some(url.parse().unwrap()));
    match authorization {
        Some(value) => request.with_header(names::AUTHORIZATION, value),
        None => request,
    }
}

fn basic(user: &str, password: &str) -> String {
    let raw = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

#[tokio::test]
async fn basic_credentials_are_verified_and_cached() {
    let hash = Argon2::default()
        .hash_password_with_salt(b"s3cret", b"saltsaltsaltsalt")
        .map(|h: PasswordHash| h.to_string())
        .unwrap();
    let state = state(hash);
    let auth = Authenticator::new();
    let path: PathName = "cam1".parse().unwrap();
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let check = |action, header: Option<String>| {
        let auth = Arc::clone(&auth);
        let state = state.clone();
        let path = path.clone();
        async move {
            let request = request(Method::Describe, "rtsp://h/cam1", header);
            auth.check(&state, action, &path, ip, &request).await
        }
    };
    assert_eq!(
        check(Action::Read, None).await,
        Err((None, Denied::NoCredentials))
    );
    assert_eq!(
        check(Action::Read, Some(basic("alice", "nope"))).await,
        Err((Some("alice".into()), Denied::WrongPassword))
    );
    assert_eq!(
        check(Action::Read, Some(basic("alice", "s3cret"))).await,
        Ok(Some("alice".into()))
    );
    assert!(auth.verified.lock().unwrap().contains_key("alice"));
    assert_eq!(
        check(Action::Read, Some(basic("alice", "s3cret"))).await,
        Ok(Some("alice".into()))
    );
    assert_eq!(
        check(Action::Read, Some(basic("alice", "wrong"))).await,
        Err((Some("alice".into()), Denied::WrongPassword))
    );
    assert_eq!(
        check(Action::Publish, Some(basic("alice", "s3cret"))).await,
        Err((
            Some("alice".into()),
            Denied::NotAllowed {
                action: Action::Publish
            }
        ))
    );
    assert_eq!(
        check(Action::Read, Some("Basic !!!".into())).await,
        Err((None, Denied::Malformed))
    );
}

#[tokio::test]
async fn jwt_in_query_or_password_needs_claim_and_acl() {
    let key = TestKey::new("k1");
    let mut state = state("$argon2id$unused".into());
    state.jwt_keys = vec![key.public.clone()];
    let auth = Authenticator::new();
    let path: PathName = "cam1".parse().unwrap();
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let read_cam1 = serde_json::json!([{"action": "read", "path": "cam1"}]);
    let token = key.sign(&claims("u1", 60, read_cam1.clone()));
    let check = |action, url: String, header: Option<String>| {
        let auth = Arc::clone(&auth);
        let state = state.clone();
        let path = path.clone();
        async move {
            let request = request(Method::Describe, &url, header);
            auth.check(&state, action, &path, ip, &request).await
        }
    };
    let granted = Ok(Some("alice".to_owned()));
    assert_eq!(
        check(Action::Read, format!("rtsp://h/cam1?token={token}"), None).await,
        granted
    );
    assert_eq!(
        check(
            Action::Read,
            "rtsp://h/cam1".into(),
            Some(basic("any", &token))
        )
        .await,
        granted
    );
    // The claim does not cover publish (and neither does the ACL).
    assert!(matches!(
        check(
            Action::Publish,
            format!("rtsp://h/cam1?token={token}"),
            None
        )
        .await,
        Err((_, Denied::TokenNotAllowed { .. }))
    ));
    // A claim wider than the current ACL: the ACL wins.
    let wide = key.sign(&claims(
        "u1",
        60,
        serde_json::json!([{"action": "publish"}]),
    ));
    assert!(matches!(
        check(Action::Publish, format!("rtsp://h/cam1?token={wide}"), None).await,
        Err((_, Denied::NotAllowed { .. }))
    ));
    // Expired, unknown user, wrong kid.
    let expired = key.sign(&claims("u1", -60, read_cam1.clone()));
    assert_eq!(
        check(Action::Read, format!("rtsp://h/cam1?token={expired}"), None).await,
        Err((None, Denied::Token(TokenError::Expired)))
    );
    let ghost = key.sign(&claims("u404", 60, read_cam1.clone()));
    assert!(matches!(
        check(Action::Read, format!("rtsp://h/cam1?token={ghost}"), None).await,
        Err((_, Denied::UnknownUser))
    ));
    let stranger = TestKey::new("k9").sign(&claims("u1", 60, read_cam1));
    assert_eq!(
        check(
            Action::Read,
            format!("rtsp://h/cam1?token={stranger}"),
            None
        )
        .await,
        Err((None, Denied::Token(TokenError::UnknownKey("k9".into()))))
    );
    // ffmpeg's SETUP puts the track after the token.
    let setup = request(
        Method::Setup,
        &format!("rtsp://h/cam1?token={token}/trackID=0"),
        None,
    );
    assert_eq!(
        auth.check(&state, Action::Read, &path, ip, &setup).await,
        granted
    );
}

/// What a client sends after a Digest challenge (the RFC 2069 form ffmpeg uses).
fn digest_header(challenge: &str, user: &str, realm: &str, password: &str) -> String {
    let nonce = challenge
        .split("nonce=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    let mut c = digest::DigestCredentials {
        username: user.into(),
        realm: realm.into(),
        nonce: nonce.into(),
        uri: "rtsp://h/cam1".into(),
        ..Default::default()
    };
    c.response = digest::expected_response(&digest::ha1(user, realm, password), "DESCRIBE", &c);
    format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{}\", uri=\"{}\", response=\"{}\"",
        c.nonce, c.uri, c.response
    )
}

async fn check_describe(
    auth: &Authenticator,
    state: &DesiredState,
    action: Action,
    header: String,
) -> Result<Granted, (Option<String>, Denied)> {
    let request = request(Method::Describe, "rtsp://h/cam1", Some(header));
    let path: PathName = "cam1".parse().unwrap();
    auth.check(state, action, &path, "127.0.0.1".parse().unwrap(), &request)
        .await
}

#[test]
fn basic_challenge_names_the_shared_realm() {
    assert_eq!(BASIC_CHALLENGE, format!("Basic realm=\"{REALM}\""));
}

#[tokio::test]
async fn digest_is_refused_when_not_offered() {
    let state = state("$argon2id$unused".into());
    let auth = Authenticator::new();
    let challenges = auth.challenges(&state, &Denied::NoCredentials);
    assert_eq!(challenges, vec![BASIC_CHALLENGE.to_owned()]);
    // Even a correct response: the scheme is off.
    let nonce_source = digest::challenge(REALM, &auth.nonces.issue(Instant::now()), false);
    let header = digest_header(&nonce_source, "alice", REALM, "s3cret");
    assert_eq!(
        check_describe(&auth, &state, Action::Read, header.clone()).await,
        Err((
            Some("alice".into()),
            Denied::SchemeNotOffered { scheme: "digest" }
        ))
    );
    // A user with an HA1 (managed `rtsp_digest`) does not make the worker offer Digest.
    let mut with_ha1 = state.clone();
    with_ha1.users[0].digest_ha1 = Some(DigestHa1::compute("alice", REALM, "s3cret"));
    assert_eq!(
        auth.challenges(&with_ha1, &Denied::NoCredentials),
        vec![BASIC_CHALLENGE.to_owned()]
    );
    assert_eq!(
        check_describe(&auth, &with_ha1, Action::Read, header).await,
        Err((
            Some("alice".into()),
            Denied::SchemeNotOffered { scheme: "digest" }
        ))
    );
}

#[tokio::test]
async fn digest_is_verified_against_ha1_then_the_acl() {
    let mut state = state("$argon2id$unused".into());
    state.users[0].digest_ha1 = Some(DigestHa1::compute("alice", REALM, "s3cret"));
    let mut bob = state.users[0].clone();
    bob.id = UserId::new("u2");
    bob.username = "bob".into();
    bob.digest_ha1 = None;
    state.users.push(bob);
    state.rtsp_auth = RtspAuthMethods {
        basic: true,
        digest: true,
    };
    let auth = Authenticator::new();
    let challenges = auth.challenges(&state, &Denied::NoCredentials);
    assert_eq!(challenges.len(), 2);
    assert!(challenges[0].starts_with("Digest realm=\"streamplane\", nonce=\""));
    assert_eq!(challenges[1], BASIC_CHALLENGE);
    let digest = &challenges[0];

    let good = digest_header(digest, "alice", REALM, "s3cret");
    assert_eq!(
        check_describe(&auth, &state, Action::Read, good.clone()).await,
        Ok(Some("alice".into()))
    );
    assert_eq!(
        check_describe(&auth, &state, Action::Publish, good).await,
        Err((
            Some("alice".into()),
            Denied::NotAllowed {
                action: Action::Publish
            }
        ))
    );
    let wrong = digest_header(digest, "alice", REALM, "guess");
    assert_eq!(
        check_describe(&auth, &state, Action::Read, wrong).await,
        Err((Some("alice".into()), Denied::WrongDigest))
    );
    let realm = digest_header(digest, "alice", "elsewhere", "s3cret");
    assert_eq!(
        check_describe(&auth, &state, Action::Read, realm).await,
        Err((
            Some("alice".into()),
            Denied::WrongRealm {
                realm: "elsewhere".into()
            }
        ))
    );
    let no_ha1 = digest_header(digest, "bob", REALM, "s3cret");
    assert_eq!(
        check_describe(&auth, &state, Action::Read, no_ha1).await,
        Err((Some("bob".into()), Denied::DigestUnavailable))
    );
    let forged = digest_header(
        &digest::challenge(
            REALM,
            &Nonces::new(Instant::now()).issue(Instant::now()),
            false,
        ),
        "alice",
        REALM,
        "s3cret",
    );
    assert_eq!(
        check_describe(&auth, &state, Action::Read, forged).await,
        Err((Some("alice".into()), Denied::BadNonce))
    );
    // Basic is still checked next to Digest (here against the placeholder hash).
    assert_eq!(
        check_describe(&auth, &state, Action::Read, basic("alice", "nope")).await,
        Err((Some("alice".into()), Denied::BadStoredHash))
    );
}

#[tokio::test]
async fn digest_only_refuses_basic() {
    let mut state = state("$argon2id$unused".into());
    state.users[0].digest_ha1 = Some(DigestHa1::compute("alice", REALM, "s3cret"));
    state.rtsp_auth = RtspAuthMethods {
        basic: false,
        digest: true,
    };
    let auth = Authenticator::new();
    let challenges = auth.challenges(&state, &Denied::StaleNonce);
    assert_eq!(challenges.len(), 1);
    assert!(challenges[0].starts_with("Digest ") && challenges[0].ends_with(", stale=true"));
    assert_eq!(
        check_describe(&auth, &state, Action::Read, basic("alice", "s3cret")).await,
        Err((
            Some("alice".into()),
            Denied::SchemeNotOffered { scheme: "basic" }
        ))
    );
    let good = digest_header(&challenges[0], "alice", REALM, "s3cret");
    assert_eq!(
        check_describe(&auth, &state, Action::Read, good).await,
        Ok(Some("alice".into()))
    );
}

#[tokio::test]
async fn failures_wait_without_blocking() {
    let state = state("$argon2id$unused".into());
    let auth = Authenticator::new();
    let path: PathName = "cam1".parse().unwrap();
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let start = tokio::time::Instant::now();
    let bad = request(
        Method::Describe,
        "rtsp://h/cam1",
        Some(basic("nobody", "x")),
    );
    assert!(
        auth.check(&state, Action::Read, &path, ip, &bad)
            .await
            .is_err()
    );
    let waited = start.elapsed();
    // 100–300 ms by design; the upper bound leaves room for a loaded test machine.
    assert!(
        (Duration::from_millis(100)..Duration::from_millis(1000)).contains(&waited),
        "{waited:?}"
    );
    let start = tokio::time::Instant::now();
    let none = request(Method::Describe, "rtsp://h/cam1", None);
    assert!(
        auth.check(&state, Action::Read, &path, ip, &none)
            .await
            .is_err()
    );
    assert!(start.elapsed() < Duration::from_millis(100));
}
