#![allow(clippy::unwrap_used)]
use std::net::IpAddr;
use std::path::Path;

use streamplane_config::ConfigError;
use streamplane_media_core::{PathName, Principal, allowed};

use super::*;
use crate::config::{Config, load, load_text};
use crate::state::RtspAuthMethods;

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
    let can = |who, action, path: &str, from| allowed(&s.acl, who, action, Some(&name(path)), from);
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

const DIGEST_USERS: &str = "\
authInternalUsers:
  - user: cam
    pass: s3cret
    permissions:
      - action: publish
  - user: admin
    pass: argon2:$argon2id$v=19$m=4096,t=3,p=1$MTIzNDU2Nzg$OGGO0eCMN0ievb4YGSzvS/H+Vajx1pcbUmtLp2tRqRU
";

#[test]
fn rtsp_auth_methods_choose_the_schemes_and_digest_keeps_ha1() {
    // Default, like MediaMTX: Basic only, and no HA1 kept.
    let c = from_yaml(DIGEST_USERS).unwrap();
    assert_eq!(c.standalone.rtsp_auth, RtspAuthMethods::BASIC);
    assert!(c.standalone.users.iter().all(|u| u.digest_ha1.is_none()));

    let both = format!("{DIGEST_USERS}rtspAuthMethods: [digest, basic]\n");
    let c = from_yaml(&both).unwrap();
    let s = &c.standalone;
    assert_eq!(
        s.rtsp_auth,
        RtspAuthMethods {
            basic: true,
            digest: true
        }
    );
    // HA1 = MD5("cam:streamplane:s3cret"), computed independently with md5sum.
    assert_eq!(
        s.users[0].digest_ha1.as_ref().map(|h| hex(h.expose())),
        Some("3c5958d53be0ef5e987a751329a81c41".to_owned())
    );
    assert_eq!(s.users[1].digest_ha1, None, "argon2 users cannot do Digest");
    assert!(!format!("{c:?}").contains("s3cret"));

    // The old MediaMTX name works too.
    let c = from_yaml("authMethods: [digest]\n").unwrap();
    assert_eq!(
        c.standalone.rtsp_auth,
        RtspAuthMethods {
            basic: false,
            digest: true
        }
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn rtsp_auth_method_problems_are_located() {
    let problems = |text: &str| from_yaml(text).err().unwrap().to_string();

    let text = problems("rtspAuthMethods: [digest, ntlm]\n");
    assert!(
        text.contains(
            "streamplane.yml:1:18: rtspAuthMethods: expected basic or digest, got \"ntlm\""
        ),
        "{text}"
    );
    let text = problems("rtspAuthMethods: []\n");
    assert!(
        text.contains("rtspAuthMethods: offer at least one method"),
        "{text}"
    );
    // Digest only, and a user given as a hash: it could never log in.
    let text = problems(&format!("{DIGEST_USERS}rtspAuthMethods: [digest]\n"));
    assert!(
        text.contains(
            "streamplane.yml:7:11: authInternalUsers[1].pass: a hashed password cannot answer \
             Digest, the only method in rtspAuthMethods; give \"admin\" a plaintext pass or add \
             basic to rtspAuthMethods"
        ),
        "{text}"
    );
    assert!(!text.contains("authInternalUsers[0]"), "{text}");
    let text = problems("rtspAuthMethods: [digest]\nauthMethods: [basic]\n");
    assert!(
        text.contains("authMethods: the old name of rtspAuthMethods"),
        "{text}"
    );
}

fn from_env(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    load_text(
        Path::new("streamplane.yml"),
        text,
        env.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        Some("host-1".into()),
    )
    .map(|l| l.config)
}

const MANAGED: &str = "controlPlaneUrl: http://cp:1\nenrollmentToken: t\n";

#[test]
fn rtsp_auth_methods_apply_in_managed_mode_too() {
    let both = RtspAuthMethods {
        basic: true,
        digest: true,
    };
    // Default: Basic only, whatever HA1 values the control plane sends.
    assert_eq!(
        from_yaml(MANAGED).unwrap().rtsp_auth,
        RtspAuthMethods::BASIC
    );
    let c = from_yaml(&format!("{MANAGED}rtspAuthMethods: [basic, digest]\n")).unwrap();
    assert_eq!(c.rtsp_auth, both);
    let c = from_yaml(&format!("{MANAGED}rtspAuthMethods: [digest]\n")).unwrap();
    assert_eq!(
        c.rtsp_auth,
        RtspAuthMethods {
            basic: false,
            digest: true
        }
    );
    // Standalone mode serves the same setting.
    let c = from_yaml("rtspAuthMethods: [basic, digest]\n").unwrap();
    assert_eq!((c.rtsp_auth, c.standalone.rtsp_auth), (both, both));

    // From the environment, as a comma-separated list; ours before MediaMTX's name.
    for var in ["STREAMPLANE_RTSP_AUTH_METHODS", "MTX_RTSPAUTHMETHODS"] {
        let c = from_env(MANAGED, &[(var, "basic,digest")]).unwrap();
        assert_eq!(c.rtsp_auth, both, "{var}");
    }
    let c = from_env(
        "rtspAuthMethods: [basic]\n",
        &[
            ("STREAMPLANE_RTSP_AUTH_METHODS", "digest"),
            ("MTX_RTSPAUTHMETHODS", "basic"),
        ],
    )
    .unwrap();
    assert_eq!(
        c.rtsp_auth,
        RtspAuthMethods {
            basic: false,
            digest: true
        }
    );
    let err = from_env(MANAGED, &[("MTX_RTSPAUTHMETHODS", "basic,ntlm")])
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("MTX_RTSPAUTHMETHODS")
            && err.contains("rtspAuthMethods: expected basic or digest, got \"ntlm\""),
        "{err}"
    );
    let err = from_env(MANAGED, &[("STREAMPLANE_RTSP_AUTH_METHODS", "")])
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("STREAMPLANE_RTSP_AUTH_METHODS") && err.contains("offer at least one method"),
        "{err}"
    );
}
