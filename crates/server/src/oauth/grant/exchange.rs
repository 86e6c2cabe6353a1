//! RFC 8693 token exchange (`grant_type=urn:ietf:params:oauth:grant-type:token-exchange`):
//! trade a Mayfly access token for a narrower one, or, with an actor token, for one
//! that says who acts for the subject.
//!
//! - A `subject_token_type` of `urn:ietf:params:oauth:token-type:jwt` or `…:id_token`
//!   is an external JWT exchanged for a user's token: [`super::federated`].
//! - `subject_token` (type `urn:ietf:params:oauth:token-type:access_token`) must be
//!   active as introspection would answer ([`crate::oauth::active`]): signature, time,
//!   revocations, client, subject and grants.
//! - The new token keeps `sub`; its scopes (`scope`, default: the subject token's) must be
//!   a subset of the subject token's (else `invalid_scope`), its audience (`resource` or
//!   `audience`, default: the subject token's) one the subject is granted right now (else
//!   `invalid_target`), and the subject's grants are checked again. It expires no later
//!   than the subject token (and the actor token).
//! - Without `actor_token`, only the client the subject token was issued to may exchange
//!   it (`client_id`): exchange narrows a client's own token, it does not let one
//!   client become another's subject (`invalid_grant`).
//! - With `actor_token` (a token issued to the calling client), the new token carries
//!   `act: {sub: <actor>}` (nesting any earlier `act`), and only grants of the subject
//!   whose `may_act` names the actor count: without one, `invalid_grant`.
//! - The new token lists the tokens it came from in `orig` (and inherits `gid` and `fam`),
//!   so revoking any of them, by any kind of revocation, revokes it too: in introspection
//!   and in every offline verifier, with no lookup.

use mayfly_core::ScopeSet;
use mayfly_core::token::{Actor, Origin};
use mayfly_store::{ClientView, SubjectGrant};
use uuid::Uuid;

use super::{
    Issued, ScopeRequest, SubjectLimits, TOKEN_EXCHANGE, TokenError, authorize, in_force, sign,
};
use crate::oauth::active::{self, Active};
use crate::runtime::AppState;

/// The one token type Mayfly exchanges and issues (RFC 8693 §3).
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Longest chain of exchanges (bounds the `orig` claim).
pub const MAX_CHAIN: usize = 8;

/// The token-exchange parameters (RFC 8693 §2.1).
#[derive(Debug, Default)]
pub struct ExchangeRequest<'a> {
    /// `subject_token`.
    pub subject_token: Option<&'a str>,
    /// `subject_token_type`.
    pub subject_token_type: Option<&'a str>,
    /// `actor_token`.
    pub actor_token: Option<&'a str>,
    /// `actor_token_type`.
    pub actor_token_type: Option<&'a str>,
    /// `requested_token_type`.
    pub requested_token_type: Option<&'a str>,
    /// `audience` (a logical name; for Mayfly, an audience URI like `resource`).
    pub audience: Option<&'a str>,
    /// `scope` and `resource`.
    pub scope: ScopeRequest,
}

fn check_type(name: &str, value: Option<&str>) -> Result<(), TokenError> {
    match value {
        Some(ACCESS_TOKEN_TYPE) => Ok(()),
        Some(_) if name == "subject_token_type" => Err(TokenError::InvalidRequest(format!(
            "{name} must be {ACCESS_TOKEN_TYPE}, {} or {}",
            super::federated::JWT_TOKEN_TYPE,
            super::federated::ID_TOKEN_TYPE
        ))),
        Some(_) => Err(TokenError::InvalidRequest(format!(
            "{name} must be {ACCESS_TOKEN_TYPE}"
        ))),
        None => Err(TokenError::InvalidRequest(format!("{name} is required"))),
    }
}

/// An inactive subject or actor token is `invalid_request` (RFC 8693 §2.2.2: "the
/// subject_token or actor_token are invalid for any reason").
async fn active(state: &AppState, token: &str, what: &str) -> Result<Active, TokenError> {
    active::check(state, token).await.map_err(|reason| {
        if reason == "unavailable" {
            TokenError::Unavailable
        } else {
            TokenError::InvalidRequest(format!("the {what} is not active ({reason})"))
        }
    })
}

