//! Control-plane configuration: YAML file, then `STREAMPLANE_*` variables, validated into
//! [`Config`] before anything binds a socket.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use streamplane_config::{ConfigError, Loader, Secret};

use crate::domain::{validate_password, validate_username};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub api_address: SocketAddr,
    pub grpc_address: SocketAddr,
    pub database_url: Secret,
    pub enrollment_token: Secret,
    pub admin_username: String,
    /// First admin's password on an empty database; random (and printed once) when absent.
    pub admin_password: Option<Secret>,
    pub token_lifetime: Duration,
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
    pub max_body_bytes: usize,
    pub log_level: String,
    pub log_format: LogFormat,
}

pub const MIN_ENROLLMENT_TOKEN_LEN: usize = 16;

impl Config {
    /// Loads from an optional file and the given environment; every problem is reported at once.
    /// Returns the config and the `STREAMPLANE_*` variables nothing used (likely typos).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let loader = match file {
            Some(path) => Loader::from_file(path, env)?,
            None => Loader::without_file(env),
        };
        let root = loader.root();
        let api_address = root.get_or("apiAddress", SocketAddr::from(([0, 0, 0, 0], 9997)));
        let grpc_address = root.get_or("grpcAddress", SocketAddr::from(([0, 0, 0, 0], 50051)));
        let database_url: Option<Secret> = root.get_with_env("databaseUrl", &["DATABASE_URL"]);
        let enrollment_token: Option<Secret> = root.get("enrollmentToken");
        let admin_username: String = root.get_or("adminUsername", "admin".to_string());
        let admin_password: Option<Secret> = root.get("adminPassword");
        let token_lifetime = root.get_or("tokenLifetime", Duration::from_secs(3600));
        let heartbeat_interval = root.get_or("heartbeatInterval", Duration::from_secs(2));
        let heartbeat_timeout = root.get_or("heartbeatTimeout", Duration::from_secs(10));
        let max_body_bytes: usize = root.get_or("maxBodySize", 64 * 1024);
        let log_level: String = root.get_or("logLevel", "info".to_string());
        let log_format: String = root.get_or("logFormat", "text".to_string());

        if database_url.is_none() && !root.is_set("databaseUrl") {
            root.problem(
                "databaseUrl",
                "required: set databaseUrl in the file, or STREAMPLANE_DATABASE_URL / DATABASE_URL (postgres://user@host:5432/db)",
            );
        }
        if let Some(url) = &database_url
            && !(url.expose().starts_with("postgres://")
                || url.expose().starts_with("postgresql://"))
        {
            root.problem("databaseUrl", "must be a postgres:// or postgresql:// URL");
        }
        match &enrollment_token {
            None if !root.is_set("enrollmentToken") => root.problem(
                "enrollmentToken",
                "required: workers present it to register; set enrollmentToken or STREAMPLANE_ENROLLMENT_TOKEN to a random string of 16+ characters",
            ),
            Some(t) if t.expose().len() < MIN_ENROLLMENT_TOKEN_LEN => root.problem(
                "enrollmentToken",
                format!("must be at least {MIN_ENROLLMENT_TOKEN_LEN} characters"),
            ),
            _ => {}
        }
        if let Err(m) = validate_username(&admin_username) {
            root.problem("adminUsername", m);
        }
        if let Some(Err(m)) = admin_password
            .as_ref()
            .map(|p| validate_password(p.expose()))
        {
            root.problem("adminPassword", m);
        }
        if token_lifetime < Duration::from_secs(60)
            || token_lifetime > Duration::from_secs(30 * 86400)
        {
            root.problem("tokenLifetime", "must be from 1m to 720h");
        }
        if heartbeat_interval < Duration::from_millis(50)
            || heartbeat_interval > Duration::from_secs(60)
        {
            root.problem("heartbeatInterval", "must be from 50ms to 60s");
        }
        if heartbeat_timeout <= heartbeat_interval {
            root.problem(
                "heartbeatTimeout",
                "must be longer than heartbeatInterval (3x or more is sensible)",
            );
        }
        if !(1024..=16 * 1024 * 1024).contains(&max_body_bytes) {
            root.problem("maxBodySize", "must be from 1024 to 16777216 bytes");
        }
        let log_format = match log_format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                root.problem("logFormat", format!("expected text or json, got {other:?}"));
                LogFormat::Text
            }
        };
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            root.problem(
                "logLevel",
                format!("{log_level:?} is not a level (error, warn, info, debug, trace) or filter"),
            );
        }
        root.finish();
        let unused = loader.finish()?;
        let (Some(database_url), Some(enrollment_token)) = (database_url, enrollment_token) else {
            // Unreachable in practice: a missing value recorded a problem above.
            return Err(ConfigError::single(None, "databaseUrl", "required"));
        };
        Ok((
            Config {
                api_address,
                grpc_address,
                database_url,
                enrollment_token,
                admin_username,
                admin_password,
                token_lifetime,
                heartbeat_interval,
                heartbeat_timeout,
                max_body_bytes,
                log_level,
                log_format,
            },
            unused,
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_with_required_values_from_env() {
        let (c, unused) = Config::load(
            None,
            env(&[
                ("DATABASE_URL", "postgres://u@127.0.0.1:5/db"),
                ("STREAMPLANE_ENROLLMENT_TOKEN", "0123456789abcdef"),
            ]),
        )
        .unwrap();
        assert_eq!(c.api_address.port(), 9997);
        assert_eq!(c.grpc_address.port(), 50051);
        assert_eq!(c.admin_username, "admin");
        assert!(unused.is_empty());
        assert!(
            !format!("{c:?}").contains("0123456789abcdef"),
            "secrets never reach Debug"
        );
    }

    #[test]
    fn every_problem_at_once() {
        let dir = std::env::temp_dir().join(format!("sp-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("control.yml");
        std::fs::write(&file, "apiAddress: nope\nheartbeatInterval: 5s\nheartbeatTimeout: 1s\nlogFormat: xml\nbogus: 1\n").unwrap();
        let err = Config::load(Some(&file), env(&[])).unwrap_err();
        let text = err.to_string();
        for needle in [
            "control.yml:1:13: apiAddress",
            "databaseUrl: required",
            "enrollmentToken: required",
            "control.yml:3:19: heartbeatTimeout",
            "control.yml:4:12: logFormat",
            "control.yml:5:1: bogus: unknown key",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
