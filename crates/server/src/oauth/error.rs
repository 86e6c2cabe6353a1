//! Errors the OAuth endpoints share: why a token, introspection or revocation request
//! was refused ([`TokenError`], an RFC 6749 §5.2 error each) and why a form body was
//! refused ([`FormError`]). Outside `grant/` so DPoP, introspection and the web layer
//! name them without reaching into issuance; `http/error.rs` turns them into responses.

use mayfly_core::wire::ErrorCode;
use mayfly_store::StoreError;
use uuid::Uuid;

use crate::client_auth::AuthError;

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// Wrong or missing `Content-Type`.
    #[error("Content-Type must be application/x-www-form-urlencoded")]
    ContentType,
    /// A parameter appeared twice.
    #[error("parameter {0} must not be repeated (RFC 6749 §3.2)")]
    Repeated(String),
}

/// Why a token request was refused. Each variant is an RFC 6749 §5.2 (or RFC 8707)
/// error; its text is the `error_description` and is safe to show the client.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// `invalid_request`: malformed request.
    #[error("{0}")]
    InvalidRequest(String),
    /// `invalid_request` with 413: the body is too large.
    #[error("request body too large")]
    TooLarge,
    /// `invalid_client`: authentication failed. The reason is for the audit log only.
    #[error("client authentication failed")]
    InvalidClient(String),
    /// `unsupported_grant_type`.
    #[error("grant_type {0:?} is not supported")]
    UnsupportedGrantType(String),
    /// `unauthorized_client`: this client may not use this grant type.
    #[error("{0}")]
    UnauthorizedClient(String),
    /// `invalid_grant`: the presented grant (a token) is invalid, expired or revoked, or
    /// does not allow what was asked.
    #[error("{0}")]
    InvalidGrant(String),
    /// `invalid_grant` for a user login: unknown user, wrong password, locked out or
    /// disabled all look alike to the caller; the reason is for the audit log.
    #[error("invalid username or password")]
    UserAuthFailed {
        /// Why, for the audit log.
        reason: &'static str,
        /// The user, when the username exists.
        user: Option<Uuid>,
    },
    /// `invalid_grant` for a refresh token; the reason is for the audit log.
    #[error("the refresh token is invalid, expired or revoked")]
    RefreshRefused(String),
    /// `invalid_grant` for an external `subject_token` (federated token exchange): every
    /// reason looks alike to the caller; the reason and, once it verified, the external
    /// identity (`{issuer, subject, matched}`) are for the audit log.
    #[error(
        "the subject_token is invalid, expired, already used, or speaks for no user that may have a token"
    )]
    ExternalSubjectRefused {
        /// Why, for the audit log.
        reason: String,
        /// The external identity, when the token verified.
        external: Option<serde_json::Value>,
    },
    /// `invalid_scope`: scope missing, malformed or not granted.
    #[error("{0}")]
    InvalidScope(String),
    /// `invalid_target`: the resource is invalid or unknown (RFC 8707 §2).
    #[error("{0}")]
    InvalidTarget(String),
    /// `unauthorized_client` with 403: authenticated, but not allowed this endpoint.
    #[error("{0}")]
    Forbidden(String),
    /// `unauthorized_client` with 400: the request comes from a network the client or
    /// its grants do not allow.
    #[error("{0}")]
    NetworkNotAllowed(String),
    /// `invalid_dpop_proof` (RFC 9449 §5): the proof is invalid, or missing where the
    /// client must use DPoP.
    #[error("{0}")]
    InvalidDpopProof(String),
    /// `use_dpop_nonce` (RFC 9449 §8): retry with the nonce in the `DPoP-Nonce` header.
    #[error("a DPoP nonce is required; use the one in the DPoP-Nonce header")]
    UseDpopNonce,
    /// `unsupported_token_type` (RFC 7009 §2.2.1).
    #[error("token_type_hint {0:?} is not supported")]
    UnsupportedTokenType(String),
    /// `invalid_request` with 408: the body did not arrive within
    /// `--body-read-timeout`.
    #[error("the request body did not arrive in time")]
    SlowBody,
    /// `temporarily_unavailable` with 429: too many failed authentications for this
    /// client or from this address (client or password); retry after the given number
    /// of seconds.
    #[error("too many failed authentications; retry later")]
    Throttled(i64),
    /// `temporarily_unavailable` with 503: the database or audit log is unreachable.
    #[error("service temporarily unavailable, retry later")]
    Unavailable,
    /// `server_error`: a bug or an unexpected failure; details are logged, not shown.
    #[error("internal error")]
    Internal(String),
}

