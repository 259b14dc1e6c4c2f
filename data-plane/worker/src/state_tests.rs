#![allow(clippy::unwrap_used)]

use std::net::IpAddr;

use streamplane_media_core::{PathName, Principal, allowed};

use super::*;

fn path(name: &str) -> pb::PathConfig {
    pb::PathConfig {
        id: format!("id-{name}"),
        name: name.into(),
        source_kind: pb::SourceKind::Publisher.into(),
        ..Default::default()
    }
}

fn snapshot(generation: u64, paths: Vec<pb::PathConfig>) -> pb::DesiredState {
    pb::DesiredState {
        generation,
        paths,
        ..Default::default()
    }
}

fn full_snapshot() -> pb::DesiredState {
    pb::DesiredState {
        generation: 4,
        created_at: Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        paths: vec![
            path("cam1"),
            pb::PathConfig {
                id: "p2".into(),
                name: "~^relay/(.+)$".into(),
                source_kind: pb::SourceKind::Url.into(),
                source_url: "rtsp://10.0.0.9:8554/$G1".into(),
                source_on_demand: true,
                source_on_demand_start_timeout_ms: 10_000,
                source_on_demand_close_after_ms: 5_000,
                max_readers: 3,
                publisher_grace_ms: 250,
                ..Default::default()
            },
        ],
        users: vec![pb::User {
            id: "u1".into(),
            username: "alice".into(),
            password_hash: "$argon2id$v=19$...".into(),
            role: pb::UserRole::Operator.into(),
            disabled: false,
            digest_ha1: Some(vec![9; 16]),
        }],
        acl_rules: vec![
            pb::AclRule {
                id: "r1".into(),
                user_id: "u1".into(),
                action: pb::AclAction::Publish.into(),
                path_pattern: "cam1".into(),
                ip_networks: vec!["10.0.0.0/8".into()],
            },
            pb::AclRule {
                id: "r2".into(),
                action: pb::AclAction::Read.into(),
                ..Default::default()
            },
        ],
        jwt_public_keys: vec![pb::JwtPublicKey {
            kid: "k1".into(),
            algorithm: "EdDSA".into(),
            public_key: vec![7; 32],
        }],
        kicked_session_ids: vec!["0123456789abcdef".into()],
    }
}

#[test]
fn converts_a_full_snapshot() {
    let s = DesiredState::try_from(full_snapshot()).unwrap();
    assert_eq!(s.generation, 4);
    assert_eq!(s.created_at.unwrap().timestamp(), 1_700_000_000);
    assert!(s.kicked_sessions.contains("0123456789abcdef"));
    assert_eq!(s.paths.len(), 2);
    let (_, relay) = s.paths.find(&"relay/a".parse().unwrap()).unwrap();
    assert_eq!(
        relay.source,
        Source::Url {
            url: "rtsp://10.0.0.9:8554/$G1".into(),
            on_demand: Some(OnDemand {
                start_timeout: Duration::from_secs(10),
                close_after: Duration::from_secs(5),
            }),
        }
    );
    assert_eq!(relay.max_readers, NonZeroU32::new(3));
    assert_eq!(relay.publisher_grace, Duration::from_millis(250));
    let (_, cam) = s.paths.find(&"cam1".parse().unwrap()).unwrap();
    assert_eq!(cam.source, Source::Publisher);
    assert_eq!(cam.max_readers, None, "0 means unlimited");
    assert_eq!(s.users[0].role, Some(UserRole::Operator));
    assert!(!format!("{:?}", s.users[0]).contains("argon2"));
    assert_eq!(
        s.users[0].digest_ha1.as_ref().map(DigestHa1::expose),
        Some(&[9; 16])
    );
    assert!(!format!("{:?}", s.users[0]).contains("9, 9"));
    // A user with HA1 does not turn Digest on: that is the worker's `rtspAuthMethods`.
    assert_eq!(s.rtsp_auth, RtspAuthMethods::BASIC);
    assert_eq!(s.acl.len(), 2);
    assert_eq!(s.acl[0].user, Some(UserId::new("u1")));
    assert_eq!(s.acl[1].path, None, "empty pattern matches every path");
    assert_eq!(s.jwt_keys[0].ed25519, [7; 32]);
}

