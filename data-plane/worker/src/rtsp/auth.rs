//! Access checks for RTSP requests: anonymous first, then the credentials the client sent:
//!
//! - a control-plane JWT as `?token=` in the URL or as the Basic password (any username),
//!   see [`super::jwt`];
//! - HTTP Basic, verified against the user's argon2 hash from the desired state;
//! - HTTP Digest (RFC 2617), only where a user's stored credential can verify it, see
//!   [`super::digest`] and [`digest_ha1`]. With the argon2-only store this is never the case,
//!   so, like MediaMTX with hashed credentials, the 401 offers Basic only.
//!
//! **JWT permissions:** a token grants an action on a path only when *both* its `permissions`
//! claim and the current ACL rules of the desired state allow it for the token's user (who
//! must still exist and not be disabled). MediaMTX's JWT mode trusts the claim alone because
//! it has no user store; we have the live rules, so an ACL change or a disabled user takes
//! effect on the next session instead of when the token expires, and a token whose claim is
//! narrower than the user's rules stays narrow.
//!
//! Every refusal except "no credentials yet" (the normal first round trip) waits a random
//! 100–300 ms before answering, on this connection's task only, to slow guessing.
//!
//! Successful Basic verifications are remembered (user, stored hash, keyed digest of the
//! password) so a client repeating `Authorization` on every request costs one argon2 run, not
//! one per request. The digest uses a per-process random SipHash key, so the cache holds
//! nothing an attacker could test guesses against offline; a changed hash misses the cache.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use base64::Engine as _;
use streamplane_media_core::rtsp::{Method, Request, RtspUrl, names};
use streamplane_media_core::{Action, PathName, PathPattern, Principal, allowed};

use super::digest::{self, NonceState, Nonces};
use super::jwt::{self, TokenError, TokenPermission};
use crate::state::{DesiredState, User};

/// The realm of both challenges.
pub const REALM: &str = "streamplane";
/// The Basic `WWW-Authenticate` challenge.
pub const BASIC_CHALLENGE: &str = "Basic realm=\"streamplane\"";

/// Who was granted access; `None` is anonymous.
pub type Granted = Option<String>;

/// Why access was refused; logged, never sent beyond the status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("credentials required")]
    NoCredentials,
    #[error("the Authorization header is not valid Basic or Digest credentials")]
    Malformed,
    #[error("unknown user")]
    UnknownUser,
    #[error("user is disabled")]
    Disabled,
    #[error("wrong password")]
    WrongPassword,
    #[error("the user's stored password hash is not a valid PHC string")]
    BadStoredHash,
    #[error("no rule allows this user to {action} here")]
    NotAllowed { action: Action },
    #[error("invalid token: {0}")]
    Token(#[from] TokenError),
    #[error("the token's permissions do not allow {action} here")]
    TokenNotAllowed { action: Action },
    #[error("digest credentials for a user whose stored credential cannot verify digest")]
    DigestUnavailable,
    #[error("digest nonce not issued by this server")]
    BadNonce,
    #[error("digest nonce expired")]
    StaleNonce,
    #[error("digest response does not match")]
    WrongDigest,
}

pub struct Authenticator {
    hasher: std::collections::hash_map::RandomState,
    /// username → (stored PHC string, password digest) of the last successful verification.
    verified: Mutex<HashMap<String, (String, u64)>>,
    nonces: Nonces,
}

/// HA1 = MD5(user:realm:password) for Digest, when the user's stored credential yields it.
///
/// Argon2 (like any one-way PHC hash) cannot, and the desired state carries nothing else, so
/// this is `None` for every managed user today and Digest is not offered — MediaMTX likewise
/// refuses Digest with hashed credentials. A store keeping HA1 next to the argon2 hash (the
/// control plane would compute it when the password is set) plugs in here.
pub fn digest_ha1(user: &User) -> Option<[u8; 16]> {
    let _ = user;
    None
}

impl Authenticator {
    pub fn new() -> Arc<Self> {
        Arc::new(Authenticator {
            hasher: std::collections::hash_map::RandomState::new(),
            verified: Mutex::new(HashMap::new()),
            nonces: Nonces::new(Instant::now()),
        })
    }

