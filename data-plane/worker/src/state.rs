//! The desired state in domain types, and the decision whether a snapshot replaces it.
//!
//! Protobuf stops here: [`DesiredState::try_from`] converts a `pb::DesiredState` once, and
//! everything downstream (the media layer, reports, metrics) sees only validated types.
//!
//! Architecture invariant: a snapshot is applied only when its generation is greater than the
//! applied one, and only as a whole; an invalid snapshot leaves the previous one in force.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use streamplane_config::Secret;
use streamplane_media_core::{
    AclRule, Action, DuplicatePattern, InvalidNetwork, InvalidPathPattern, PathName, PathPattern,
    PathRules, UserId, parse_network,
};
use streamplane_proto::v1 as pb;

/// Everything the worker should serve, as of one generation.
#[derive(Debug, Clone)]
pub struct DesiredState {
    /// 0 for the built-in states; the control plane's start at 1.
    pub generation: u64,
    pub created_at: Option<DateTime<Utc>>,
    pub paths: PathRules<PathConfig>,
    /// MediaMTX's `all_others` (or `all`): used when no pattern in `paths` matches.
    pub fallback_path: Option<PathConfig>,
    pub users: Vec<User>,
    /// Allow-list: a request is granted when one rule matches.
    pub acl: Vec<AclRule>,
    pub jwt_keys: Vec<JwtPublicKey>,
    /// RTSP authentication schemes offered in challenges and accepted: the worker's own
    /// `rtspAuthMethods` in both modes.
    pub rtsp_auth: RtspAuthMethods,
    /// Media sessions to close (ids as in reports), kicked through the control plane. Shared,
    /// so that the state stays small to copy and the media layer can hold it cheaply.
    pub kicked_sessions: Arc<HashSet<String>>,
}

/// The desired state the worker runs now; published through a `watch` channel.
#[derive(Debug, Clone)]
pub struct AppliedState {
    pub desired: DesiredState,
    /// When the worker applied it; `None` for the built-in initial state.
    pub applied_at: Option<DateTime<Utc>>,
}

impl AppliedState {
    pub fn initial(desired: DesiredState) -> Self {
        AppliedState {
            desired,
            applied_at: None,
        }
    }

