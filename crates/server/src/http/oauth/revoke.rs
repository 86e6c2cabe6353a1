//! `POST /oauth2/revoke` (RFC 7009): a client revokes one of its own tokens. An access
//! token is revoked by its `jti` (and with it whatever was exchanged from it); a refresh
//! token ends its whole login: the family and every access token issued from it
//! (RFC 7009 §2.1).

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use mayfly_core::revocation::RevocationKind;
use mayfly_core::token::VerifyOptions;
use serde::Deserialize;
use time::Duration;

use crate::http::error::no_store;
use crate::oauth::TokenError;
use crate::runtime::AppState;
use crate::runtime::verified::Verified;
use crate::service::{Actor, RevokeSpec};

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/oauth2/revoke", post(revoke))
}

/// The revocation request (documentation of the form body).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct RevocationForm {
    /// The token to revoke.
    token: String,
    /// `access_token` or `refresh_token` (optional).
    token_type_hint: Option<String>,
}

/// Revokes a token the calling client obtained. Answers 200 whether or not the token
/// was valid or known (RFC 7009 §2.2), so it reveals nothing about other tokens.
#[utoipa::path(
    post,
    path = "/oauth2/revoke",
    tag = "oauth",
    request_body(content = RevocationForm, content_type = "application/x-www-form-urlencoded"),
    security(("client_secret_basic" = [])),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke"),
        (status = 400, description = "invalid_request, unsupported_token_type", body = mayfly_core::wire::ErrorResponse),
        (status = 401, description = "invalid_client", body = mayfly_core::wire::ErrorResponse),
        (status = 413, description = "Body too large", body = mayfly_core::wire::ErrorResponse),
        (status = 429, description = "temporarily_unavailable: too many failed client authentications; retry after Retry-After", body = mayfly_core::wire::ErrorResponse),
        (status = 503, description = "temporarily_unavailable", body = mayfly_core::wire::ErrorResponse),
    )
)]
pub async fn revoke(State(state): State<AppState>, request: Request) -> Response {
    match revoke_own(&state, request).await {
        Ok(()) => {
            let mut response = StatusCode::OK.into_response();
            no_store(&mut response);
            response
        }
        Err(e) => e.into_response(),
    }
}

async fn revoke_own(state: &AppState, request: Request) -> Result<(), TokenError> {
    let (parts, body) = request.into_parts();
    let (form, caller) = crate::http::oauth::introspect::authenticated(
        state,
        &parts.headers,
        &parts.extensions,
        body,
    )
    .await?;
    let token = form
        .get("token")
        .ok_or_else(|| TokenError::InvalidRequest("the token parameter is required".into()))?;
    if let Some(hint) = form.get("token_type_hint")
        && !matches!(hint, "access_token" | "refresh_token")
    {
        return Err(TokenError::UnsupportedTokenType(
            hint.chars().take(64).collect(),
        ));
    }
    if token.starts_with(crate::oauth::grant::refresh::PREFIX) {
        let revoked =
            crate::oauth::grant::refresh::revoke_by_client(state, token, caller.client.id).await?;
        if let Some(record) = revoked {
            let event = mayfly_store::AuditEvent {
                actor: Some(caller.client.id.to_string()),
                subject: Some(record.value.clone()),
                client_id: Some(caller.client.id.to_string()),
                detail: serde_json::json!({
                    "kind": record.kind, "value": record.value, "seq": record.seq,
                    "reason": record.reason,
                }),
                ..crate::audit::event(
                    crate::audit::kind::TOKEN_REVOKED,
                    crate::audit::outcome::SUCCESS,
                    state.clock.now(),
                    &crate::http::request_context(state, &parts.headers, &parts.extensions),
                )
            };
            state.audit.record(event).await.map_err(|e| {
                tracing::error!(error = %e, "audit unavailable after a revocation");
                TokenError::Unavailable
            })?;
        }
        return Ok(());
    }
    let keys = state.keyring.current();
    // An expired token needs no revocation; a token that does not verify is none of ours.
    let options = VerifyOptions {
        issuer: &state.issuer,
        audience: None,
        leeway: Duration::ZERO,
    };
    let Ok(Verified { claims, .. }) = state.verified.verify(
        token,
        |kid| keys.public_key(kid),
        &options,
        state.clock.now(),
    ) else {
        return Ok(());
    };
    if claims.client_id != caller.client.id.to_string() {
        tracing::debug!("revocation of another client's token ignored");
        return Ok(());
    }
    let actor = Actor::trusted(
        state.store.as_ref(),
        caller.client.id.to_string(),
        state.clock.now(),
        crate::http::request_context(state, &parts.headers, &parts.extensions),
    );
    let spec = RevokeSpec {
        token_exp: Some(claims.exp),
        ..RevokeSpec::now(
            RevocationKind::Jti,
            claims.jti,
            "revoked by its client (RFC 7009)",
        )
    };
    actor.create_revocation(spec).await.map_err(|e| match e {
        crate::service::AdminError::Store(e) => TokenError::from(e),
        other => TokenError::Internal(other.to_string()),
    })?;
    state.revocations.catch_up().await?;
    Ok(())
}
