//! Passwords (argon2id) and access tokens (EdDSA-signed JWTs).

mod jwt;
mod password;

pub use jwt::{
    Claims, ISSUER as ISSUER_NAME, KeyRing, TokenError, TokenPermission, generate_signing_key,
};
pub use password::{
    PasswordError, digest_ha1, hash_password, verify_password, verify_password_or_dummy,
};
