//! The worker's configuration: defaults, then the YAML file, then `STREAMPLANE_*` variables,
//! validated into [`Config`] before anything binds a socket.
//!
//! | key                   | variable                                  | default        |
//! |-----------------------|-------------------------------------------|----------------|
//! | `name`                | `STREAMPLANE_NAME`, `STREAMPLANE_WORKER_NAME` | the hostname |
//! | `controlPlaneUrl`     | `STREAMPLANE_CONTROL_PLANE_URL`           | none: standalone mode |
//! | `enrollmentToken`     | `STREAMPLANE_ENROLLMENT_TOKEN`            | required with `controlPlaneUrl` |
//! | `advertisedAddresses` | `STREAMPLANE_ADVERTISED_ADDRESSES` (a,b)  | none           |
//! | `labels`              | `STREAMPLANE_LABELS` (`k=v,k2=v2`)        | none           |
//! | `metricsAddress`      | `STREAMPLANE_METRICS_ADDRESS`, `MTX_METRICSADDRESS` | `:9998` |
//! | `rtspAddress`         | `STREAMPLANE_RTSP_ADDRESS`, `MTX_RTSPADDRESS` | `:8554`      |
//! | `rtpAddress`          | `STREAMPLANE_RTP_ADDRESS`, `MTX_RTPADDRESS` | `:8000`        |
//! | `rtcpAddress`         | `STREAMPLANE_RTCP_ADDRESS`, `MTX_RTCPADDRESS` | `:8001`      |
//! | `logLevel`            | `STREAMPLANE_LOG_LEVEL`, `MTX_LOGLEVEL`   | `info`         |
//! | `logFormat`           | `STREAMPLANE_LOG_FORMAT`                  | `text`         |
//! | `reconnectBackoffMax` | `STREAMPLANE_RECONNECT_BACKOFF_MAX`       | `5s`           |
//! | `rtspAuthMethods`     | `STREAMPLANE_RTSP_AUTH_METHODS`, `MTX_RTSPAUTHMETHODS` (a,b) | `[basic]` |
//! | `readTimeout`         | `STREAMPLANE_READ_TIMEOUT`, `MTX_READTIMEOUT` | `10s`        |
//!
//! `rtspAuthMethods` (`basic`, `digest` or both; MediaMTX's old name `authMethods` works too)
//! is what RTSP clients are offered in both modes. In managed mode the control plane's HA1
//! values (users with `rtsp_digest`) are used only where it includes `digest`: ffmpeg and
//! GStreamer always pick Digest when offered, so users without an HA1 then need a token.
//!
//! `labels` is a list of `key=value` strings (`labels: [region=eu-west, rack=r12]`), so the same
//! text works in the file and in the variable; a value therefore cannot contain a comma when set
//! through the environment. `RUST_LOG`, when set, replaces `logLevel` with a full tracing filter.
//!
//! Standalone mode also reads `paths`, `authInternalUsers` and MediaMTX's other top-level keys:
//! see `standalone`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use streamplane_config::{ConfigError, FromConfig, Loader, Secret, Section};
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::Uri;
use tracing_subscriber::EnvFilter;

use crate::state::{DesiredState, RtspAuthMethods};

pub const DEFAULT_METRICS_ADDRESS: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 9998);
pub const DEFAULT_RTSP_ADDRESS: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8554);
pub const DEFAULT_RTP_ADDRESS: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8000);
pub const DEFAULT_RTCP_ADDRESS: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8001);
pub const DEFAULT_RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// The first reconnection delay; `reconnectBackoffMax` may not be shorter.
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// MediaMTX's `readTimeout` default: a UDP publisher silent this long is closed.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A validated worker configuration. `Debug` is safe to log: the token prints as `***`.
#[derive(Debug, Clone)]
pub struct Config {
    /// How the control plane knows this worker; unique per deployment.
    pub name: String,
    /// `None` is standalone mode: no control plane, a built-in desired state.
    pub control_plane: Option<ControlPlaneConfig>,
    /// URLs clients use to reach this worker, e.g. `rtsp://10.0.0.5:8554`.
    pub advertised_addresses: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub metrics_address: SocketAddr,
    /// RTSP over TCP (interleaved RTP).
    pub rtsp_address: SocketAddr,
    /// RTP over UDP (server side of every UDP session); RTCP on `rtcp_address`, usually the
    /// next port.
    pub rtp_address: SocketAddr,
    pub rtcp_address: SocketAddr,
    /// A tracing filter directive: `RUST_LOG` when set, else `logLevel`.
    pub log_filter: String,
    pub log_format: LogFormat,
    pub reconnect_backoff_max: Duration,
    /// RTSP authentication schemes offered to clients, in both modes.
    pub rtsp_auth: RtspAuthMethods,
    /// A UDP publisher that sends no packet for this long is closed (MediaMTX `readTimeout`).
    pub read_timeout: Duration,
    /// What standalone mode serves: `paths` and `authInternalUsers` (see `standalone`), or the
    /// built-in defaults. Unused with a control plane.
    pub standalone: DesiredState,
}

