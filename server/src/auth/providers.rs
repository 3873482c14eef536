//! External identity providers: JWTs another system signs (an OIDC provider, the application's
//! own server) that Weft accepts in place of its own access tokens, checked against configured
//! keys — an HS256 secret, an RS256/ES256/EdDSA public key in PEM, or a JWKS file — with the
//! issuer and audience required to match. A provider's `sub` names a person; `Policy::user` maps
//! it to a Weft account, created on first use.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::AuthError;

/// How a provider's tokens are signed, as configured.
#[derive(Debug, Clone)]
pub enum ProviderKey {
    /// A shared HS256 secret.
    Secret(String),
    /// One public key in PEM (RSA, P-256 or Ed25519), with the algorithm if given.
    Pem {
        /// The PEM text.
        pem: String,
        /// `RS256`, `ES256` or `EdDSA`; by default what the key's type signs with.
        algorithm: Option<Algorithm>,
    },
    /// A JWKS document (`{"keys": [...]}`); tokens name their key by `kid`.
    Jwks(String),
}

/// One configured provider.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// The `iss` its tokens must carry.
    pub issuer: String,
    /// The `aud` its tokens must include.
    pub audience: String,
    /// Its key(s).
    pub key: ProviderKey,
}

/// Who a provider's token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalIdentity {
    /// The provider's issuer.
    pub issuer: String,
    /// Its subject.
    pub subject: String,
    /// The `email` claim, if any.
    pub email: Option<String>,
    /// The `name` claim, if any.
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    email: Option<String>,
    name: Option<String>,
}

/// A provider ready to verify tokens.
pub struct Provider {
    issuer: String,
    keys: Vec<(Option<String>, Algorithm, DecodingKey)>,
    validation: Validation,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider").field("issuer", &self.issuer).field("keys", &self.keys.len()).finish()
    }
}

/// Tokens may be this many seconds past `exp` or before `nbf` (clock skew between machines).
const LEEWAY_SECS: u64 = 30;

impl Provider {
    /// Parses the configured keys.
    ///
    /// # Errors
    /// A description of what is wrong with the key material.
    pub fn new(config: &ProviderConfig) -> anyhow::Result<Self> {
        let keys = match &config.key {
            ProviderKey::Secret(secret) => {
                anyhow::ensure!(
                    secret.len() >= 16,
                    "an identity provider's secret must be at least 16 bytes"
                );
                vec![(None, Algorithm::HS256, DecodingKey::from_secret(secret.as_bytes()))]
            }
            ProviderKey::Pem { pem, algorithm } => {
                vec![(None, pem_algorithm(pem, *algorithm)?, pem_key(pem, *algorithm)?)]
            }
            ProviderKey::Jwks(json) => {
                let set: JwkSet = serde_json::from_str(json)
                    .map_err(|e| anyhow::anyhow!("the JWKS does not parse: {e}"))?;
                let mut keys = Vec::new();
                for jwk in &set.keys {
                    let Some(algorithm) = jwk.common.key_algorithm.and_then(|a| Algorithm::try_from(a).ok())
                    else {
                        anyhow::bail!(
                            "every JWKS key needs an `alg` Weft supports (HS256, RS256, ES256, EdDSA …)"
                        );
                    };
                    let key = DecodingKey::from_jwk(jwk)
                        .map_err(|e| anyhow::anyhow!("a JWKS key does not load: {e}"))?;
                    keys.push((jwk.common.key_id.clone(), algorithm, key));
                }
                anyhow::ensure!(!keys.is_empty(), "the JWKS has no keys");
                keys
            }
        };
        let mut validation = Validation::new(keys[0].1);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Ok(Self { issuer: config.issuer.clone(), keys, validation })
    }

    /// Verifies `token`: a configured key signed it with that key's algorithm (never `none`),
    /// it is current (`exp`, `nbf`), and its issuer and audience are the configured ones.
    ///
    /// # Errors
    /// [`AuthError::Invalid`] saying why not.
    pub fn verify(&self, token: &str) -> Result<ExternalIdentity, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let key = self
            .keys
            .iter()
            .find(|(kid, algorithm, _)| {
                *algorithm == header.alg && (kid.is_none() || header.kid.is_none() || *kid == header.kid)
            })
            .ok_or_else(|| AuthError::Invalid(format!("no configured key signs {:?} tokens", header.alg)))?;
        let mut validation = self.validation.clone();
        validation.algorithms = vec![key.1];
        let claims = jsonwebtoken::decode::<Claims>(token, &key.2, &validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?
            .claims;
        if claims.sub.is_empty() || claims.sub.len() > 255 {
            return Err(AuthError::Invalid("sub must have 1 to 255 bytes".to_owned()));
        }
        Ok(ExternalIdentity {
            issuer: self.issuer.clone(),
            subject: claims.sub,
            email: claims.email,
            name: claims.name,
        })
    }
}

fn pem_algorithm(pem: &str, given: Option<Algorithm>) -> anyhow::Result<Algorithm> {
    if let Some(algorithm) = given {
        return Ok(algorithm);
    }
    let bytes = pem.as_bytes();
    if DecodingKey::from_rsa_pem(bytes).is_ok() {
        Ok(Algorithm::RS256)
    } else if DecodingKey::from_ec_pem(bytes).is_ok() {
        Ok(Algorithm::ES256)
    } else if DecodingKey::from_ed_pem(bytes).is_ok() {
        Ok(Algorithm::EdDSA)
    } else {
        anyhow::bail!("the public key is not an RSA, P-256 or Ed25519 public key in PEM")
    }
}

fn pem_key(pem: &str, given: Option<Algorithm>) -> anyhow::Result<DecodingKey> {
    let bytes = pem.as_bytes();
    let algorithm = pem_algorithm(pem, given)?;
    let key = match algorithm {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => DecodingKey::from_rsa_pem(bytes),
        Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(bytes),
        Algorithm::EdDSA => DecodingKey::from_ed_pem(bytes),
        other => anyhow::bail!("{other:?} does not use a public key"),
    };
    key.map_err(|e| anyhow::anyhow!("the public key does not load as {algorithm:?}: {e}"))
}
