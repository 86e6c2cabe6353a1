//! `grant_type=password` (RFC 6749 §4.3): a first-party client, authenticated as
//! usual, passes a person's username and password and gets a token for that person.
//!
//! The password is checked with argon2id on the blocking pool ([`crate::password`]). An
//! unknown username is checked against [`DUMMY_HASH`] instead, and every failure (unknown
//! user, wrong password, locked out, disabled) answers the same `invalid_grant`, so
//! neither the answer nor its timing tells which usernames exist. After
//! `--password-max-failures` consecutive wrong passwords the user is locked out for
//! `--password-lockout`; while locked, even the right password is refused and attempts
//! are not counted (they cannot extend the lockout). The user's scopes come from the
//! user's grants, exactly as a client's come from its own. Clients whose `grant_types`
//! include `refresh_token` also get a refresh token ([`super::refresh`]).

use mayfly_store::{ClientView, LoginFailure, Subject};
use zeroize::Zeroizing;

use super::{
    Issued, PASSWORD, REFRESH_TOKEN, ScopeRequest, SubjectLimits, TokenError, authorize, refresh,
    sign,
};
use crate::password::DUMMY_HASH;
use crate::state::AppState;

/// Longest username looked up (the admin API allows 64).
const MAX_USERNAME: usize = 256;

/// Issues a token to the user whose credentials the client passed.
///
/// # Errors
/// [`TokenError::UnauthorizedClient`] when the client may not use this grant,
/// [`TokenError::UserAuthFailed`] for bad credentials, a lockout or a disabled user,
/// else what [`authorize`] refuses.
pub async fn grant(
    state: &AppState,
    view: &ClientView,
    username: Option<&str>,
    password: Option<Zeroizing<String>>,
    request: &ScopeRequest,
) -> Result<Issued, TokenError> {
    let client = &view.client;
    if !client.allows(PASSWORD) {
        return Err(TokenError::UnauthorizedClient(
            "this client may not use the password grant".into(),
        ));
    }
    let (Some(username), Some(password)) = (username, password) else {
        return Err(TokenError::InvalidRequest(
            "the username and password parameters are required".into(),
        ));
    };
    let user = if username.len() <= MAX_USERNAME {
        state.store.user_by_username(username).await?
    } else {
        None
    };
    let hash = user
        .as_ref()
        .map_or_else(|| DUMMY_HASH.to_owned(), |u| u.password_hash.clone());
    // Always the same work, whoever the user is and whatever state they are in.
    let matches = state.passwords.verify(password, hash).await;
    let now = state.clock.now();
    let Some(user) = user else {
        return Err(TokenError::UserAuthFailed {
            reason: "unknown user",
            user: None,
        });
    };
    let failed = |reason| TokenError::UserAuthFailed {
        reason,
        user: Some(user.id),
    };
    if user.locked_until.is_some_and(|t| now < t) {
        return Err(failed("locked out"));
    }
    if !matches {
        let after = state
            .store
            .record_login_failure(LoginFailure {
                user_id: user.id,
                now,
                max_failures: i32::try_from(state.config.password_max_failures).unwrap_or(i32::MAX),
                lockout: state.config.password_lockout,
            })
            .await?;
        return Err(failed(if after.locked_until.is_some_and(|t| now < t) {
            "wrong password; now locked out"
        } else {
            "wrong password"
        }));
    }
    if !user.enabled {
        return Err(failed("user disabled"));
    }
    if user.failed_logins > 0 || user.locked_until.is_some() {
        state.store.record_login_success(user.id).await?;
    }

    let grants = state.store.subject_grants(Subject::User(user.id)).await?;
    let mut authorized = authorize(
        state,
        Subject::User(user.id),
        client.id,
        SubjectLimits::of(client),
        &grants,
        request,
    )
    .await?;
    let refresh_token = if client.allows(REFRESH_TOKEN) {
        let (family, token) = refresh::start_family(state, user.id, client.id, &authorized).await?;
        authorized.claims.fam = Some(family.to_string());
        Some(token)
    } else {
        None
    };
    let mut issued = sign(state, authorized)?;
    issued.response.refresh_token = refresh_token.map(|t| t.expose().to_owned());
    Ok(issued)
}