#[derive(Debug, Clone)]
pub struct ControlPlaneConfig {
    pub url: Uri,
    pub enrollment_token: EnrollmentToken,
}

/// Whether the worker follows a control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Managed,
    Standalone,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Managed => "managed",
            Mode::Standalone => "standalone",
        }
    }
}

impl Config {
    pub fn mode(&self) -> Mode {
        match self.control_plane {
            Some(_) => Mode::Managed,
            None => Mode::Standalone,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl FromConfig for LogFormat {
    fn from_text(text: &str) -> Result<Self, String> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("expected text or json, got {text:?}")),
        }
    }
}

/// `logLevel`, with MediaMTX's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

impl FromConfig for LogLevel {
    fn from_text(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "error" => Ok(LogLevel::Error),
            "warn" | "warning" => Ok(LogLevel::Warn),
            "info" => Ok(LogLevel::Info),
            "debug" => Ok(LogLevel::Debug),
            "trace" => Ok(LogLevel::Trace),
            _ => Err(format!(
                "expected error, warn, info, debug or trace, got {text:?}"
            )),
        }
    }
}

/// `rtspAuthMethods`: a list of `basic` and `digest`, at least one (`basic,digest` from the
/// environment).
impl FromConfig for RtspAuthMethods {
    fn from_text(text: &str) -> Result<Self, String> {
        let names: Vec<String> = FromConfig::from_text(text)?;
        auth_methods(&names)
    }

    fn from_list(items: Vec<String>) -> Option<Result<Self, String>> {
        Some(auth_methods(&items))
    }
}

fn auth_methods(names: &[String]) -> Result<RtspAuthMethods, String> {
    let mut methods = RtspAuthMethods {
        basic: false,
        digest: false,
    };
    for name in names {
        match name.trim() {
            "basic" => methods.basic = true,
            "digest" => methods.digest = true,
            other => return Err(format!("expected basic or digest, got {other:?}")),
        }
    }
    if !methods.basic && !methods.digest {
        return Err("offer at least one method: basic, digest or both".into());
    }
    Ok(methods)
}

/// `rtspAuthMethods`, or MediaMTX's old name `authMethods` (not both).
fn read_rtsp_auth(root: &Section<'_>) -> RtspAuthMethods {
    let current = root.get_with_env("rtspAuthMethods", &["MTX_RTSPAUTHMETHODS"]);
    let old = root.get("authMethods");
    match (current, old) {
        (Some(_), Some(_)) => {
            root.problem(
                "authMethods",
                "the old name of rtspAuthMethods, which is set too; keep rtspAuthMethods",
            );
            RtspAuthMethods::BASIC
        }
        (Some(methods), None) | (None, Some(methods)) => methods,
        (None, None) => RtspAuthMethods::BASIC,
    }
}

/// The enrollment token, kept as the ready `authorization: Bearer …` header value.
/// `Debug` prints `***`.
#[derive(Clone)]
pub struct EnrollmentToken {
    header: AsciiMetadataValue,
}

/// The token cannot be sent as a gRPC header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the enrollment token must be non-empty printable ASCII without spaces")]
pub struct InvalidEnrollmentToken;

