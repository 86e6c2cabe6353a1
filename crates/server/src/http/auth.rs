//! Who calls the admin API, and what they may do.
//!
//! Authorization is one table, [`ROUTES`]: every admin and `/v1` operation names the
//! scope family it touches and whether it reads or changes it, and the [`Admin`]
//! extractor enforces the row of the matched route before the handler runs. A route
//! without a row is refused (fail closed), and the authorization matrix test fails on
//! an operation of the API description without one. Per-object limits (an admin hands
//! out only what it holds) are the service layer's: `service::authority`.
//!
//! The issuer is its own resource server here, and enforces sender constraints as the
//! SDK does: a DPoP-bound token passes only as `Authorization: DPoP …` with a valid
//! proof by its key for this request (`jti` spent on every replica), a
//! network-restricted one only from inside its networks.

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use mayfly_core::token::{self, Claims, VerifyOptions};
use time::Duration;

use crate::audit::RequestContext;
use crate::http::error::Problem;
use crate::runtime::AppState;
use crate::service::access::{ACCESS_SCOPE, APPROVE_SCOPE};
use crate::service::{
    ADMIN_READ_SCOPE, ADMIN_SCOPE, Actor, Authority, Caller, REVOCATIONS_READ_SCOPE,
    USAGE_WRITE_SCOPE,
};
use crate::vocab;

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
            Self::Audiences => vocab::ADMIN_AUDIENCES_SCOPE,
            Self::Clients => vocab::ADMIN_CLIENTS_SCOPE,
            Self::Users => vocab::ADMIN_USERS_SCOPE,
            Self::Grants => vocab::ADMIN_GRANTS_SCOPE,
            Self::Keys => vocab::ADMIN_KEYS_SCOPE,
            Self::Revocations => vocab::ADMIN_REVOCATIONS_SCOPE,
            Self::Audit => vocab::ADMIN_AUDIT_SCOPE,
            Self::Access => vocab::ADMIN_ACCESS_SCOPE,
        }
    }
}

/// What an operation needs of the caller's token. `mayfly:admin` satisfies every need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Reading a family: `mayfly:admin:read` or the family's scope.
    Read(Family),
    /// Changing a family: the family's scope.
    Write(Family),
    /// Reading a family, or holding a service scope (approvers read access requests).
    ReadOr(Family, &'static str),
    /// A service scope (introspection, feed, usage, access requests, approvals).
    Scope(&'static str),
}

impl Need {
    /// Whether a token with `has` for its scopes meets this need.
    pub fn allows(self, has: impl Fn(&str) -> bool) -> bool {
        has(ADMIN_SCOPE)
            || match self {
                Self::Read(family) => has(ADMIN_READ_SCOPE) || has(family.scope()),
                Self::Write(family) => has(family.scope()),
                Self::ReadOr(family, scope) => {
                    has(ADMIN_READ_SCOPE) || has(family.scope()) || has(scope)
                }
                Self::Scope(scope) => has(scope),
            }
    }

    /// The scope a refusal names.
    pub fn scope(self) -> &'static str {
        match self {
            Self::Read(family) | Self::Write(family) | Self::ReadOr(family, _) => family.scope(),
            Self::Scope(scope) => scope,
        }
    }
}

/// One operation of the API: method, route (as routed, `{id}` for parameters) and
/// what it needs.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// The HTTP method.
    pub method: &'static str,
    /// The route template.
    pub path: &'static str,
    /// What the caller's token must hold.
    pub need: Need,
}

const fn route(method: &'static str, path: &'static str, need: Need) -> Route {
    Route { method, path, need }
}

use Family::{Access, Audiences, Audit, Clients, Grants, Keys, Revocations, Users};
use Need::{Read, ReadOr, Scope, Write};

