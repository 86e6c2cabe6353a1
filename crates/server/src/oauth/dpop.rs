//! DPoP at the server (RFC 9449): proofs at the token endpoint and at introspection,
//! their `jti` made single-use across replicas through the store. The server nonces are
//! `crate::runtime::nonces`.

use mayfly_core::dpop::{self, Expect, ProofError, Verified};

use crate::oauth::error::TokenError;
use crate::runtime::AppState;

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
    let verified = verify(state, proof, ctx)?;
    spend(state, &verified).await?;
    Ok(verified)
}

/// Checks a DPoP proof, nonce included, without recording anything: the token endpoint
/// asks this before it authenticates the client, so that a nonce challenge or a bad
/// proof never spends a one-time credential (an external token's `jti`) the client
/// must send again, and [`spend`] after, so that unauthenticated callers cause no
/// write.
///
/// # Errors
/// `invalid_dpop_proof` or `use_dpop_nonce`.
pub fn verify(
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
    Ok(verified)
}

/// Records a verified proof's `jti`: single use until the proof expires, on every
/// replica.
///
/// # Errors
/// `invalid_dpop_proof` for a proof seen before, or a store failure.
pub async fn spend(state: &AppState, verified: &Verified) -> Result<(), TokenError> {
    let fresh = state
        .store
        .use_once(
            &format!("dpop:{}", verified.jkt),
            &verified.jti,
            verified.expires_at,
            state.clock.now(),
        )
        .await?;
    if !fresh {
        return Err(TokenError::InvalidDpopProof(
            "DPoP proof jti already used".into(),
        ));
    }
    Ok(())
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
