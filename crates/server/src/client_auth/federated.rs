//! Workload identity federation at the token endpoint (issue #20): an external JWT — a
//! Kubernetes projected service-account token, a GitHub Actions or GitLab CI OIDC token,
//! a SPIFFE JWT-SVID, an OIDC ID token — stands for the Mayfly client (RFC 7523 §2.2
//! client authentication) or user (RFC 8693 exchange) one federated identity names.
//!
//! One path for both: the token's unverified `iss` picks the trusted issuer (none: refused),
//! the shared [`Verifier`] checks it (algorithm, signature, `iss`, `aud`, times, maximum
//! age), the issuer's identities of the wanted owner kind are matched (exactly one must
//! match; several is refused as ambiguous), and the caller then spends the token once
//! ([`spend`]): its `jti` until it expires, or without one (issuer, `sub`, `iat`) until
//! the maximum age ends, in the store's one-time ids, so across replicas.
//!
//! What the audit log learns is [`External`]: the issuer, the subject and the claims
//! that matched; never the token.

use mayfly_federation::{
    FederatedIdentity, IdentityRule, MatchedClaim, TrustedIssuer, TrustedIssuerConfig,
    VerifiedToken, Verifier, match_identity, unverified_issuer,
};
use mayfly_store::{FederationStore, ReplayStore, StoreError, Subject};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

/// Where external tokens' single uses are recorded ([`ReplayStore::use_once`]).
pub const REPLAY_NAMESPACE: &str = "federation";

/// The external identity a token proved, for the audit log (`detail.external`).
#[derive(Debug, Clone, PartialEq)]
pub struct External {
    /// The trusted issuer (`iss`).
    pub issuer: String,
    /// `sub`.
    pub subject: String,
    /// The claims that made the identity match (JSON Pointer → value); empty when the
    /// token was refused before or at matching.
    pub matched: Vec<MatchedClaim>,
}

impl External {
    fn of(token: &VerifiedToken) -> Self {
        Self {
            issuer: token.issuer().to_owned(),
            subject: token.subject().to_owned(),
            matched: Vec::new(),
        }
    }

    /// `{issuer, subject, matched: {pointer: value, …}}`, the audit events' `external`.
    pub fn detail(&self) -> Value {
        let matched: Map<String, Value> = self
            .matched
            .iter()
            .map(|m| (m.claim.clone(), m.value.clone()))
            .collect();
        json!({ "issuer": self.issuer, "subject": self.subject, "matched": matched })
    }
}

/// Which kind of Mayfly identity the token must speak for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerKind {
    /// A client (client authentication).
    Client,
    /// A user (token exchange).
    User,
}

/// Why an external token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum FederatedError {
    /// Refused; the reason names the failed check (for the audit log, never the token's
    /// content), `external` is set once the token verified.
    #[error("{reason}")]
    Refused {
        /// Which check failed.
        reason: String,
        /// The verified identity, when it got that far.
        external: Option<Box<External>>,
    },
    /// The issuer's keys could not be had and none are held: the caller should retry.
    #[error("trusted issuer keys unavailable: {0}")]
    Unavailable(String),
    /// The store failed (or holds settings the verifier refuses).
    #[error("store failed")]
    Store(#[from] StoreError),
}

impl FederatedError {
    fn refused(reason: impl Into<String>, external: Option<&External>) -> Self {
        Self::Refused {
            reason: reason.into(),
            external: external.map(|e| Box::new(e.clone())),
        }
    }

    /// The external identity, when the token verified.
    pub fn external(&self) -> Option<&External> {
        match self {
            Self::Refused { external, .. } => external.as_deref(),
            _ => None,
        }
    }
}

/// What an external token is checked against.
pub struct Federation<'a> {
    /// Trusted issuers and federated identities.
    pub store: &'a dyn FederationStore,
    /// Where single uses are recorded.
    pub replay: &'a dyn ReplayStore,
    /// The one verifier of the process (its key cache is shared).
    pub verifier: &'a Verifier,
    /// Now.
    pub now: OffsetDateTime,
}

/// A token that verified and matched exactly one identity, not yet spent.
#[derive(Debug)]
pub struct Identified {
    /// The client or user it speaks for.
    pub owner: Subject,
    /// Who it proved to be, and why it matched.
    pub external: External,
    token: VerifiedToken,
}

