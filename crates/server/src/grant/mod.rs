//! Token issuance, one module per grant type. This module holds what every grant type
//! shares: the error type, choosing the audience, checking requested scopes against the
//! subject's grants, the token lifetime, and minting.

pub mod client_credentials;
pub mod exchange;
pub mod password;
pub mod refresh;

use mayfly_core::token::{self, Claims};
use mayfly_core::wire::{ErrorCode, TokenResponse};
use mayfly_core::{Audience, ScopeSet};
use mayfly_store::{GrantRecord, StoreError, Subject, SubjectGrant};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::client_auth::AuthError;
use crate::state::AppState;

/// RFC 6749 §4.4.
pub const CLIENT_CREDENTIALS: &str = "client_credentials";
/// RFC 6749 §4.3 (resource owner password credentials).
pub const PASSWORD: &str = "password";
/// RFC 6749 §6; in a client's `grant_types`, it may also receive refresh tokens.
pub const REFRESH_TOKEN: &str = "refresh_token";
/// RFC 8693 token exchange.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// Every grant type Mayfly supports (the RFC 8414 metadata lists them).
pub const GRANT_TYPES: &[&str] = &[CLIENT_CREDENTIALS, PASSWORD, REFRESH_TOKEN, TOKEN_EXCHANGE];

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
            Self::InvalidGrant(_) | Self::UserAuthFailed { .. } | Self::RefreshRefused(_) => {
                ErrorCode::InvalidGrant
            }
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
            Self::InvalidClient(reason) | Self::RefreshRefused(reason) => reason.clone(),
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
        } else {
            Self::Internal(format!("{e}: {:?}", std::error::Error::source(&e)))
        }
    }
}

impl From<crate::http::form::FormError> for TokenError {
    fn from(e: crate::http::form::FormError) -> Self {
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
        match e {
            AuthError::Store(e) => e.into(),
            other => Self::InvalidClient(other.to_string()),
        }
    }
}

/// What the token endpoint asks of a grant type once the client is authenticated.
#[derive(Debug, Clone, Default)]
pub struct ScopeRequest {
    /// The `scope` parameter.
    pub scope: Option<String>,
    /// The `resource` parameter (RFC 8707).
    pub resource: Option<String>,
    /// The DPoP key thumbprint to bind the token to (RFC 9449 §6), from a checked proof.
    pub binding: Option<String>,
    /// Where the request comes from (checked against the allowed networks).
    pub source: Option<std::net::IpAddr>,
}

/// A token and what the audit log should know of it.
#[derive(Debug)]
pub struct Issued {
    /// The response body.
    pub response: TokenResponse,
    /// The claims inside the token.
    pub claims: Claims,
    /// The grants that covered the scopes.
    pub grant_ids: Vec<Uuid>,
    /// The signing key id.
    pub kid: String,
}

/// Limits from the subject itself (a client's default and maximum TTL, its networks).
#[derive(Debug, Clone, Default)]
pub struct SubjectLimits {
    /// Preferred lifetime.
    pub default_ttl: Option<Duration>,
    /// Longest lifetime.
    pub max_ttl: Option<Duration>,
    /// Networks requests may come from, CIDR notation (empty: anywhere).
    pub allowed_cidrs: Vec<String>,
    /// Latest expiry (an exchanged token outlives neither the token it came from nor
    /// its actor's).
    pub not_after: Option<OffsetDateTime>,
}

impl SubjectLimits {
    /// A client's own default and maximum TTL, and its networks.
    pub fn of(client: &mayfly_store::ClientRecord) -> Self {
        Self {
            default_ttl: client.default_ttl_secs.map(Duration::seconds),
            max_ttl: client.max_ttl_secs.map(Duration::seconds),
            allowed_cidrs: client.allowed_cidrs.clone(),
            not_after: None,
        }
    }
}

/// A token decided on but not yet signed: grant types may add to its claims (`fam`,
/// `act`, `orig`) before [`sign`].
#[derive(Debug)]
pub struct Authorized {
    /// The claims.
    pub claims: Claims,
    /// The grants that covered the scopes.
    pub grant_ids: Vec<Uuid>,
}

/// A stored network list: `None` when unrestricted.
fn networks(list: &[String]) -> Result<Option<Vec<ipnet::IpNet>>, TokenError> {
    if list.is_empty() {
        return Ok(None);
    }
    mayfly_core::net::parse_networks(list)
        .map(Some)
        .map_err(|bad| TokenError::Internal(format!("stored CIDR {bad:?} does not parse")))
}

