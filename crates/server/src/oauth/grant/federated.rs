//! RFC 8693 token exchange of an external JWT for a user's token (workload identity
//! federation, issue #20): `subject_token_type` `urn:ietf:params:oauth:token-type:jwt`
//! or `…:id_token`, the subject token an OIDC ID token (or any JWT) of a trusted issuer.
//!
//! The calling client authenticates as for any exchange and needs the token-exchange
//! grant type. The subject token must verify against its trusted issuer and match
//! exactly one **user**'s federated identity ([`crate::client_auth::federated`]); that
//! user must exist, be enabled and not locked out. Then the rules of the other user
//! path (`password.rs`) apply: the scopes asked (`scope`, required) must be covered by
//! the user's grants on the audience (`resource` or `audience`, or the one the user is
//! granted), within the client's lifetime and networks. The token expires no later than
//! the subject token. No refresh token: the workload presents a fresh external token.
//! No `actor_token`: delegation is between Mayfly tokens only. The subject token is
//! spent once every check passed, so a refused request (a scope not granted) does not
//! burn it, and a second use is refused.
//!
//! Refusals of the subject token are `invalid_grant` with one description for every
//! reason; the reason and, once it verified, the external identity go to the audit log.

use mayfly_store::{ClientView, Subject};

use super::exchange::{ACCESS_TOKEN_TYPE, ExchangeRequest};
use super::{Issued, ScopeRequest, SubjectLimits, TokenError, authorize, sign};
use crate::client_auth::federated::{self, External, FederatedError, Federation, OwnerKind};
use crate::runtime::AppState;

/// `subject_token_type` of a JWT (RFC 8693 §3).
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// `subject_token_type` of an OpenID Connect ID token (RFC 8693 §3).
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";

/// Whether a `subject_token_type` names an external JWT.
pub fn is_external(subject_token_type: Option<&str>) -> bool {
    matches!(subject_token_type, Some(JWT_TOKEN_TYPE | ID_TOKEN_TYPE))
}

fn refused(reason: impl Into<String>, external: Option<&External>) -> TokenError {
    TokenError::ExternalSubjectRefused {
        reason: reason.into(),
        external: external.map(External::detail),
    }
}

impl From<FederatedError> for TokenError {
    fn from(e: FederatedError) -> Self {
        match e {
            FederatedError::Refused { reason, external } => refused(reason, external.as_deref()),
            FederatedError::Unavailable(why) => {
                tracing::warn!(reason = %why, "external token issuer keys unavailable");
                Self::Unavailable
            }
            FederatedError::Store(e) => e.into(),
        }
    }
}

/// Issues a token for the user the external `subject_token` speaks for.
///
/// # Errors
/// [`TokenError`]: `invalid_request` for an `actor_token` or another
/// `requested_token_type`, `invalid_grant` for a subject token that fails verification
/// or matching, is replayed, or whose user is disabled or locked out; else what
/// [`authorize`] refuses.
pub async fn grant(
    state: &AppState,
    view: &ClientView,
    subject_token: &str,
    request: &ExchangeRequest<'_>,
) -> Result<Issued, TokenError> {
    let client = &view.client;
    if request.actor_token.is_some() || request.actor_token_type.is_some() {
        return Err(TokenError::InvalidRequest(
            "an external subject_token is exchanged without an actor_token".into(),
        ));
    }
    if request
        .requested_token_type
        .is_some_and(|t| t != ACCESS_TOKEN_TYPE)
    {
        return Err(TokenError::InvalidRequest(format!(
            "requested_token_type must be {ACCESS_TOKEN_TYPE}"
        )));
    }
    let target = match (request.scope.resource.as_deref(), request.audience) {
        (Some(r), Some(a)) if r != a => {
            return Err(TokenError::InvalidTarget(
                "resource and audience name different audiences".into(),
            ));
        }
        (r, a) => r.or(a).map(str::to_owned),
    };
    let now = state.clock.now();
    let fed = Federation {
        store: state.store.as_ref(),
        replay: state.store.as_ref(),
        verifier: &state.verifier,
        now,
    };
    let identified = federated::identify(&fed, subject_token, OwnerKind::User).await?;
    let external = &identified.external;
    let Subject::User(user_id) = identified.owner else {
        return Err(refused(
            "federated identity is not a user's",
            Some(external),
        ));
    };
    let Some(user) = state.store.user(user_id).await? else {
        return Err(refused("the matched user no longer exists", Some(external)));
    };
    if !user.enabled {
        return Err(refused("user disabled", Some(external)));
    }
    if user.locked_until.is_some_and(|t| now < t) {
        return Err(refused("user locked out", Some(external)));
    }
    let grants = state.store.subject_grants(Subject::User(user.id)).await?;
    let limits = SubjectLimits {
        not_after: Some(identified.expires_at()),
        ..SubjectLimits::of(client)
    };
    let authorized = authorize(
        state,
        Subject::User(user.id),
        client.id,
        limits,
        &grants,
        &ScopeRequest {
            resource: target,
            ..request.scope.clone()
        },
    )
    .await?;
    federated::spend(&fed, &identified).await?;
    let mut issued = sign(state, authorized)?;
    issued.response.issued_token_type = Some(ACCESS_TOKEN_TYPE.into());
    issued.external = Some(identified.external.detail());
    Ok(issued)
}
