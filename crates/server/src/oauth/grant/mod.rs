//! Token issuance, one module per grant type. This module holds what every grant type
//! shares: the error type, choosing the audience, checking requested scopes against the
//! subject's grants, the token lifetime, and minting.

pub mod client_credentials;
pub mod exchange;
pub mod federated;
pub mod password;
pub mod refresh;

use mayfly_core::token::{self, Claims};
use mayfly_core::wire::TokenResponse;
use mayfly_core::{Audience, ScopeSet};
use mayfly_store::{GrantRecord, Subject, SubjectGrant};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::runtime::AppState;

pub use crate::vocab::{CLIENT_CREDENTIALS, GRANT_TYPES, PASSWORD, REFRESH_TOKEN, TOKEN_EXCHANGE};

pub use crate::oauth::error::TokenError;

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
    /// The external identity it was issued for (federated token exchange): the audit
    /// event's `detail.external`.
    pub external: Option<serde_json::Value>,
    /// A refresh's rotation: the token is valid only once it commits with the audit
    /// event (see [`refresh::Rotation`]).
    pub rotation: Option<refresh::Rotation>,
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
        // Time-ordered (UUIDv7: unique in this process by its counter, random across
        // processes), so the audit log's jti index on Postgres grows at its end instead
        // of at random pages: 4-5 µs less Postgres CPU per token (BENCHMARKS.md).
        jti: Uuid::now_v7().simple().to_string(),
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
        external: None,
        rotation: None,
    })
}

fn subject_id(subject: Subject) -> String {
    match subject {
        Subject::Client(id) | Subject::User(id) => id.to_string(),
    }
}
