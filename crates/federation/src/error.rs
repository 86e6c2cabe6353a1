//! Why a setting, a key set, a token or an identity was refused.
//!
//! Messages name the failed check and never echo the token, its claims or key ids: they
//! may be returned to the caller as an OAuth `error_description`.

/// How the token endpoint answers a refusal (RFC 6749 §5.2), so every caller maps the
/// same failure to the same answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// `invalid_client`: the token is a valid one, but it does not name exactly one
    /// Mayfly identity (no match, or an ambiguous one), so no client is authenticated.
    InvalidClient,
    /// `invalid_grant`: the presented token itself is not acceptable (signature, issuer,
    /// audience, times, algorithm, shape).
    InvalidGrant,
    /// The issuer's keys could not be had: not the caller's fault, answer 503
    /// (`temporarily_unavailable`) so the workload retries rather than gives up.
    Unavailable,
}

impl ErrorClass {
    /// The RFC 6749 `error` code (RFC 6749 §4.1.2.1's `temporarily_unavailable` for
    /// [`ErrorClass::Unavailable`]).
    pub fn oauth_error(self) -> &'static str {
        match self {
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::Unavailable => "temporarily_unavailable",
        }
    }
}

/// A [`crate::TrustedIssuer`] setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A URL that is not `https` (or `http` on a loopback host), or has parts an issuer
    /// or key-set URL must not have.
    #[error("{what}: {reason}")]
    Url {
        /// Which setting.
        what: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An algorithm outside RS256, ES256 and EdDSA (`none`, HMAC, PS*, …).
    #[error("algorithm {0:?} is not allowed (only RS256, ES256 and EdDSA)")]
    Algorithm(String),
    /// No algorithm at all.
    #[error("at least one algorithm is required")]
    NoAlgorithm,
    /// The required audience is empty or too long.
    #[error("audience: {0}")]
    Audience(&'static str),
    /// A duration setting out of its bounds.
    #[error("{what} must be between {min} and {max} seconds")]
    Duration {
        /// Which setting.
        what: &'static str,
        /// Least accepted value.
        min: i64,
        /// Greatest accepted value.
        max: i64,
    },
    /// The inline key set cannot be used.
    #[error("inline key set: {0}")]
    InlineKeys(#[source] KeySetError),
}

/// Why an issuer's key set (or discovery document) could not be had or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeySetError {
    /// The response exceeded the size bound.
    #[error("response larger than {max} bytes")]
    TooLarge {
        /// The bound.
        max: usize,
    },
    /// More keys than the bound.
    #[error("key set has more than {max} keys")]
    TooManyKeys {
        /// The bound.
        max: usize,
    },
    /// Not one key in the set is a usable public RS256 / ES256 / EdDSA signing key.
    #[error("key set holds no usable signing key")]
    NoUsableKey,
    /// Not a JWK Set (RFC 7517 §5).
    #[error("malformed key set: {0}")]
    Malformed(&'static str),
    /// The OpenID discovery document is unusable.
    #[error("discovery document: {0}")]
    Discovery(&'static str),
    /// The issuer answered with an error status.
    #[error("issuer answered HTTP {0}")]
    Status(u16),
    /// The issuer could not be reached.
    #[error("issuer unreachable: {0}")]
    Transport(String),
    /// A fetch failed less than the refetch interval ago and nothing usable is held.
    #[error("a recent fetch failed; retrying later")]
    RetryLater,
}

/// Why a token was refused. [`VerifyError::class`] says how to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Longer than [`crate::MAX_TOKEN_LEN`].
    #[error("token larger than {max} bytes")]
    TooLarge {
        /// The bound.
        max: usize,
    },
    /// Not three base64url parts with a JSON object header.
    #[error("token is not a compact JWS")]
    Malformed,
    /// A header algorithm this crate never accepts: `none`, HMAC (`HS*`, e.g. signed
    /// with the issuer's public key as the secret), PS*, RS384, …
    #[error("token algorithm not supported (only RS256, ES256 and EdDSA)")]
    UnsupportedAlgorithm,
    /// A supported algorithm the trusted issuer is not configured for.
    #[error("token algorithm not allowed for this issuer")]
    AlgorithmNotAllowed,
    /// The header lists critical extensions (`crit`); none is understood.
    #[error("token header has critical extensions")]
    CriticalHeader,
    /// The `kid` names no key of the issuer, even after a refetch (or a refetch was
    /// not allowed yet).
    #[error("token signed with a key the issuer does not publish")]
    UnknownKey,
    /// The named key is of another type than the header algorithm (e.g. an RSA key for
    /// an `ES256` header).
    #[error("issuer key type does not match the token algorithm")]
    KeyAlgorithmMismatch,
    /// The signature does not verify (tampered header or payload, or a forged one).
    #[error("token signature does not verify")]
    BadSignature,
    /// A claim is missing or of the wrong type.
    #[error("token claims: {0}")]
    InvalidClaims(&'static str),
    /// `iss` is not exactly the trusted issuer.
    #[error("token issuer is not the trusted issuer")]
    WrongIssuer,
    /// `aud` does not contain the required audience.
    #[error("token audience does not include the required audience")]
    WrongAudience,
    /// `exp` passed (beyond the clock skew).
    #[error("token expired")]
    Expired,
    /// `nbf` not reached (beyond the clock skew).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iat` in the future (beyond the clock skew).
    #[error("token issued in the future")]
    IssuedInFuture,
    /// `iat` older than the issuer's maximum age.
    #[error("token older than the issuer's maximum age")]
    TooOld,
    /// `exp - iat` longer than the issuer's maximum lifetime (when one is set).
    #[error("token lifetime longer than the issuer allows")]
    LifetimeTooLong,
    /// The issuer's keys could not be fetched and none usable is held.
    #[error("issuer keys unavailable: {0}")]
    KeysUnavailable(#[source] KeySetError),
}

impl VerifyError {
    /// How the token endpoint answers this refusal.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::KeysUnavailable(_) => ErrorClass::Unavailable,
            _ => ErrorClass::InvalidGrant,
        }
    }
}

/// A [`crate::FederatedIdentity`] (or one of its conditions) that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// A claim path that is not a JSON Pointer (RFC 6901) to a member.
    #[error("claim path: {0}")]
    ClaimPath(&'static str),
    /// A SPIFFE ID (or prefix) that breaks the SPIFFE ID grammar.
    #[error("SPIFFE ID: {0}")]
    Spiffe(&'static str),
    /// A condition value that is not a string, number or boolean.
    #[error("condition value must be a string, number or boolean")]
    Value,
    /// An empty subject or an empty condition set (it would match every token).
    #[error("an identity needs an exact subject or at least one condition")]
    Empty,
    /// Two equality conditions on one claim.
    #[error("two conditions on the same claim")]
    DuplicateClaim,
    /// The issuer URL is empty.
    #[error("an identity needs an issuer")]
    Issuer,
}

/// Why a verified token did not select a single identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatchError {
    /// No candidate matches.
    #[error("no federated identity matches the token")]
    NoMatch,
    /// More than one candidate matches: refused rather than picking one.
    #[error("{count} federated identities match the token")]
    Ambiguous {
        /// How many matched.
        count: usize,
    },
}

impl MatchError {
    /// How the token endpoint answers this refusal: `invalid_client`.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::InvalidClient
    }
}