impl TokenError {
    /// The wire error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidRequest(_) | Self::TooLarge | Self::SlowBody => ErrorCode::InvalidRequest,
            Self::InvalidClient(_) => ErrorCode::InvalidClient,
            Self::UnsupportedGrantType(_) => ErrorCode::UnsupportedGrantType,
            Self::UnauthorizedClient(_) => ErrorCode::UnauthorizedClient,
            Self::InvalidGrant(_)
            | Self::UserAuthFailed { .. }
            | Self::RefreshRefused(_)
            | Self::ExternalSubjectRefused { .. } => ErrorCode::InvalidGrant,
            Self::InvalidScope(_) => ErrorCode::InvalidScope,
            Self::InvalidTarget(_) => ErrorCode::InvalidTarget,
            Self::Forbidden(_) | Self::NetworkNotAllowed(_) => ErrorCode::UnauthorizedClient,
            Self::InvalidDpopProof(_) => ErrorCode::InvalidDpopProof,
            Self::UseDpopNonce => ErrorCode::UseDpopNonce,
            Self::UnsupportedTokenType(_) => ErrorCode::UnsupportedTokenType,
            Self::Unavailable | Self::Throttled(_) => ErrorCode::TemporarilyUnavailable,
            Self::Internal(_) => ErrorCode::ServerError,
        }
    }

    /// The reason to record in the audit log (may say more than the client sees).
    pub fn audit_reason(&self) -> String {
        match self {
            Self::InvalidClient(reason)
            | Self::RefreshRefused(reason)
            | Self::ExternalSubjectRefused { reason, .. } => reason.clone(),
            Self::UserAuthFailed { reason, .. } => (*reason).to_owned(),
            other => other.to_string(),
        }
    }
}

impl From<StoreError> for TokenError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            tracing::warn!(error = %e, "database unavailable");
            Self::Unavailable
        } else if matches!(e, StoreError::Unstorable(_)) {
            Self::InvalidRequest(
                "a parameter holds a control character (such as NUL) that no stored value has"
                    .into(),
            )
        } else {
            Self::Internal(format!("{e}: {:?}", std::error::Error::source(&e)))
        }
    }
}

impl From<FormError> for TokenError {
    fn from(e: FormError) -> Self {
        Self::InvalidRequest(e.to_string())
    }
}

impl From<crate::client_auth::PresentError> for TokenError {
    fn from(e: crate::client_auth::PresentError) -> Self {
        use crate::client_auth::PresentError;
        match e {
            PresentError::Missing
            | PresentError::MalformedBasic
            | PresentError::MalformedAssertion => Self::InvalidClient(e.to_string()),
            PresentError::MultipleMethods | PresentError::AssertionType => {
                Self::InvalidRequest(e.to_string())
            }
        }
    }
}

impl From<AuthError> for TokenError {
    fn from(e: AuthError) -> Self {
        use crate::client_auth::federated::FederatedError;
        match e {
            AuthError::Store(e) | AuthError::Federated(FederatedError::Store(e)) => e.into(),
            // Not the workload's fault: it retries (RFC 6749 §4.1.2.1's code, 503).
            AuthError::Federated(FederatedError::Unavailable(why)) => {
                tracing::warn!(reason = %why, "external token issuer keys unavailable");
                Self::Unavailable
            }
            other => Self::InvalidClient(other.to_string()),
        }
    }
}
