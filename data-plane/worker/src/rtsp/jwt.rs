//! Verification of control-plane JWTs presented to the RTSP server (`?token=` or as the Basic
//! password): EdDSA only, key chosen by `kid` among the desired state's `jwt_keys`, issuer
//! `streamplane`, `exp` with 5 s of leeway. Mirrors `control-plane/src/auth/jwt.rs`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::state::JwtPublicKey;

pub const ISSUER: &str = "streamplane";
const LEEWAY_SECS: u64 = 5;

/// One `permissions` entry of the token: `action` on `path` (a path pattern; absent = any).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TokenPermission {
    pub action: String,
    #[serde(default)]
    pub path: Option<String>,
}

/// The claims the worker uses; others are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub permissions: Vec<TokenPermission>,
}

/// Why a token was refused; logged (never with the token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token is signed with {0}; only EdDSA is accepted")]
    WrongAlgorithm(String),
    #[error("the token has no key id (kid)")]
    NoKid,
    #[error("the token names an unknown signing key {0:?}")]
    UnknownKey(String),
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token has the wrong issuer")]
    WrongIssuer,
}

/// Whether `s` is shaped like a compact JWS (three base64url parts, JSON header), so a Basic
/// password can be told apart from a token without trying both.
pub fn looks_like_jwt(s: &str) -> bool {
    s.starts_with("eyJ")
        && s.split('.').count() == 3
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

pub fn verify(token: &str, keys: &[JwtPublicKey]) -> Result<Claims, TokenError> {
    // Read `alg` ourselves first: jsonwebtoken cannot even parse `alg: none`.
    let alg = token_alg(token).ok_or(TokenError::Malformed)?;
    if alg != "EdDSA" {
        return Err(TokenError::WrongAlgorithm(alg));
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
    if header.alg != Algorithm::EdDSA {
        return Err(TokenError::WrongAlgorithm(format!("{:?}", header.alg)));
    }
    let kid = header.kid.ok_or(TokenError::NoKid)?;
    let key = keys
        .iter()
        .find(|k| k.kid == kid)
        .ok_or(TokenError::UnknownKey(kid))?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[ISSUER]);
    validation.leeway = LEEWAY_SECS;
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_ed_der(&key.ed25519), &validation)
        .map(|data| data.claims)
        .map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
            ErrorKind::InvalidAlgorithm => TokenError::WrongAlgorithm("?".into()),
            _ => TokenError::Malformed,
        })
}

fn token_alg(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    let bytes = URL_SAFE_NO_PAD.decode(header.trim_end_matches('=')).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("alg")?.as_str().map(str::to_owned)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(super) mod tests {
    use super::*;
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    use jsonwebtoken::{EncodingKey, Header};

    /// A signing key and its public half as the desired state carries it.
    pub struct TestKey {
        pub kid: String,
        der: Vec<u8>,
        pub public: JwtPublicKey,
    }

    impl TestKey {
        pub fn new(kid: &str) -> Self {
            let mut seed = [0u8; 32];
            rand::fill(&mut seed);
            let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
            TestKey {
                kid: kid.into(),
                der: signing.to_pkcs8_der().unwrap().as_bytes().to_vec(),
                public: JwtPublicKey {
                    kid: kid.into(),
                    ed25519: signing.verifying_key().to_bytes(),
                },
            }
        }

        pub fn sign(&self, claims: &serde_json::Value) -> String {
            let mut header = Header::new(Algorithm::EdDSA);
            header.kid = Some(self.kid.clone());
            jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&self.der)).unwrap()
        }
    }

    pub fn claims(sub: &str, exp_offset: i64, permissions: serde_json::Value) -> serde_json::Value {
        let now = chrono::Utc::now().timestamp();
        serde_json::json!({
            "iss": ISSUER, "sub": sub, "name": "alice", "iat": now, "exp": now + exp_offset,
            "permissions": permissions,
        })
    }

    #[test]
    fn valid_expired_forged_wrong_kid_and_none() {
        let key = TestKey::new("k1");
        let keys = [key.public.clone()];
        let perms = serde_json::json!([{"action": "read", "path": "cam1"}]);

        let token = key.sign(&claims("u1", 60, perms.clone()));
        assert!(looks_like_jwt(&token));
        let c = verify(&token, &keys).unwrap();
        assert_eq!(c.sub, "u1");
        assert_eq!(c.permissions[0].path.as_deref(), Some("cam1"));

        // Within the 5 s leeway still fine; beyond it expired.
        assert!(verify(&key.sign(&claims("u1", -2, perms.clone())), &keys).is_ok());
        assert_eq!(
            verify(&key.sign(&claims("u1", -60, perms.clone())), &keys),
            Err(TokenError::Expired)
        );

        // Same kid, other key: forged.
        let forger = TestKey::new("k1");
        assert_eq!(
            verify(&forger.sign(&claims("u1", 60, perms.clone())), &keys),
            Err(TokenError::BadSignature)
        );
        // Tampered payload with the original signature.
        let parts: Vec<&str> = token.split('.').collect();
        let body = URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&claims("admin", 60, serde_json::json!([]))).unwrap());
        let tampered = format!("{}.{body}.{}", parts[0], parts[2]);
        assert_eq!(verify(&tampered, &keys), Err(TokenError::BadSignature));

        let other = TestKey::new("k2");
        assert_eq!(
            verify(&other.sign(&claims("u1", 60, perms.clone())), &keys),
            Err(TokenError::UnknownKey("k2".into()))
        );

        let mut wrong_iss = claims("u1", 60, perms.clone());
        wrong_iss["iss"] = "someone-else".into();
        assert_eq!(
            verify(&key.sign(&wrong_iss), &keys),
            Err(TokenError::WrongIssuer)
        );

        let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#);
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims("u1", 60, perms)).unwrap());
        assert_eq!(
            verify(&format!("{none}.{body}."), &keys),
            Err(TokenError::WrongAlgorithm("none".into()))
        );
        let hs = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT","kid":"k1"}"#);
        assert_eq!(
            verify(&format!("{hs}.{body}.c2ln"), &keys),
            Err(TokenError::WrongAlgorithm("HS256".into()))
        );
        assert_eq!(verify("garbage", &keys), Err(TokenError::Malformed));
        assert!(!looks_like_jwt("hunter2"));
    }
}
