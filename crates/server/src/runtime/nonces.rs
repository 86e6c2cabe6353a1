//! DPoP server nonces (RFC 9449 §8). Stateless so that replicas agree without talking:
//! a nonce is a 5-minute window number with an HMAC over it, keyed by a key derived from
//! the master key. The current and the previous window are accepted.

use std::fmt;

use hmac::{KeyInit as _, Mac as _};
use mayfly_core::jose::b64;
use time::OffsetDateTime;
use zeroize::Zeroizing;

/// How long one nonce window lasts, in seconds.
const NONCE_WINDOW: i64 = 300;

/// Issues and checks DPoP nonces.
pub struct Nonces {
    key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for Nonces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Nonces(<redacted>)")
    }
}

impl Nonces {
    /// Nonces keyed by `key` (derived from the master key).
    pub fn new(key: Zeroizing<[u8; 32]>) -> Self {
        Self { key }
    }

    fn tag(&self, window: i64) -> [u8; 16] {
        let mut out = [0u8; 16];
        if let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.key[..]) {
            mac.update(b"mayfly dpop nonce");
            mac.update(&window.to_be_bytes());
            out.copy_from_slice(&mac.finalize().into_bytes()[..16]);
        }
        out
    }

    /// The nonce for `now`.
    pub fn issue(&self, now: OffsetDateTime) -> String {
        let window = now.unix_timestamp().div_euclid(NONCE_WINDOW);
        let mut raw = window.to_be_bytes().to_vec();
        raw.extend_from_slice(&self.tag(window));
        b64(&raw)
    }

    /// Whether `nonce` was issued in this window or the previous one.
    pub fn accepts(&self, nonce: &str, now: OffsetDateTime) -> bool {
        use base64::Engine as _;
        let Ok(raw) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(nonce) else {
            return false;
        };
        let (Some(w), Some(tag)) = (raw.get(..8), raw.get(8..)) else {
            return false;
        };
        let Ok(w) = <[u8; 8]>::try_from(w) else {
            return false;
        };
        let window = i64::from_be_bytes(w);
        let current = now.unix_timestamp().div_euclid(NONCE_WINDOW);
        (window == current || window == current - 1)
            && subtle::ConstantTimeEq::ct_eq(&self.tag(window)[..], tag).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;
    use time::macros::datetime;

    #[test]
    fn nonces_last_two_windows_and_are_keyed() {
        let t = datetime!(2026-11-28 12:00:00 UTC);
        let nonces = Nonces::new(Zeroizing::new([1; 32]));
        let n = nonces.issue(t);
        assert!(nonces.accepts(&n, t));
        assert!(nonces.accepts(&n, t + Duration::seconds(NONCE_WINDOW)));
        assert!(!nonces.accepts(&n, t + Duration::seconds(2 * NONCE_WINDOW)));
        assert!(!nonces.accepts(&n, t - Duration::seconds(NONCE_WINDOW)));
        let other = Nonces::new(Zeroizing::new([2; 32]));
        assert!(!other.accepts(&n, t), "another key's nonce");
        assert!(!nonces.accepts("garbage!", t));
        assert!(!nonces.accepts("", t));
    }
}
