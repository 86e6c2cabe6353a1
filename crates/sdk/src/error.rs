//! Why talking to the issuer (or getting an external identity token) failed.
//! Verification outcomes are [`crate::VerifyError`].

use std::time::Duration as StdDuration;

use mayfly_core::wire::ErrorCode;

/// A failure to obtain something from the issuer (metadata, a token, the key set, the
/// revocation feed) or a configuration mistake.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is unusable (names the setting).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The issuer could not be reached (after retries, if the failure was transient).
    #[error("cannot reach the issuer")]
    Transport(#[source] reqwest::Error),
    /// The issuer kept answering with a server error (after retries).
    #[error("the issuer answered {status}")]
    Unavailable {
        /// The last HTTP status.
        status: u16,
        /// The last `Retry-After`, if any.
        retry_after: Option<StdDuration>,
    },
    /// The issuer refused the request (RFC 6749 §5.2 error); never retried.
    #[error("the issuer refused the request: {error}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The OAuth error code, when the body carried one.
        error: RejectionCode,
        /// `error_description`, when given.
        description: Option<String>,
    },
    /// The issuer's answer was not what the protocol says.
    #[error("unexpected answer from the issuer: {0}")]
    InvalidResponse(String),
    /// The external identity token of a federated workload could not be had (a file
    /// missing, empty or unreadable; the GitHub Actions endpoint refusing). Names where
    /// it was looked for, never the token.
    #[error("no external identity token: {0}")]
    ExternalToken(String),
}

/// The code of a refusal: an RFC 6749 code, or none when the body was not an OAuth error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionCode {
    /// An RFC 6749 §5.2 error code.
    OAuth(ErrorCode),
    /// No OAuth error body (e.g. a problem+json answer from the feed).
    Other,
}

impl std::fmt::Display for RejectionCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OAuth(code) => code.fmt(f),
            Self::Other => f.write_str("refused"),
        }
    }
}

impl Error {
    /// The error for a non-success, non-retried answer.
    pub(crate) async fn rejected(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap_or_default();
        match serde_json::from_slice::<mayfly_core::wire::ErrorResponse>(&body) {
            Ok(e) => Self::Rejected {
                status,
                error: RejectionCode::OAuth(e.error),
                description: e.error_description,
            },
            Err(_) => Self::Rejected {
                status,
                error: RejectionCode::Other,
                description: None,
            },
        }
    }
}