fn origin(token: &Active) -> Origin {
    Origin {
        jti: token.claims.jti.clone(),
        client_id: token.claims.client_id.clone(),
        kid: token.kid.clone(),
        iat: token.claims.iat,
        sub: Some(token.claims.sub.clone()),
        fam: token.claims.fam.clone(),
    }
}

/// Issues the exchanged token.
///
/// # Errors
/// [`TokenError`]: `unauthorized_client` when the client may not exchange,
/// `invalid_request` for missing or unsupported token types or an inactive token,
/// `invalid_grant` for a delegation no grant permits, `invalid_scope` for scopes beyond
/// the subject token's, `invalid_target` for an audience the subject is not granted.
pub async fn grant(
    state: &AppState,
    view: &ClientView,
    request: &ExchangeRequest<'_>,
) -> Result<Issued, TokenError> {
    let client = &view.client;
    if !client.allows(TOKEN_EXCHANGE) {
        return Err(TokenError::UnauthorizedClient(
            "this client may not use token exchange".into(),
        ));
    }
    let subject_token = request.subject_token.ok_or_else(|| {
        TokenError::InvalidRequest("the subject_token parameter is required".into())
    })?;
    // An external JWT for a user (workload identity federation).
    if super::federated::is_external(request.subject_token_type) {
        return Box::pin(super::federated::grant(state, view, subject_token, request)).await;
    }
    check_type("subject_token_type", request.subject_token_type)?;
    if request.requested_token_type.is_some() {
        check_type("requested_token_type", request.requested_token_type)?;
    }
    if request.actor_token.is_some() || request.actor_token_type.is_some() {
        check_type("actor_token_type", request.actor_token_type)?;
    }
    let target = match (request.scope.resource.as_deref(), request.audience) {
        (Some(r), Some(a)) if r != a => {
            return Err(TokenError::InvalidTarget(
                "resource and audience name different audiences".into(),
            ));
        }
        (r, a) => r.or(a),
    };

    let subject = active(state, subject_token, "subject_token").await?;
    sender_constraints(&subject.claims, &request.scope, "subject_token")?;
    if subject.claims.orig.len() >= MAX_CHAIN {
        return Err(TokenError::InvalidGrant(format!(
            "a token may be exchanged at most {MAX_CHAIN} times in a chain"
        )));
    }
    let actor = match request.actor_token {
        Some(token) => {
            let actor = active(state, token, "actor_token").await?;
            sender_constraints(&actor.claims, &request.scope, "actor_token")?;
            if actor.claims.client_id != client.id.to_string() {
                return Err(TokenError::InvalidGrant(
                    "the actor_token was not issued to this client".into(),
                ));
            }
            if subject.claims.orig.len() + actor.claims.orig.len() >= MAX_CHAIN {
                return Err(TokenError::InvalidGrant(format!(
                    "a token may be exchanged at most {MAX_CHAIN} times in a chain"
                )));
            }
            Some(actor)
        }
        None => {
            // Exchange is not impersonation: without an actor, a client may only trade
            // tokens issued to itself (down-scoping its own token).
            if subject.claims.client_id != client.id.to_string() {
                return Err(TokenError::InvalidGrant(
                    "the subject_token was not issued to this client; to act for its subject, present an actor_token named in one of its grants' may_act".into(),
                ));
            }
            None
        }
    };

    // Scopes: a subset of the subject token's.
    let held = ScopeSet::parse(&subject.claims.scope)
        .map_err(|_| TokenError::InvalidGrant("the subject_token has no valid scope".into()))?;
    let scope = match request.scope.scope.as_deref() {
        Some(asked) => {
            let asked =
                ScopeSet::parse(asked).map_err(|e| TokenError::InvalidScope(e.to_string()))?;
            if let Some(extra) = asked
                .iter()
                .find(|s| !held.iter().any(|h| h.as_str() == s.as_str()))
            {
                return Err(TokenError::InvalidScope(format!(
                    "scope {extra} is not in the subject_token; an exchange may only narrow"
                )));
            }
            asked.to_string()
        }
        None => subject.claims.scope.clone(),
    };

    // The grants that count: the subject's, and for a delegation only those naming the
    // actor.
    let now = state.clock.now();
    let grants: Vec<SubjectGrant> = match &actor {
        None => subject.grants.to_vec(),
        Some(actor) => {
            let actor_id = Uuid::parse_str(&actor.claims.sub)
                .map_err(|_| TokenError::InvalidGrant("the actor_token is not valid".into()))?;
            let permitted: Vec<SubjectGrant> = subject
                .grants
                .iter()
                .filter(|g| g.grant.may_act.contains(&actor_id) && in_force(&g.grant, now))
                .cloned()
                .collect();
            if permitted.is_empty() {
                return Err(TokenError::InvalidGrant(
                    "no grant permits this actor to act for the subject".into(),
                ));
            }
            permitted
        }
    };
    let audience = target.unwrap_or(&subject.claims.aud).to_owned();
    let granted = grants
        .iter()
        .any(|g| g.audience_uri == audience && in_force(&g.grant, now));
    if !granted {
        return Err(TokenError::InvalidTarget(
            "the subject is not granted this audience".into(),
        ));
    }

    let mut not_after = subject.claims.exp;
    if let Some(actor) = &actor {
        not_after = not_after.min(actor.claims.exp);
    }
    let limits = SubjectLimits {
        not_after: Some(not_after),
        ..SubjectLimits::of(client)
    };
    let mut authorized = authorize(
        state,
        subject.subject,
        client.id,
        limits,
        &grants,
        &ScopeRequest {
            scope: Some(scope),
            resource: Some(audience),
            binding: request.scope.binding.clone(),
            source: request.scope.source,
        },
    )
    .await?;
    let claims = &mut authorized.claims;
    // Never wider than the token it came from: used only where that one could be.
    claims.cidr = narrower(&claims.cidr, &subject.claims.cidr)?;
    for gid in &subject.claims.gid {
        if !claims.gid.contains(gid) {
            claims.gid.push(gid.clone());
        }
    }
    claims.fam.clone_from(&subject.claims.fam);
    claims.act = match &actor {
        Some(actor) => Some(Actor {
            sub: actor.claims.sub.clone(),
            act: subject.claims.act.clone().map(Box::new),
        }),
        None => subject.claims.act.clone(),
    };
    // Every token this one derives from, the actor's own origins included, so that
    // whatever ends one of them (the actor's login, the actor) ends this one.
    claims.orig = std::iter::once(origin(&subject))
        .chain(actor.as_ref().map(origin))
        .chain(subject.claims.orig.iter().cloned())
        .chain(actor.iter().flat_map(|a| a.claims.orig.iter().cloned()))
        .collect();
    let mut issued = sign(state, authorized)?;
    issued.response.issued_token_type = Some(ACCESS_TOKEN_TYPE.into());
    Ok(issued)
}

