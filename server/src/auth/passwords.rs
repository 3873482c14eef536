//! Passwords: argon2id hashes as PHC strings, computed on the blocking pool (each costs tens of
//! milliseconds of CPU by design, which must not stall the async runtime).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// Shortest and longest password accepted, in characters and bytes.
pub const MIN_CHARS: usize = 8;
/// Longest password accepted, in bytes (hashing cost grows with length).
pub const MAX_BYTES: usize = 1024;

/// Hashes `password` with a fresh random salt.
///
/// # Errors
/// When the operating system gives no random bytes, or hashing fails.
pub async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt)?;
        let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| anyhow::anyhow!("hashing: {e}"))?;
        Ok(hash.to_string())
    })
    .await?
}

/// Whether `password` matches `hash`. With no hash (no such account, or one without a password)
/// a fixed hash is checked instead, so the answer takes as long either way.
pub async fn verify(password: String, hash: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let hash = hash.unwrap_or_else(|| DECOY.to_owned());
        let Ok(parsed) = PasswordHash::new(&hash) else { return false };
        Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok() && hash != DECOY
    })
    .await
    .unwrap_or(false)
}

/// An argon2id hash (default parameters) of a random string nobody knows.
const DECOY: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$gdT9UhQ0lY3y8Kx1bJc1Nw$3o5m0cE2G8m7o3n+S3zQ5v2c1vJ2f0xF0S2j8tJk8yA";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hash = hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify("correct horse".into(), Some(hash.clone())).await);
        assert!(!verify("wrong horse".into(), Some(hash)).await);
        assert!(!verify("anything".into(), None).await);
    }

    #[test]
    fn the_decoy_is_a_valid_hash() {
        PasswordHash::new(DECOY).unwrap();
    }
}
