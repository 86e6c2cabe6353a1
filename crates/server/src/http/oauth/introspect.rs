//! `POST /oauth2/introspect` (RFC 7662): continuous verification for resource servers.
//!
//! The caller authenticates as a client granted `mayfly:introspect` on the issuer's
//! own audience. A token is active only if its signature is by a published key, it is
//! within `nbf`..`exp`, no revocation matches it, and the client, user and grants behind
//! it are still there, enabled and in force, right now.
//!
//! Sender constraints. A token bound to a DPoP key (`cnf.jkt`) introspected without a
//! proof is answered active with its `cnf.jkt` (RFC 9449 §6.2): the resource server
//! checks the proof it received against that key, as standard ones do. When it
//! forwards the proof (`dpop`, with the request's `htm` and `htu`), Mayfly checks it:
//! by the bound key, carrying the token's hash (`ath`), fresh, its `jti` spent on every
//! replica; otherwise the token is inactive. A token restricted to networks (`cidr`)
//! is active only if the resource server passes the address the token came from
//! (`source_ip`) and it lies inside.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use mayfly_core::token::Claims;
use mayfly_core::wire::Introspection;
use mayfly_store::{AuditEvent, ClientView};
use serde::Deserialize;

use crate::audit::{self, kind, outcome};
use crate::client_auth;
use crate::http::error::no_store;
use crate::http::form::Form;
use crate::oauth::grant::{TokenError, in_force};
use crate::runtime::AppState;
use crate::service::INTROSPECT_SCOPE;
use crate::telemetry::CounterFamily;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/oauth2/introspect", post(introspect))
}

/// The introspection request (documentation of the form body).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct IntrospectionForm {
    /// The token to check.
    token: String,
    /// `access_token` (optional).
    token_type_hint: Option<String>,
    /// Mayfly extension: the address the token was presented from, as the resource
    /// server saw it. Required for a token restricted to networks (`cidr`).
    source_ip: Option<String>,
    /// Mayfly extension: the DPoP proof presented with the token (RFC 9449 §7), checked
    /// when given. Without it a bound token's answer carries `cnf.jkt` for the caller
    /// to check the proof against.
    dpop: Option<String>,
    /// With `dpop`: the method of the request the token came with.
    htm: Option<String>,
    /// With `dpop`: the URL of the request the token came with.
    htu: Option<String>,
    /// For `private_key_jwt`.
    client_assertion_type: Option<String>,
    /// For `private_key_jwt`.
    client_assertion: Option<String>,
}

/// Reads an OAuth form body and authenticates the calling client.
pub(super) async fn authenticated(
    state: &AppState,
    headers: &HeaderMap,
    extensions: &axum::http::Extensions,
    body: axum::body::Body,
) -> Result<(Form, Arc<ClientView>), TokenError> {
    let body = axum::body::to_bytes(body, crate::http::oauth::token::MAX_BODY)
        .await
        .map_err(|_| TokenError::TooLarge)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let form = Form::parse(content_type, &body)?;
    let presented =
        client_auth::presented_any(&crate::http::oauth::token::credentials(headers, &form));
    let source = crate::http::source_ip(&state.config.trusted_proxies, headers, extensions);
    let view =
        crate::http::oauth::token::authenticate_client(state, presented, source, &mut None).await?;
    Ok((form, view))
}

/// Whether `view`'s client holds `scope` on the issuer's audience right now.
pub(super) fn holds(state: &AppState, view: &ClientView, scope: &str) -> bool {
    let now = state.clock.now();
    view.grants.iter().any(|g| {
        g.audience_uri == state.issuer
            && in_force(&g.grant, now)
            && g.grant.scopes.iter().any(|s| s == scope)
    })
}

/// Checks a token now; `Err` carries why it is inactive (for the audit log only).
pub async fn evaluate(state: &AppState, token: &str) -> Result<Claims, &'static str> {
    crate::oauth::active::check(state, token)
        .await
        .map(|a| a.claims)
}

/// Checks the sender constraints of an otherwise active token against what the
/// resource server forwarded: `Ok(Err(reason))` when they are not met (the reason is for
/// the audit log), `Err` when the check itself failed.
async fn constrained(
    state: &AppState,
    form: &Form,
    token: &str,
    claims: &Claims,
) -> Result<Result<(), &'static str>, TokenError> {
    if !claims.cidr.is_empty() {
        let Some(ip) = form
            .get("source_ip")
            .and_then(|s| s.trim().parse::<std::net::IpAddr>().ok())
        else {
            return Ok(Err("network-restricted token without a valid source_ip"));
        };
        let nets = mayfly_core::net::parse_networks(&claims.cidr).unwrap_or_default();
        if !mayfly_core::net::allows(&nets, ip) {
            return Ok(Err("used from outside its networks"));
        }
    }
    if let Some(cnf) = &claims.cnf {
        // No proof forwarded: the resource server checks it itself against `cnf.jkt`
        // in the answer (RFC 9449 §6.2, §7). One forwarded is checked here.
        let dpop = form.get("dpop");
        if dpop.is_none() && form.get("htm").is_none() && form.get("htu").is_none() {
            return Ok(Ok(()));
        }
        let (Some(proof), Some(htm), Some(htu)) = (dpop, form.get("htm"), form.get("htu")) else {
            return Ok(Err("DPoP proof forwarded without htm and htu"));
        };
        let ctx = crate::oauth::dpop::ProofContext {
            htm,
            htu,
            access_token: Some(token),
            jkt: Some(&cnf.jkt),
            nonce_required: false,
        };
        match crate::oauth::dpop::check(state, proof, &ctx).await {
            Ok(_) => {}
            Err(e @ (TokenError::Unavailable | TokenError::Internal(_))) => return Err(e),
            Err(_) => return Ok(Err("DPoP proof refused")),
        }
    }
    Ok(Ok(()))
}

