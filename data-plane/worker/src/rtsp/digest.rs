//! RTSP Digest authentication (RFC 2617 with MD5, as ffmpeg, VLC, GStreamer and IP cameras
//! speak it): challenge nonces, `Authorization: Digest ...` parsing and response checks.
//!
//! Digest needs `HA1 = MD5(user:realm:password)` on the server ([`crate::state::DigestHa1`]).
//! An argon2 hash cannot yield it, so only users whose HA1 was computed from the plaintext
//! password can use Digest: plaintext `pass` entries in standalone mode, and managed users with
//! `rtsp_digest` turned on (the control plane ships their HA1). HA1 is a password equivalent
//! for Digest and an MD5 that is cheap to attack offline, which is why managed users opt in.
//!
//! Nonces are stateless: `hex(issued seconds) + hex(MD5(key ‖ issued seconds))[..16]` with a
//! per-process random key, so a nonce we did not issue is rejected, an expired one is answered
//! with `stale=true` (the client retries without asking the user again), and nothing grows
//! with the number of clients. Within its lifetime a nonce can be replayed (no `nc` tracking);
//! Digest without TLS is a weak scheme either way.

use std::time::{Duration, Instant};

use md5::{Digest as _, Md5};

/// How long a nonce is accepted after it was issued.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(300);

/// What a nonce presented by a client is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceState {
    Fresh,
    /// Ours, but older than [`NONCE_LIFETIME`]: challenge again with `stale=true`.
    Stale,
    /// Not issued by this process.
    Invalid,
}

/// Issues and checks nonces. `epoch` anchors the clock so tests can pass any `Instant`.
pub struct Nonces {
    key: [u8; 32],
    epoch: Instant,
}

impl Nonces {
    pub fn new(epoch: Instant) -> Self {
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        Nonces { key, epoch }
    }

    fn tag(&self, issued: u64) -> String {
        let mut h = Md5::new();
        h.update(self.key);
        h.update(issued.to_be_bytes());
        hex(&h.finalize()[..8])
    }

    pub fn issue(&self, now: Instant) -> String {
        let issued = now.saturating_duration_since(self.epoch).as_secs();
        format!("{issued:016x}{}", self.tag(issued))
    }

    pub fn check(&self, nonce: &str, now: Instant) -> NonceState {
        if nonce.len() != 32 || !nonce.is_ascii() {
            return NonceState::Invalid;
        }
        let (stamp, tag) = nonce.split_at(16);
        let Ok(issued) = u64::from_str_radix(stamp, 16) else {
            return NonceState::Invalid;
        };
        if !constant_time_eq(tag.as_bytes(), self.tag(issued).as_bytes()) {
            return NonceState::Invalid;
        }
        let age = now
            .saturating_duration_since(self.epoch)
            .as_secs()
            .saturating_sub(issued);
        if age > NONCE_LIFETIME.as_secs() {
            NonceState::Stale
        } else {
            NonceState::Fresh
        }
    }
}

/// The fields of an `Authorization: Digest ...` header that the response depends on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DigestCredentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub qop: Option<String>,
    pub nc: Option<String>,
    pub cnonce: Option<String>,
}

/// Parses `Digest k="v", k2=v2, ...`; `None` for another scheme or missing fields.
pub fn parse_digest(header: &str) -> Option<DigestCredentials> {
    let (scheme, mut rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("digest") {
        return None;
    }
    let mut c = DigestCredentials::default();
    let mut seen = 0u8;
    loop {
        rest = rest.trim_start_matches([' ', ',', '\t']);
        if rest.is_empty() {
            break;
        }
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim(), &after[end..])
        };
        let value = value.to_owned();
        match key.as_str() {
            "username" => (c.username, seen) = (value, seen | 1),
            "realm" => (c.realm, seen) = (value, seen | 2),
            "nonce" => (c.nonce, seen) = (value, seen | 4),
            "uri" => (c.uri, seen) = (value, seen | 8),
            "response" => (c.response, seen) = (value, seen | 16),
            "qop" => c.qop = Some(value),
            "nc" => c.nc = Some(value),
            "cnonce" => c.cnonce = Some(value),
            _ => {}
        }
        rest = tail;
    }
    (seen == 31).then_some(c)
}

#[cfg(test)]
pub fn ha1(username: &str, realm: &str, password: &str) -> [u8; 16] {
    *crate::state::DigestHa1::compute(username, realm, password).expose()
}

