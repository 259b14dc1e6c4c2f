//! docker-compose.yml stays consistent with the binaries' configuration contract, without needing Docker:
//! the services exist, start in the right order, use only variables the binaries know, and point at each other.

use std::collections::{BTreeMap, BTreeSet};

use saphyr::{LoadableYamlNode, YamlOwned};
use streamplane_testkit::repo_root;

/// Every `STREAMPLANE_*` variable the control plane and the worker document. A new one goes here when a binary
/// learns it, not before: a typo in docker-compose.yml would otherwise be silently ignored.
const KNOWN_VARIABLES: &[&str] = &[
    // control plane
    "STREAMPLANE_DATABASE_URL",
    "STREAMPLANE_API_ADDRESS",
    "STREAMPLANE_GRPC_ADDRESS",
    "STREAMPLANE_ENROLLMENT_TOKEN",
    "STREAMPLANE_ADMIN_PASSWORD",
    "STREAMPLANE_HEARTBEAT_INTERVAL",
    // both
    "STREAMPLANE_LOG_FORMAT",
    "STREAMPLANE_LOG_LEVEL",
    // worker
    "STREAMPLANE_CONTROL_PLANE_URL",
    "STREAMPLANE_WORKER_NAME",
    "STREAMPLANE_METRICS_ADDRESS",
    "STREAMPLANE_RTSP_ADDRESS",
];

fn compose_text() -> String {
    let path = repo_root().join("docker-compose.yml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn compose() -> YamlOwned {
    let text = compose_text();
    let mut docs =
        YamlOwned::load_from_str(&text).unwrap_or_else(|e| panic!("docker-compose.yml: {e}"));
    assert_eq!(
        docs.len(),
        1,
        "docker-compose.yml must hold exactly one YAML document"
    );
    docs.remove(0)
}

fn services(doc: &YamlOwned) -> BTreeMap<String, &YamlOwned> {
    doc.as_mapping_get("services")
        .and_then(YamlOwned::as_mapping)
        .expect("docker-compose.yml has a services mapping")
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().expect("service names are strings").to_string(),
                v,
            )
        })
        .collect()
}

/// A scalar as text (compose accepts numbers and booleans where it means strings).
fn text(node: &YamlOwned) -> Option<String> {
    if let Some(s) = node.as_str() {
        return Some(s.to_string());
    }
    if let Some(i) = node.as_integer() {
        return Some(i.to_string());
    }
    node.as_bool().map(|b| b.to_string())
}

/// A service's environment in either compose form (`KEY: value` or `- KEY=value`); `None` for a variable passed
/// through from the shell.
fn environment(service: &YamlOwned) -> BTreeMap<String, Option<String>> {
    let Some(env) = service.as_mapping_get("environment") else {
        return BTreeMap::new();
    };
    if let Some(map) = env.as_mapping() {
        map.iter()
            .map(|(k, v)| (text(k).expect("variable names are strings"), text(v)))
            .collect()
    } else if let Some(list) = env.as_sequence() {
        list.iter()
            .map(|item| {
                let item = text(item).expect("environment entries are strings");
                match item.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (item, None),
                }
            })
            .collect()
    } else {
        panic!("environment must be a mapping or a list");
    }
}

/// The services a service depends on, in either compose form.
fn depends_on(service: &YamlOwned) -> BTreeSet<String> {
    let Some(deps) = service.as_mapping_get("depends_on") else {
        return BTreeSet::new();
    };
    if let Some(map) = deps.as_mapping() {
        map.keys().filter_map(text).collect()
    } else {
        deps.as_sequence()
            .expect("depends_on is a mapping or a list")
            .iter()
            .filter_map(text)
            .collect()
    }
}

fn dependency_condition(service: &YamlOwned, on: &str) -> Option<String> {
    service
        .as_mapping_get("depends_on")?
        .as_mapping_get(on)?
        .as_mapping_get("condition")
        .and_then(text)
}

/// `host:port` of a URL such as `postgres://user:pw@host:5432/db` or `http://control:50051`.
fn url_host_port(url: &str) -> (String, Option<u16>) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    match host_port.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().ok()),
        None => (host_port.to_string(), None),
    }
}

#[test]
fn the_four_services_exist() {
    let doc = compose();
    let services = services(&doc);
    for name in ["postgres", "control", "worker-1", "worker-2"] {
        assert!(
            services.contains_key(name),
            "service {name} missing; have {:?}",
            services.keys()
        );
    }
}

#[test]
fn services_start_in_dependency_order() {
    let doc = compose();
    let services = services(&doc);
    assert!(
        services["postgres"].as_mapping_get("healthcheck").is_some(),
        "postgres needs a healthcheck"
    );
    assert!(
        depends_on(services["control"]).contains("postgres"),
        "control must depend on postgres"
    );
    assert_eq!(
        dependency_condition(services["control"], "postgres").as_deref(),
        Some("service_healthy")
    );
    for worker in ["worker-1", "worker-2"] {
        assert!(
            depends_on(services[worker]).contains("control"),
            "{worker} must depend on control"
        );
    }
}

