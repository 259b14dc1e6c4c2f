//! Standalone mode from the configuration file, with MediaMTX's key names: `paths` and
//! `authInternalUsers` become the worker's [`DesiredState`]; the other top-level MediaMTX keys
//! people paste (`hls`, `webrtc`, `rtspTransports`, …) are validated, and those asking for
//! something the worker does not do yet are refused with a clear problem.
//!
//! | key                        | meaning                                                        |
//! |----------------------------|----------------------------------------------------------------|
//! | `paths`                    | name (`cam1`, `~regex`, `all`/`all_others`) → path settings    |
//! | `paths.*.source`           | `publisher` (default) or a URL (stored; pulling comes later)   |
//! | `paths.*.sourceOnDemand`   | pull only while someone reads (URL sources), with `sourceOnDemandStartTimeout` and `sourceOnDemandCloseAfter` (10s) |
//! | `paths.*.maxReaders`       | 0 (default) = unlimited                                        |
//! | `paths.*.overridePublisher`| a new publisher replaces the current one (default `true`)      |
//! | `paths.*.record`           | default `false`                                                |
//! | `paths.*.publisherGrace`   | readers stay attached this long after the publisher leaves     |
//! | `authInternalUsers`        | `[{user, pass, ips, permissions: [{action, path}]}]`           |
//!
//! Without `paths`, any path is served (like `all_others: {}`); without `authInternalUsers`,
//! MediaMTX's default applies: anyone may publish, read and play back, `api` and `metrics`
//! only from localhost. `all` and `all_others` are tried after every exact name and regex.
//! Passwords: plaintext (hashed with argon2id at load time, never kept), or `argon2:<PHC>`;
//! `sha256:` hashes are refused for now. With `digest` in `rtspAuthMethods` (a worker key, see
//! `config`), plaintext passwords also yield Digest's HA1 (`MD5(user:streamplane:pass)`, kept
//! in memory only); users given as hashes cannot answer Digest, so `[digest]` alone with such
//! users is a problem.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

use argon2::{Argon2, PasswordHash, PasswordHasher as _};
use streamplane_config::{Secret, Section};
use streamplane_media_core::{AclRule, Action, PathPattern, PathRules, UserId, parse_network};

use crate::state::{
    DesiredState, DigestHa1, OnDemand, PathConfig, RtspAuthMethods, Source, User, looks_like_url,
};

/// MediaMTX's names for the catch-all path, tried after every other pattern.
pub const CATCH_ALL_NAMES: [&str; 2] = ["all_others", "all"];

const DEFAULT_ON_DEMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads `paths` and `authInternalUsers` into the desired state served in standalone mode,
/// offering `rtsp_auth` (the worker's `rtspAuthMethods`, read in `config`).
/// Problems are recorded in the loader; the returned state is then meaningless.
/// `managed`: a control plane is configured, so both keys are refused (its state applies).
pub(crate) fn read(root: &Section<'_>, managed: bool, rtsp_auth: RtspAuthMethods) -> DesiredState {
    for key in ["paths", "authInternalUsers"] {
        if managed && root.is_set(key) {
            root.problem(
                key,
                "not used when controlPlaneUrl is set (the control plane's paths and users \
                 apply); remove it, or remove controlPlaneUrl to run standalone",
            );
        }
    }
    let mut state = DesiredState::standalone_default();
    state.rtsp_auth = rtsp_auth;
    if root.is_set("paths") {
        let (paths, fallback) = read_paths(root);
        state.paths = paths;
        state.fallback_path = fallback;
    } else {
        // Marks the key as known (an explicit `paths:` with no value keeps the default).
        root.entries("paths");
    }
    if root.is_set("authInternalUsers") {
        let (users, acl) = read_users(root, state.rtsp_auth);
        state.users = users;
        state.acl = acl;
    } else {
        root.list("authInternalUsers");
    }
    state
}

fn read_paths(root: &Section<'_>) -> (PathRules<PathConfig>, Option<PathConfig>) {
    let entries = root.entries("paths");
    // Locates problems about the names themselves (at the entry's value, or the name when empty).
    let names = root.section("paths");
    let mut rules = Vec::new();
    let mut fallback: Option<(String, PathConfig)> = None;
    for (name, section) in entries {
        let config = read_path(section);
        if CATCH_ALL_NAMES.contains(&name.as_str()) {
            match &fallback {
                Some((first, _)) => names.problem(
                    &name,
                    format!("{first} is configured too; both mean every other path, keep one"),
                ),
                None => fallback = Some((name, config)),
            }
            continue;
        }
        match name.parse::<PathPattern>() {
            Ok(pattern) => rules.push((pattern, config)),
            Err(e) if name.starts_with('~') => names.problem(&name, e.to_string()),
            Err(e) => names.problem(
                &name,
                format!("invalid path name: {e} (a regular expression starts with ~)"),
            ),
        }
    }
    let rules = PathRules::new(rules).unwrap_or_else(|e| {
        root.problem("paths", e.to_string());
        PathRules::default()
    });
    (rules, fallback.map(|(_, c)| c))
}