#[test]
fn names_the_bad_entry() {
    type Break = fn(&mut pb::DesiredState);
    let cases: Vec<(Break, &str)> = vec![
        (
            |s| s.paths[0].name = "~(".into(),
            "path \"~(\" (id \"id-cam1\"): invalid regular expression '('",
        ),
        (
            |s| s.paths.push(path("cam1")),
            "paths: path pattern 'cam1' is configured more than once",
        ),
        (
            |s| s.paths[0].source_kind = 0,
            "path \"cam1\": unknown source_kind 0",
        ),
        (
            |s| s.paths[1].source_url = "10.0.0.9/x".into(),
            "path \"~^relay/(.+)$\": source_url \"10.0.0.9/x\" is not a URL",
        ),
        (|s| s.users[0].role = 42, "user \"u1\": unknown role 42"),
        (
            |s| s.users[0].digest_ha1 = Some(vec![1; 15]),
            "user \"u1\": digest_ha1 must be 16 bytes, got 15",
        ),
        (
            |s| s.users.push(s.users[0].clone()),
            "user \"u1\": id or username \"alice\" is used twice",
        ),
        (
            |s| s.acl_rules[1].action = 0,
            "acl rule \"r2\": unknown action 0",
        ),
        (
            |s| s.acl_rules[0].path_pattern = "a//b".into(),
            "acl rule \"r1\": path_pattern: path name contains an empty segment",
        ),
        (
            |s| s.acl_rules[0].ip_networks.push("10.0.0.0/33".into()),
            "acl rule \"r1\": ip_networks: '10.0.0.0/33' has an invalid prefix length",
        ),
        (
            |s| s.acl_rules[0].user_id = "ghost".into(),
            "acl rule \"r1\": names unknown user \"ghost\"",
        ),
        (
            |s| s.jwt_public_keys[0].algorithm = "RS256".into(),
            "jwt key \"k1\": algorithm \"RS256\" is not supported",
        ),
        (
            |s| {
                s.jwt_public_keys[0].public_key.pop();
            },
            "jwt key \"k1\": expected a 32-byte Ed25519 key, got 31 bytes",
        ),
        (
            |s| {
                s.created_at = Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: -1,
                })
            },
            "created_at 0s -1ns is not a valid time",
        ),
    ];
    for (break_it, expected) in cases {
        let mut s = full_snapshot();
        break_it(&mut s);
        let err = DesiredState::try_from(s).unwrap_err().to_string();
        assert!(
            err.starts_with(expected),
            "{err:?} should start with {expected:?}"
        );
    }
}

#[test]
fn applies_only_newer_generations() {
    let mut t = Tracker::default();
    assert!(matches!(t.offer(snapshot(5, vec![path("a")])), Offer::Apply(s) if s.generation == 5));
    assert!(matches!(
        t.offer(snapshot(3, vec![])),
        Offer::Stale {
            current: 5,
            incoming: 3
        }
    ));
    assert!(
        matches!(t.offer(snapshot(5, vec![])), Offer::Stale { .. }),
        "a duplicate is stale"
    );
    assert!(
        matches!(t.offer(snapshot(0, vec![])), Offer::Stale { .. }),
        "generation 0 never wins"
    );
    assert_eq!(t.generation(), 5);
    assert!(matches!(t.offer(snapshot(7, vec![])), Offer::Apply(_)));
    assert_eq!(t.generation(), 7);
}

