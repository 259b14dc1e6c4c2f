//! Media access decisions: may this principal, from this address, do this action (on this path)?
//!
//! Allow-list only, like MediaMTX's `authInternalUsers`: access is granted when at least one rule
//! matches, so an empty rule set denies everything. Authentication (checking a password or a
//! token) happens before, in the worker; this module only sees its outcome, a [`Principal`].

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net};

use crate::path::{PathName, PathPattern};

/// What a client wants to do. Names are MediaMTX's (minus `pprof`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Publish,
    Read,
    Playback,
    Api,
    Metrics,
}

/// A string that is not one of [`Action::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown action '{value}'; expected publish, read, playback, api or metrics")]
pub struct InvalidAction {
    pub value: String,
}

impl Action {
    pub const ALL: [Self; 5] = [
        Self::Publish,
        Self::Read,
        Self::Playback,
        Self::Api,
        Self::Metrics,
    ];

    /// The lowercase name used in configuration, the database and the protobuf contract.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Read => "read",
            Self::Playback => "playback",
            Self::Api => "api",
            Self::Metrics => "metrics",
        }
    }

    /// Whether requests for this action name a path. For `api` and `metrics` they do not, so a
    /// rule for those actions should carry no path (one that does never matches).
    pub const fn takes_path(self) -> bool {
        matches!(self, Self::Publish | Self::Read | Self::Playback)
    }
}

impl FromStr for Action {
    type Err = InvalidAction;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| InvalidAction {
                value: s.to_owned(),
            })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The control plane's id of a user (a UUID there; opaque here).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

impl UserId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who is asking, after authentication.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// No credentials were given (or none were required).
    Anonymous,
    /// Credentials were verified for this user.
    User { id: UserId },
}

impl Principal {
    pub fn user_id(&self) -> Option<&UserId> {
        match self {
            Self::Anonymous => None,
            Self::User { id } => Some(id),
        }
    }
}

/// One permission: `user` may do `action` on `path` from `networks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclRule {
    /// `None`: applies to everyone, authenticated or not (MediaMTX's `user: any`).
    pub user: Option<UserId>,
    pub action: Action,
    /// `None`: every path. `Some`: only requests naming a path it matches, which excludes the
    /// path-less `api` and `metrics` requests (MediaMTX ignores the path there; we fail closed).
    pub path: Option<PathPattern>,
    /// Empty: any address. Otherwise the client address must be inside one of them.
    pub networks: Vec<IpNet>,
}

impl AclRule {
    /// Whether this rule grants the request.
    pub fn matches(
        &self,
        who: &Principal,
        action: Action,
        path: Option<&PathName>,
        ip: IpAddr,
    ) -> bool {
        let user_ok = match &self.user {
            None => true,
            Some(user) => who.user_id() == Some(user),
        };
        let path_ok = match (&self.path, path) {
            (None, _) => true,
            (Some(pattern), Some(name)) => pattern.is_match(name),
            (Some(_), None) => false,
        };
        let ip = ip.to_canonical();
        let network_ok = self.networks.is_empty()
            || self
                .networks
                .iter()
                .any(|net| canonical_network(*net).contains(&ip));
        user_ok && self.action == action && path_ok && network_ok
    }
}

/// Whether any rule grants `who` the right to do `action` on `path` from `ip`.
///
/// `path` is `None` for `api` and `metrics`. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, as
/// seen on dual-stack sockets) are compared as the IPv4 address they carry.
pub fn allowed(
    rules: &[AclRule],
    who: &Principal,
    action: Action,
    path: Option<&PathName>,
    ip: IpAddr,
) -> bool {
    rules.iter().any(|r| r.matches(who, action, path, ip))
}

/// Why a string is not an IP network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidNetwork {
    #[error(
        "IP network is empty; expected an address such as 10.0.0.7 or a network such as 10.0.0.0/8"
    )]
    Empty,
    #[error("'{input}' is not a valid IP address; expected e.g. 10.0.0.7, 10.0.0.0/8 or fd00::/8")]
    Address { input: String },
    #[error("'{input}' has an invalid prefix length; expected a number from 0 to {max}")]
    PrefixLength { input: String, max: u8 },
}

/// Parses `10.0.0.0/8`, `fd00::/8`, or a bare address (`10.0.0.7` → `/32`, `::1` → `/128`).
///
/// Like MediaMTX (Go's `net.ParseCIDR`), host bits are cleared (`10.1.2.3/8` → `10.0.0.0/8`)
/// and IPv4-mapped networks become IPv4 ones (`::ffff:10.0.0.0/104` → `10.0.0.0/8`; Postgres
/// `cidr` values can come back in that form).
pub fn parse_network(input: &str) -> Result<IpNet, InvalidNetwork> {
    if input.is_empty() {
        return Err(InvalidNetwork::Empty);
    }
    let (addr, prefix) = match input.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (input, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| InvalidNetwork::Address {
        input: input.to_owned(),
    })?;
    let max = match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    let bad_prefix = || InvalidNetwork::PrefixLength {
        input: input.to_owned(),
        max,
    };
    let prefix = match prefix {
        None => max,
        // Digits only: `u8::from_str` would also take "+8".
        Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
            p.parse::<u8>().map_err(|_| bad_prefix())?
        }
        Some(_) => return Err(bad_prefix()),
    };
    let net = IpNet::new(addr, prefix).map_err(|_| bad_prefix())?;
    Ok(canonical_network(net.trunc()))
}