    fn digest(&self, username: &str, password: &str) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(username.as_bytes());
        h.write_u8(0);
        h.write(password.as_bytes());
        h.finish()
    }

    /// The `WWW-Authenticate` values for a 401 after `denied`: Digest first (clients pick the
    /// strongest they know) when any user can use it, then Basic.
    pub fn challenges(&self, state: &DesiredState, denied: &Denied) -> Vec<String> {
        let mut out = Vec::with_capacity(2);
        if state.users.iter().any(|u| digest_ha1(u).is_some()) {
            let nonce = self.nonces.issue(Instant::now());
            out.push(digest::challenge(
                REALM,
                &nonce,
                *denied == Denied::StaleNonce,
            ));
        }
        out.push(BASIC_CHALLENGE.to_owned());
        out
    }

    /// Decides whether a client at `ip` may do `action` on `path` with what `request` carries
    /// (`Authorization`, `?token=`). Refusals other than "no credentials" return after a
    /// random delay.
    pub async fn check(
        &self,
        state: &DesiredState,
        action: Action,
        path: &PathName,
        ip: IpAddr,
        request: &Request,
    ) -> Result<Granted, (Option<String>, Denied)> {
        let result = self.decide(state, action, path, ip, request).await;
        if let Err((_, reason)) = &result
            && *reason != Denied::NoCredentials
        {
            tokio::time::sleep(failure_delay()).await;
        }
        result
    }

    async fn decide(
        &self,
        state: &DesiredState,
        action: Action,
        path: &PathName,
        ip: IpAddr,
        request: &Request,
    ) -> Result<Granted, (Option<String>, Denied)> {
        if allowed(&state.acl, &Principal::Anonymous, action, Some(path), ip) {
            return Ok(None);
        }
        if let Some(token) = url_token(request) {
            return check_token(state, action, path, ip, &token);
        }
        let Some(header) = request.header(&names::AUTHORIZATION) else {
            return Err((None, Denied::NoCredentials));
        };
        if let Some(credentials) = digest::parse_digest(header) {
            return self.check_digest(state, action, path, ip, request, &credentials);
        }
        let (username, password) = parse_basic(header).ok_or((None, Denied::Malformed))?;
        if jwt::looks_like_jwt(&password) {
            return check_token(state, action, path, ip, &password);
        }
        let fail = |reason| (Some(username.clone()), reason);
        let user = match find_user(state, &username) {
            Ok(user) => user,
            Err(reason) => {
                // Cost the same argon2 run as a real user, so timing doesn't tell which
                // usernames exist.
                let _ = tokio::task::spawn_blocking(move || verify_dummy(&password)).await;
                return Err(fail(reason));
            }
        };
        let stored = user.password_hash.expose().to_owned();
        let digest = self.digest(&username, &password);
        let cached = self
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&username)
            .is_some_and(|(hash, d)| *hash == stored && *d == digest);
        if !cached {
            let phc = stored.clone();
            let verdict = tokio::task::spawn_blocking(move || {
                let parsed = PasswordHash::new(&phc).map_err(|_| Denied::BadStoredHash)?;
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .map_err(|_| Denied::WrongPassword)
            })
            .await
            .unwrap_or(Err(Denied::WrongPassword));
            verdict.map_err(fail)?;
            self.verified
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(username.clone(), (stored, digest));
        }
        acl_allows(state, user, action, path, ip)
    }

    fn check_digest(
        &self,
        state: &DesiredState,
        action: Action,
        path: &PathName,
        ip: IpAddr,
        request: &Request,
        credentials: &digest::DigestCredentials,
    ) -> Result<Granted, (Option<String>, Denied)> {
        let fail = |reason| (Some(credentials.username.clone()), reason);
        let user = find_user(state, &credentials.username).map_err(fail)?;
        let ha1 = digest_ha1(user).ok_or_else(|| fail(Denied::DigestUnavailable))?;
        if credentials.realm != REALM {
            return Err(fail(Denied::WrongDigest));
        }
        match self.nonces.check(&credentials.nonce, Instant::now()) {
            NonceState::Fresh => {}
            NonceState::Stale => return Err(fail(Denied::StaleNonce)),
            NonceState::Invalid => return Err(fail(Denied::BadNonce)),
        }
        let method = <&str>::from(&request.method);
        if !digest::verify_response(&ha1, method, credentials) {
            return Err(fail(Denied::WrongDigest));
        }
        acl_allows(state, user, action, path, ip)
    }
}

fn find_user<'s>(state: &'s DesiredState, username: &str) -> Result<&'s User, Denied> {
    let user = state
        .users
        .iter()
        .find(|u| u.username == username)
        .ok_or(Denied::UnknownUser)?;
    if user.disabled {
        return Err(Denied::Disabled);
    }
    Ok(user)
}