#[test]
fn an_invalid_snapshot_keeps_the_previous_one_and_is_reported() {
    let mut t = Tracker::new(5, RtspAuthMethods::BASIC);
    let offer = t.offer(snapshot(6, vec![path("~(")]));
    assert!(
        matches!(offer, Offer::Invalid { generation: 6, .. }),
        "{offer:?}"
    );
    assert_eq!(t.generation(), 5);
    let err = t.apply_error().unwrap();
    assert!(err.starts_with("generation 6: path \"~(\""), "{err}");
    // The same bad generation is refused again, an older one is stale, a newer good one heals.
    assert!(matches!(
        t.offer(snapshot(6, vec![path("~(")])),
        Offer::Invalid { .. }
    ));
    assert!(matches!(t.offer(snapshot(4, vec![])), Offer::Stale { .. }));
    assert!(t.apply_error().is_some());
    assert!(matches!(
        t.offer(snapshot(8, vec![path("a")])),
        Offer::Apply(_)
    ));
    assert_eq!((t.generation(), t.apply_error()), (8, None));
}

#[test]
fn standalone_default_lets_anyone_publish_and_read_anything() {
    let s = DesiredState::standalone_default();
    assert_eq!(s.generation, 0);
    let name: PathName = "any/path".parse().unwrap();
    let (_, config) = s.paths.find(&name).unwrap();
    assert_eq!(config.source, Source::Publisher);
    let remote: IpAddr = "203.0.113.9".parse().unwrap();
    let local: IpAddr = "127.0.0.1".parse().unwrap();
    let anon = Principal::Anonymous;
    assert!(allowed(&s.acl, &anon, Action::Publish, Some(&name), remote));
    assert!(allowed(&s.acl, &anon, Action::Read, Some(&name), remote));
    assert!(!allowed(&s.acl, &anon, Action::Api, None, remote));
    assert!(allowed(&s.acl, &anon, Action::Metrics, None, local));
    let empty = DesiredState::empty();
    assert!(empty.paths.is_empty() && empty.acl.is_empty());
}

#[test]
fn all_others_is_tried_after_every_regex() {
    let s = DesiredState::try_from(snapshot(
        3,
        vec![path("all_others"), path("~^cam(\\d+)$"), path("live")],
    ))
    .unwrap();
    let find = |n: &str| {
        let name = PathName::parse(n.to_string()).unwrap();
        s.find_path(&name).map(|c| c.id.clone())
    };
    assert_eq!(find("cam1").as_deref(), Some("id-~^cam(\\d+)$"));
    assert_eq!(find("live").as_deref(), Some("id-live"));
    assert_eq!(find("other").as_deref(), Some("id-all_others"));
    assert!(matches!(
        DesiredState::try_from(snapshot(4, vec![path("all"), path("all_others")])),
        Err(InvalidDesiredState::TwoCatchAlls)
    ));
}

#[test]
fn every_applied_snapshot_offers_the_workers_rtsp_auth_methods() {
    let both = RtspAuthMethods {
        basic: true,
        digest: true,
    };
    let mut t = Tracker::new(0, both);
    assert_eq!(t.rtsp_auth(), both);
    let Offer::Apply(s) = t.offer(full_snapshot()) else {
        panic!("a valid newer snapshot is applied")
    };
    assert_eq!(s.rtsp_auth, both);
    // Also once no user has an HA1 any more.
    let mut without = full_snapshot();
    without.generation = 9;
    without.users[0].digest_ha1 = None;
    let Offer::Apply(s) = t.offer(without) else {
        panic!("a valid newer snapshot is applied")
    };
    assert_eq!(s.rtsp_auth, both);

    // The default is Basic only, whatever the users have.
    let mut t = Tracker::default();
    let Offer::Apply(s) = t.offer(full_snapshot()) else {
        panic!("a valid newer snapshot is applied")
    };
    assert!(s.users[0].digest_ha1.is_some());
    assert_eq!(s.rtsp_auth, RtspAuthMethods::BASIC);
    assert_eq!(RtspAuthMethods::default(), RtspAuthMethods::BASIC);
    assert_eq!(both.to_string(), "basic,digest");
    assert_eq!(RtspAuthMethods::BASIC.to_string(), "basic");
}