    pub fn generation(&self) -> u64 {
        self.desired.generation
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathConfig {
    /// The control plane's id of this configuration (empty in the built-in states).
    pub id: String,
    pub source: Source,
    /// `None`: unlimited.
    pub max_readers: Option<NonZeroU32>,
    /// A new publisher replaces the current one instead of being refused.
    pub override_publisher: bool,
    pub record: bool,
    /// How long readers stay attached after the publisher leaves.
    pub publisher_grace: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Clients publish to the path.
    Publisher,
    /// The worker pulls from `url`; always, or only while someone reads.
    Url {
        url: String,
        on_demand: Option<OnDemand>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnDemand {
    pub start_timeout: Duration,
    pub close_after: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub username: String,
    /// PHC string (argon2id). `Debug` prints `***`.
    pub password_hash: Secret,
    /// API role; `None` for media-only users (cameras, players).
    pub role: Option<UserRole>,
    pub disabled: bool,
    /// Set when the user may authenticate with RTSP Digest.
    pub digest_ha1: Option<DigestHa1>,
}

/// RTSP Digest's `HA1 = MD5(username:realm:password)`: whoever knows it can answer Digest
/// challenges for that user, so it is a password equivalent. `Debug` prints `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct DigestHa1([u8; 16]);

impl DigestHa1 {
    pub fn new(bytes: [u8; 16]) -> Self {
        DigestHa1(bytes)
    }

    pub fn compute(username: &str, realm: &str, password: &str) -> Self {
        use md5::{Digest as _, Md5};
        DigestHa1(Md5::digest(format!("{username}:{realm}:{password}")).into())
    }

    pub fn expose(&self) -> &[u8; 16] {
        &self.0
    }
}

impl std::fmt::Debug for DigestHa1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DigestHa1(***)")
    }
}

/// Which RTSP authentication schemes the worker offers: its own `rtspAuthMethods` setting, in
/// both modes (Basic by default, like MediaMTX). Not part of the control plane's snapshot:
/// ffmpeg and GStreamer always answer Digest when it is offered, so offering it is an operator
/// decision per worker, never a side effect of one user's `rtsp_digest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtspAuthMethods {
    pub basic: bool,
    pub digest: bool,
}

impl RtspAuthMethods {
    pub const BASIC: Self = RtspAuthMethods {
        basic: true,
        digest: false,
    };
}

impl Default for RtspAuthMethods {
    fn default() -> Self {
        RtspAuthMethods::BASIC
    }
}

impl std::fmt::Display for RtspAuthMethods {
    /// As written in the configuration: `basic`, `digest` or `basic,digest`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = [(self.basic, "basic"), (self.digest, "digest")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
        f.write_str(&names.join(","))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserRole {
    Admin,
    Operator,
    Viewer,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtPublicKey {
    pub kid: String,
    /// Raw Ed25519 public key (the only algorithm accepted: EdDSA).
    pub ed25519: [u8; 32],
}

/// Why a snapshot cannot be applied; names the offending entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidDesiredState {
    #[error("both `all` and `all_others` are defined; keep one catch-all path")]
    TwoCatchAlls,
    #[error("created_at {seconds}s {nanos}ns is not a valid time")]
    CreatedAt { seconds: i64, nanos: i32 },
    #[error("path {name:?} (id {id:?}): {source}")]
    PathPattern {
        id: String,
        name: String,
        source: InvalidPathPattern,
    },
    #[error("paths: {0}")]
    DuplicatePath(#[from] DuplicatePattern),
    #[error("path {path:?}: unknown source_kind {value}")]
    SourceKind { path: String, value: i32 },
    #[error("path {path:?}: source_url {url:?} is not a URL like rtsp://host:8554/stream")]
    SourceUrl { path: String, url: String },
    #[error("user {user_id:?}: unknown role {value}")]
    UserRole { user_id: String, value: i32 },
    #[error("user {user_id:?}: id or username {username:?} is used twice")]
    DuplicateUser { user_id: String, username: String },
    #[error("user {user_id:?}: digest_ha1 must be 16 bytes, got {len}")]
    DigestHa1Length { user_id: String, len: usize },
    #[error("acl rule {rule_id:?}: unknown action {value}")]
    AclAction { rule_id: String, value: i32 },
    #[error("acl rule {rule_id:?}: path_pattern: {source}")]
    AclPath {
        rule_id: String,
        source: InvalidPathPattern,
    },
    #[error("acl rule {rule_id:?}: ip_networks: {source}")]
    AclNetwork {
        rule_id: String,
        source: InvalidNetwork,
    },
    #[error("acl rule {rule_id:?}: names unknown user {user_id:?}")]
    AclUser { rule_id: String, user_id: String },
    #[error("jwt key {kid:?}: algorithm {algorithm:?} is not supported; expected EdDSA")]
    JwtAlgorithm { kid: String, algorithm: String },
    #[error("jwt key {kid:?}: expected a 32-byte Ed25519 key, got {len} bytes")]
    JwtKeyLength { kid: String, len: usize },
}

impl TryFrom<pb::DesiredState> for DesiredState {
    type Error = InvalidDesiredState;

    fn try_from(s: pb::DesiredState) -> Result<Self, Self::Error> {
        let created_at = s
            .created_at
            .map(|t| {
                let nanos = u32::try_from(t.nanos).ok();
                nanos
                    .and_then(|n| DateTime::from_timestamp(t.seconds, n))
                    .ok_or(InvalidDesiredState::CreatedAt {
                        seconds: t.seconds,
                        nanos: t.nanos,
                    })
            })
            .transpose()?;
        // MediaMTX's `all_others` / `all` are catch-alls tried after every other pattern.
        let mut fallback_path = None;
        let mut entries = Vec::with_capacity(s.paths.len());
        for p in s.paths {
            let (pattern, config) = path_entry(p)?;
            match &pattern {
                PathPattern::Exact(name)
                    if crate::standalone::CATCH_ALL_NAMES.contains(&name.as_str()) =>
                {
                    if fallback_path.replace(config).is_some() {
                        return Err(InvalidDesiredState::TwoCatchAlls);
                    }
                }
                _ => entries.push((pattern, config)),
            }
        }
        let paths = PathRules::new(entries)?;
        let users = users(s.users)?;
        let known: HashSet<&str> = users.iter().map(|u| u.id.as_str()).collect();
        let acl = s
            .acl_rules
            .into_iter()
            .map(|r| acl_rule(r, &known))
            .collect::<Result<_, _>>()?;
        let jwt_keys = s
            .jwt_public_keys
            .into_iter()
            .map(jwt_key)
            .collect::<Result<_, _>>()?;
        Ok(DesiredState {
            generation: s.generation,
            created_at,
            paths,
            fallback_path,
            users,
            acl,
            jwt_keys,
            // The worker's setting, not the snapshot's: [`Tracker`] puts it in.
            rtsp_auth: RtspAuthMethods::BASIC,
            kicked_sessions: Arc::new(s.kicked_session_ids.into_iter().collect()),
        })
    }
}

fn millis(ms: u32) -> Duration {
    Duration::from_millis(u64::from(ms))
}

fn path_entry(p: pb::PathConfig) -> Result<(PathPattern, PathConfig), InvalidDesiredState> {
    let pattern: PathPattern =
        p.name
            .parse()
            .map_err(|source| InvalidDesiredState::PathPattern {
                id: p.id.clone(),
                name: p.name.clone(),
                source,
            })?;
    // Fields that do not apply to the source kind are ignored, not rejected: a whole snapshot
    // should not fail over a harmless leftover.
    let source = match pb::SourceKind::try_from(p.source_kind) {
        Ok(pb::SourceKind::Publisher) => Source::Publisher,
        Ok(pb::SourceKind::Url) => {
            if !looks_like_url(&p.source_url) {
                return Err(InvalidDesiredState::SourceUrl {
                    path: p.name,
                    url: p.source_url,
                });
            }
            Source::Url {
                url: p.source_url,
                on_demand: p.source_on_demand.then(|| OnDemand {
                    start_timeout: millis(p.source_on_demand_start_timeout_ms),
                    close_after: millis(p.source_on_demand_close_after_ms),
                }),
            }
        }
        Ok(pb::SourceKind::Unspecified) | Err(_) => {
            return Err(InvalidDesiredState::SourceKind {
                path: p.name,
                value: p.source_kind,
            });
        }
    };
    let config = PathConfig {
        id: p.id,
        source,
        max_readers: NonZeroU32::new(p.max_readers),
        override_publisher: p.override_publisher,
        record: p.record,
        publisher_grace: millis(p.publisher_grace_ms),
    };
    Ok((pattern, config))
}

/// `scheme://rest`, with a scheme of letters, digits, `+`, `-` and `.`. Deliberately loose:
/// source URLs of regex paths may hold `$G1` placeholders that are no valid URL yet.
pub(crate) fn looks_like_url(url: &str) -> bool {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
                && !rest.is_empty()
                && !url.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

fn users(users: Vec<pb::User>) -> Result<Vec<User>, InvalidDesiredState> {
    let mut ids = HashSet::new();
    let mut names = HashSet::new();
    users
        .into_iter()
        .map(|u| {
            let role = match pb::UserRole::try_from(u.role) {
                Ok(pb::UserRole::Admin) => Some(UserRole::Admin),
                Ok(pb::UserRole::Operator) => Some(UserRole::Operator),
                Ok(pb::UserRole::Viewer) => Some(UserRole::Viewer),
                Ok(pb::UserRole::Unspecified) => None,
                Err(_) => {
                    return Err(InvalidDesiredState::UserRole {
                        user_id: u.id,
                        value: u.role,
                    });
                }
            };
            if !ids.insert(u.id.clone()) || !names.insert(u.username.clone()) {
                return Err(InvalidDesiredState::DuplicateUser {
                    user_id: u.id,
                    username: u.username,
                });
            }
            let digest_ha1 = match u.digest_ha1 {
                None => None,
                Some(bytes) => Some(DigestHa1::new(
                    <[u8; 16]>::try_from(bytes.as_slice()).map_err(|_| {
                        InvalidDesiredState::DigestHa1Length {
                            user_id: u.id.clone(),
                            len: bytes.len(),
                        }
                    })?,
                )),
            };
            Ok(User {
                id: UserId::new(u.id),
                username: u.username,
                password_hash: Secret::new(u.password_hash),
                role,
                disabled: u.disabled,
                digest_ha1,
            })
        })
        .collect()
}

fn acl_rule(r: pb::AclRule, known_users: &HashSet<&str>) -> Result<AclRule, InvalidDesiredState> {
    let action = match pb::AclAction::try_from(r.action) {
        Ok(pb::AclAction::Publish) => Action::Publish,
        Ok(pb::AclAction::Read) => Action::Read,
        Ok(pb::AclAction::Playback) => Action::Playback,
        Ok(pb::AclAction::Api) => Action::Api,
        Ok(pb::AclAction::Metrics) => Action::Metrics,
        Ok(pb::AclAction::Unspecified) | Err(_) => {
            return Err(InvalidDesiredState::AclAction {
                rule_id: r.id,
                value: r.action,
            });
        }
    };
    let user = if r.user_id.is_empty() {
        None
    } else if known_users.contains(r.user_id.as_str()) {
        Some(UserId::new(r.user_id))
    } else {
        return Err(InvalidDesiredState::AclUser {
            rule_id: r.id,
            user_id: r.user_id,
        });
    };
    let path = if r.path_pattern.is_empty() {
        None
    } else {
        let pattern = r
            .path_pattern
            .parse()
            .map_err(|source| InvalidDesiredState::AclPath {
                rule_id: r.id.clone(),
                source,
            })?;
        Some(pattern)
    };
    let networks = r
        .ip_networks
        .iter()
        .map(|n| parse_network(n))
        .collect::<Result<_, _>>()
        .map_err(|source| InvalidDesiredState::AclNetwork {
            rule_id: r.id.clone(),
            source,
        })?;
    Ok(AclRule {
        user,
        action,
        path,
        networks,
    })
}

fn jwt_key(k: pb::JwtPublicKey) -> Result<JwtPublicKey, InvalidDesiredState> {
    if k.algorithm != "EdDSA" {
        return Err(InvalidDesiredState::JwtAlgorithm {
            kid: k.kid,
            algorithm: k.algorithm,
        });
    }
    let ed25519 = <[u8; 32]>::try_from(k.public_key.as_slice()).map_err(|_| {
        InvalidDesiredState::JwtKeyLength {
            kid: k.kid.clone(),
            len: k.public_key.len(),
        }
    })?;
    Ok(JwtPublicKey {
        kid: k.kid,
        ed25519,
    })
}

impl DesiredState {
    /// The configuration of `name`: `paths` in MediaMTX order, then `fallback_path`.
    pub fn find_path(&self, name: &PathName) -> Option<&PathConfig> {
        self.paths
            .find(name)
            .map(|(_, config)| config)
            .or(self.fallback_path.as_ref())
    }

    /// Configured path entries, the fallback included.
    pub fn path_count(&self) -> usize {
        self.paths.len() + usize::from(self.fallback_path.is_some())
    }

    /// Managed mode before the first snapshot: nothing is served until the control plane says so.
    pub fn empty() -> Self {
        DesiredState {
            generation: 0,
            created_at: None,
            paths: PathRules::default(),
            fallback_path: None,
            users: Vec::new(),
            acl: Vec::new(),
            jwt_keys: Vec::new(),
            rtsp_auth: RtspAuthMethods::BASIC,
            kicked_sessions: Arc::default(),
        }
    }

    /// Standalone mode without configured paths, like a fresh MediaMTX: any path, anyone may
    /// publish, read and play back; the API and metrics only from this host.
    pub fn standalone_default() -> Self {
        let any_path: PathPattern = "~^.*$"
            .parse()
            .expect("a constant, valid regular expression");
        let paths = PathRules::new([(
            any_path,
            PathConfig {
                id: String::new(),
                source: Source::Publisher,
                max_readers: None,
                override_publisher: true,
                record: false,
                publisher_grace: Duration::ZERO,
            },
        )])
        .expect("a single pattern cannot be a duplicate");
        let anyone = |action| AclRule {
            user: None,
            action,
            path: None,
            networks: Vec::new(),
        };
        let localhost = ["127.0.0.1", "::1"]
            .into_iter()
            .map(|n| parse_network(n).expect("constant, valid addresses"))
            .collect::<Vec<_>>();
        let local = |action| AclRule {
            networks: localhost.clone(),
            ..anyone(action)
        };
        DesiredState {
            paths,
            acl: vec![
                anyone(Action::Publish),
                anyone(Action::Read),
                anyone(Action::Playback),
                local(Action::Api),
                local(Action::Metrics),
            ],
            ..DesiredState::empty()
        }
    }
}

/// What [`Tracker::offer`] decided about a snapshot.
#[derive(Debug)]
pub enum Offer {
    /// Newer and valid: publish it.
    Apply(DesiredState),
    /// Not newer than the applied generation (a duplicate or a reordered old snapshot).
    Stale { current: u64, incoming: u64 },
    /// Newer but invalid: the previous state stays in force.
    Invalid {
        generation: u64,
        error: InvalidDesiredState,
    },
}

/// The agent's view of what is applied: the generation, and why the last snapshot was refused.
/// No I/O and no clock, so every decision is a plain unit test.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    generation: u64,
    apply_error: Option<String>,
    /// The worker's `rtspAuthMethods`, set on every applied state.
    rtsp_auth: RtspAuthMethods,
}

impl Tracker {
    pub fn new(generation: u64, rtsp_auth: RtspAuthMethods) -> Self {
        Tracker {
            generation,
            apply_error: None,
            rtsp_auth,
        }
    }

    /// Decides about `snapshot` and updates the tracked generation and error accordingly.
    pub fn offer(&mut self, snapshot: pb::DesiredState) -> Offer {
        let incoming = snapshot.generation;
        // Checked before converting: a stale snapshot is irrelevant, valid or not.
        if incoming <= self.generation {
            return Offer::Stale {
                current: self.generation,
                incoming,
            };
        }
        match DesiredState::try_from(snapshot) {
            Ok(mut desired) => {
                desired.rtsp_auth = self.rtsp_auth;
                self.generation = incoming;
                self.apply_error = None;
                Offer::Apply(desired)
            }
            Err(error) => {
                self.apply_error = Some(format!("generation {incoming}: {error}"));
                Offer::Invalid {
                    generation: incoming,
                    error,
                }
            }
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The RTSP authentication methods every applied state gets.
    pub fn rtsp_auth(&self) -> RtspAuthMethods {
        self.rtsp_auth
    }

    /// Set while the newest snapshot offered could not be applied; cleared by the next applied one.
    pub fn apply_error(&self) -> Option<&str> {
        self.apply_error.as_deref()
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
