//! Discovery: `GET /.well-known/oauth-authorization-server` (RFC 8414) and the key set
//! `GET /.well-known/jwks.json` (RFC 7517 with OKP keys per RFC 8037, plus `paserk`).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mayfly_core::wire::ServerMetadata;

use crate::state::AppState;

/// How long resource servers may cache the key set. Rotation publishes a key as `next`
/// well before it signs, so a cached set always knows the signing key.
pub const JWKS_MAX_AGE_SECS: u32 = 300;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/.well-known/jwks.json", get(jwks))
}

/// Authorization server metadata.
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "discovery",
    responses((status = 200, description = "RFC 8414 metadata", body = ServerMetadata)))]
pub async fn metadata(State(state): State<AppState>) -> Response {
    let issuer = &state.issuer;
    let methods = || {
        vec![
            "client_secret_basic".to_owned(),
            "client_secret_post".to_owned(),
        ]
    };
    let body = ServerMetadata {
        issuer: issuer.clone(),
        token_endpoint: format!("{issuer}/oauth2/token"),
        jwks_uri: format!("{issuer}/.well-known/jwks.json"),
        introspection_endpoint: format!("{issuer}/oauth2/introspect"),
        introspection_endpoint_auth_methods_supported: methods(),
        revocation_endpoint: format!("{issuer}/oauth2/revoke"),
        revocation_endpoint_auth_methods_supported: methods(),
        grant_types_supported: vec!["client_credentials".into()],
        token_endpoint_auth_methods_supported: methods(),
        response_types_supported: vec![],
    };
    let mut response = Json(body).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// The published signing keys.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "discovery",
    params(("If-None-Match" = Option<String>, Header, description = "ETag of a cached copy")),
    responses(
        (status = 200, description = "Every key a valid token may be signed with", body = mayfly_core::wire::JwkSet),
        (status = 304, description = "The cached copy is current"),
    ))]
pub async fn jwks(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let keys = state.keyring.current();
    let etag =
        HeaderValue::from_str(&keys.etag).unwrap_or_else(|_| HeaderValue::from_static("\"\""));
    let cache = HeaderValue::from_str(&format!("public, max-age={JWKS_MAX_AGE_SECS}"))
        .unwrap_or_else(|_| HeaderValue::from_static("no-cache"));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            // RFC 9110 §13.1.2: If-None-Match compares weakly, so W/"x" matches "x".
            v.split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || tag.trim_start_matches("W/") == keys.etag)
        });
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            keys.jwks_json.clone(),
        )
            .into_response()
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, cache);
    response
}
