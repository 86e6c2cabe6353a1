//! Whether a Mayfly access token is active right now: the check introspection answers
//! with and token exchange applies to the tokens it is given.
//!
//! Active means: signed by a published key, within `nbf`..`exp`, matched by no
//! revocation (its own, or one of a token it was exchanged from), and its client, its
//! subject (client or user), every actor in its `act` chain and the subject's grants it
//! names still there, enabled and in force.

use std::sync::Arc;

use mayfly_core::token::{self, Claims, VerifyOptions};
use mayfly_store::{Subject, SubjectGrant};
use time::Duration;
use uuid::Uuid;

use crate::oauth::grant::in_force;
use crate::runtime::AppState;
use crate::runtime::verified::Verified;

/// Clock-skew allowance for `exp`/`nbf`.
pub const LEEWAY: Duration = Duration::seconds(5);

/// An active token, with what was looked up to decide it.
#[derive(Debug, Clone)]
pub struct Active {
    /// Its claims.
    pub claims: Claims,
    /// The key that signed it.
    pub kid: String,
    /// Its subject.
    pub subject: Subject,
    /// Every grant of the subject (in force or not).
    pub grants: Arc<[SubjectGrant]>,
}

/// Checks a token now; `Err` says why it is inactive (for the audit log only), and is
/// `"unavailable"` when the store could not be read.
pub async fn check(state: &AppState, token: &str) -> Result<Active, &'static str> {
    let keys = state.keyring.current();
    let options = VerifyOptions {
        issuer: &state.issuer,
        audience: None,
        leeway: LEEWAY,
    };
    let now = state.clock.now();
    let Verified { claims, kid } = state
        .verified
        .verify(token, |kid| keys.public_key(kid), &options, now)
        .map_err(|e| match e {
            token::VerifyError::Malformed => "malformed",
            token::VerifyError::Expired => "expired",
            token::VerifyError::NotYetValid => "not yet valid",
            token::VerifyError::UnknownKey => "signing key not published",
            _ => "invalid",
        })?;
    if state.revocations.revokes(&claims, kid.as_str()) {
        return Err("revoked");
    }
    let client_id = Uuid::parse_str(&claims.client_id).map_err(|_| "invalid")?;
    let view = state
        .directory
        .client(client_id)
        .await
        .map_err(|_| "unavailable")?
        .ok_or("client gone")?;
    if !view.client.enabled {
        return Err("client disabled");
    }
    let sub = Uuid::parse_str(&claims.sub).map_err(|_| "invalid")?;
    let (subject, grants): (Subject, Arc<[SubjectGrant]>) = if sub == client_id {
        (Subject::Client(sub), view.grants.clone().into())
    } else if let Some(user) = state.store.user(sub).await.map_err(|_| "unavailable")? {
        // A user's token: the user is read each time, its grants come from the directory.
        if !user.enabled {
            return Err("user disabled");
        }
        let grants = state
            .directory
            .user_grants(sub)
            .await
            .map_err(|_| "unavailable")?;
        (Subject::User(sub), grants)
    } else {
        // A client's token exchanged by another client.
        let other = state
            .directory
            .client(sub)
            .await
            .map_err(|_| "unavailable")?
            .ok_or("subject gone")?;
        if !other.client.enabled {
            return Err("subject client disabled");
        }
        (Subject::Client(sub), other.grants.clone().into())
    };
    // Whoever acts for the subject (RFC 8693 §4.1), down a nested chain, must still be
    // there and enabled: a delegated token ends with its actor.
    let mut act = claims.act.as_ref();
    while let Some(actor) = act {
        actor_enabled(state, &actor.sub).await?;
        act = actor.act.as_deref();
    }
    for gid in &claims.gid {
        let live = grants
            .iter()
            .any(|g| g.grant.id.to_string() == *gid && in_force(&g.grant, now));
        if !live {
            return Err("grant ended");
        }
    }
    Ok(Active {
        claims,
        kid: kid.to_string(),
        subject,
        grants,
    })
}

/// Whether an actor (a user or a client) exists and is enabled.
async fn actor_enabled(state: &AppState, sub: &str) -> Result<(), &'static str> {
    let id = Uuid::parse_str(sub).map_err(|_| "invalid")?;
    if let Some(user) = state.store.user(id).await.map_err(|_| "unavailable")? {
        return if user.enabled {
            Ok(())
        } else {
            Err("actor disabled")
        };
    }
    match state
        .directory
        .client(id)
        .await
        .map_err(|_| "unavailable")?
    {
        Some(view) if view.client.enabled => Ok(()),
        Some(_) => Err("actor disabled"),
        None => Err("actor gone"),
    }
}
