use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::{AclAction, Role};
use crate::store::SigningKeyRow;

pub const ISSUER: &str = "streamplane";

/// A media permission carried in a token, so workers can authorise without a lookup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenPermission {
    pub action: AclAction,
    /// Absent: every path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// User id.
    pub sub: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    pub iat: i64,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<TokenPermission>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token has expired")]
    Expired,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token is signed with {0:?}; only EdDSA tokens issued by this server are accepted")]
    WrongAlgorithm(String),
    #[error("the token names an unknown signing key {0:?}")]
    UnknownKey(String),
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("no signing key is available")]
    NoKey,
    #[error("cannot sign the token: {0}")]
    Sign(String),
}

impl TokenError {
    /// Stable code for problem documents.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Expired => "token_expired",
            _ => "invalid_token",
        }
    }
}

struct PublicKey {
    kid: String,
    raw: [u8; 32],
    decoding: DecodingKey,
}

/// Signing key plus every verifying key (so tokens from a previous key stay valid until expiry).
pub struct KeyRing {
    active_kid: String,
    encoding: EncodingKey,
    public: Vec<PublicKey>,
    by_kid: HashMap<String, usize>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("active_kid", &self.active_kid)
            .finish_non_exhaustive()
    }
}

/// A fresh Ed25519 key: PKCS#8 DER private key, raw public key, and a kid derived from it.
pub fn generate_signing_key() -> Result<SigningKeyRow, TokenError> {
    let mut seed = [0u8; 32];
    rand::fill(&mut seed);
    let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
    let der = signing
        .to_pkcs8_der()
        .map_err(|e| TokenError::Sign(e.to_string()))?;
    let public = signing.verifying_key().to_bytes();
    Ok(SigningKeyRow {
        kid: format!("ed25519-{}", &URL_SAFE_NO_PAD.encode(public)[..16]),
        algorithm: "EdDSA".into(),
        private_key: der.as_bytes().to_vec(),
        public_key: public.to_vec(),
        active: true,
        created_at: chrono::Utc::now(),
    })
}

impl KeyRing {
    /// `keys` newest first; the newest active one signs.
    pub fn new(keys: &[SigningKeyRow]) -> Result<Self, TokenError> {
        let active = keys.iter().find(|k| k.active).ok_or(TokenError::NoKey)?;
        let mut public = Vec::new();
        for k in keys {
            let raw: [u8; 32] = k.public_key.as_slice().try_into().map_err(|_| {
                TokenError::Malformed(format!("stored public key {} is not 32 bytes", k.kid))
            })?;
            public.push(PublicKey {
                kid: k.kid.clone(),
                raw,
                decoding: DecodingKey::from_ed_der(&raw),
            });
        }
        let by_kid = public
            .iter()
            .enumerate()
            .map(|(i, k)| (k.kid.clone(), i))
            .collect();
        Ok(KeyRing {
            active_kid: active.kid.clone(),
            encoding: EncodingKey::from_ed_der(&active.private_key),
            public,
            by_kid,
        })
    }

    pub fn issue(&self, claims: &Claims) -> Result<String, TokenError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.active_kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| TokenError::Sign(e.to_string()))
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            // `alg: none` and other algorithms this library doesn't know end up here.
            ErrorKind::Json(_) if token_alg(token).is_some() => {
                TokenError::WrongAlgorithm(token_alg(token).unwrap_or_default())
            }
            _ => TokenError::Malformed(e.to_string()),
        })?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::WrongAlgorithm(format!("{:?}", header.alg)));
        }
        let key = match &header.kid {
            Some(kid) => self
                .by_kid
                .get(kid)
                .map(|&i| &self.public[i])
                .ok_or_else(|| TokenError::UnknownKey(kid.clone()))?,
            None => {
                return Err(TokenError::Malformed(
                    "the token has no key id (kid)".into(),
                ));
            }
        };
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::InvalidAlgorithm => {
                    TokenError::WrongAlgorithm(format!("{:?}", header.alg))
                }
                _ => TokenError::Malformed(e.to_string()),
            })
    }

    /// The public keys as a JSON Web Key Set (RFC 8037 OKP keys).
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": self.public.iter().map(|k| serde_json::json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "alg": "EdDSA",
                "use": "sig",
                "kid": k.kid,
                "x": URL_SAFE_NO_PAD.encode(k.raw),
            })).collect::<Vec<_>>()
        })
    }

    /// (kid, raw public key) pairs, for workers.
    pub fn public_keys(&self) -> impl Iterator<Item = (&str, &[u8; 32])> {
        self.public.iter().map(|k| (k.kid.as_str(), &k.raw))
    }
}

/// The `alg` of a token's header, read leniently (for a precise error about `none`).
fn token_alg(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    let bytes = URL_SAFE_NO_PAD.decode(header.trim_end_matches('=')).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("alg")?.as_str().map(str::to_string)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn claims(exp_offset: i64) -> Claims {
        let now = chrono::Utc::now().timestamp();
        Claims {
            iss: ISSUER.into(),
            sub: "u1".into(),
            name: "alice".into(),
            role: Some(Role::Admin),
            iat: now,
            exp: now + exp_offset,
            permissions: vec![TokenPermission {
                action: AclAction::Read,
                path: Some("cam1".into()),
            }],
        }
    }

    #[test]
    fn issue_and_verify() {
        let ring = KeyRing::new(&[generate_signing_key().unwrap()]).unwrap();
        let token = ring.issue(&claims(60)).unwrap();
        assert_eq!(ring.verify(&token).unwrap(), claims(60));
        assert_eq!(ring.jwks()["keys"][0]["crv"], "Ed25519");
    }

    #[test]
    fn rejects_expired_forged_and_none() {
        let ring = KeyRing::new(&[generate_signing_key().unwrap()]).unwrap();
        let expired = ring.issue(&claims(-3600)).unwrap();
        assert_eq!(ring.verify(&expired), Err(TokenError::Expired));

        // Same kid, other key: a forgery.
        let mut other = generate_signing_key().unwrap();
        other.kid = ring.active_kid.clone();
        let forged = KeyRing::new(&[other]).unwrap().issue(&claims(60)).unwrap();
        assert_eq!(ring.verify(&forged), Err(TokenError::BadSignature));

        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(60)).unwrap());
        let unsigned = format!("{none_header}.{body}.");
        assert!(
            matches!(ring.verify(&unsigned), Err(TokenError::WrongAlgorithm(a)) if a == "none")
        );

        assert!(matches!(
            ring.verify("garbage"),
            Err(TokenError::Malformed(_))
        ));
    }
}
