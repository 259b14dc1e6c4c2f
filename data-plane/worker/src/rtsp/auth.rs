//! Access checks for RTSP requests: anonymous first, then the credentials the client sent:
//!
//! - a control-plane JWT as `?token=` in the URL (whatever scheme the client would use) or as
//!   the Basic password (any username), see [`super::jwt`];
//! - HTTP Basic, verified against the user's argon2 hash from the desired state;
//! - HTTP Digest (RFC 2617/7616 with MD5), verified against the user's HA1, see
//!   [`super::digest`]. Only users whose HA1 is known can use it: plaintext passwords from the
//!   standalone file, or managed users with `rtsp_digest` turned on.
//!
//! Which schemes are offered and accepted is [`DesiredState::rtsp_auth`], the worker's own
//! `rtspAuthMethods` (never derived from which users have an HA1): a 401 carries a
//! Digest challenge first (clients pick the strongest they know) and then Basic; a scheme not
//! offered is refused even with valid credentials.
//!
//! **JWT permissions:** a token grants an action on a path only when *both* its `permissions`
//! claim and the current ACL rules of the desired state allow it for the token's user (who
//! must still exist and not be disabled). MediaMTX's JWT mode trusts the claim alone because
//! it has no user store; we have the live rules, so an ACL change or a disabled user takes
//! effect on the next session instead of when the token expires, and a token whose claim is
//! narrower than the user's rules stays narrow.
//!
//! Every refusal except "no credentials yet" (the normal first round trip) waits a random
//! 100–300 ms before answering, on this connection's task only, to slow guessing. Successes
//! with credentials are logged with the scheme (`method`); neither passwords, tokens, Digest
//! responses nor HA1 are ever logged.
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
use tracing::info;

use super::digest::{self, NonceState, Nonces};
use super::jwt::{self, TokenError, TokenPermission};
use crate::state::{DesiredState, User};

/// The realm of both challenges; HA1 values are computed with it.
pub const REALM: &str = streamplane_proto::RTSP_REALM;
/// The Basic `WWW-Authenticate` challenge (the realm is [`REALM`]; a test keeps them equal).
pub const BASIC_CHALLENGE: &str = "Basic realm=\"streamplane\"";

/// How a client proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Basic,
    Digest,
    /// A control-plane JWT, in the URL or as the Basic password.
    Token,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Basic => "basic",
            Scheme::Digest => "digest",
            Scheme::Token => "jwt",
        }
    }
}

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
    #[error("{scheme} authentication is not offered by this server")]
    SchemeNotOffered { scheme: &'static str },
    #[error(
        "digest credentials for a user without rtsp_digest (no HA1): turn rtsp_digest on for \
         this user, or use Basic or a token"
    )]
    DigestUnavailable,
    #[error("digest nonce not issued by this server")]
    BadNonce,
    #[error("digest nonce expired")]
    StaleNonce,
    #[error("digest response does not match (wrong password)")]
    WrongDigest,
    #[error("digest realm {realm:?} is not ours")]
    WrongRealm { realm: String },
}

pub struct Authenticator {
    hasher: std::collections::hash_map::RandomState,
    /// username → (stored PHC string, password digest) of the last successful verification.
    verified: Mutex<HashMap<String, (String, u64)>>,
    nonces: Nonces,
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

    /// The `WWW-Authenticate` values for a 401 after `denied`, as offered by
    /// [`DesiredState::rtsp_auth`]: Digest first (clients pick the strongest they know) with a
    /// fresh nonce, then Basic.
    pub fn challenges(&self, state: &DesiredState, denied: &Denied) -> Vec<String> {
        let mut out = Vec::with_capacity(2);
        if state.rtsp_auth.digest {
            let nonce = self.nonces.issue(Instant::now());
            out.push(digest::challenge(
                REALM,
                &nonce,
                *denied == Denied::StaleNonce,
            ));
        }
        if state.rtsp_auth.basic {
            out.push(BASIC_CHALLENGE.to_owned());
        }
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
        match self.decide(state, action, path, ip, request).await {
            Ok((granted, scheme)) => {
                if let (Some(user), Some(scheme)) = (&granted, scheme) {
                    info!(
                        user = user.as_str(),
                        ip = %ip,
                        path = path.as_str(),
                        action = %action,
                        method = %scheme.as_str(),
                        "authenticated"
                    );
                }
                Ok(granted)
            }
            Err(refused) => {
                if refused.1 != Denied::NoCredentials {
                    tokio::time::sleep(failure_delay()).await;
                }
                Err(refused)
            }
        }
    }

    /// The decision, and the scheme that proved the user (`None` for anonymous access).
    async fn decide(
        &self,
        state: &DesiredState,
        action: Action,
        path: &PathName,
        ip: IpAddr,
        request: &Request,
    ) -> Result<(Granted, Option<Scheme>), (Option<String>, Denied)> {
        if allowed(&state.acl, &Principal::Anonymous, action, Some(path), ip) {
            return Ok((None, None));
        }
        let with = |scheme| move |granted| (granted, Some(scheme));
        if let Some(token) = url_token(request) {
            return check_token(state, action, path, ip, &token).map(with(Scheme::Token));
        }
        let Some(header) = request.header(&names::AUTHORIZATION) else {
            return Err((None, Denied::NoCredentials));
        };
        if let Some(credentials) = digest::parse_digest(header) {
            if !state.rtsp_auth.digest {
                let scheme = Scheme::Digest.as_str();
                return Err((
                    Some(credentials.username),
                    Denied::SchemeNotOffered { scheme },
                ));
            }
            return self
                .check_digest(state, action, path, ip, request, &credentials)
                .map(with(Scheme::Digest));
        }
        let (username, password) = parse_basic(header).ok_or((None, Denied::Malformed))?;
        if !state.rtsp_auth.basic {
            let scheme = Scheme::Basic.as_str();
            return Err((Some(username), Denied::SchemeNotOffered { scheme }));
        }
        if jwt::looks_like_jwt(&password) {
            return check_token(state, action, path, ip, &password).map(with(Scheme::Token));
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
        acl_allows(state, user, action, path, ip).map(with(Scheme::Basic))
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
        let ha1 = user
            .digest_ha1
            .as_ref()
            .ok_or_else(|| fail(Denied::DigestUnavailable))?;
        if credentials.realm != REALM {
            let realm = credentials.realm.clone();
            return Err(fail(Denied::WrongRealm { realm }));
        }
        match self.nonces.check(&credentials.nonce, Instant::now()) {
            NonceState::Fresh => {}
            NonceState::Stale => return Err(fail(Denied::StaleNonce)),
            NonceState::Invalid => return Err(fail(Denied::BadNonce)),
        }
        let method = <&str>::from(&request.method);
        if !digest::verify_response(ha1.expose(), method, credentials) {
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
#[path = "auth_tests.rs"]
mod tests;