impl Identified {
    /// The token's `exp`: what is issued for it should not outlive it.
    pub fn expires_at(&self) -> OffsetDateTime {
        self.token.expires_at()
    }
}

/// The unverified `iss` of a token that could be a federated one: present, and not a
/// Mayfly client id (a `private_key_jwt` assertion's `iss` is its client id, a canonical
/// UUID; a trusted issuer's is an URL).
pub fn federated_issuer(token: &str) -> Option<String> {
    unverified_issuer(token).filter(|iss| super::canonical_id(iss).is_none())
}

struct Candidate {
    owner: Subject,
    identity: FederatedIdentity,
}

impl AsRef<FederatedIdentity> for Candidate {
    fn as_ref(&self) -> &FederatedIdentity {
        &self.identity
    }
}

/// Verifies `token` against its trusted issuer and finds the one identity of `kind` it
/// speaks for. Does not spend it: call [`spend`] once every other check passed.
///
/// # Errors
/// [`FederatedError`].
pub async fn identify(
    fed: &Federation<'_>,
    token: &str,
    kind: OwnerKind,
) -> Result<Identified, FederatedError> {
    let issuer_url = unverified_issuer(token)
        .ok_or_else(|| FederatedError::refused("external token malformed or without iss", None))?;
    let record = fed
        .store
        .trusted_issuer_by_url(&issuer_url)
        .await?
        .ok_or_else(|| FederatedError::refused("token issuer is not a trusted issuer", None))?;
    let issuer = serde_json::from_value::<TrustedIssuerConfig>(record.settings.clone())
        .ok()
        .and_then(|config| TrustedIssuer::new(config).ok())
        .ok_or(StoreError::Corrupt("trusted issuer settings"))?;
    let verified = fed
        .verifier
        .verify(&issuer, token)
        .await
        .map_err(|e| match e.class() {
            mayfly_federation::ErrorClass::Unavailable => {
                FederatedError::Unavailable(e.to_string())
            }
            _ => FederatedError::refused(e.to_string(), None),
        })?;
    let mut external = External::of(&verified);
    let candidates: Vec<Candidate> = fed
        .store
        .federated_identities_of_issuer(record.id)
        .await?
        .into_iter()
        .filter(|r| {
            matches!(
                (kind, r.owner),
                (OwnerKind::Client, Subject::Client(_)) | (OwnerKind::User, Subject::User(_))
            )
        })
        .map(|r| {
            serde_json::from_value::<IdentityRule>(r.rule)
                .ok()
                .and_then(|rule| FederatedIdentity::new(issuer.issuer(), rule).ok())
                .map(|identity| Candidate {
                    owner: r.owner,
                    identity,
                })
                .ok_or(StoreError::Corrupt("federated identity rule"))
        })
        .collect::<Result<_, _>>()?;
    let found = match_identity(&candidates, &verified).map_err(|e| {
        let reason = match e {
            mayfly_federation::MatchError::Ambiguous { .. } => format!("ambiguous: {e}"),
            mayfly_federation::MatchError::NoMatch => e.to_string(),
        };
        FederatedError::refused(reason, Some(&external))
    })?;
    external.matched = found.matched;
    Ok(Identified {
        owner: found.identity.owner,
        external,
        token: verified,
    })
}

/// Records the token's single use (its `jti`, else issuer, `sub` and `iat`) until it
/// would be refused anyway; a second use, on any replica, is refused.
///
/// # Errors
/// [`FederatedError::Refused`] for a replay, [`FederatedError::Store`].
pub async fn spend(fed: &Federation<'_>, identified: &Identified) -> Result<(), FederatedError> {
    let token = &identified.token;
    let fresh = fed
        .replay
        .use_once(
            REPLAY_NAMESPACE,
            &token.replay_key().storage_key(),
            token.replay_until(),
            fed.now,
        )
        .await?;
    if fresh {
        Ok(())
    } else {
        let reason = if token.jti().is_some() {
            "external token replayed (jti already used)"
        } else {
            "external token replayed (issuer, sub and iat already used)"
        };
        Err(FederatedError::refused(reason, Some(&identified.external)))
    }
}
