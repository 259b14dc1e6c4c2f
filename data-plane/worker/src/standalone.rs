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
//! `sha256:` hashes are refused for now.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

use argon2::{Argon2, PasswordHash, PasswordHasher as _};
use streamplane_config::{Secret, Section};
use streamplane_media_core::{AclRule, Action, PathPattern, PathRules, UserId, parse_network};

use crate::state::{DesiredState, OnDemand, PathConfig, Source, User, looks_like_url};

/// MediaMTX's names for the catch-all path, tried after every other pattern.
pub const CATCH_ALL_NAMES: [&str; 2] = ["all_others", "all"];

const DEFAULT_ON_DEMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads `paths` and `authInternalUsers` into the desired state served in standalone mode.
/// Problems are recorded in the loader; the returned state is then meaningless.
/// `managed`: a control plane is configured, so both keys are refused (its state applies).
pub(crate) fn read(root: &Section<'_>, managed: bool) -> DesiredState {
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
    if root.is_set("paths") {
        let (paths, fallback) = read_paths(root);
        state.paths = paths;
        state.fallback_path = fallback;
    } else {
        // Marks the key as known (an explicit `paths:` with no value keeps the default).
        root.entries("paths");
    }
    if root.is_set("authInternalUsers") {
        let (users, acl) = read_users(root);
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

fn read_users(root: &Section<'_>) -> (Vec<User>, Vec<AclRule>) {
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
                let hash = match pass.as_ref().filter(|p| !p.is_empty()) {
                    None => {
                        item.problem("pass", format!("required for user {name:?}"));
                        None
                    }
                    Some(pass) => password_hash(pass)
                        .map_err(|m| item.problem("pass", m))
                        .ok(),
                };
                let id = UserId::new(name);
                users.push(User {
                    id: id.clone(),
                    username: name.to_string(),
                    password_hash: hash.unwrap_or_else(|| Secret::new("")),
                    // Roles matter to the control plane's API only.
                    role: None,
                    disabled: false,
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
    one_of_list(root, "rtspAuthMethods", &["basic"], &["digest"]);
    one_of_list(root, "authMethods", &["basic"], &["digest"]);
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
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::IpAddr;
    use std::path::Path;

    use streamplane_config::ConfigError;
    use streamplane_media_core::{PathName, Principal, allowed};

    use super::*;
    use crate::config::{Config, load, load_text};

    fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        load_text(
            Path::new("streamplane.yml"),
            text,
            Vec::new(),
            Some("host-1".into()),
        )
        .map(|l| l.config)
    }

    fn name(s: &str) -> PathName {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const MEDIAMTX_FILE: &str = r#"
logLevel: info
logDestinations: [stdout]
readTimeout: 10s
writeTimeout: 10s
writeQueueSize: 512
udpMaxPayloadSize: 1472
authMethod: internal
authInternalUsers:
  - user: any
    pass:
    ips: []
    permissions:
      - action: read
      - action: playback
  - user: any
    ips: ['127.0.0.1', '::1']
    permissions:
      - action: api
      - action: metrics
  - user: cam
    pass: s3cret
    ips: [10.0.0.0/8, 127.0.0.1]
    permissions:
      - action: publish
        path: cam1
      - action: publish
        path: ~^cam(\d+)$
  - user: admin
    pass: argon2:$argon2id$v=19$m=4096,t=3,p=1$MTIzNDU2Nzg$OGGO0eCMN0ievb4YGSzvS/H+Vajx1pcbUmtLp2tRqRU
    permissions:
      - action: publish
api: no
apiAddress: :9997
metrics: yes
metricsAddress: :9998
pprof: no
playback: no
rtsp: yes
protocols: [udp, multicast, tcp]
encryption: "no"
rtspAddress: :8554
rtspsAddress: :8322
rtspAuthMethods: [basic]
rtmp: no
rtmpAddress: :1935
hls: no
hlsAddress: :8888
webrtc: no
webrtcAddress: :8889
srt: no
srtAddress: :8890
paths:
  cam1:
    source: publisher
    maxReaders: 20
    overridePublisher: no
    publisherGrace: 5s
  '~^cam(\d+)$':
    record: yes
  relay:
    source: rtsp://10.0.0.9:554/stream
    sourceOnDemand: yes
    sourceOnDemandCloseAfter: 30s
  all_others:
"#;

    #[test]
    fn a_mediamtx_file_becomes_the_desired_state() {
        let c = from_yaml(MEDIAMTX_FILE).unwrap();
        let s = &c.standalone;
        assert_eq!(s.path_count(), 4);

        let cam1 = s.find_path(&name("cam1")).unwrap();
        assert_eq!(cam1.max_readers, NonZeroU32::new(20));
        assert!(!cam1.override_publisher && !cam1.record);
        assert_eq!(cam1.publisher_grace, Duration::from_secs(5));
        assert!(s.find_path(&name("cam7")).unwrap().record);
        let relay = s.find_path(&name("relay")).unwrap();
        assert_eq!(
            relay.source,
            Source::Url {
                url: "rtsp://10.0.0.9:554/stream".into(),
                on_demand: Some(OnDemand {
                    start_timeout: Duration::from_secs(10),
                    close_after: Duration::from_secs(30),
                }),
            }
        );
        // MediaMTX defaults for the bare all_others entry.
        let other = s.find_path(&name("site/door")).unwrap();
        assert!(other.override_publisher && other.source == Source::Publisher);

        let users: Vec<_> = s.users.iter().map(|u| u.username.as_str()).collect();
        assert_eq!(users, ["cam", "admin"]);
        let cam = &s.users[0];
        // Stored as an argon2id hash, never as given.
        assert!(cam.password_hash.expose().starts_with("$argon2id$"));
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(
            s.users[1]
                .password_hash
                .expose()
                .starts_with("$argon2id$v=19$m=4096")
        );

        let anon = Principal::Anonymous;
        let cam = Principal::User {
            id: UserId::new("cam"),
        };
        let lan = ip("10.1.2.3");
        let wan = ip("203.0.113.9");
        let can =
            |who, action, path: &str, from| allowed(&s.acl, who, action, Some(&name(path)), from);
        assert!(can(&anon, Action::Read, "cam1", wan));
        assert!(!can(&anon, Action::Publish, "cam1", wan));
        assert!(can(&cam, Action::Publish, "cam1", lan));
        assert!(can(&cam, Action::Publish, "cam42", lan));
        assert!(!can(&cam, Action::Publish, "other", lan));
        assert!(
            !can(&cam, Action::Publish, "cam1", wan),
            "ips restrict the user"
        );
        assert!(allowed(&s.acl, &anon, Action::Api, None, ip("::1")));
        assert!(!allowed(&s.acl, &anon, Action::Api, None, lan));
    }

    #[test]
    fn all_others_is_tried_after_every_regex() {
        let c = from_yaml(
            "paths:\n  all_others: {maxReaders: 1}\n  '~^cam(\\d+)$': {maxReaders: 2}\n  \
             '~^z.*$': {maxReaders: 3}\n  cam: {maxReaders: 4}\n",
        )
        .unwrap();
        let readers = |path: &str| {
            c.standalone
                .find_path(&name(path))
                .unwrap()
                .max_readers
                .unwrap()
                .get()
        };
        assert_eq!(readers("cam12"), 2);
        assert_eq!(readers("zeta"), 3);
        assert_eq!(readers("cam"), 4);
        assert_eq!(readers("anything/else"), 1);

        // `all` means the same; without a catch-all, unknown paths are not served.
        let c = from_yaml("paths:\n  all:\n  cam1:\n").unwrap();
        assert!(c.standalone.find_path(&name("x")).is_some());
        let c = from_yaml("paths:\n  cam1:\n").unwrap();
        assert!(c.standalone.find_path(&name("x")).is_none());
        assert!(c.standalone.find_path(&name("cam1")).is_some());
    }

    #[test]
    fn without_a_file_or_the_keys_the_defaults_apply() {
        let defaults = DesiredState::standalone_default();
        for c in [
            load(None, Vec::new(), Some("h".into())).unwrap().config,
            from_yaml("logLevel: debug\n").unwrap(),
        ] {
            let s = &c.standalone;
            assert!(s.find_path(&name("any/path")).is_some());
            assert_eq!(s.acl, defaults.acl);
            assert!(s.users.is_empty());
        }
        // Paths without users: MediaMTX's default permissions.
        let c = from_yaml("paths:\n  cam1:\n").unwrap();
        assert_eq!(c.standalone.acl, defaults.acl);
    }

    #[test]
    fn every_problem_is_listed() {
        let text = "\
paths:
  bad name:
    source: publisher
  \"~(\":
  cam1:
    source: ftp:nowhere
    sourceOnDemand: yes
    maxReaders: -1
    publisherGrace: soon
    recrd: yes
  all:
  all_others:
authInternalUsers:
  - user: any
    pass: x
  - pass: s3cret
  - user: cam
    pass: sha256:abc
    ips: [10.0.0.0/33]
    permissions:
      - action: stream
      - action: api
        path: cam1
      - path: cam1
  - user: cam
    pass: argon2:nothash
hls: yes
rtspTransports: [tcp, quic]
pathDefaults:
  source: publisher
rtspAdress: :8554
";
        let err = from_yaml(text).err().unwrap();
        let text = err.to_string();
        let expected = [
            "streamplane.yml:3:5: paths.bad name: invalid path name",
            "streamplane.yml:4:7: paths.~(: invalid regular expression '('",
            "streamplane.yml:6:13: paths.cam1.source: expected publisher or a URL",
            "streamplane.yml:8:17: paths.cam1.maxReaders: expected a whole number",
            "streamplane.yml:9:21: paths.cam1.publisherGrace: expected a duration",
            "streamplane.yml:10:5: paths.cam1.recrd: unknown key; did you mean \"record\"?",
            "streamplane.yml:12:13: paths.all_others: all is configured too",
            "streamplane.yml:15:11: authInternalUsers[0].pass: must be empty for user any",
            "authInternalUsers[1].user: required",
            "streamplane.yml:18:11: authInternalUsers[2].pass: sha256: hashes are not supported yet",
            "streamplane.yml:19:10: authInternalUsers[2].ips: '10.0.0.0/33' has an invalid prefix",
            "streamplane.yml:21:17: authInternalUsers[2].permissions[0].action: unknown action 'stream'",
            "streamplane.yml:23:15: authInternalUsers[2].permissions[1].path: api permissions take no path",
            "authInternalUsers[2].permissions[2].action: required",
            "streamplane.yml:25:11: authInternalUsers[3].user: \"cam\" is already defined in authInternalUsers[2]",
            "streamplane.yml:26:11: authInternalUsers[3].pass: argon2: must be followed by a PHC string",
            "streamplane.yml:27:6: hls: not supported yet",
            "streamplane.yml:28:17: rtspTransports: expected udp or multicast or tcp, got \"quic\"",
            "pathDefaults: not supported yet",
            "streamplane.yml:31:1: rtspAdress: unknown key; did you mean \"rtspAddress\"?",
        ];
        for line in expected {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        assert!(!text.contains("s3cret"), "{text}");
        assert_eq!(err.problems.len(), expected.len(), "{text}");

        let err = from_yaml("paths:\n  cam1:\n    sourceOnDemand: yes\n")
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("streamplane.yml:3:21: paths.cam1.sourceOnDemand: has no effect"),
            "{err}"
        );
    }

    #[test]
    fn paths_and_users_are_refused_with_a_control_plane() {
        let err = from_yaml("controlPlaneUrl: http://cp:1\nenrollmentToken: t\npaths:\n  cam1:\n")
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("streamplane.yml:4:3: paths: not used when controlPlaneUrl is set"),
            "{err}"
        );
    }
}
