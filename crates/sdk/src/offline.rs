//! [`OfflineVerifier`]: verification against a fixed key set, with no I/O and no
//! revocation checks, and no sender constraints: it returns the `cnf` and `cidr` claims
//! of DPoP-bound and network-restricted tokens for the caller to enforce.
//! [`crate::Verifier`] (with [`crate::Verifier::verify_presented`]) is what resource
//! servers should use.

use mayfly_core::PublicKey;
use mayfly_core::token::{self, Claims, VerifyOptions};
use mayfly_core::wire::JwkSet;
use time::{Duration, OffsetDateTime};

use crate::{DEFAULT_LEEWAY, VerifyError};

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
