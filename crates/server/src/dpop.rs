//! DPoP at the server (RFC 9449): proofs at the token endpoint and at introspection,
//! their `jti` made single-use across replicas through the store, and server nonces.
//!
//! Nonces are stateless so that replicas agree without talking: a nonce is a 5-minute
//! window number with an HMAC over it, keyed by a key derived from the master key. The
//! current and the previous window are accepted.

use std::fmt;

use hmac::{KeyInit as _, Mac as _};
use mayfly_core::dpop::{self, Expect, ProofError, Verified};
use mayfly_core::jose::b64;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::grant::TokenError;
use crate::state::AppState;

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

/// What a proof is checked against at the server.
#[derive(Debug, Clone, Copy)]
pub struct ProofContext<'a> {
    /// The request method.
    pub htm: &'a str,
    /// The URL the client addressed.
    pub htu: &'a str,
    /// The access token presented with it (introspection on behalf of a resource server).
    pub access_token: Option<&'a str>,
    /// The key the token is bound to.
    pub jkt: Option<&'a str>,
    /// Whether a server nonce is required.
    pub nonce_required: bool,
}

/// Checks a DPoP proof and records its `jti` (single use until the proof expires, on
/// every replica).
///
/// # Errors
/// `invalid_dpop_proof`, `use_dpop_nonce`, or a store failure.
pub async fn check(
    state: &AppState,
    proof: &str,
    ctx: &ProofContext<'_>,
) -> Result<Verified, TokenError> {
    let now = state.clock.now();
    let verified = dpop::verify(
        proof,
        &Expect {
            htm: ctx.htm,
            htu: ctx.htu,
            access_token: ctx.access_token,
            jkt: ctx.jkt,
            max_age: dpop::MAX_AGE,
            now,
        },
    )
    .map_err(|e: ProofError| TokenError::InvalidDpopProof(e.to_string()))?;
    if ctx.nonce_required
        && !verified
            .nonce
            .as_deref()
            .is_some_and(|n| state.nonces.accepts(n, now))
    {
        return Err(TokenError::UseDpopNonce);
    }
    let fresh = state
        .store
        .use_once(
            &format!("dpop:{}", verified.jkt),
            &verified.jti,
            verified.expires_at,
            now,
        )
        .await?;
    if !fresh {
        return Err(TokenError::InvalidDpopProof(
            "DPoP proof jti already used".into(),
        ));
    }
    Ok(verified)
}

/// How often spent one-time ids (assertion and proof `jti`s) past their expiry are
/// deleted.
pub const PRUNE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Deletes expired one-time ids now and then every [`PRUNE_INTERVAL`].
/// Abort the handle to stop it.
pub fn spawn_pruning(
    store: std::sync::Arc<dyn mayfly_store::Store>,
    clock: std::sync::Arc<dyn crate::clock::Clock>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(e) = store.prune_used_ids(clock.now()).await {
                tracing::warn!(error = %e, "pruning spent one-time ids failed");
            }
            tokio::time::sleep(PRUNE_INTERVAL).await;
        }
    })
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
