//! `grant_type=password` (RFC 6749 §4.3): a first-party client, authenticated as
//! usual, passes a person's username and password and gets a token for that person.
//!
//! The password is checked with argon2id on the password pool ([`crate::password`];
//! a full queue answers 503 at once). An unknown username is checked against
//! [`DUMMY_HASH`] instead, and every failure (unknown user, wrong password, locked out,
//! disabled) answers the same `invalid_grant` after the same work, so neither the
//! answer nor its timing tells which usernames exist. Each attempt on a known user is
//! counted as a failure in the store *before* its password is checked, atomically and
//! only while the user is not locked out ([`mayfly_store::UserStore::begin_login_attempt`]);
//! a right password then clears the count. So concurrent guesses see each other: after
//! `--password-max-failures` the user is locked out for `--password-lockout`, and no
//! more than that many passwords are checked per lockout, however many arrive at once.
//! While locked, even the right password is refused and attempts are not counted (they
//! cannot extend the lockout). Failed logins are also counted per source address (IPv6:
//! per /64), whatever the username: past `--login-failures-per-address` within the
//! lockout period, logins from there are answered 429. The user's scopes come from the
//! user's grants, exactly as a client's come from its own. Clients whose `grant_types`
//! include `refresh_token` also get a refresh token ([`super::refresh`]).

use ipnet::IpNet;
use mayfly_store::{ClientView, LoginFailure, Subject};
use zeroize::Zeroizing;

use super::{
    Issued, PASSWORD, REFRESH_TOKEN, ScopeRequest, SubjectLimits, TokenError, authorize, refresh,
    sign,
};
use crate::client_auth::throttle;
use crate::password::{DUMMY_HASH, MAX_BYTES};
use crate::runtime::AppState;

/// Longest username looked up (the admin API allows 64).
const MAX_USERNAME: usize = 256;

/// Issues a token to the user whose credentials the client passed.
///
/// # Errors
/// [`TokenError::UnauthorizedClient`] when the client may not use this grant,
/// [`TokenError::UserAuthFailed`] for bad credentials, a lockout or a disabled user,
/// [`TokenError::Throttled`] past the failures allowed from the address,
/// [`TokenError::Unavailable`] when the password pool's queue is full, else what
/// [`authorize`] refuses.
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
    let now = state.clock.now();
    // No stored password is this long: refused for every username alike, before any
    // lookup or count, so the answer and its timing say nothing about the user.
    if password.len() > MAX_BYTES {
        return Err(TokenError::UserAuthFailed {
            reason: "password too long",
            user: None,
        });
    }
    let limits = &state.config.limits;
    let window = state.config.password_lockout;
    // Counted as failed until it succeeds, so concurrent attempts see each other.
    let address: Vec<(IpNet, usize)> = request
        .source
        .map(|a| {
            (
                throttle::prefix(a, 32, 64),
                limits.login_failures_per_address,
            )
        })
        .into_iter()
        .collect();
    // The address's throttle before the queue: a throttled caller gets its (held, see
    // `http/oauth/token.rs`) 429, never a place or a 503 it could retry at once.
    state
        .login_failures
        .reserve(&address, window, now)
        .map_err(|wait| TokenError::Throttled(wait.whole_seconds() + 1))?;
    let keys: Vec<IpNet> = address.iter().map(|(k, _)| *k).collect();
    let place = state.passwords.place().map_err(|_| {
        state.login_failures.refund(&keys);
        tracing::warn!("password queue full; refusing a login");
        TokenError::Unavailable
    })?;
    let result = check(state, place, username, password, now).await;
    if !matches!(result, Err(TokenError::UserAuthFailed { .. })) {
        state.login_failures.refund(&keys);
    }
    let user = result?;

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

/// Checks the credentials: the user, when they exist, are enabled, not locked out and
/// the password is theirs. Always exactly one argon2id check, whatever the outcome.
async fn check(
    state: &AppState,
    place: crate::password::Place,
    username: &str,
    password: Zeroizing<String>,
    now: time::OffsetDateTime,
) -> Result<mayfly_store::UserRecord, TokenError> {
    // No stored username holds a control character (the admin API refuses them), and
    // Postgres cannot even compare one holding a NUL: such a name is unknown.
    let user = if mayfly_core::UntrustedText::is_clean(username, MAX_USERNAME) {
        state.store.user_by_username(username).await?
    } else {
        None
    };
    let admitted = match &user {
        Some(user) => {
            state
                .store
                .begin_login_attempt(LoginFailure {
                    user_id: user.id,
                    now,
                    max_failures: i32::try_from(state.config.password_max_failures)
                        .unwrap_or(i32::MAX),
                    lockout: state.config.password_lockout,
                })
                .await?
        }
        None => None,
    };
    // Locked-out and unknown users are checked against the dummy hash: the same work.
    let hash = match (&user, &admitted) {
        (Some(u), Some(_)) => u.password_hash.clone(),
        _ => DUMMY_HASH.to_owned(),
    };
    let matches = state.passwords.verify(place, password, hash).await;
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
    let Some(counted) = admitted else {
        return Err(failed("locked out"));
    };
    if !matches {
        let locked = counted.locked_until.is_some_and(|t| now < t);
        return Err(failed(if locked {
            "wrong password; now locked out"
        } else {
            "wrong password"
        }));
    }
    // The attempt was counted in advance: a right password clears the count, if it is
    // still the user's password and the user still enabled. The check may have waited
    // in the queue while an admin changed either, and that change's revocation ends
    // only the logins it can see.
    let current = state
        .store
        .record_login_success(user.id, &user.password_hash)
        .await?;
    if !user.enabled {
        return Err(failed("user disabled"));
    }
    if !current {
        return Err(failed("password changed or user disabled during the check"));
    }
    Ok(user)
}
