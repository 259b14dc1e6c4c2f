//! Access checks for RTSP requests: anonymous first, then HTTP Basic credentials verified
//! against the user's argon2 hash from the desired state.
//!
//! Successful verifications are remembered (user, stored hash, keyed digest of the password)
//! so a client repeating `Authorization` on every request costs one argon2 run, not one per
//! request. The digest uses a per-process random SipHash key, so the cache holds nothing an
//! attacker could test guesses against offline; a changed hash in the state misses the cache.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use base64::Engine as _;
use streamplane_media_core::{Action, PathName, Principal, allowed};

use crate::state::DesiredState;

/// The `WWW-Authenticate` challenge sent with 401.
pub const CHALLENGE: &str = "Basic realm=\"streamplane\"";

/// Who was granted access; `None` is anonymous.
pub type Granted = Option<String>;

/// Why access was refused; logged, never sent beyond the status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("credentials required")]
    NoCredentials,
    #[error("the Authorization header is not valid Basic credentials")]
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
}

#[derive(Default)]
pub struct Authenticator {
    hasher: std::collections::hash_map::RandomState,
    /// username → (stored PHC string, password digest) of the last successful verification.
    verified: Mutex<HashMap<String, (String, u64)>>,
}

impl Authenticator {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn digest(&self, username: &str, password: &str) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(username.as_bytes());
        h.write_u8(0);
        h.write(password.as_bytes());
        h.finish()
    }

    /// Decides whether a client at `ip` may do `action` on `path`, given the `Authorization`
    /// header it sent (if any).
    pub async fn check(
        &self,
        state: &DesiredState,
        action: Action,
        path: &PathName,
        ip: IpAddr,
        authorization: Option<&str>,
    ) -> Result<Granted, (Option<String>, Denied)> {
        if allowed(&state.acl, &Principal::Anonymous, action, Some(path), ip) {
            return Ok(None);
        }
        let Some(header) = authorization else {
            return Err((None, Denied::NoCredentials));
        };
        let (username, password) = parse_basic(header).ok_or((None, Denied::Malformed))?;
        let fail = |reason| (Some(username.clone()), reason);
        let user = state
            .users
            .iter()
            .find(|u| u.username == username)
            .ok_or_else(|| fail(Denied::UnknownUser))?;
        if user.disabled {
            return Err(fail(Denied::Disabled));
        }
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
        let principal = Principal::User {
            id: user.id.clone(),
        };
        if allowed(&state.acl, &principal, action, Some(path), ip) {
            Ok(Some(username))
        } else {
            Err(fail(Denied::NotAllowed { action }))
        }
    }
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

    use crate::state::{User, UserRole};

    fn state(hash: String) -> DesiredState {
        let mut s = DesiredState::empty();
        s.users = vec![User {
            id: UserId::new("u1"),
            username: "alice".into(),
            password_hash: Secret::new(hash),
            role: UserRole::Viewer,
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
                auth.check(&state, action, &path, ip, header.as_deref())
                    .await
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
}