/// A sender-constrained token may be traded only by whoever may use it: the holder of
/// its DPoP key (the request's proof must be by that key, and the new token is bound to
/// it too), from inside its networks.
fn sender_constraints(
    claims: &mayfly_core::Claims,
    request: &ScopeRequest,
    name: &str,
) -> Result<(), TokenError> {
    if let Some(cnf) = &claims.cnf
        && request.binding.as_deref() != Some(cnf.jkt.as_str())
    {
        return Err(TokenError::InvalidGrant(format!(
            "the {name} is DPoP-bound: send a DPoP proof by its key"
        )));
    }
    if !claims.cidr.is_empty() {
        let nets = mayfly_core::net::parse_networks(&claims.cidr)
            .map_err(|_| TokenError::InvalidGrant(format!("the {name} is not valid")))?;
        if !request
            .source
            .is_some_and(|ip| mayfly_core::net::allows(&nets, ip))
        {
            return Err(TokenError::InvalidGrant(format!(
                "the {name} may not be used from this network"
            )));
        }
    }
    Ok(())
}

/// The networks allowed by both lists (empty: anywhere).
fn narrower(a: &[String], b: &[String]) -> Result<Vec<String>, TokenError> {
    let parse = |list: &[String]| -> Result<Option<Vec<ipnet::IpNet>>, TokenError> {
        if list.is_empty() {
            return Ok(None);
        }
        mayfly_core::net::parse_networks(list)
            .map(Some)
            .map_err(|bad| TokenError::Internal(format!("CIDR {bad:?} does not parse")))
    };
    Ok(mayfly_core::net::intersect(parse(a)?, parse(b)?)
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect())
}