/// The authorization model: every operation that takes a Mayfly token, and what it
/// needs. The README's scope table is tested against it.
pub const ROUTES: &[Route] = &[
    route("GET", "/admin/v1/audiences", Read(Audiences)),
    route("POST", "/admin/v1/audiences", Write(Audiences)),
    route("GET", "/admin/v1/audiences/{id}", Read(Audiences)),
    route("PATCH", "/admin/v1/audiences/{id}", Write(Audiences)),
    route("DELETE", "/admin/v1/audiences/{id}", Write(Audiences)),
    route("GET", "/admin/v1/scopes", Read(Audiences)),
    route("POST", "/admin/v1/scopes", Write(Audiences)),
    route("GET", "/admin/v1/scopes/{id}", Read(Audiences)),
    route("PATCH", "/admin/v1/scopes/{id}", Write(Audiences)),
    route("DELETE", "/admin/v1/scopes/{id}", Write(Audiences)),
    route("GET", "/admin/v1/clients", Read(Clients)),
    route("POST", "/admin/v1/clients", Write(Clients)),
    route("GET", "/admin/v1/clients/{id}", Read(Clients)),
    route("PATCH", "/admin/v1/clients/{id}", Write(Clients)),
    route("DELETE", "/admin/v1/clients/{id}", Write(Clients)),
    route("GET", "/admin/v1/clients/{id}/secrets", Read(Clients)),
    route("POST", "/admin/v1/clients/{id}/secrets", Write(Clients)),
    route(
        "DELETE",
        "/admin/v1/clients/{id}/secrets/{secret_id}",
        Write(Clients),
    ),
    route("GET", "/admin/v1/clients/{id}/public-keys", Read(Clients)),
    route("POST", "/admin/v1/clients/{id}/public-keys", Write(Clients)),
    route(
        "DELETE",
        "/admin/v1/clients/{id}/public-keys/{key_id}",
        Write(Clients),
    ),
    route(
        "GET",
        "/admin/v1/clients/{id}/federated-identities",
        Read(Clients),
    ),
    route(
        "POST",
        "/admin/v1/clients/{id}/federated-identities",
        Write(Clients),
    ),
    route(
        "DELETE",
        "/admin/v1/clients/{id}/federated-identities/{identity_id}",
        Write(Clients),
    ),
    // Trusted issuers decide which external tokens may become client (and user)
    // identities: the clients family.
    route("GET", "/admin/v1/trusted-issuers", Read(Clients)),
    route("POST", "/admin/v1/trusted-issuers", Write(Clients)),
    route("GET", "/admin/v1/trusted-issuers/{id}", Read(Clients)),
    route("PATCH", "/admin/v1/trusted-issuers/{id}", Write(Clients)),
    route("DELETE", "/admin/v1/trusted-issuers/{id}", Write(Clients)),
    route("GET", "/admin/v1/users", Read(Users)),
    route("POST", "/admin/v1/users", Write(Users)),
    route("GET", "/admin/v1/users/{id}", Read(Users)),
    route("PATCH", "/admin/v1/users/{id}", Write(Users)),
    route("DELETE", "/admin/v1/users/{id}", Write(Users)),
    route(
        "GET",
        "/admin/v1/users/{id}/federated-identities",
        Read(Users),
    ),
    route(
        "POST",
        "/admin/v1/users/{id}/federated-identities",
        Write(Users),
    ),
    route(
        "DELETE",
        "/admin/v1/users/{id}/federated-identities/{identity_id}",
        Write(Users),
    ),
    route("GET", "/admin/v1/grants", Read(Grants)),
    route("POST", "/admin/v1/grants", Write(Grants)),
    route("GET", "/admin/v1/grants/{id}", Read(Grants)),
    route("PATCH", "/admin/v1/grants/{id}", Write(Grants)),
    route("DELETE", "/admin/v1/grants/{id}", Write(Grants)),
    route("GET", "/admin/v1/keys", Read(Keys)),
    route("POST", "/admin/v1/keys/rotate", Write(Keys)),
    route("GET", "/admin/v1/revocations", Read(Revocations)),
    route("POST", "/admin/v1/revocations", Write(Revocations)),
    route("GET", "/admin/v1/audit-events", Read(Audit)),
    route("GET", "/admin/v1/access-policies", Read(Access)),
    route("POST", "/admin/v1/access-policies", Write(Access)),
    route("GET", "/admin/v1/access-policies/{id}", Read(Access)),
    route("PATCH", "/admin/v1/access-policies/{id}", Write(Access)),
    route("DELETE", "/admin/v1/access-policies/{id}", Write(Access)),
    route(
        "GET",
        "/admin/v1/access-requests",
        ReadOr(Access, APPROVE_SCOPE),
    ),
    route(
        "GET",
        "/admin/v1/access-requests/{id}",
        ReadOr(Access, APPROVE_SCOPE),
    ),
    route(
        "POST",
        "/admin/v1/access-requests/{id}/approve",
        Scope(APPROVE_SCOPE),
    ),
    route(
        "POST",
        "/admin/v1/access-requests/{id}/deny",
        Scope(APPROVE_SCOPE),
    ),
    route(
        "POST",
        "/admin/v1/access-requests/{id}/review",
        Scope(APPROVE_SCOPE),
    ),
    route("GET", "/v1/access-requests", Scope(ACCESS_SCOPE)),
    route("POST", "/v1/access-requests", Scope(ACCESS_SCOPE)),
    route("GET", "/v1/access-requests/{id}", Scope(ACCESS_SCOPE)),
    route(
        "POST",
        "/v1/access-requests/{id}/cancel",
        Scope(ACCESS_SCOPE),
    ),
    route("GET", "/v1/revocations", Scope(REVOCATIONS_READ_SCOPE)),
    route(
        "GET",
        "/v1/revocations/stream",
        Scope(REVOCATIONS_READ_SCOPE),
    ),
    route("POST", "/v1/usage", Scope(USAGE_WRITE_SCOPE)),
];