/// The response a client knowing HA1 sends for `method` (RFC 2617 §3.2.2.1; `qop=auth` or
/// the RFC 2069 form without qop, which RTSP clients mostly use).
pub fn expected_response(ha1: &[u8; 16], method: &str, c: &DigestCredentials) -> String {
    let ha2 = hex(&Md5::digest(format!("{method}:{}", c.uri)));
    let ha1 = hex(ha1);
    let text = match (&c.qop, &c.nc, &c.cnonce) {
        (Some(qop), Some(nc), Some(cnonce)) => {
            format!("{ha1}:{}:{nc}:{cnonce}:{qop}:{ha2}", c.nonce)
        }
        _ => format!("{ha1}:{}:{ha2}", c.nonce),
    };
    hex(&Md5::digest(text))
}

/// Whether the client's response proves knowledge of HA1 (constant time).
pub fn verify_response(ha1: &[u8; 16], method: &str, c: &DigestCredentials) -> bool {
    let expected = expected_response(ha1, method, c);
    constant_time_eq(
        expected.as_bytes(),
        c.response.to_ascii_lowercase().as_bytes(),
    )
}

/// The `WWW-Authenticate` value for a Digest challenge.
pub fn challenge(realm: &str, nonce: &str, stale: bool) -> String {
    let stale = if stale { ", stale=true" } else { "" };
    format!("Digest realm=\"{realm}\", nonce=\"{nonce}\"{stale}")
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// RFC 2617 §3.5.
    fn rfc_example() -> DigestCredentials {
        parse_digest(
            r#"Digest username="Mufasa", realm="testrealm@host.com",
               nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth,
               nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1",
               opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .unwrap()
    }

    #[test]
    fn rfc2617_example_response() {
        let c = rfc_example();
        assert_eq!(c.username, "Mufasa");
        assert_eq!(c.nc.as_deref(), Some("00000001"));
        let ha1 = ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
        assert_eq!(
            expected_response(&ha1, "GET", &c),
            "6629fae49393a05397450978507c4ef1"
        );
        assert!(verify_response(&ha1, "GET", &c));
        assert!(!verify_response(&ha1, "POST", &c));
        let wrong = super::ha1("Mufasa", "testrealm@host.com", "circle of life");
        assert!(!verify_response(&wrong, "GET", &c));
    }

    #[test]
    fn rfc2069_form_without_qop() {
        // What ffmpeg sends: no qop, response = MD5(HA1:nonce:MD5(method:uri)).
        let mut c = rfc_example();
        c.qop = None;
        c.nc = None;
        c.cnonce = None;
        let ha1 = ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
        c.response = expected_response(&ha1, "DESCRIBE", &c);
        assert_eq!(c.response.len(), 32);
        assert!(verify_response(&ha1, "DESCRIBE", &c));
    }

    #[test]
    fn parse_rejects_other_schemes_and_missing_fields() {
        assert_eq!(parse_digest("Basic YWxpY2U6eA=="), None);
        assert_eq!(parse_digest(r#"Digest username="a", nonce="n""#), None);
        assert_eq!(parse_digest(r#"Digest username="unterminated"#), None);
    }

    #[test]
    fn nonces_expire_and_cannot_be_forged() {
        let epoch = Instant::now();
        let nonces = Nonces::new(epoch);
        let later = epoch + Duration::from_secs(1000);
        let nonce = nonces.issue(later);
        assert_eq!(nonces.check(&nonce, later), NonceState::Fresh);
        assert_eq!(
            nonces.check(&nonce, later + NONCE_LIFETIME),
            NonceState::Fresh
        );
        assert_eq!(
            nonces.check(&nonce, later + NONCE_LIFETIME + Duration::from_secs(1)),
            NonceState::Stale
        );
        // Another process (key) or a tampered timestamp: not ours.
        assert_eq!(Nonces::new(epoch).check(&nonce, later), NonceState::Invalid);
        let tampered = format!("{:016x}{}", 2000u64, &nonce[16..]);
        assert_eq!(nonces.check(&tampered, later), NonceState::Invalid);
        assert_eq!(nonces.check("short", later), NonceState::Invalid);
        assert_eq!(
            challenge("streamplane", &nonce, true),
            format!("Digest realm=\"streamplane\", nonce=\"{nonce}\", stale=true")
        );
    }
}
