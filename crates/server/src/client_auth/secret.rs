//! Client secrets (`client_secret_basic` / `client_secret_post`, RFC 6749 §2.3.1).
//!
//! Secrets are 32 random bytes, base64url, prefixed `mfy_cs_` so secret scanners can
//! spot leaks. Being high-entropy, they are stored as SHA-256 digests (a slow password
//! hash would add nothing but latency) and compared in constant time.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mayfly_store::ClientSecretRecord;
use rand::Rng as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use time::OffsetDateTime;
use zeroize::Zeroizing;

/// Prefix of every client secret.
pub const PREFIX: &str = "mfy_cs_";
/// Longest secret worth hashing; anything longer cannot be ours.
pub const MAX_LEN: usize = 256;

/// A client secret in clear. Shown once, never logged: `Debug` redacts, drop zeroizes.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(Zeroizing<String>);

impl ClientSecret {
    /// A fresh random secret.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(&mut bytes[..]);
        let mut text = Zeroizing::new(String::with_capacity(PREFIX.len() + 43));
        text.push_str(PREFIX);
        URL_SAFE_NO_PAD.encode_string(&bytes[..], &mut text);
        Self(text)
    }

    /// The secret text, to show once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its SHA-256 digest, the only form stored.
    pub fn digest(&self) -> [u8; 32] {
        digest(&self.0)
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

/// SHA-256 of a presented secret.
pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Whether `presented` matches one of the secrets valid at `now`. Compares against every
/// stored digest in constant time, so timing reveals neither which one matched nor how
/// many bytes did.
pub fn matches(presented: &str, stored: &[ClientSecretRecord], now: OffsetDateTime) -> bool {
    if presented.len() > MAX_LEN {
        return false;
    }
    let presented = digest(presented);
    let mut ok = subtle::Choice::from(0u8);
    for record in stored {
        let valid = subtle::Choice::from(u8::from(record.is_valid_at(now)));
        ok |= record.digest.ct_eq(&presented) & valid;
    }
    ok.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;
    use uuid::Uuid;

    fn record(secret: &ClientSecret, expires_at: Option<OffsetDateTime>) -> ClientSecretRecord {
        ClientSecretRecord {
            id: Uuid::now_v7(),
            client_id: Uuid::now_v7(),
            digest: secret.digest(),
            created_at: OffsetDateTime::UNIX_EPOCH,
            expires_at,
        }
    }

    #[test]
    fn generated_secrets() {
        let a = ClientSecret::generate();
        let b = ClientSecret::generate();
        assert!(a.expose().starts_with(PREFIX));
        assert_eq!(a.expose().len(), PREFIX.len() + 43);
        assert_ne!(a, b);
        assert_eq!(format!("{a:?}"), "ClientSecret(<redacted>)");
    }

    #[test]
    fn matching_respects_expiry() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::days(1);
        let old = ClientSecret::generate();
        let new = ClientSecret::generate();
        let stored = [record(&old, Some(now)), record(&new, None)];
        assert!(matches(new.expose(), &stored, now));
        assert!(!matches(old.expose(), &stored, now), "expired at now");
        assert!(matches(old.expose(), &stored, now - Duration::seconds(1)));
        assert!(!matches("mfy_cs_wrong", &stored, now));
        assert!(!matches(new.expose(), &[], now));
        assert!(!matches(&"x".repeat(MAX_LEN + 1), &stored, now));
    }
}
