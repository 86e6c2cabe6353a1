//! Human passwords: argon2id with OWASP's minimum parameters (19 MiB, t=2, p=1, the
//! argon2 crate's defaults), hashed off the async runtime behind a semaphore so a burst
//! of password work cannot starve token issuance.

use std::sync::Arc;

use argon2::password_hash::phc::PasswordHash;
use argon2::{Argon2, PasswordHasher as _, PasswordVerifier as _};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

/// Shortest password accepted (NIST SP 800-63B asks for at least 8; we ask more).
pub const MIN_LEN: usize = 12;
/// Longest password accepted (bounds hashing work).
pub const MAX_LEN: usize = 1024;

/// Verified in place of a user's hash when the username does not exist, so that an
/// unknown user costs the same argon2id work as a wrong password and timing does not
/// tell which usernames exist. Same parameters as [`Passwords::hash`] writes (checked by
/// a test); no password matches it (its output is all zeros).
pub const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$bWF5Zmx5LWR1bW15LXNhbHQ$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// Why hashing failed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Too short or too long.
    #[error("password must be {MIN_LEN} to {MAX_LEN} characters")]
    Length,
    /// The hashing task failed (never expected).
    #[error("password hashing failed")]
    Hashing,
}

/// Runs password hashing and verification on the blocking pool, a few at a time.
#[derive(Debug, Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
}

impl Default for Passwords {
    fn default() -> Self {
        Self::new(2)
    }
}

impl Passwords {
    /// At most `concurrency` hashes at once.
    pub fn new(concurrency: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    /// Hashes a new password into a PHC string.
    ///
    /// # Errors
    /// [`PasswordError::Length`] outside the accepted lengths.
    pub async fn hash(&self, password: Zeroizing<String>) -> Result<String, PasswordError> {
        let chars = password.chars().count();
        if !(MIN_LEN..=MAX_LEN).contains(&chars) {
            return Err(PasswordError::Length);
        }
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::Hashing)?;
        tokio::task::spawn_blocking(move || {
            let hash: PasswordHash = Argon2::default()
                .hash_password(password.as_bytes())
                .map_err(|_| PasswordError::Hashing)?;
            Ok(hash.to_string())
        })
        .await
        .map_err(|_| PasswordError::Hashing)?
    }

    /// Whether `password` matches the PHC string `hash`.
    pub async fn verify(&self, password: Zeroizing<String>, hash: String) -> bool {
        if password.len() > MAX_LEN * 4 {
            return false;
        }
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        tokio::task::spawn_blocking(move || {
            Argon2::default()
                .verify_password(password.as_bytes(), hash.as_str())
                .is_ok()
        })
        .await
        .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let p = Passwords::default();
        let hash = p
            .hash(Zeroizing::new("correct horse battery".into()))
            .await
            .unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            p.verify(Zeroizing::new("correct horse battery".into()), hash.clone())
                .await
        );
        assert!(
            !p.verify(Zeroizing::new("wrong horse battery".into()), hash.clone())
                .await
        );
        assert!(
            !p.verify(Zeroizing::new("x".into()), "not a hash".into())
                .await
        );
        assert!(matches!(
            p.hash(Zeroizing::new("short".into())).await,
            Err(PasswordError::Length)
        ));
    }

    #[tokio::test]
    async fn the_dummy_hash_costs_what_a_real_one_does() {
        let p = Passwords::default();
        let real = p
            .hash(Zeroizing::new("correct horse battery".into()))
            .await
            .unwrap();
        let params = |h: &str| h.rsplitn(3, '$').nth(2).unwrap().to_owned();
        assert_eq!(params(DUMMY_HASH), params(&real), "same algorithm and cost");
        // It parses (a parse failure would return at once, and timing would tell).
        let parsed = PasswordHash::new(DUMMY_HASH).unwrap();
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        // Nothing matches it. (Timing is measured end to end by the e2e tests.)
        assert!(
            !p.verify(
                Zeroizing::new("correct horse battery".into()),
                DUMMY_HASH.into()
            )
            .await
        );
        assert!(
            !p.verify(Zeroizing::new(String::new()), DUMMY_HASH.into())
                .await
        );
    }
}
