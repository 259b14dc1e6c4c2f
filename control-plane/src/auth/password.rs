use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("cannot hash password: {0}")]
    Hash(String),
    #[error("stored password hash is malformed: {0}")]
    MalformedHash(String),
}

/// Hashes with argon2id and the crate's recommended parameters. CPU-heavy: call from
/// `spawn_blocking` on request paths.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let mut salt = [0u8; 16];
    rand::fill(&mut salt);
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h: PasswordHash| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// RTSP Digest's `HA1 = MD5(username:realm:password)` with the realm workers challenge with.
/// A password equivalent for RTSP Digest and cheap to brute-force offline, so it is computed
/// only for users who opted in (`rtsp_digest`), and never returned or logged.
pub fn digest_ha1(username: &str, password: &str) -> [u8; 16] {
    use md5::{Digest as _, Md5};
    let realm = streamplane_proto::RTSP_REALM;
    Md5::digest(format!("{username}:{realm}:{password}")).into()
}

pub fn verify_password(password: &str, hash: &str) -> Result<bool, PasswordError> {
    let parsed =
        PasswordHash::new(hash).map_err(|e| PasswordError::MalformedHash(e.to_string()))?;
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

/// Verifies against `hash`, or burns the same time against a fixed hash when there is no user,
/// so response time does not reveal which usernames exist.
pub fn verify_password_or_dummy(password: &str, hash: Option<&str>) -> bool {
    static DUMMY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    match hash {
        Some(h) => verify_password(password, h).unwrap_or(false),
        None => {
            let dummy = DUMMY.get_or_init(|| hash_password("streamplane-dummy-password").ok());
            if let Some(d) = dummy {
                let _ = verify_password(password, d);
            }
            false
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h).unwrap());
        assert!(!verify_password("wrong horse", &h).unwrap());
        assert!(verify_password("x", "not a hash").is_err());
        assert!(!verify_password_or_dummy("x", None));
    }

    #[test]
    fn digest_ha1_is_md5_of_user_realm_password() {
        // RFC 2617 §3.5 computes HA1 this way; the value is `md5sum` of "Mufasa:streamplane:Circle Of Life".
        let ha1 = digest_ha1("Mufasa", "Circle Of Life");
        let hex: String = ha1.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "fbde9dbdfd05bda81ed22429a6149656");
        assert_ne!(digest_ha1("mufasa", "Circle Of Life"), ha1);
    }
}