fn acl_allows(
    state: &DesiredState,
    user: &User,
    action: Action,
    path: &PathName,
    ip: IpAddr,
) -> Result<Granted, (Option<String>, Denied)> {
    let principal = Principal::User {
        id: user.id.clone(),
    };
    if allowed(&state.acl, &principal, action, Some(path), ip) {
        Ok(Some(user.username.clone()))
    } else {
        Err((Some(user.username.clone()), Denied::NotAllowed { action }))
    }
}

/// A JWT grants when the token verifies, its user exists and is enabled, and both the token's
/// permissions and the current ACL allow the request (see the module docs).
fn check_token(
    state: &DesiredState,
    action: Action,
    path: &PathName,
    ip: IpAddr,
    token: &str,
) -> Result<Granted, (Option<String>, Denied)> {
    let claims = jwt::verify(token, &state.jwt_keys).map_err(|e| (None, Denied::from(e)))?;
    let fail = |reason| (Some(claims.name.clone()), reason);
    let user = state
        .users
        .iter()
        .find(|u| u.id.as_str() == claims.sub)
        .ok_or_else(|| fail(Denied::UnknownUser))?;
    if user.disabled {
        return Err(fail(Denied::Disabled));
    }
    if !claims
        .permissions
        .iter()
        .any(|p| token_permits(p, action, path))
    {
        return Err(fail(Denied::TokenNotAllowed { action }));
    }
    acl_allows(state, user, action, path, ip)
}

fn token_permits(permission: &TokenPermission, action: Action, path: &PathName) -> bool {
    permission.action == action.as_str()
        && match permission.path.as_deref() {
            None | Some("") => true,
            Some(pattern) => pattern
                .parse::<PathPattern>()
                .is_ok_and(|p| p.is_match(path)),
        }
}

/// The `token=` query parameter of the request URL (for SETUP, before ffmpeg's `/trackID=n`).
fn url_token(request: &Request) -> Option<String> {
    let url = RtspUrl::from_url(request.uri.as_ref()?).ok()?;
    let target = if request.method == Method::Setup {
        url.setup_target().ok()?.target
    } else {
        url.target(&request.method).ok()?
    };
    target.token()
}

/// An argon2 verification against a hash nobody's password matches.
fn verify_dummy(password: &str) {
    use argon2::PasswordHasher as _;
    static DUMMY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| {
        Argon2::default()
            .hash_password_with_salt(b"streamplane-dummy", b"streamplanedummysalt")
            .ok()
            .map(|h| h.to_string())
    });
    if let Some(parsed) = dummy.as_deref().and_then(|d| PasswordHash::new(d).ok()) {
        let _ = Argon2::default().verify_password(password.as_bytes(), &parsed);
    }
}

fn failure_delay() -> Duration {
    Duration::from_millis(rand::random_range(100..=300))
}

/// `Basic base64(user:password)` → (user, password).
fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use argon2::PasswordHasher;
    use streamplane_config::Secret;
    use streamplane_media_core::{AclRule, UserId};

    use super::super::jwt::tests::{TestKey, claims};
    use crate::state::{User, UserRole};

    fn state(hash: String) -> DesiredState {
        let mut s = DesiredState::empty();
        s.users = vec![User {
            id: UserId::new("u1"),
            username: "alice".into(),
            password_hash: Secret::new(hash),
            role: Some(UserRole::Viewer),
            disabled: false,
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

    #[tokio::test]
    async fn digest_is_not_offered_for_argon2_users() {
        let state = state("$argon2id$unused".into());
        let auth = Authenticator::new();
        assert_eq!(
            auth.challenges(&state, &Denied::NoCredentials),
            vec![BASIC_CHALLENGE.to_owned()]
        );
        let nonce = auth.nonces.issue(Instant::now());
        let header = format!(
            "Digest username=\"alice\", realm=\"streamplane\", nonce=\"{nonce}\", \
             uri=\"rtsp://h/cam1\", response=\"00000000000000000000000000000000\""
        );
        let request = request(Method::Describe, "rtsp://h/cam1", Some(header));
        let path: PathName = "cam1".parse().unwrap();
        assert_eq!(
            auth.check(
                &state,
                Action::Read,
                &path,
                "127.0.0.1".parse().unwrap(),
                &request
            )
            .await,
            Err((Some("alice".into()), Denied::DigestUnavailable))
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
}
