//! Who calls the admin API, and what they may do.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use mayfly_core::token::{self, Claims, VerifyOptions};
use time::Duration;

use crate::admin::{ADMIN_READ_SCOPE, ADMIN_SCOPE, Actor};
use crate::http::error::Problem;
use crate::state::AppState;

/// Clock-skew allowance for our own tokens (same clock family, so small).
const LEEWAY: Duration = Duration::seconds(5);

/// A family of admin resources, each with its own scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Audiences and scopes.
    Audiences,
    /// Clients, their secrets and public keys.
    Clients,
    /// Users.
    Users,
    /// Grants.
    Grants,
    /// Signing keys.
    Keys,
    /// Revocations.
    Revocations,
    /// The audit log (read only).
    Audit,
}

impl Family {
    /// The scope that allows reading and changing this family.
    pub fn scope(self) -> &'static str {
        match self {
            Self::Audiences => "mayfly:admin:audiences",
            Self::Clients => "mayfly:admin:clients",
            Self::Users => "mayfly:admin:users",
            Self::Grants => "mayfly:admin:grants",
            Self::Keys => "mayfly:admin:keys",
            Self::Revocations => "mayfly:admin:revocations",
            Self::Audit => "mayfly:admin:audit",
        }
    }
}

/// A caller holding a valid, unrevoked Mayfly token for the issuer's own audience:
/// admins, and services reading the revocation feed.
#[derive(Debug, Clone)]
pub struct Admin {
    claims: Claims,
}

fn unauthorized(error: Option<&str>, detail: &str) -> Problem {
    let challenge = match error {
        Some(code) => format!(r#"Bearer realm="mayfly", error="{code}""#),
        None => r#"Bearer realm="mayfly""#.to_owned(),
    };
    Problem::new(StatusCode::UNAUTHORIZED, detail).challenge(challenge)
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(unauthorized(None, "a Bearer token is required"));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| {
                unauthorized(Some("invalid_request"), "use the Bearer scheme (RFC 6750)")
            })?;
        let keys = state.keyring.current();
        let options = VerifyOptions {
            issuer: &state.issuer,
            audience: Some(&state.issuer),
            leeway: LEEWAY,
        };
        let claims = token::verify(
            token,
            |kid| keys.public_key(kid),
            &options,
            state.clock.now(),
        )
        .map_err(|e| {
            tracing::debug!(reason = %e, "admin token refused");
            unauthorized(
                Some("invalid_token"),
                "the access token is invalid or expired",
            )
        })?;
        if state.revocations.revokes(
            &claims,
            &token::peek_key_id(token)
                .map(|k| k.to_string())
                .unwrap_or_default(),
        ) {
            return Err(unauthorized(
                Some("invalid_token"),
                "the access token is invalid or expired",
            ));
        }
        Ok(Self { claims })
    }
}

impl Admin {
    fn has(&self, scope: &str) -> bool {
        self.claims.has_scope(scope)
    }

    fn forbid(scope: &str) -> Problem {
        Problem::new(
            StatusCode::FORBIDDEN,
            format!("this needs the scope {scope} (or {ADMIN_SCOPE})"),
        )
        .challenge(format!(
            r#"Bearer realm="mayfly", error="insufficient_scope", scope="{scope}""#
        ))
    }

    /// Allows reading `family`: full admin, read-only admin, or the family's scope.
    ///
    /// # Errors
    /// 403 `insufficient_scope` otherwise.
    pub fn may_read(&self, family: Family) -> Result<(), Problem> {
        if self.has(ADMIN_SCOPE) || self.has(ADMIN_READ_SCOPE) || self.has(family.scope()) {
            Ok(())
        } else {
            Err(Self::forbid(family.scope()))
        }
    }

    /// Allows changing `family`: full admin or the family's scope.
    ///
    /// # Errors
    /// 403 `insufficient_scope` otherwise.
    pub fn may_write(&self, family: Family) -> Result<(), Problem> {
        if self.has(ADMIN_SCOPE) || self.has(family.scope()) {
            Ok(())
        } else {
            Err(Self::forbid(family.scope()))
        }
    }

    /// Allows what `scope` allows (full admin allows everything).
    ///
    /// # Errors
    /// 403 `insufficient_scope` otherwise.
    pub fn require(&self, scope: &str) -> Result<(), Problem> {
        if self.has(ADMIN_SCOPE) || self.has(scope) {
            Ok(())
        } else {
            Err(Self::forbid(scope))
        }
    }

    /// The caller's client id.
    pub fn client_id(&self) -> &str {
        &self.claims.client_id
    }

    /// The service layer, acting as this caller (its client id is the audit actor).
    pub fn actor<'s>(&self, state: &'s AppState) -> Actor<'s> {
        Actor {
            store: state.store.as_ref(),
            id: self.claims.client_id.clone(),
            now: state.clock.now(),
        }
    }
}