/// Turns `::ffff:a.b.c.d/96+n` into `a.b.c.d/n`, so that it can contain canonical (IPv4) client
/// addresses. Other networks are returned unchanged.
fn canonical_network(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4),
            None => net,
        },
        _ => net,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        parse_network(s).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn user(id: &str) -> Principal {
        Principal::User {
            id: UserId::new(id),
        }
    }

    fn rule(user: Option<&str>, action: Action, path: Option<&str>, nets: &[&str]) -> AclRule {
        AclRule {
            user: user.map(UserId::new),
            action,
            path: path.map(|p| p.parse().unwrap()),
            networks: nets.iter().map(|n| net(n)).collect(),
        }
    }

    #[test]
    fn action_names_round_trip() {
        for a in Action::ALL {
            assert_eq!(a.as_str().parse::<Action>(), Ok(a));
            assert_eq!(a.to_string(), a.as_str());
        }
        for bad in ["", "Publish", "pprof", "read "] {
            assert_eq!(
                bad.parse::<Action>(),
                Err(InvalidAction {
                    value: bad.to_owned()
                })
            );
        }
        assert!(Action::Read.takes_path() && !Action::Api.takes_path());
    }

    #[test]
    fn parses_networks() {
        let cases = [
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("10.1.2.3/8", "10.0.0.0/8"),
            ("192.168.1.7", "192.168.1.7/32"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("::1", "::1/128"),
            ("fd00::/8", "fd00::/8"),
            ("fd12:3456::1/16", "fd12::/16"),
            ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
            ("::ffff:10.1.2.3", "10.1.2.3/32"),
            ("::ffff:0:0/96", "0.0.0.0/0"),
            ("::/0", "::/0"),
            ("10.0.0.0/008", "10.0.0.0/8"),
        ];
        for (input, expected) in cases {
            assert_eq!(net(input).to_string(), expected, "{input}");
        }
    }

    #[test]
    fn rejects_bad_networks_clearly() {
        use InvalidNetwork::*;
        let address = |s: &str| Address {
            input: s.to_owned(),
        };
        let prefix = |s: &str, max| PrefixLength {
            input: s.to_owned(),
            max,
        };
        let cases = [
            ("", Empty),
            ("10.0.0", address("10.0.0")),
            ("10.0.0.256", address("10.0.0.256")),
            ("localhost", address("localhost")),
            (" 10.0.0.1", address(" 10.0.0.1")),
            ("fe80::1%eth0", address("fe80::1%eth0")),
            ("/8", address("/8")),
            ("10.0.0.0/33", prefix("10.0.0.0/33", 32)),
            ("10.0.0.0/", prefix("10.0.0.0/", 32)),
            ("10.0.0.0/+8", prefix("10.0.0.0/+8", 32)),
            ("10.0.0.0/8/8", prefix("10.0.0.0/8/8", 32)),
            ("10.0.0.0/1000", prefix("10.0.0.0/1000", 32)),
            ("::/129", prefix("::/129", 128)),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_network(input), Err(expected), "{input:?}");
        }
        assert_eq!(
            parse_network("10.0.0.0/33").unwrap_err().to_string(),
            "'10.0.0.0/33' has an invalid prefix length; expected a number from 0 to 32"
        );
    }

    #[test]
    fn no_rules_deny_everything() {
        let anyone = ip("10.0.0.1");
        for action in Action::ALL {
            assert!(!allowed(&[], &Principal::Anonymous, action, None, anyone));
            assert!(!allowed(&[], &user("admin"), action, None, anyone));
        }
    }

    /// A realistic deployment: public streams for everybody, cameras that publish from the LAN,
    /// an operator who may watch everything from the office, and API access from localhost.
    #[test]
    fn realistic_matrix() {
        use Action::*;
        let rules = [
            rule(None, Read, Some("~^public/"), &[]),
            rule(None, Playback, Some("~^public/"), &[]),
            rule(
                Some("cams"),
                Publish,
                Some("~^cam(\\d+)$"),
                &["192.168.10.0/24"],
            ),
            rule(Some("alice"), Publish, Some("studio"), &[]),
            rule(Some("alice"), Read, Some("studio"), &[]),
            rule(Some("ops"), Read, None, &["10.0.0.0/8", "fd00::/8"]),
            rule(Some("ops"), Playback, None, &["10.0.0.0/8", "fd00::/8"]),
            rule(None, Api, None, &["127.0.0.1", "::1"]),
            rule(None, Metrics, None, &["127.0.0.1", "::1"]),
            rule(Some("admin"), Api, None, &[]),
        ];
        let anon = Principal::Anonymous;
        let cases: &[(&Principal, Action, Option<&str>, &str, bool)] = &[
            // Public streams: anyone, authenticated or not.
            (&anon, Read, Some("public/news"), "203.0.113.9", true),
            (
                &user("alice"),
                Read,
                Some("public/news"),
                "203.0.113.9",
                true,
            ),
            (&anon, Playback, Some("public/news"), "2001:db8::1", true),
            (&anon, Publish, Some("public/news"), "203.0.113.9", false),
            (&anon, Read, Some("studio"), "203.0.113.9", false),
            // Unanchored regex, as in MediaMTX: "~^public/" does not match "nonpublic/x".
            (&anon, Read, Some("nonpublic/x"), "203.0.113.9", false),
            // Cameras publish from their subnet only.
            (&user("cams"), Publish, Some("cam12"), "192.168.10.40", true),
            (
                &user("cams"),
                Publish,
                Some("cam12"),
                "::ffff:192.168.10.40",
                true,
            ),
            (
                &user("cams"),
                Publish,
                Some("cam12"),
                "192.168.11.40",
                false,
            ),
            (
                &user("cams"),
                Publish,
                Some("cam12x"),
                "192.168.10.40",
                false,
            ),
            (&user("cams"), Read, Some("cam12"), "192.168.10.40", false),
            (&anon, Publish, Some("cam12"), "192.168.10.40", false),
            // Exact path rules.
            (
                &user("alice"),
                Publish,
                Some("studio"),
                "198.51.100.1",
                true,
            ),
            (
                &user("alice"),
                Publish,
                Some("studio2"),
                "198.51.100.1",
                false,
            ),
            (&user("bob"), Publish, Some("studio"), "198.51.100.1", false),
            // Any path, restricted networks, both families.
            (&user("ops"), Read, Some("cam3"), "10.20.30.40", true),
            (&user("ops"), Playback, Some("studio"), "fd00::42", true),
            (&user("ops"), Read, Some("cam3"), "172.16.0.1", false),
            (&user("ops"), Publish, Some("cam3"), "10.20.30.40", false),
            // API and metrics: path-less requests.
            (&anon, Api, None, "127.0.0.1", true),
            (&anon, Metrics, None, "::1", true),
            (&anon, Api, None, "::ffff:127.0.0.1", true),
            (&anon, Api, None, "10.0.0.1", false),
            (&user("ops"), Api, None, "127.0.0.1", true),
            (&user("admin"), Api, None, "203.0.113.9", true),
            (&user("admin"), Metrics, None, "203.0.113.9", false),
        ];
        for &(who, action, path, addr, expected) in cases {
            let path = path.map(|p| p.parse::<PathName>().unwrap());
            assert_eq!(
                allowed(&rules, who, action, path.as_ref(), ip(addr)),
                expected,
                "{who:?} {action} {path:?} from {addr}"
            );
        }
    }

    #[test]
    fn user_rules_do_not_apply_to_anonymous_or_other_users() {
        let r = rule(Some("alice"), Action::Read, None, &[]);
        let any = ip("10.0.0.1");
        assert!(r.matches(&user("alice"), Action::Read, None, any));
        assert!(!r.matches(&Principal::Anonymous, Action::Read, None, any));
        assert!(!r.matches(&user("alicia"), Action::Read, None, any));
    }

    #[test]
    fn a_rule_with_a_path_never_matches_a_pathless_request() {
        let r = rule(None, Action::Api, Some("cam1"), &[]);
        assert!(!r.matches(&Principal::Anonymous, Action::Api, None, ip("127.0.0.1")));
    }

    #[test]
    fn address_families_do_not_mix() {
        let v4_only = rule(None, Action::Read, None, &["0.0.0.0/0"]);
        let v6_only = rule(None, Action::Read, None, &["::/0"]);
        let who = Principal::Anonymous;
        assert!(v4_only.matches(&who, Action::Read, None, ip("::ffff:8.8.8.8")));
        assert!(!v4_only.matches(&who, Action::Read, None, ip("2001:db8::1")));
        assert!(v6_only.matches(&who, Action::Read, None, ip("2001:db8::1")));
        // As in Go's IPNet.Contains: a mapped client is an IPv4 client.
        assert!(!v6_only.matches(&who, Action::Read, None, ip("::ffff:8.8.8.8")));
    }

    #[test]
    fn mapped_networks_built_without_parse_network_still_match() {
        let mut r = rule(None, Action::Read, None, &[]);
        r.networks = vec!["::ffff:10.0.0.0/104".parse().unwrap()];
        let who = Principal::Anonymous;
        assert!(r.matches(&who, Action::Read, None, ip("10.9.9.9")));
        assert!(r.matches(&who, Action::Read, None, ip("::ffff:10.9.9.9")));
        assert!(!r.matches(&who, Action::Read, None, ip("11.0.0.1")));
    }
}
