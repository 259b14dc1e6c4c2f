//! Domain vocabulary shared by the store, the REST API and the gRPC service, with the
//! validation rules for names a user can write.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// API role. Higher roles include the lower ones: admin > operator > viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

/// Where a path's media comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Publisher,
    Url,
}

/// What an ACL rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AclAction {
    Publish,
    Read,
    Playback,
    Api,
    Metrics,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WorkerStatus {
    Online,
    Offline,
}

macro_rules! string_enum {
    ($t:ty, $what:literal, { $($variant:ident => $s:literal),* $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $s),* }
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok(Self::$variant),)*
                    _ => Err(format!(concat!("unknown ", $what, " {:?}; expected one of: {}"), s, [$($s),*].join(", "))),
                }
            }
        }
    };
}

string_enum!(Role, "role", { Viewer => "viewer", Operator => "operator", Admin => "admin" });
string_enum!(SourceKind, "source kind", { Publisher => "publisher", Url => "url" });
string_enum!(AclAction, "action", {
    Publish => "publish", Read => "read", Playback => "playback", Api => "api", Metrics => "metrics",
});
string_enum!(WorkerStatus, "status", { Online => "online", Offline => "offline" });

pub const USERNAME_MAX: usize = 64;
pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 256;

pub fn validate_username(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > USERNAME_MAX {
        return Err(format!("must be 1 to {USERNAME_MAX} characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@')))
    {
        return Err(format!("contains {c:?}; allowed: letters, digits, _ - . @"));
    }
    Ok(())
}

pub fn validate_password(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < PASSWORD_MIN {
        return Err(format!("must be at least {PASSWORD_MIN} characters"));
    }
    if n > PASSWORD_MAX {
        return Err(format!("must be at most {PASSWORD_MAX} characters"));
    }
    Ok(())
}

/// A path name or `~regex` pattern as stored; MediaMTX naming rules.
pub fn validate_path_pattern(name: &str) -> Result<(), String> {
    streamplane_media_core::path::PathPattern::from_str(name)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Schemes a worker can pull from, now or in a later release.
const SOURCE_SCHEMES: &[&str] = &[
    "rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "srt", "udp", "whep", "wheps",
];

pub fn validate_source_url(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("must be an absolute URL such as rtsp://camera.local:554/stream".into());
    };
    let scheme = scheme.to_ascii_lowercase();
    if !SOURCE_SCHEMES.contains(&scheme.as_str()) {
        return Err(format!(
            "unsupported scheme {scheme:?}; expected one of: {}",
            SOURCE_SCHEMES.join(", ")
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err("has no host".into());
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or control characters".into());
    }
    if url.len() > 2048 {
        return Err("is longer than 2048 characters".into());
    }
    Ok(())
}

/// A CIDR network (`10.0.0.0/8`) or a single address, returned in canonical form.
pub fn parse_network(text: &str) -> Result<ipnetwork::IpNetwork, String> {
    let net: ipnetwork::IpNetwork = if text.contains('/') {
        text.parse()
            .map_err(|_| format!("{text:?} is not a network like 10.0.0.0/8 or 2001:db8::/32"))?
    } else {
        let ip: std::net::IpAddr = text
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or network"))?;
        ipnetwork::IpNetwork::from(ip)
    };
    // Postgres `cidr` rejects host bits; normalise instead of failing.
    ipnetwork::IpNetwork::new(net.network(), net.prefix()).map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_order_by_power() {
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Viewer);
        assert_eq!("admin".parse::<Role>(), Ok(Role::Admin));
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn usernames() {
        assert!(validate_username("cam-01@site.a").is_ok());
        assert!(validate_username("").is_err());
        assert!(validate_username("a b").is_err());
        assert!(validate_username(&"x".repeat(65)).is_err());
    }

    #[test]
    fn source_urls() {
        assert!(validate_source_url("rtsp://user:pw@10.0.0.5:554/stream1").is_ok());
        assert!(validate_source_url("file:///etc/passwd").is_err());
        assert!(validate_source_url("rtsp://").is_err());
        assert!(validate_source_url("camera").is_err());
        assert!(validate_source_url("rtsp://a b/").is_err());
    }

    #[test]
    fn networks() {
        assert_eq!(
            parse_network("10.1.2.3/8").map(|n| n.to_string()),
            Ok("10.0.0.0/8".into())
        );
        assert_eq!(
            parse_network("::1").map(|n| n.to_string()),
            Ok("::1/128".into())
        );
        assert!(parse_network("10.0.0.0/33").is_err());
        assert!(parse_network("example.com").is_err());
    }
}

/// MediaMTX's catch-all path names, tried after every other pattern.
pub const CATCH_ALL_NAMES: [&str; 2] = ["all_others", "all"];

/// Which configured path a concrete name (as workers report it) falls under, by the order
/// workers use: exact name, then regexes in byte order, then the catch-all.
#[derive(Debug, Default)]
pub struct PathResolver {
    rules: streamplane_media_core::PathRules<String>,
    catch_all: Option<String>,
}

impl PathResolver {
    /// Builds from stored names; a name that does not parse is skipped (it never reaches a
    /// worker either).
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut catch_all = None;
        let mut entries = Vec::new();
        for name in names {
            if CATCH_ALL_NAMES.contains(&name) {
                catch_all.get_or_insert_with(|| name.to_owned());
            } else if let Ok(pattern) = streamplane_media_core::path::PathPattern::from_str(name) {
                entries.push((pattern, name.to_owned()));
            }
        }
        let rules = streamplane_media_core::PathRules::new(entries).unwrap_or_default();
        PathResolver { rules, catch_all }
    }

    /// The configured name (exact, `~regex` or catch-all) that `name` resolves to.
    pub fn resolve(&self, name: &str) -> Option<&str> {
        let parsed = name.parse::<streamplane_media_core::PathName>().ok()?;
        match self.rules.find(&parsed) {
            Some((_, configured)) => Some(configured),
            None => self.catch_all.as_deref(),
        }
    }
}

#[cfg(test)]
mod resolver_tests {
    use super::PathResolver;

    #[test]
    fn names_resolve_in_worker_order() {
        let r = PathResolver::new(["cam1", "~^cam[0-9]+$", "~^c.*x$", "all_others"]);
        assert_eq!(r.resolve("cam1"), Some("cam1"));
        assert_eq!(r.resolve("cam2"), Some("~^cam[0-9]+$"));
        // Both regexes match; the first in byte order of the source wins ('.' < 'a').
        assert_eq!(r.resolve("cam9x"), Some("~^c.*x$"));
        assert_eq!(r.resolve("other"), Some("all_others"));
        assert_eq!(r.resolve("bad name"), None);
        let none = PathResolver::new(["cam1"]);
        assert_eq!(none.resolve("cam2"), None);
    }
}