impl EnrollmentToken {
    pub fn new(token: &Secret) -> Result<Self, InvalidEnrollmentToken> {
        let token = token.expose();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidEnrollmentToken);
        }
        let mut header: AsciiMetadataValue = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| InvalidEnrollmentToken)?;
        // Keeps the value out of tonic's and hyper's own Debug output.
        header.set_sensitive(true);
        Ok(EnrollmentToken { header })
    }

    /// The `authorization` metadata value; attach it to requests, never log it.
    pub fn authorization(&self) -> &AsciiMetadataValue {
        &self.header
    }
}

impl fmt::Debug for EnrollmentToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A validated configuration and the `STREAMPLANE_*` variables nothing used (likely typos).
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub unused_env: Vec<String>,
}

/// Loads `file` (or only defaults and `env` when `None`). `hostname` is the default `name`.
pub fn load(
    file: Option<&Path>,
    env: Vec<(String, String)>,
    hostname: Option<String>,
) -> Result<Loaded, ConfigError> {
    let rust_log = rust_log(&env);
    let loader = match file {
        Some(path) => Loader::from_file(path, env)?,
        None => Loader::without_file(env),
    };
    finish(loader, hostname, rust_log)
}

/// Like [`load`], from `text` as if read from `path` (used in messages).
pub fn load_text(
    path: &Path,
    text: &str,
    env: Vec<(String, String)>,
    hostname: Option<String>,
) -> Result<Loaded, ConfigError> {
    let rust_log = rust_log(&env);
    let loader = Loader::from_text(path, text, env)?;
    finish(loader, hostname, rust_log)
}

fn rust_log(env: &[(String, String)]) -> Option<String> {
    env.iter()
        .find(|(k, v)| k == "RUST_LOG" && !v.trim().is_empty())
        .map(|(_, v)| v.clone())
}

fn finish(
    loader: Loader,
    hostname: Option<String>,
    rust_log: Option<String>,
) -> Result<Loaded, ConfigError> {
    let config = read(&loader, hostname, rust_log);
    let unused_env = loader.finish()?;
    match config {
        Some(config) => Ok(Loaded { config, unused_env }),
        // `read` returns `None` only after recording a problem, which `finish` returned above.
        None => Err(ConfigError::single(
            None,
            "(config)",
            "invalid configuration",
        )),
    }
}