fn read_path(s: Section<'_>) -> PathConfig {
    let source_text: String = s.get_or("source", "publisher".to_string());
    let on_demand = s.get_or("sourceOnDemand", false);
    let start_timeout = s.get_or("sourceOnDemandStartTimeout", DEFAULT_ON_DEMAND_TIMEOUT);
    let close_after = s.get_or("sourceOnDemandCloseAfter", DEFAULT_ON_DEMAND_TIMEOUT);
    let source = match source_text.as_str() {
        "publisher" => {
            if on_demand {
                s.problem(
                    "sourceOnDemand",
                    "has no effect when source is publisher; remove it",
                );
            }
            Source::Publisher
        }
        "redirect" | "rpiCamera" => {
            s.problem(
                "source",
                format!("{source_text} is not supported yet; use publisher or a URL"),
            );
            Source::Publisher
        }
        url if looks_like_url(url) => Source::Url {
            url: url.to_string(),
            on_demand: on_demand.then_some(OnDemand {
                start_timeout,
                close_after,
            }),
        },
        _ => {
            s.problem(
                "source",
                format!(
                    "expected publisher or a URL like rtsp://host:8554/stream, got {source_text:?}"
                ),
            );
            Source::Publisher
        }
    };
    let config = PathConfig {
        id: String::new(),
        source,
        max_readers: NonZeroU32::new(s.get_or("maxReaders", 0u32)),
        override_publisher: s.get_or("overridePublisher", true),
        record: s.get_or("record", false),
        publisher_grace: s.get_or("publisherGrace", Duration::ZERO),
    };
    s.finish();
    config
}

fn read_users(root: &Section<'_>, methods: RtspAuthMethods) -> (Vec<User>, Vec<AclRule>) {
    let mut users: Vec<User> = Vec::new();
    let mut acl = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, item) in root.list("authInternalUsers").into_iter().enumerate() {
        let name: Option<String> = item.get("user");
        let pass: Option<Secret> = item.get("pass");
        let networks: Vec<_> = item
            .get_or::<Vec<String>>("ips", Vec::new())
            .iter()
            .filter_map(|n| {
                parse_network(n)
                    .map_err(|e| item.problem("ips", e.to_string()))
                    .ok()
            })
            .collect();
        let user = match name.as_deref() {
            None | Some("") => {
                item.problem("user", "required: a user name, or any for everyone");
                None
            }
            Some("any") => {
                if pass.as_ref().is_some_and(|p| !p.is_empty()) {
                    item.problem(
                        "pass",
                        "must be empty for user any (anyone, no credentials)",
                    );
                }
                None
            }
            Some(name) => {
                if let Some(first) = seen.insert(name.to_string(), i) {
                    item.problem(
                        "user",
                        format!(
                            "{name:?} is already defined in authInternalUsers[{first}]; \
                             put all its permissions in one entry"
                        ),
                    );
                }
                let pass = pass.as_ref().filter(|p| !p.is_empty());
                let hash = match pass {
                    None => {
                        item.problem("pass", format!("required for user {name:?}"));
                        None
                    }
                    Some(pass) => password_hash(pass)
                        .map_err(|m| item.problem("pass", m))
                        .ok(),
                };
                let digest_ha1 = match pass {
                    Some(pass) if methods.digest => digest_ha1(name, pass),
                    _ => None,
                };
                if methods.digest && !methods.basic && hash.is_some() && digest_ha1.is_none() {
                    item.problem(
                        "pass",
                        format!(
                            "a hashed password cannot answer Digest, the only method in \
                             rtspAuthMethods; give {name:?} a plaintext pass or add basic to \
                             rtspAuthMethods"
                        ),
                    );
                }
                let id = UserId::new(name);
                users.push(User {
                    id: id.clone(),
                    username: name.to_string(),
                    password_hash: hash.unwrap_or_else(|| Secret::new("")),
                    // Roles matter to the control plane's API only.
                    role: None,
                    disabled: false,
                    digest_ha1,
                });
                Some(id)
            }
        };
        for permission in item.list("permissions") {
            let action = permission.get::<String>("action").and_then(|text| {
                text.parse::<Action>()
                    .map_err(|e| permission.problem("action", e.to_string()))
                    .ok()
            });
            if action.is_none() && !permission.is_set("action") {
                permission.problem(
                    "action",
                    "required: publish, read, playback, api or metrics",
                );
            }
            let path = permission
                .get::<String>("path")
                .filter(|p| !p.is_empty())
                .and_then(|text| {
                    text.parse::<PathPattern>()
                        .map_err(|e| permission.problem("path", e.to_string()))
                        .ok()
                });
            if let Some(action) = action {
                if path.is_some() && !action.takes_path() {
                    permission.problem("path", format!("{action} permissions take no path"));
                }
                acl.push(AclRule {
                    user: user.clone(),
                    action,
                    path,
                    networks: networks.clone(),
                });
            }
            permission.finish();
        }
        item.finish();
    }
    (users, acl)
}