/// The row of `method` `path` (a route template), if any.
pub fn route_of(method: &Method, path: &str) -> Option<&'static Route> {
    // axum answers HEAD with the GET handler (and no body): the GET row decides.
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    ROUTES
        .iter()
        .find(|r| r.path == path && r.method == method.as_str())
}

/// A caller holding a valid, unrevoked Mayfly token for the issuer's own audience whose
/// scopes meet the matched route's row of [`ROUTES`].
#[derive(Debug, Clone)]
pub struct Admin {
    claims: Claims,
    request: RequestContext,
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
        let verified = state
            .verified
            .verify(
                token,
                |kid| keys.public_key(kid),
                &options,
                state.clock.now(),
            )
            .map_err(|e| {
                tracing::debug!(reason = %e, "admin token refused");
                if matches!(e, token::VerifyError::Expired) {
                    // Say so, in the problem and the challenge (RFC 6750 §3), so a client
                    // knows to get a new token rather than suspect its credentials.
                    let why = "the access token expired: obtain a new one";
                    return Problem::new(StatusCode::UNAUTHORIZED, why).challenge(format!(
                        r#"Bearer realm="mayfly", error="invalid_token", error_description="{why}""#
                    ));
                }
                unauthorized(
                    Some("invalid_token"),
                    "the access token is invalid or expired",
                )
            })?;
        let claims = verified.claims;
        if state.revocations.revokes(&claims, verified.kid.as_str()) {
            return Err(unauthorized(
                Some("invalid_token"),
                "the access token is invalid or expired",
            ));
        }
        sender_constrained(parts, state, token, dpop_scheme, &claims).await?;
        let path = parts
            .extensions
            .get::<MatchedPath>()
            .map_or("", |p| p.as_str());
        let Some(row) = route_of(&parts.method, path) else {
            tracing::error!(method = %parts.method, path, "route has no row in the authorization table");
            return Err(Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
            ));
        };
        if !row.need.allows(|scope| claims.has_scope(scope)) {
            return Err(Self::forbid(row.need.scope()));
        }
        let request = crate::http::request_context(state, &parts.headers, &parts.extensions);
        Ok(Self { claims, request })
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
    let ctx = crate::oauth::dpop::ProofContext {
        htm: parts.method.as_str(),
        htu: &htu,
        access_token: Some(token),
        jkt: Some(&cnf.jkt),
        nonce_required: false,
    };
    match crate::oauth::dpop::check(state, proof, &ctx).await {
        Ok(_) => Ok(()),
        Err(crate::oauth::TokenError::Unavailable) => Err(Problem::new(
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
    fn forbid(scope: &str) -> Problem {
        Problem::new(
            StatusCode::FORBIDDEN,
            format!("this needs the scope {scope} (or {ADMIN_SCOPE})"),
        )
        .challenge(format!(
            r#"Bearer realm="mayfly", error="insufficient_scope", scope="{scope}""#
        ))
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
            |e: mayfly_store::StoreError| Problem::from(crate::service::AdminError::Store(e));
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
            caller: self.caller(state),
        }
    }

    /// What this caller may hand out (its token's scopes) and where it called from.
    fn caller(&self, state: &AppState) -> Caller {
        Caller {
            authority: Authority::Token {
                issuer: state.issuer.clone(),
                scopes: self
                    .claims
                    .scope
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            },
            request: self.request.clone(),
        }
    }

    /// Where the call came from (source address, user agent, request id), for audit.
    pub fn request(&self) -> &RequestContext {
        &self.request
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
            caller: self.caller(state),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::{Family, Need, ROUTES};
    use crate::service::{ADMIN_SCOPES, SERVICE_SCOPES};

    /// Every token-checked operation of the API description has exactly one row, and
    /// every row is an operation.
    #[test]
    fn every_operation_has_one_row() {
        let doc: serde_json::Value =
            serde_json::from_str(&crate::http::ops::openapi::document()).unwrap();
        let mut operations = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in ["get", "post", "put", "patch", "delete"] {
                let guarded = path.starts_with("/admin/") || path.starts_with("/v1/");
                if guarded && item.get(method).is_some() {
                    operations.insert(format!("{} {path}", method.to_uppercase()));
                }
            }
        }
        let rows: Vec<String> = ROUTES
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        let unique: BTreeSet<String> = rows.iter().cloned().collect();
        assert_eq!(unique.len(), rows.len(), "a route has two rows");
        assert_eq!(unique, operations);
    }

    /// The README's scope table lists exactly the scopes the model knows, and every scope
    /// a row needs is one of them.
    #[test]
    fn readme_scope_table_matches_the_model() {
        let readme = include_str!("../../../../README.md");
        let listed: BTreeSet<&str> = readme
            .lines()
            .filter_map(|l| l.strip_prefix("| `mayfly:"))
            .filter_map(|l| l.split_once('`'))
            .map(|(rest, _)| rest)
            .collect();
        let known: BTreeSet<&str> = ADMIN_SCOPES
            .iter()
            .chain(SERVICE_SCOPES)
            .filter_map(|s| s.strip_prefix("mayfly:"))
            .collect();
        assert_eq!(listed, known, "README.md's scope table");
        for route in ROUTES {
            let needed = match route.need {
                Need::Read(f) | Need::Write(f) | Need::ReadOr(f, _) => f.scope(),
                Need::Scope(s) => s,
            };
            assert!(
                known.contains(needed.trim_start_matches("mayfly:")),
                "{needed}"
            );
        }
        let families = [
            Family::Audiences,
            Family::Clients,
            Family::Users,
            Family::Grants,
            Family::Keys,
            Family::Revocations,
            Family::Audit,
            Family::Access,
        ];
        for family in families {
            assert!(ADMIN_SCOPES.contains(&family.scope()), "{family:?}");
        }
    }

    /// One gate: handlers of token-checked routes never look at scopes themselves (the
    /// route table and the service layer's ceiling decide).
    #[test]
    fn handlers_do_not_check_scopes() {
        let handlers = [
            ("admin/access.rs", include_str!("admin/access.rs")),
            ("admin/audiences.rs", include_str!("admin/audiences.rs")),
            ("admin/audit.rs", include_str!("admin/audit.rs")),
            ("admin/clients.rs", include_str!("admin/clients.rs")),
            ("admin/federation.rs", include_str!("admin/federation.rs")),
            ("admin/grants.rs", include_str!("admin/grants.rs")),
            ("admin/keys.rs", include_str!("admin/keys.rs")),
            ("admin/revocations.rs", include_str!("admin/revocations.rs")),
            ("admin/scopes.rs", include_str!("admin/scopes.rs")),
            ("admin/users.rs", include_str!("admin/users.rs")),
            ("v1/access.rs", include_str!("v1/access.rs")),
            ("v1/feed.rs", include_str!("v1/feed.rs")),
            ("v1/usage.rs", include_str!("v1/usage.rs")),
        ];
        for (name, text) in handlers {
            for needle in ["has_scope", "_SCOPE", "may_read", "may_write"] {
                assert!(!text.contains(needle), "{name} mentions {needle}");
            }
        }
    }

    #[test]
    fn full_admin_meets_every_need_read_only_never_a_write() {
        for route in ROUTES {
            assert!(route.need.allows(|s| s == "mayfly:admin"), "{route:?}");
            if let Need::Write(_) | Need::Scope(_) = route.need {
                assert!(
                    !route.need.allows(|s| s == "mayfly:admin:read"),
                    "{route:?}"
                );
            }
        }
    }
}