/// Reads and validates every key, recording every problem; `None` when there was one.
fn read(loader: &Loader, hostname: Option<String>, rust_log: Option<String>) -> Option<Config> {
    let root = loader.root();
    let mut ok = true;

    let name = match root.get_with_env::<String>("name", &["STREAMPLANE_WORKER_NAME"]) {
        Some(name) => {
            if let Err(msg) = validate_name(&name) {
                root.problem("name", msg);
                ok = false;
            }
            Some(name)
        }
        None if root.is_set("name") => None,
        None => match hostname.filter(|h| validate_name(h).is_ok()) {
            Some(h) => Some(h),
            None => {
                loader.problem("name", "not set, and the hostname is unknown; set name");
                None
            }
        },
    };

    let url = root.get::<String>("controlPlaneUrl").and_then(|text| {
        parse_control_plane_url(&text)
            .map_err(|msg| root.problem("controlPlaneUrl", msg))
            .ok()
    });
    let token = root.get::<Secret>("enrollmentToken").and_then(|secret| {
        EnrollmentToken::new(&secret)
            .map_err(|e| root.problem("enrollmentToken", e.to_string()))
            .ok()
    });
    let control_plane = match (
        root.is_set("controlPlaneUrl"),
        root.is_set("enrollmentToken"),
    ) {
        (false, false) => None,
        (false, true) => {
            // Silently falling back to standalone mode would let anyone publish.
            root.problem(
                "enrollmentToken",
                "set, but controlPlaneUrl is not; set controlPlaneUrl too, \
                 or remove enrollmentToken to run standalone",
            );
            ok = false;
            None
        }
        (true, false) => {
            // The key is absent, so there is no position to point at.
            loader.problem(
                "enrollmentToken",
                "required when controlPlaneUrl is set; \
                 set enrollmentToken or STREAMPLANE_ENROLLMENT_TOKEN",
            );
            ok = false;
            None
        }
        (true, true) => match (url, token) {
            (Some(url), Some(enrollment_token)) => Some(ControlPlaneConfig {
                url,
                enrollment_token,
            }),
            _ => None,
        },
    };
    ok &= root.is_set("controlPlaneUrl") == control_plane.is_some();

    let advertised_addresses: Vec<String> = root.get_or("advertisedAddresses", Vec::new());
    for address in &advertised_addresses {
        if let Err(msg) = validate_advertised_address(address) {
            root.problem("advertisedAddresses", msg);
            ok = false;
        }
    }

    let labels = root.get_or("labels", Labels::default()).0;
    let metrics_address = root
        .get_with_env("metricsAddress", &["MTX_METRICSADDRESS"])
        .unwrap_or(DEFAULT_METRICS_ADDRESS);
    let rtsp_address = root
        .get_with_env("rtspAddress", &["MTX_RTSPADDRESS"])
        .unwrap_or(DEFAULT_RTSP_ADDRESS);
    let rtp_address = root
        .get_with_env("rtpAddress", &["MTX_RTPADDRESS"])
        .unwrap_or(DEFAULT_RTP_ADDRESS);
    let rtcp_address = root
        .get_with_env("rtcpAddress", &["MTX_RTCPADDRESS"])
        .unwrap_or(DEFAULT_RTCP_ADDRESS);
    let log_level = root
        .get_with_env("logLevel", &["MTX_LOGLEVEL"])
        .unwrap_or(LogLevel::Info);
    let log_format = root.get_or("logFormat", LogFormat::Text);
    let reconnect_backoff_max = root.get_or("reconnectBackoffMax", DEFAULT_RECONNECT_BACKOFF_MAX);
    if reconnect_backoff_max < RECONNECT_BACKOFF_MIN {
        root.problem(
            "reconnectBackoffMax",
            format!(
                "must be at least {}ms, the first reconnection delay",
                RECONNECT_BACKOFF_MIN.as_millis()
            ),
        );
        ok = false;
    }

    let read_timeout = root
        .get_with_env("readTimeout", &["MTX_READTIMEOUT"])
        .unwrap_or(DEFAULT_READ_TIMEOUT);
    if read_timeout.is_zero() {
        root.problem("readTimeout", "must be more than 0s");
        ok = false;
    }

    let log_filter = match rust_log {
        Some(filter) => match EnvFilter::try_new(&filter) {
            Ok(_) => filter,
            Err(e) => {
                loader.problem("RUST_LOG", format!("invalid tracing filter: {e}"));
                ok = false;
                filter
            }
        },
        None => log_level.as_str().to_string(),
    };

    let rtsp_auth = read_rtsp_auth(&root);
    let standalone = crate::standalone::read(&root, control_plane.is_some(), rtsp_auth);
    crate::standalone::read_mediamtx_keys(&root);
    root.finish();
    Some(Config {
        name: name?,
        control_plane,
        advertised_addresses,
        labels,
        metrics_address,
        rtsp_address,
        rtp_address,
        rtcp_address,
        log_filter,
        log_format,
        reconnect_backoff_max,
        rtsp_auth,
        read_timeout,
        standalone,
    })
    .filter(|_| ok)
}

fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err("must be 1 to 253 characters long".into());
    }
    if !name.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!(
            "must be printable ASCII without spaces, got {name:?}"
        ));
    }
    Ok(())
}

fn parse_control_plane_url(text: &str) -> Result<Uri, String> {
    let bad = || format!("expected a URL like http://127.0.0.1:50051, got {text:?}");
    let uri: Uri = text.parse().map_err(|_| bad())?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(
                "https is not supported yet; use http:// (e.g. behind a TLS-terminating proxy)"
                    .into(),
            );
        }
        _ => return Err(bad()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad());
    }
    Ok(uri)
}

fn validate_advertised_address(text: &str) -> Result<(), String> {
    let bad = || format!("expected a URL like rtsp://10.0.0.5:8554, got {text:?}");
    let uri: Uri = text.parse().map_err(|_| bad())?;
    if uri.scheme().is_none() || uri.host().is_none_or(str::is_empty) {
        return Err(bad());
    }
    Ok(())
}

/// `key=value` items; keys are letters, digits, `.`, `_`, `-` and `/`, each at most once.
#[derive(Debug, Default)]
struct Labels(BTreeMap<String, String>);