/// Whether a request from `source` may use something restricted to `nets`.
fn reachable(nets: &Option<Vec<ipnet::IpNet>>, source: Option<std::net::IpAddr>) -> bool {
    match nets {
        None => true,
        Some(nets) => source.is_some_and(|ip| mayfly_core::net::allows(nets, ip)),
    }
}

/// Whether `grant` is in force at `at`: from `not_before` (inclusive) until
/// `expires_at` (exclusive).
pub fn in_force(grant: &GrantRecord, at: OffsetDateTime) -> bool {
    grant.not_before.is_none_or(|t| t <= at) && grant.expires_at.is_none_or(|t| at < t)
}

/// Resolves the audience among the grants in force: the `resource` parameter, or the
/// one audience they cover.
async fn audience<'g>(
    state: &AppState,
    in_force: &[&'g SubjectGrant],
    resource: Option<&str>,
) -> Result<&'g str, TokenError> {
    if let Some(resource) = resource {
        let uri =
            Audience::parse(resource).map_err(|e| TokenError::InvalidTarget(e.to_string()))?;
        if let Some(g) = in_force.iter().find(|g| g.audience_uri == uri.as_str()) {
            return Ok(&g.audience_uri);
        }
        // Not granted: only the refusal needs to know whether the audience exists.
        return Err(match state.store.audience_by_uri(uri.as_str()).await? {
            Some(_) => TokenError::InvalidScope("no scope is granted for this resource".into()),
            None => TokenError::InvalidTarget("unknown resource".into()),
        });
    }
    let mut uris: Vec<&str> = in_force.iter().map(|g| g.audience_uri.as_str()).collect();
    uris.sort_unstable();
    uris.dedup();
    match uris.as_slice() {
        [] => Err(TokenError::InvalidScope(
            "no scope is granted to this client".into(),
        )),
        [one] => Ok(one),
        _ => Err(TokenError::InvalidTarget(
            "several audiences are granted: name one with the resource parameter (RFC 8707)".into(),
        )),
    }
}

/// The latest moment a token under `grant` may expire.
fn grant_limit(
    grant: &GrantRecord,
    now: OffsetDateTime,
    ceiling: OffsetDateTime,
) -> OffsetDateTime {
    let by_ttl = grant
        .max_ttl_secs
        .map_or(ceiling, |s| now + Duration::seconds(s));
    let by_end = grant.expires_at.unwrap_or(ceiling);
    by_ttl.min(by_end).min(ceiling)
}

/// Issues a token to `subject` for the requested scopes, if `grants` (all of the
/// subject's grants) cover every one at this moment.
///
/// # Errors
/// [`TokenError`] when the request is not covered, or the store fails.
pub async fn issue(
    state: &AppState,
    subject: Subject,
    client_id: Uuid,
    limits: SubjectLimits,
    grants: &[SubjectGrant],
    request: &ScopeRequest,
) -> Result<Issued, TokenError> {
    let authorized = authorize(state, subject, client_id, limits, grants, request).await?;
    sign(state, authorized)
}