/// HA1 for a plaintext `pass`; `None` for `argon2:`/`sha256:` hashes, from which it cannot
/// be derived.
fn digest_ha1(name: &str, pass: &Secret) -> Option<DigestHa1> {
    let pass = pass.expose();
    let hashed = pass.starts_with("argon2:") || pass.starts_with("sha256:");
    (!hashed).then(|| DigestHa1::compute(name, streamplane_proto::RTSP_REALM, pass))
}

/// The PHC string to store for `pass`: `argon2:<PHC>` as given, plaintext hashed now.
fn password_hash(pass: &Secret) -> Result<Secret, String> {
    let pass = pass.expose();
    if let Some(phc) = pass.strip_prefix("argon2:") {
        return match PasswordHash::new(phc) {
            Ok(h) if h.algorithm.as_str().starts_with("argon2") => Ok(Secret::new(phc)),
            _ => Err("argon2: must be followed by a PHC string like $argon2id$v=19$m=…".into()),
        };
    }
    if pass.starts_with("sha256:") {
        return Err(
            "sha256: hashes are not supported yet; use argon2:<PHC string> or a plaintext password"
                .into(),
        );
    }
    let mut salt = [0u8; 16];
    rand::fill(&mut salt);
    Argon2::default()
        .hash_password_with_salt(pass.as_bytes(), &salt)
        .map(|h: PasswordHash| Secret::new(h.to_string()))
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Validates the other top-level MediaMTX keys: accepted where the worker behaves that way (or
/// where the key has no effect on it), refused with "not supported yet" where it would not.
pub(crate) fn read_mediamtx_keys(root: &Section<'_>) {
    // Servers the worker does not have (yet): only "off" is accepted.
    for key in ["rtmp", "hls", "webrtc", "srt", "api", "playback", "pprof"] {
        if root.get::<bool>(key) == Some(true) {
            root.problem(
                key,
                format!("not supported yet by the worker; set {key}: no or remove it"),
            );
        }
    }
    // Always on here.
    for key in ["rtsp", "metrics"] {
        if root.get::<bool>(key) == Some(false) {
            root.problem(
                key,
                format!("turning {key} off is not supported yet; remove the key"),
            );
        }
    }
    // Listen addresses of those servers: validated, unused while they are off.
    for key in [
        "rtspsAddress",
        "rtmpAddress",
        "rtmpsAddress",
        "hlsAddress",
        "webrtcAddress",
        "srtAddress",
        "apiAddress",
        "playbackAddress",
        "pprofAddress",
    ] {
        let _: Option<std::net::SocketAddr> = root.get(key);
    }
    // Accepted for compatibility; no effect yet.
    let _: Option<Duration> = root.get("writeTimeout");
    let _: Option<u32> = root.get("writeQueueSize");
    let _: Option<u32> = root.get("udpMaxPayloadSize");
    let _: Option<String> = root.get("logFile");

    one_of_list(root, "logDestinations", &["stdout"], &["file", "syslog"]);
    one_of_list(root, "rtspTransports", &["udp", "multicast", "tcp"], &[]);
    one_of_list(root, "protocols", &["udp", "multicast", "tcp"], &[]);
    if root.is_set("protocols") && root.is_set("rtspTransports") {
        root.problem(
            "protocols",
            "the old name of rtspTransports, which is set too; keep rtspTransports",
        );
    }
    one_of(root, "rtspEncryption", &["no"], &["strict", "optional"]);
    one_of(root, "encryption", &["no"], &["strict", "optional"]);
    one_of(root, "authMethod", &["internal"], &["http", "jwt"]);
    if root.is_set("pathDefaults") {
        root.section("pathDefaults");
        root.problem(
            "pathDefaults",
            "not supported yet; put the settings in each entry of paths",
        );
    }
}

fn check_value(root: &Section<'_>, key: &str, value: &str, ok: &[&str], later: &[&str]) -> bool {
    if ok.contains(&value) {
        return true;
    }
    if later.contains(&value) {
        root.problem(key, format!("{value} is not supported yet"));
    } else {
        let all: Vec<&str> = ok.iter().chain(later).copied().collect();
        root.problem(key, format!("expected {}, got {value:?}", all.join(" or ")));
    }
    false
}

fn one_of(root: &Section<'_>, key: &str, ok: &[&str], later: &[&str]) {
    if let Some(value) = root.get::<String>(key) {
        check_value(root, key, &value, ok, later);
    }
}

fn one_of_list(root: &Section<'_>, key: &str, ok: &[&str], later: &[&str]) {
    for value in root.get_or::<Vec<String>>(key, Vec::new()) {
        if !check_value(root, key, &value, ok, later) {
            break;
        }
    }
}

/// Logs what the configured state asks for that the worker does not do yet.
pub(crate) fn log_limitations(state: &DesiredState) {
    let url_paths = state
        .paths
        .iter()
        .map(|(p, c)| (p.to_string(), c))
        .chain(state.fallback_path.iter().map(|c| ("all_others".into(), c)));
    for (name, config) in url_paths {
        if let Source::Url { url, .. } = &config.source {
            tracing::warn!(
                path = %name,
                source = %url,
                "pulling from a URL source is not implemented yet; the path stays offline"
            );
        }
    }
}

#[cfg(test)]
#[path = "standalone_tests.rs"]
mod tests;