impl Labels {
    fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut labels = BTreeMap::new();
        for item in items {
            let Some((key, value)) = item.split_once('=') else {
                return Err(format!("expected key=value, got {item:?}"));
            };
            let key = key.trim();
            let valid_key = !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
            if !valid_key {
                return Err(format!(
                    "label key {key:?} must be letters, digits, '.', '_', '-' or '/'"
                ));
            }
            if labels
                .insert(key.to_string(), value.trim().to_string())
                .is_some()
            {
                return Err(format!("label {key:?} is set twice"));
            }
        }
        Ok(Labels(labels))
    }
}

impl FromConfig for Labels {
    fn from_text(text: &str) -> Result<Self, String> {
        Labels::parse(text.split(',').map(str::trim).filter(|s| !s.is_empty()))
    }

    fn from_list(items: Vec<String>) -> Option<Result<Self, String>> {
        Some(Labels::parse(items.iter().map(String::as_str)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use streamplane_config::EXIT_INVALID_CONFIG;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn from_yaml(text: &str, vars: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
        load_text(
            Path::new("worker.yml"),
            text,
            env(vars),
            Some("host-1".into()),
        )
    }

    #[test]
    fn defaults_are_standalone() {
        let loaded = load(None, Vec::new(), Some("host-1".into())).unwrap();
        let c = loaded.config;
        assert_eq!(c.name, "host-1");
        assert_eq!(c.mode(), Mode::Standalone);
        assert_eq!(c.metrics_address, "0.0.0.0:9998".parse().unwrap());
        assert_eq!(c.rtsp_address, "0.0.0.0:8554".parse().unwrap());
        assert_eq!(c.log_filter, "info");
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.reconnect_backoff_max, Duration::from_secs(5));
        assert!(c.labels.is_empty() && c.advertised_addresses.is_empty());
    }

    #[test]
    fn file_then_environment() {
        let text = "\
name: edge-1
controlPlaneUrl: http://cp.internal:50051
enrollmentToken: from-file
advertisedAddresses: [rtsp://10.0.0.5:8554]
labels: [region=eu-west, rack=r12]
metricsAddress: 127.0.0.1:9000
rtspAddress: 127.0.0.1:9001
logFormat: json
reconnectBackoffMax: 30s
";
        let loaded = from_yaml(
            text,
            &[
                ("STREAMPLANE_ENROLLMENT_TOKEN", "s3cret"),
                ("MTX_LOGLEVEL", "debug"),
                ("STREAMPLANE_LABELS", "region=us, zone=b"),
                ("STREAMPLANE_TYPO", "1"),
                ("MTX_RTSPADDRESS", "127.0.0.1:8555"),
            ],
        )
        .unwrap();
        let c = loaded.config;
        assert_eq!(c.name, "edge-1");
        assert_eq!(c.mode(), Mode::Managed);
        let cp = c.control_plane.as_ref().unwrap();
        assert_eq!(cp.url.to_string(), "http://cp.internal:50051/");
        assert_eq!(cp.enrollment_token.authorization(), "Bearer s3cret");
        assert_eq!(c.advertised_addresses, ["rtsp://10.0.0.5:8554"]);
        assert_eq!(
            c.labels.into_iter().collect::<Vec<_>>(),
            [("region".into(), "us".into()), ("zone".into(), "b".into())]
        );
        assert_eq!(c.metrics_address, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(c.rtsp_address, "127.0.0.1:8555".parse().unwrap());
        assert_eq!(c.log_filter, "debug");
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.reconnect_backoff_max, Duration::from_secs(30));
        assert_eq!(loaded.unused_env, ["STREAMPLANE_TYPO"]);
    }

    #[test]
    fn worker_name_variable_is_an_alias() {
        let loaded = from_yaml("", &[("STREAMPLANE_WORKER_NAME", "edge-7")]).unwrap();
        assert_eq!(loaded.config.name, "edge-7");
        assert!(loaded.unused_env.is_empty(), "{:?}", loaded.unused_env);
    }

    #[test]
    fn rust_log_replaces_log_level() {
        let loaded = from_yaml("logLevel: warn\n", &[("RUST_LOG", "streamplane=trace")]).unwrap();
        assert_eq!(loaded.config.log_filter, "streamplane=trace");
    }

    #[test]
    fn read_timeout_is_a_positive_duration() {
        let c = from_yaml("", &[]).unwrap().config;
        assert_eq!(c.read_timeout, Duration::from_secs(10));
        let c = from_yaml("readTimeout: 2s\n", &[]).unwrap().config;
        assert_eq!(c.read_timeout, Duration::from_secs(2));
        let c = from_yaml(
            "readTimeout: 2s\n",
            &[("STREAMPLANE_READ_TIMEOUT", "500ms")],
        )
        .unwrap()
        .config;
        assert_eq!(c.read_timeout, Duration::from_millis(500));
        let c = from_yaml("", &[("MTX_READTIMEOUT", "3s")]).unwrap().config;
        assert_eq!(c.read_timeout, Duration::from_secs(3));
        let text = from_yaml("readTimeout: 0s\n", &[])
            .err()
            .unwrap()
            .to_string();
        assert!(
            text.contains("worker.yml:1:14: readTimeout: must be more than 0s"),
            "{text}"
        );
    }

    #[test]
    fn every_problem_is_listed() {
        let text = "\
name: has space
controlPlaneUrl: https://cp:50051
advertisedAddresses: [nowhere]
labels: [novalue]
metricsAddress: somewhere
logLevel: loud
logFormat: xml
reconnectBackoffMax: 10ms
metricAddress: :1
";
        let err = from_yaml(text, &[]).err().unwrap();
        let text = err.to_string();
        let expected = [
            "worker.yml:1:7: name: must be printable ASCII",
            "worker.yml:2:18: controlPlaneUrl: https is not supported yet",
            "\n  - enrollmentToken: required when controlPlaneUrl is set",
            "worker.yml:3:22: advertisedAddresses: expected a URL like rtsp://",
            "worker.yml:4:9: labels: expected key=value",
            "worker.yml:5:17: metricsAddress: expected an address",
            "worker.yml:6:11: logLevel: expected error, warn",
            "worker.yml:7:12: logFormat: expected text or json",
            "worker.yml:8:22: reconnectBackoffMax: must be at least 100ms",
            "worker.yml:9:1: metricAddress: unknown key; did you mean \"metricsAddress\"?",
        ];
        for line in expected {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        assert_eq!(err.problems.len(), expected.len(), "{text}");
    }

    #[test]
    fn token_without_url_is_a_problem_and_never_printed() {
        let err = from_yaml("", &[("STREAMPLANE_ENROLLMENT_TOKEN", "hunter2")])
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(
            text.contains(
                "environment variable STREAMPLANE_ENROLLMENT_TOKEN: enrollmentToken: set, but controlPlaneUrl is not"
            ),
            "{text}"
        );
        assert!(!text.contains("hunter2"));

        let err = from_yaml(
            "controlPlaneUrl: http://cp:1\nenrollmentToken: \"a b\"\n",
            &[],
        )
        .err()
        .unwrap();
        assert!(!err.to_string().contains("a b"), "{err}");
        assert_eq!(err.problems.len(), 1, "{err}");
    }

    #[test]
    fn debug_output_hides_the_token() {
        let loaded = from_yaml(
            "controlPlaneUrl: http://cp:1\nenrollmentToken: hunter2\n",
            &[],
        )
        .unwrap();
        let debug = format!("{:?}", loaded.config);
        assert!(
            debug.contains("***") && !debug.contains("hunter2"),
            "{debug}"
        );
    }

    #[test]
    fn labels_are_checked() {
        assert!(Labels::from_text("a=1,a=2").is_err());
        assert!(Labels::from_text("bad key=1").is_err());
        let labels = Labels::from_text("topology.kubernetes.io/zone=eu-1a, empty=").unwrap();
        assert_eq!(labels.0["topology.kubernetes.io/zone"], "eu-1a");
        assert_eq!(labels.0["empty"], "");
    }

    #[test]
    fn unknown_hostname_needs_a_name() {
        let err = load(None, Vec::new(), None).err().unwrap();
        assert!(err.to_string().contains("\n  - name: not set"), "{err}");
        assert_eq!(EXIT_INVALID_CONFIG, 64);
    }
}
