//! Weft's own sessions: short-lived access JWTs (HS256, signed with a secret the server keeps in
//! its database) and opaque refresh tokens (`<id>.<secret>`, stored as SHA-256 of the secret),
//! rotated on every use.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::AuthError;
use crate::config::AccountsConfig;
use crate::storage::accounts::NewRefresh;
use crate::storage::{Storage, StorageError};

/// Issuer and audience of Weft's own access tokens.
pub const ISSUER: &str = "weft";

#[derive(Debug, Serialize, Deserialize)]
struct AccessClaims {
    sub: String,
    iss: String,
    aud: String,
    iat: u64,
    exp: u64,
}

/// Issues and checks Weft's own tokens. Cheap to clone.
#[derive(Clone)]
pub struct Sessions {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    access_ttl: Duration,
    refresh_ttl: Duration,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").field("access_ttl", &self.access_ttl).finish_non_exhaustive()
    }
}

/// A new access token.
#[derive(Debug, Clone)]
pub struct AccessToken {
    /// The JWT.
    pub token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

impl Sessions {
    /// Loads the signing secret from storage, creating it on first start.
    ///
    /// # Errors
    /// When storage fails or the operating system gives no random bytes.
    pub async fn open(storage: &Storage, config: &AccountsConfig, now_ms: i64) -> anyhow::Result<Self> {
        let secret = storage.server_key("access-token-hs256", random_bytes(32)?, now_ms).await?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        Ok(Self {
            encoding: EncodingKey::from_secret(&secret),
            decoding: DecodingKey::from_secret(&secret),
            validation,
            access_ttl: config.access_ttl,
            refresh_ttl: config.refresh_ttl,
        })
    }

    /// An access token for `user_id`.
    ///
    /// # Errors
    /// When signing fails.
    pub fn issue_access(&self, user_id: &str, now_ms: i64) -> anyhow::Result<AccessToken> {
        let iat = (now_ms / 1000).max(0) as u64;
        let claims = AccessClaims {
            sub: user_id.to_owned(),
            iss: ISSUER.to_owned(),
            aud: ISSUER.to_owned(),
            iat,
            exp: iat + self.access_ttl.as_secs(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok(AccessToken { token, expires_in: self.access_ttl.as_secs() })
    }

    /// The user an access token names, if it is one of this server's and current.
    ///
    /// # Errors
    /// [`AuthError::Invalid`] otherwise.
    pub fn verify_access(&self, token: &str) -> Result<String, AuthError> {
        jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims.sub)
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }

    /// A new refresh token: what the client keeps, and what storage keeps (`family` `None` starts
    /// a new session).
    ///
    /// # Errors
    /// When the operating system gives no random bytes.
    pub fn new_refresh(
        &self,
        family: Option<String>,
        now_ms: i64,
    ) -> Result<(String, NewRefresh), StorageError> {
        let random = |n| random_bytes(n).map_err(|e| StorageError::Database(e.to_string()));
        let id = URL_SAFE_NO_PAD.encode(random(16)?);
        let secret = URL_SAFE_NO_PAD.encode(random(32)?);
        let family = match family {
            Some(family) => family,
            None => URL_SAFE_NO_PAD.encode(random(16)?),
        };
        let stored = NewRefresh {
            hash: digest(&secret),
            id: id.clone(),
            family,
            expires_at: now_ms + self.refresh_ttl.as_millis() as i64,
        };
        Ok((format!("{id}.{secret}"), stored))
    }

    /// How long refresh tokens live.
    pub fn refresh_ttl(&self) -> Duration {
        self.refresh_ttl
    }
}

/// Splits a refresh token into its id and the hash of its secret; `None` if it is not shaped like one.
pub fn parse_refresh(token: &str) -> Option<(String, Vec<u8>)> {
    let (id, secret) = token.split_once('.')?;
    let well_formed = |s: &str| !s.is_empty() && s.len() <= 64 && URL_SAFE_NO_PAD.decode(s).is_ok();
    (well_formed(id) && well_formed(secret)).then(|| (id.to_owned(), digest(secret)))
}

/// A new bearer secret (an invite token): 256 bits, base64url, with the SHA-256 to store.
///
/// # Errors
/// When the operating system gives no random bytes.
pub fn new_secret() -> anyhow::Result<(String, Vec<u8>)> {
    let secret = URL_SAFE_NO_PAD.encode(random_bytes(32)?);
    let hash = digest(&secret);
    Ok((secret, hash))
}

/// The SHA-256 of a secret [`new_secret`] made; `None` if `secret` is not shaped like one.
pub fn secret_hash(secret: &str) -> Option<Vec<u8>> {
    let well_formed = !secret.is_empty() && secret.len() <= 64 && URL_SAFE_NO_PAD.decode(secret).is_ok();
    well_formed.then(|| digest(secret))
}

/// A random id for a new row: 128 bits, base64url.
///
/// # Errors
/// When the operating system gives no random bytes.
pub fn random_id() -> anyhow::Result<String> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes(16)?))
}

fn random_bytes(n: usize) -> anyhow::Result<Vec<u8>> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no random bytes: {e}"))?;
    Ok(bytes)
}

fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refresh_token_parses_to_the_hash_storage_keeps() {
        let sessions = Sessions {
            encoding: EncodingKey::from_secret(b"k"),
            decoding: DecodingKey::from_secret(b"k"),
            validation: Validation::new(Algorithm::HS256),
            access_ttl: Duration::from_secs(60),
            refresh_ttl: Duration::from_secs(3600),
        };
        let (token, stored) = sessions.new_refresh(None, 1_000).unwrap();
        let (id, hash) = parse_refresh(&token).unwrap();
        assert_eq!((id, hash), (stored.id, stored.hash));
        assert_eq!(stored.expires_at, 1_000 + 3_600_000);
        assert!(parse_refresh("nodot").is_none());
        assert!(parse_refresh("a.b!c").is_none());
        assert!(parse_refresh(".x").is_none());
    }
}
