//! Store rows → protobuf, and protobuf reports → JSON for the REST API. Protobuf stays here.

use prost_types::Timestamp;
use streamplane_proto::v1 as pb;

use crate::domain::{AclAction, Role, SourceKind};
use crate::store::Snapshot;

pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn ms(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

pub fn snapshot_to_proto(s: &Snapshot) -> pb::DesiredState {
    pb::DesiredState {
        generation: s.generation,
        created_at: Some(timestamp(chrono::Utc::now())),
        paths: s
            .paths
            .iter()
            .map(|p| pb::PathConfig {
                id: p.id.to_string(),
                name: p.name.clone(),
                source_kind: match p.source_kind() {
                    SourceKind::Publisher => pb::SourceKind::Publisher,
                    SourceKind::Url => pb::SourceKind::Url,
                } as i32,
                source_url: p.source_url.clone().unwrap_or_default(),
                source_on_demand: p.source_on_demand,
                source_on_demand_start_timeout_ms: ms(p.source_on_demand_start_timeout_ms),
                source_on_demand_close_after_ms: ms(p.source_on_demand_close_after_ms),
                max_readers: ms(p.max_readers),
                override_publisher: p.override_publisher,
                record: p.record,
                publisher_grace_ms: ms(p.publisher_grace_ms),
            })
            .collect(),
        users: s
            .users
            .iter()
            .map(|u| pb::User {
                id: u.id.to_string(),
                username: u.username.clone(),
                password_hash: u.password_hash.clone(),
                role: match u.role() {
                    Some(Role::Admin) => pb::UserRole::Admin,
                    Some(Role::Operator) => pb::UserRole::Operator,
                    Some(Role::Viewer) => pb::UserRole::Viewer,
                    None => pb::UserRole::Unspecified,
                } as i32,
                disabled: u.disabled,
                digest_ha1: u.digest_ha1.as_ref().map(|h| h.expose().to_vec()),
            })
            .collect(),
        acl_rules: s
            .acls
            .iter()
            .map(|a| pb::AclRule {
                id: a.id.to_string(),
                user_id: a.user_id.map(|u| u.to_string()).unwrap_or_default(),
                action: match a.action() {
                    AclAction::Publish => pb::AclAction::Publish,
                    AclAction::Read => pb::AclAction::Read,
                    AclAction::Playback => pb::AclAction::Playback,
                    AclAction::Api => pb::AclAction::Api,
                    AclAction::Metrics => pb::AclAction::Metrics,
                } as i32,
                path_pattern: a.path_pattern.clone(),
                ip_networks: a.ip_networks.iter().map(ToString::to_string).collect(),
            })
            .collect(),
        jwt_public_keys: s
            .keys
            .iter()
            .map(|k| pb::JwtPublicKey {
                kid: k.kid.clone(),
                algorithm: k.algorithm.clone(),
                public_key: k.public_key.clone(),
            })
            .collect(),
        kicked_session_ids: s.kicked_session_ids.clone(),
    }
}

fn counters_json(c: Option<&pb::Counters>) -> serde_json::Value {
    let c = c.cloned().unwrap_or_default();
    serde_json::json!({
        "bytes_received": c.bytes_received,
        "bytes_sent": c.bytes_sent,
        "packets_received": c.packets_received,
        "packets_sent": c.packets_sent,
        "packets_lost": c.packets_lost,
        "frames_dropped": c.frames_dropped,
    })
}

fn time_json(t: Option<&Timestamp>) -> serde_json::Value {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
        .map(|t| serde_json::Value::String(t.to_rfc3339()))
        .unwrap_or(serde_json::Value::Null)
}

pub fn report_to_json(r: &pb::WorkerReport) -> serde_json::Value {
    serde_json::json!({
        "applied_generation": r.applied_generation,
        "sent_at": time_json(r.sent_at.as_ref()),
        "totals": counters_json(r.totals.as_ref()),
        "paths": r.paths.iter().map(|p| serde_json::json!({
            "name": p.name,
            "ready": p.ready,
            "counters": counters_json(p.counters.as_ref()),
            "sessions": p.sessions.iter().map(|s| serde_json::json!({
                "id": s.id,
                "role": match pb::SessionRole::try_from(s.role) {
                    Ok(pb::SessionRole::Publisher) => "publisher",
                    Ok(pb::SessionRole::Reader) => "reader",
                    _ => "unknown",
                },
                "protocol": s.protocol,
                "remote_address": s.remote_address,
                "username": s.username,
                "transport": s.transport,
                "started_at": time_json(s.started_at.as_ref()),
                "counters": counters_json(s.counters.as_ref()),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}
