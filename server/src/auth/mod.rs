//! Who may open a document and whether they may write: tokens in, [`Grant`]s out.
//!
//! With no `jwt_secret` configured the relay is open: every connection may read and write every
//! document (the zero-configuration default for a laptop or a trusted network). With a secret, every
//! connection must present an HS256 JWT signed with it — by `?token=`, `Authorization: Bearer`, or the
//! dialect's own auth message. Claims: `sub` (the user id, recorded as the author of updates), `exp`
//! (required), optional `scope` (`"read-write"`, the default, or `"readonly"`), and optional `docs`
//! (document names the token is limited to; a trailing `*` matches a prefix).
//! That is the provider for free documents; workspace documents are decided by [`policy`].
//!
//! Weft's own accounts: [`passwords`] (argon2id) and [`sessions`] (access and refresh tokens).

pub mod passwords;
pub mod policy;
pub mod providers;
pub mod sessions;

/// The issuer Weft records for accounts the `--jwt-secret` tokens' subjects map to.
pub const JWT_SECRET_ISSUER: &str = "weft:jwt-secret";

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use weft_sync_core::DocId;
use weft_sync_core::relay::Access;

use crate::rooms::Identity;

/// What a verified connection may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Read-write or read-only.
    pub access: Access,
    /// The user the token names, if any.
    pub user_id: Option<String>,
    /// The workspace of the document, when it is a workspace document.
    pub workspace: Option<String>,
    /// How many access changes the policy had seen when it decided (see `Policy::track`).
    pub epoch: u64,
}

impl Grant {
    /// What the room needs of this grant: the access, and the user its updates are attributed to.
    pub fn identity(&self) -> Identity {
        Identity { access: self.access, author: self.user_id.as_deref().map(Arc::from) }
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A token is required and none was given.
    #[error("a token is required")]
    Missing,
    /// The token is malformed, expired or not signed with the configured secret.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The token is valid but not for this document.
    #[error("the token does not grant access to this document")]
    NotForDocument,
    /// No such document, or one the bearer may not know exists (a workspace document of a
    /// workspace they are not in, a private one they are not listed on, a deleted one).
    #[error("no such document")]
    Hidden,
    /// The decision could not be made (storage failed); try again.
    #[error("access cannot be checked right now")]
    Unavailable,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: Option<String>,
    scope: Option<String>,
    docs: Option<Vec<String>>,
}

/// Verifies tokens against the configured secret.
#[derive(Clone)]
pub struct Auth {
    key: Option<DecodingKey>,
    validation: Validation,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("enforced", &self.is_enforced()).finish()
    }
}

impl Auth {
    /// Tokens signed with `secret` are required; `None` leaves the relay open.
    pub fn new(secret: Option<&str>) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 30;
        Self { key: secret.map(|s| DecodingKey::from_secret(s.as_bytes())), validation }
    }

    /// Whether tokens are required.
    pub fn is_enforced(&self) -> bool {
        self.key.is_some()
    }

    /// Decides what the bearer of `token` may do to `doc`.
    ///
    /// # Errors
    /// [`AuthError`] when tokens are required and this one does not grant access to `doc`.
    pub fn verify(&self, token: Option<&str>, doc: &DocId) -> Result<Grant, AuthError> {
        let Some(key) = &self.key else {
            return Ok(Grant { access: Access::ReadWrite, user_id: None, workspace: None, epoch: 0 });
        };
        let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
        let claims = jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?
            .claims;
        if let Some(docs) = &claims.docs
            && !docs.iter().any(|pattern| matches(pattern, doc.as_str()))
        {
            return Err(AuthError::NotForDocument);
        }
        let access = match claims.scope.as_deref() {
            None | Some("read-write") => Access::ReadWrite,
            Some("readonly") => Access::ReadOnly,
            Some(other) => return Err(AuthError::Invalid(format!("unknown scope {other:?}"))),
        };
        Ok(Grant { access, user_id: claims.sub, workspace: None, epoch: 0 })
    }
}

impl Auth {
    /// The subject of a valid `--jwt-secret` token (`sub` required).
    ///
    /// # Errors
    /// [`AuthError`] when no secret is configured, or the token is invalid or has no subject.
    pub fn subject(&self, token: &str) -> Result<String, AuthError> {
        let Some(key) = &self.key else {
            return Err(AuthError::Invalid("no --jwt-secret is configured".into()));
        };
        let claims = jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?
            .claims;
        claims
            .sub
            .filter(|s| !s.is_empty() && s.len() <= 255)
            .ok_or_else(|| AuthError::Invalid("the token has no sub".into()))
    }
}

fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header};

    use super::*;

    fn token(secret: &str, claims: serde_json::Value) -> String {
        jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(secret.as_bytes()))
            .unwrap()
    }

    fn doc(name: &str) -> DocId {
        DocId::new(name).unwrap()
    }

    const FUTURE: u64 = 4_000_000_000;

    #[test]
    fn an_open_relay_grants_everyone_read_write() {
        let grant = Auth::new(None).verify(None, &doc("any")).unwrap();
        assert_eq!(grant.access, Access::ReadWrite);
    }

    #[test]
    fn tokens_carry_user_scope_and_documents() {
        let auth = Auth::new(Some("s3cret"));
        let t = token(
            "s3cret",
            serde_json::json!({ "sub": "ann", "exp": FUTURE, "scope": "readonly", "docs": ["team/*"] }),
        );
        let grant = auth.verify(Some(&t), &doc("team/notes")).unwrap();
        assert_eq!(
            grant,
            Grant { access: Access::ReadOnly, user_id: Some("ann".into()), workspace: None, epoch: 0 }
        );
        assert_eq!(auth.verify(Some(&t), &doc("other")), Err(AuthError::NotForDocument));
    }

    #[test]
    fn missing_forged_and_expired_tokens_are_refused() {
        let auth = Auth::new(Some("s3cret"));
        assert_eq!(auth.verify(None, &doc("d")), Err(AuthError::Missing));
        assert_eq!(auth.verify(Some(""), &doc("d")), Err(AuthError::Missing));
        let forged = token("other", serde_json::json!({ "exp": FUTURE }));
        assert!(matches!(auth.verify(Some(&forged), &doc("d")), Err(AuthError::Invalid(_))));
        let expired = token("s3cret", serde_json::json!({ "exp": 1_000 }));
        assert!(matches!(auth.verify(Some(&expired), &doc("d")), Err(AuthError::Invalid(_))));
        assert!(matches!(auth.verify(Some("not.a.jwt"), &doc("d")), Err(AuthError::Invalid(_))));
    }
}