#[test]
fn only_known_streamplane_variables_are_used() {
    let doc = compose();
    let mut unknown = BTreeSet::new();
    for (name, service) in services(&doc) {
        for var in environment(service).keys() {
            if var.starts_with("STREAMPLANE_") && !KNOWN_VARIABLES.contains(&var.as_str()) {
                unknown.insert(format!("{name}: {var}"));
            }
        }
    }
    // Interpolations (${STREAMPLANE_X:-default}) anywhere in the file, comments excluded.
    let text = compose_text();
    for line in text
        .lines()
        .map(|l| l.split(" #").next().unwrap_or_default())
    {
        for part in line.split("${").skip(1) {
            let var: String = part
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if var.starts_with("STREAMPLANE_") && !KNOWN_VARIABLES.contains(&var.as_str()) {
                unknown.insert(format!("interpolation: {var}"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "unknown STREAMPLANE_* variables (typos, or add them to KNOWN_VARIABLES): {unknown:?}"
    );
}

#[test]
fn control_uses_the_postgres_service() {
    let doc = compose();
    let services = services(&doc);
    let env = environment(services["control"]);
    let url = env
        .get("STREAMPLANE_DATABASE_URL")
        .or_else(|| env.get("DATABASE_URL"))
        .cloned()
        .flatten()
        .expect("control sets STREAMPLANE_DATABASE_URL");
    assert!(
        url.starts_with("postgres://") || url.starts_with("postgresql://"),
        "{url}"
    );
    let (host, port) = url_host_port(&url);
    assert_eq!(
        host, "postgres",
        "control's database URL must point at the postgres service: {url}"
    );
    assert_eq!(port.unwrap_or(5432), 5432, "{url}");
    let pg = environment(services["postgres"]);
    let user = pg
        .get("POSTGRES_USER")
        .cloned()
        .flatten()
        .unwrap_or_else(|| "postgres".into());
    let db = pg
        .get("POSTGRES_DB")
        .cloned()
        .flatten()
        .unwrap_or_else(|| user.clone());
    assert!(
        url.contains(&format!("://{user}")),
        "URL user must be POSTGRES_USER ({user}): {url}"
    );
    assert!(
        url.ends_with(&format!("/{db}")),
        "URL database must be POSTGRES_DB ({db}): {url}"
    );
}

#[test]
fn workers_enroll_with_the_control_plane() {
    let doc = compose();
    let services = services(&doc);
    let control = environment(services["control"]);
    let grpc_port = control
        .get("STREAMPLANE_GRPC_ADDRESS")
        .cloned()
        .flatten()
        .and_then(|a| a.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()))
        .unwrap_or(50051);
    let token = control
        .get("STREAMPLANE_ENROLLMENT_TOKEN")
        .cloned()
        .flatten();
    assert!(
        token.is_some(),
        "control needs STREAMPLANE_ENROLLMENT_TOKEN"
    );
    let mut names = BTreeSet::new();
    for worker in ["worker-1", "worker-2"] {
        let env = environment(services[worker]);
        let url = env
            .get("STREAMPLANE_CONTROL_PLANE_URL")
            .cloned()
            .flatten()
            .expect("a control-plane URL");
        assert_eq!(
            url_host_port(&url),
            ("control".to_string(), Some(grpc_port)),
            "{worker}: {url}"
        );
        assert_eq!(
            env.get("STREAMPLANE_ENROLLMENT_TOKEN").cloned().flatten(),
            token,
            "{worker}'s token"
        );
        let name = env
            .get("STREAMPLANE_WORKER_NAME")
            .cloned()
            .flatten()
            .expect("a worker name");
        assert!(names.insert(name.clone()), "worker name {name} used twice");
    }
}

#[test]
fn no_host_port_is_published_twice() {
    let doc = compose();
    let mut seen = BTreeMap::new();
    for (name, service) in services(&doc) {
        let Some(ports) = service
            .as_mapping_get("ports")
            .and_then(YamlOwned::as_sequence)
        else {
            continue;
        };
        for port in ports {
            let spec = text(port).expect("ports are written as \"HOST:CONTAINER[/udp]\" strings");
            let (mapping, proto) = spec.split_once('/').unwrap_or((spec.as_str(), "tcp"));
            let host = mapping.rsplit(':').nth(1).unwrap_or(mapping);
            if let Some(other) = seen.insert(format!("{host}/{proto}"), name.clone()) {
                panic!("host port {host}/{proto} is published by both {other} and {name}");
            }
        }
    }
    assert!(
        seen.contains_key("9997/tcp") && seen.contains_key("50051/tcp"),
        "control publishes 9997 and 50051"
    );
    assert!(
        seen.contains_key("8554/tcp") && seen.contains_key("9998/tcp"),
        "worker-1 publishes 8554 and 9998"
    );
}

#[test]
fn the_image_has_the_commands_the_services_run() {
    let doc = compose();
    let dockerfile =
        std::fs::read_to_string(repo_root().join("Dockerfile")).expect("read Dockerfile");
    for (name, service) in services(&doc) {
        if service.as_mapping_get("build").is_none() {
            continue;
        }
        let command = service
            .as_mapping_get("command")
            .and_then(|c| c.as_sequence_get(0).and_then(text).or_else(|| text(c)))
            .unwrap_or_else(|| "streamplane-control".into());
        let binary = command
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        assert!(
            binary.starts_with("streamplane-")
                && dockerfile.contains(&format!("target/release/{binary}")),
            "{name} runs {binary}, which the Dockerfile does not install"
        );
    }
}

#[test]
fn url_parsing() {
    assert_eq!(
        url_host_port("postgres://u:p@postgres:5432/db"),
        ("postgres".into(), Some(5432))
    );
    assert_eq!(
        url_host_port("http://control:50051"),
        ("control".into(), Some(50051))
    );
    assert_eq!(
        url_host_port("postgres://u@db/x?sslmode=disable"),
        ("db".into(), None)
    );
}