/// Tells a resource server whether a token is active, and what it carries.
#[utoipa::path(
    post,
    path = "/oauth2/introspect",
    tag = "oauth",
    request_body(content = IntrospectionForm, content_type = "application/x-www-form-urlencoded"),
    security(("client_secret_basic" = [])),
    responses(
        (status = 200, description = "RFC 7662 answer; inactive tokens get {\"active\":false} only", body = Introspection),
        (status = 400, description = "invalid_request", body = mayfly_core::wire::ErrorResponse),
        (status = 401, description = "invalid_client", body = mayfly_core::wire::ErrorResponse),
        (status = 403, description = "unauthorized_client: the caller lacks mayfly:introspect", body = mayfly_core::wire::ErrorResponse),
        (status = 413, description = "Body too large", body = mayfly_core::wire::ErrorResponse),
        (status = 429, description = "temporarily_unavailable: too many failed client authentications; retry after Retry-After", body = mayfly_core::wire::ErrorResponse),
        (status = 503, description = "temporarily_unavailable", body = mayfly_core::wire::ErrorResponse),
    )
)]
pub async fn introspect(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let ctx = crate::http::request_context(&state, &parts.headers, &parts.extensions);
    let (form, caller) = match authenticated(&state, &parts.headers, &parts.extensions, body).await
    {
        Ok(ok) => ok,
        Err(e) => return e.into_response(),
    };
    if !holds(&state, &caller, INTROSPECT_SCOPE) {
        return TokenError::Forbidden(format!("introspection needs the scope {INTROSPECT_SCOPE}"))
            .into_response();
    }
    let Some(token) = form.get("token") else {
        return TokenError::InvalidRequest("the token parameter is required".into())
            .into_response();
    };
    let mut verdict = evaluate(&state, token).await;
    if let Ok(claims) = &verdict {
        match constrained(&state, &form, token, claims).await {
            Ok(Ok(())) => {}
            Ok(Err(why)) => verdict = Err(why),
            Err(e) => return e.into_response(),
        }
    }
    if verdict == Err("unavailable") {
        return TokenError::Unavailable.into_response();
    }
    let claims = verdict.as_ref().ok();
    let event = AuditEvent {
        actor: Some(caller.client.id.to_string()),
        subject: claims.map(|c| c.sub.clone()),
        client_id: claims.map(|c| c.client_id.clone()),
        jti: claims.map(|c| c.jti.clone()),
        audience: claims.map(|c| c.aud.clone()),
        scopes: claims.map(|c| c.scope.clone()),
        detail: serde_json::json!({ "active": verdict.is_ok(), "reason": verdict.as_ref().err() }),
        ..audit::event(
            kind::TOKEN_INTROSPECTED,
            if verdict.is_ok() {
                outcome::SUCCESS
            } else {
                outcome::DENIED
            },
            state.clock.now(),
            &ctx,
        )
    };
    if let Err(e) = state.audit.record(event).await {
        tracing::error!(error = %e, "audit unavailable; refusing introspection");
        return TokenError::Unavailable.into_response();
    }
    static INTROSPECTIONS: CounterFamily =
        CounterFamily::new("mayfly_introspections_total", "active");
    INTROSPECTIONS
        .get(if verdict.is_ok() { "true" } else { "false" })
        .increment(1);
    if let Ok(claims) = &verdict
        && let Ok(client_id) = uuid::Uuid::parse_str(&claims.client_id)
    {
        crate::anomaly::inspect_later(
            &state,
            crate::anomaly::Observation {
                seen_in: crate::anomaly::SeenIn::Introspection,
                client_id,
                subject: Some(claims.sub.clone()),
                jti: Some(claims.jti.clone()),
                token_exp: Some(claims.exp),
                // The caller's address, when the resource server forwards it.
                address: form
                    .get("source_ip")
                    .and_then(|s| s.trim().parse::<std::net::IpAddr>().ok()),
                audience: Some(claims.aud.clone()),
                endpoint: None,
                request: ctx.clone(),
            },
        );
    }
    let answer = match &verdict {
        Ok(claims) => Introspection::active(claims),
        Err(_) => Introspection::default(),
    };
    let mut response = Json(answer).into_response();
    no_store(&mut response);
    response
}