/// Decides a token for `subject`: the requested scopes must all be covered by `grants`
/// (all of the subject's grants) at this moment. Nothing is signed yet.
///
/// # Errors
/// [`TokenError`] when the request is not covered, or the store fails.
pub async fn authorize(
    state: &AppState,
    subject: Subject,
    client_id: Uuid,
    limits: SubjectLimits,
    grants: &[SubjectGrant],
    request: &ScopeRequest,
) -> Result<Authorized, TokenError> {
    // Tokens carry whole seconds: start from a whole second so that `exp`, rounded
    // down, never passes a grant's end.
    // Grants are checked at the exact time, token times start from its whole second.
    let at = state.clock.now();
    let now = at.replace_nanosecond(0).unwrap_or(at);
    let scope = request
        .scope
        .as_deref()
        .ok_or_else(|| TokenError::InvalidScope("the scope parameter is required".into()))?;
    let scopes = ScopeSet::parse(scope).map_err(|e| TokenError::InvalidScope(e.to_string()))?;
    let client_nets = networks(&limits.allowed_cidrs)?;
    if !reachable(&client_nets, request.source) {
        return Err(TokenError::NetworkNotAllowed(
            "this client may not obtain tokens from this network".into(),
        ));
    }
    let in_force: Vec<&SubjectGrant> = grants.iter().filter(|g| in_force(&g.grant, at)).collect();
    let audience = audience(state, &in_force, request.resource.as_deref()).await?;
    let grants: Vec<&GrantRecord> = in_force
        .iter()
        .filter(|g| g.audience_uri == audience)
        .map(|g| &g.grant)
        .collect();

    // The ceiling: the subject's preferred and maximum lifetimes, the server's maximum.
    let ttl = limits
        .default_ttl
        .unwrap_or(state.config.token_ttl)
        .min(limits.max_ttl.unwrap_or(state.config.max_token_ttl))
        .min(state.config.max_token_ttl);
    let ceiling = limits.not_after.map_or(now + ttl, |t| t.min(now + ttl));

    // Each scope is covered by the grant that allows the longest life; the token lives
    // no longer than the shortest of those.
    // Grants restricted to networks the request is not from do not count here.
    let mut usable: Vec<(&GrantRecord, Option<Vec<ipnet::IpNet>>)> = Vec::new();
    for g in &grants {
        let nets = networks(&g.allowed_cidrs)?;
        if reachable(&nets, request.source) {
            usable.push((g, nets));
        }
    }
    let mut exp = ceiling;
    let mut used: Vec<Uuid> = Vec::new();
    let mut token_nets = client_nets;
    for wanted in scopes.iter() {
        let covers = |g: &GrantRecord| g.scopes.iter().any(|s| s == wanted.as_str());
        let Some((best, nets)) = usable
            .iter()
            .filter(|(g, _)| covers(g))
            .max_by_key(|(g, _)| grant_limit(g, now, ceiling))
        else {
            return Err(if grants.iter().any(|g| covers(g)) {
                TokenError::NetworkNotAllowed(format!(
                    "scope {wanted} is not granted to requests from this network"
                ))
            } else {
                TokenError::InvalidScope(format!("scope {wanted} is not granted for this resource"))
            });
        };
        exp = exp.min(grant_limit(best, now, ceiling));
        if !used.contains(&best.id) {
            used.push(best.id);
            // The token may be used only where the client and every grant behind it allow.
            token_nets = mayfly_core::net::intersect(token_nets, nets.clone());
        }
    }
    let lifetime = (exp - now).whole_seconds();
    if lifetime < 1 {
        return Err(TokenError::InvalidScope(
            "the grant expires too soon to issue a token".into(),
        ));
    }
    let exp = now + Duration::seconds(lifetime);

    let claims = Claims {
        iss: state.issuer.clone(),
        sub: subject_id(subject),
        aud: audience.to_owned(),
        iat: now,
        nbf: now,
        exp,
        jti: Uuid::new_v4().simple().to_string(),
        scope: scopes.to_string(),
        client_id: client_id.to_string(),
        gid: used.iter().map(Uuid::to_string).collect(),
        cnf: request
            .binding
            .clone()
            .map(|jkt| mayfly_core::Confirmation { jkt }),
        cidr: token_nets
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect(),
        act: None,
        fam: None,
        orig: Vec::new(),
    };
    Ok(Authorized {
        claims,
        grant_ids: used,
    })
}

/// Signs a decided token with the active key.
///
/// # Errors
/// [`TokenError::Internal`] if the claims cannot be serialized.
pub fn sign(state: &AppState, authorized: Authorized) -> Result<Issued, TokenError> {
    let Authorized { claims, grant_ids } = authorized;
    let keys = state.keyring.current();
    let access_token =
        token::mint(&keys.active, &claims).map_err(|e| TokenError::Internal(e.to_string()))?;
    let lifetime = (claims.exp - claims.iat).whole_seconds();
    Ok(Issued {
        response: TokenResponse {
            access_token,
            token_type: if claims.cnf.is_some() {
                "DPoP"
            } else {
                "Bearer"
            }
            .into(),
            expires_in: u64::try_from(lifetime).unwrap_or(0),
            scope: claims.scope.clone(),
            refresh_token: None,
            issued_token_type: None,
        },
        claims,
        grant_ids,
        kid: keys.active.id().to_string(),
    })
}

fn subject_id(subject: Subject) -> String {
    match subject {
        Subject::Client(id) | Subject::User(id) => id.to_string(),
    }
}
