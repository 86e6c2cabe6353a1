//! mayfly-sdk: what a resource server needs to trust a Mayfly token.
//!
//! This first piece verifies tokens offline against a key set fetched from the issuer's
//! `jwks_uri`: signature (with the key named by the footer `kid`), `iss`, `aud`, `exp`
//! and `nbf` with a small leeway, and required scopes. Fetching and refreshing the key
//! set, the revocation feed and the tower layer build on it.
//!
//! ```
//! use mayfly_core::wire::JwkSet;
//! use mayfly_sdk::{OfflineVerifier, VerifyError};
//!
//! let jwks: JwkSet = serde_json::from_str(r#"{"keys":[]}"#).unwrap();
//! let verifier = OfflineVerifier::new("https://sts.example", "https://api.example/orders", &jwks);
//! let now = time::OffsetDateTime::UNIX_EPOCH;
//! assert_eq!(verifier.verify("v4.public.not-a-token", &["orders:read"], now).unwrap_err(),
//!            VerifyError::Token(mayfly_core::VerifyError::Malformed));
//! ```

#![deny(missing_docs)]

use mayfly_core::PublicKey;
use mayfly_core::token::{self, Claims, VerifyOptions};
use mayfly_core::wire::JwkSet;
use time::{Duration, OffsetDateTime};

/// Default clock-skew allowance.
pub const DEFAULT_LEEWAY: Duration = Duration::seconds(30);

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The token itself is invalid (signature, issuer, audience, time).
    #[error(transparent)]
    Token(#[from] mayfly_core::VerifyError),
    /// Valid, but without a required scope (RFC 6750 §3.1 `insufficient_scope`).
    #[error("missing scope {0}")]
    InsufficientScope(String),
}

/// Verifies tokens for one audience against a fixed key set.
#[derive(Debug, Clone)]
pub struct OfflineVerifier {
    issuer: String,
    audience: String,
    keys: Vec<PublicKey>,
    leeway: Duration,
}

impl OfflineVerifier {
    /// A verifier trusting the keys of `jwks` whose `paserk` is well formed and matches
    /// their `kid`; others are ignored.
    pub fn new(issuer: &str, audience: &str, jwks: &JwkSet) -> Self {
        let keys = jwks
            .keys
            .iter()
            .filter_map(|jwk| {
                PublicKey::from_paserk(&jwk.paserk)
                    .ok()
                    .filter(|k| k.id().as_str() == jwk.kid)
            })
            .collect();
        Self {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            keys,
            leeway: DEFAULT_LEEWAY,
        }
    }

    /// Changes the clock-skew allowance.
    #[must_use]
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// How many keys are trusted.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Verifies `token` at `now` and checks it carries every scope in `required`.
    ///
    /// # Errors
    /// [`VerifyError`] naming the first failed check.
    pub fn verify(
        &self,
        token: &str,
        required: &[&str],
        now: OffsetDateTime,
    ) -> Result<Claims, VerifyError> {
        let options = VerifyOptions {
            issuer: &self.issuer,
            audience: Some(&self.audience),
            leeway: self.leeway,
        };
        let claims = token::verify(
            token,
            |kid| self.keys.iter().find(|k| k.id() == kid),
            &options,
            now,
        )?;
        if let Some(missing) = required.iter().find(|s| !claims.has_scope(s)) {
            return Err(VerifyError::InsufficientScope((*missing).to_owned()));
        }
        Ok(claims)
    }
}
