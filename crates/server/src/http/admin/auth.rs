//! Who calls the admin API, and what they may do.
//!
//! The issuer is its own resource server here, and enforces sender constraints as the
//! SDK does: a DPoP-bound token passes only as `Authorization: DPoP …` with a valid
//! proof by its key for this request (`jti` spent on every replica), a
//! network-restricted one only from inside its networks.

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
    /// Access policies (just-in-time access).
    Access,
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
            Self::Access => "mayfly:admin:access",
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
        let (dpop_scheme, token) = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .and_then(|(scheme, token)| {
                let dpop = scheme.eq_ignore_ascii_case("dpop");
                (dpop || scheme.eq_ignore_ascii_case("bearer")).then(|| (dpop, token.trim()))
            })
            .ok_or_else(|| {
                unauthorized(
                    Some("invalid_request"),
                    "use the Bearer (RFC 6750) or DPoP (RFC 9449) scheme",
                )
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
        sender_constrained(parts, state, token, dpop_scheme, &claims).await?;
        Ok(Self { claims })
    }
}

fn dpop_refusal(error: &str, detail: &str) -> Problem {
    Problem::new(StatusCode::UNAUTHORIZED, detail).challenge(format!(
        r#"DPoP realm="mayfly", error="{error}", algs="{}""#,
        mayfly_core::dpop::ALGORITHMS.join(" ")
    ))
}

/// Enforces a token's network restriction and DPoP binding for this request.
async fn sender_constrained(
    parts: &Parts,
    state: &AppState,
    token: &str,
    dpop_scheme: bool,
    claims: &Claims,
) -> Result<(), Problem> {
    if !claims.cidr.is_empty() {
        let source = crate::http::source_ip(
            &state.config.trusted_proxies,
            &parts.headers,
            &parts.extensions,
        );
        let nets = mayfly_core::net::parse_networks(&claims.cidr).unwrap_or_default();
        if !source.is_some_and(|ip| mayfly_core::net::allows(&nets, ip)) {
            return Err(unauthorized(
                Some("invalid_token"),
                "the access token may not be used from this network",
            ));
        }
    }
    let Some(cnf) = &claims.cnf else {
        return if dpop_scheme {
            Err(dpop_refusal(
                "invalid_token",
                "the access token is not DPoP-bound",
            ))
        } else {
            Ok(())
        };
    };
    let mut proofs = parts.headers.get_all("dpop").iter();
    let proof = match (dpop_scheme, proofs.next(), proofs.next()) {
        (true, Some(p), None) => p.to_str().ok(),
        _ => None,
    };
    let Some(proof) = proof else {
        return Err(dpop_refusal(
            "invalid_token",
            "a DPoP-bound token needs the DPoP scheme and one DPoP proof",
        ));
    };
    let htu = format!("{}{}", state.issuer, parts.uri.path());
    let ctx = crate::dpop::ProofContext {
        htm: parts.method.as_str(),
        htu: &htu,
        access_token: Some(token),
        jkt: Some(&cnf.jkt),
        nonce_required: false,
    };
    match crate::dpop::check(state, proof, &ctx).await {
        Ok(_) => Ok(()),
        Err(crate::grant::TokenError::Unavailable) => Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service temporarily unavailable, retry later",
        )),
        Err(e) => {
            tracing::debug!(reason = %e.audit_reason(), "DPoP proof refused");
            Err(dpop_refusal(
                "invalid_dpop_proof",
                "the DPoP proof is invalid",
            ))
        }
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

    /// Whether the token carries `scope` (exactly; full admin is not implied).
    pub fn holds(&self, scope: &str) -> bool {
        self.has(scope)
    }

    /// Who the caller is: the token's subject, a user or a client. Delegated tokens
    /// (`act`) are not the subject acting for itself, and are refused.
    ///
    /// # Errors
    /// 403 for a delegated token or a subject that no longer exists; 503 when the
    /// store cannot say.
    pub async fn subject(&self, state: &AppState) -> Result<mayfly_store::Subject, Problem> {
        use mayfly_store::Subject;
        let forbidden = |why: &str| Problem::new(StatusCode::FORBIDDEN, why);
        if self.claims.act.is_some() {
            return Err(forbidden(
                "a delegated token cannot act for its subject here",
            ));
        }
        let sub = uuid::Uuid::parse_str(&self.claims.sub)
            .map_err(|_| forbidden("the token's subject is not a client or user"))?;
        if self.claims.sub == self.claims.client_id {
            return Ok(Subject::Client(sub));
        }
        let unavailable =
            |e: mayfly_store::StoreError| Problem::from(crate::admin::AdminError::Store(e));
        if state.store.user(sub).await.map_err(unavailable)?.is_some() {
            return Ok(Subject::User(sub));
        }
        if state
            .store
            .client(sub)
            .await
            .map_err(unavailable)?
            .is_some()
        {
            return Ok(Subject::Client(sub));
        }
        Err(forbidden("the token's subject is not a client or user"))
    }

    /// The service layer acting as the token's subject (a user or client id is the
    /// audit actor): for just-in-time access, where who asks or approves is the person.
    pub fn subject_actor<'s>(&self, state: &'s AppState) -> Actor<'s> {
        Actor {
            store: state.store.as_ref(),
            id: self.claims.sub.clone(),
            now: state.clock.now(),
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
