//! mayfly-federation: workload identity federation (issue #20), the verifier core.
//!
//! Workloads get Mayfly tokens with the identity their platform already gives them
//! instead of a stored secret. This crate checks such an external token against a
//! [`TrustedIssuer`] and finds the one [`FederatedIdentity`] it speaks for; storing
//! issuers and identities, the admin API, the token endpoint and replay enforcement
//! build on it.
//!
//! # Use
//!
//! 1. [`unverified_issuer`] reads `iss` so the caller can load that [`TrustedIssuer`]
//!    (built from a validated [`TrustedIssuerConfig`]).
//! 2. [`Verifier::verify`] checks the token: algorithm (the issuer's allowed subset of
//!    RS256, ES256, EdDSA, and the type of the key named by `kid`), signature, `iss`
//!    exact, `aud` contains the issuer's audience, `exp`/`nbf`/`iat` with skew, `iat`
//!    no older than the maximum age, `sub` present. Keys come from OpenID discovery, an
//!    explicit `jwks_uri` or an inline JWK Set, cached per issuer (module `cache`:
//!    `Cache-Control` clamped, bounded sizes, unknown-`kid` refetch at most once per
//!    interval, warm cache kept while the issuer is down).
//! 3. The caller spends [`VerifiedToken::replay_key`] (a `jti`, else issuer + `sub` +
//!    `iat`) in its one-time-id store until [`VerifiedToken::replay_until`].
//! 4. [`match_identity`] picks the single matching identity among the candidates (none
//!    or several is an error) and returns the claims that matched, for the audit event.
//!    [`FederatedIdentity::overlaps`] refuses certain ambiguity at admin write time.
//!
//! ```no_run
//! use mayfly_federation::{
//!     ClaimPath, Condition, FederatedIdentity, IdentityRule, TrustedIssuer,
//!     TrustedIssuerConfig, Verifier, match_identity, unverified_issuer,
//! };
//! use serde_json::json;
//!
//! # async fn example(token: &str) -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = Verifier::builder().build()?; // once, shared
//! let github = TrustedIssuer::new(TrustedIssuerConfig::new(
//!     "https://token.actions.githubusercontent.com",
//!     "https://mayfly.example",
//! ))?;
//! let identities = [FederatedIdentity::new(
//!     github.issuer(),
//!     IdentityRule::Claims {
//!         conditions: vec![
//!             Condition::Equals { claim: ClaimPath::parse("/repository")?, value: json!("acme/deploy") },
//!             Condition::Equals { claim: ClaimPath::parse("/ref")?, value: json!("refs/heads/main") },
//!         ],
//!     },
//! )?];
//! assert_eq!(unverified_issuer(token).as_deref(), Some(github.issuer()));
//! let verified = verifier.verify(&github, token).await?; // error.class() → OAuth error
//! let replay = verified.replay_key().storage_key(); // spend once, until verified.replay_until()
//! let matched = match_identity(&identities, &verified)?; // the one identity, and why
//! # let _ = (replay, matched);
//! # Ok(())
//! # }
//! ```
//!
//! Errors say which check failed without echoing token content; [`VerifyError::class`]
//! and [`MatchError::class`] map them to `invalid_grant`, `invalid_client` or
//! `temporarily_unavailable`.
//!
//! # What platforms' tokens carry
//!
//! All are compact JWS, almost always RS256 (SPIRE may use ES256).
//!
//! - **Kubernetes projected service-account tokens** (bound tokens, `TokenRequest`):
//!   `iss` (the cluster's `--service-account-issuer`), `sub`
//!   `system:serviceaccount:<namespace>:<name>`, `aud` (an array: the audience the
//!   volume asked for), `exp`, `iat`, `nbf`, and `kubernetes.io`: `{namespace,
//!   serviceaccount: {name, uid}, pod: {name, uid}}` (1.29+ also `node: {name, uid}`).
//!   `jti` only from 1.29 on: older clusters have none, so replay falls back to (issuer,
//!   `sub`, `iat`). The kubelet refreshes the token at 80 % of its lifetime (at least
//!   10 minutes), so the issuer's maximum age must be set to that, not the 5-minute
//!   default. Old clients may get tokens extended to a year (`warnafter` in the claims):
//!   hence no default lifetime bound. Match with `/kubernetes.io/namespace` and
//!   `/kubernetes.io/serviceaccount/name`, or the exact `sub`.
//! - **GitHub Actions OIDC tokens** (`iss` `https://token.actions.githubusercontent.com`,
//!   RS256): `jti`, `sub` (`repo:<owner>/<repo>:ref:<ref>`, or `:environment:<name>`,
//!   `:pull_request`), `aud` (a string, the `audience` the job asked for), `exp` (about
//!   5 minutes after `iat`), `nbf`, `iat`, and `repository`, `repository_id`,
//!   `repository_owner`, `repository_owner_id`, `repository_visibility`, `ref`,
//!   `ref_type`, `ref_protected`, `sha`, `workflow`, `workflow_ref`,
//!   `job_workflow_ref`, `event_name`, `environment`, `actor`, `actor_id`, `run_id`,
//!   `run_number`, `run_attempt`, `runner_environment`, `head_ref`, `base_ref` (all
//!   strings). Match on `/repository` (or `/repository_id`, which survives renames) and
//!   `/ref` or `/environment`.
//! - **GitLab CI ID tokens**: `iss` the GitLab URL, `sub`
//!   `project_path:<group/project>:ref_type:<type>:ref:<ref>`, `aud`, `jti`, and
//!   `project_path`, `namespace_path`, `ref`, `ref_type`, `ref_protected`,
//!   `environment`, `pipeline_source`, …
//! - **SPIFFE JWT-SVIDs**: `sub` the SPIFFE ID (`spiffe://<trust domain>/<path>`), `aud`,
//!   `exp` required, `iat` usual, no `jti` required. `iss` is present only when the SPIRE
//!   server is configured with a JWT issuer (its OIDC discovery provider serves the keys):
//!   this crate requires `iss` and `iat`. Match with a SPIFFE ID prefix.
//! - **OIDC ID tokens** (Google, Entra ID, …): `iss`, `sub`, `aud`, `exp`, `iat`, and
//!   provider claims (`email`, `email_verified`, `azp`, `tid`, …).
//!
//! # RSA and RUSTSEC-2023-0071
//!
//! RS256 is verified with `ring` (already Mayfly's TLS crypto provider), which
//! implements RSASSA-PKCS1-v1_5 verification only with public values (`n`, `e`), moduli
//! of 2048 to 8192 bits. RUSTSEC-2023-0071 ("Marvin") is a timing side channel in the
//! `rsa` crate's *private-key* operations (decryption, and signing), which leak the
//! secret exponent to an attacker who can time many of them. Verification uses no
//! secret: the signature, the key and the message are all public, so a timing
//! difference reveals nothing an attacker does not already have. This crate performs no
//! RSA private-key operation outside the `testing` feature (where ring signs with fixed
//! test keys), and does not depend on the `rsa` crate at all.

#![deny(missing_docs)]

mod cache;
pub mod clock;
mod error;
mod identity;
mod issuer;
mod jwk;
mod jws;
#[cfg(feature = "testing")]
pub mod testing;
mod verify;

pub use cache::CacheSettings;
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{ConfigError, ErrorClass, IdentityError, KeySetError, MatchError, VerifyError};
pub use identity::{
    ClaimPath, Condition, FederatedIdentity, IdentityMatch, IdentityRule, MatchedClaim,
    SpiffeIdPrefix, match_identity,
};
pub use issuer::{
    DEFAULT_CLOCK_SKEW, DEFAULT_MAX_AGE, KeySource, MAX_CLOCK_SKEW, MAX_MAX_AGE, MAX_MAX_LIFETIME,
    TrustedIssuer, TrustedIssuerConfig,
};
pub use jwk::{Algorithm, IssuerKey, KeySet, KeySetLimits, MAX_RSA_BITS, MIN_RSA_BITS};
pub use verify::{
    MAX_TOKEN_LEN, ReplayKey, VerifiedToken, Verifier, VerifierBuilder, unverified_issuer,
};
