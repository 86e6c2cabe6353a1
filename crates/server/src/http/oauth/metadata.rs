//! Discovery: `GET /.well-known/oauth-authorization-server` (RFC 8414) and the key set
//! `GET /.well-known/jwks.json` (RFC 7517 with OKP keys per RFC 8037, plus `paserk`).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mayfly_core::wire::ServerMetadata;
use time::Duration;

use crate::runtime::AppState;

/// The `max-age` of one key-set response: the configured cache age
/// (`--key-set-max-age`) less a random 0–10 %, so resource servers that fetched the key
/// set together do not all come back in the same second. Never more than the configured
/// age: rotation publishes a key as `next` more than twice that long before it signs, so
/// every cached key set knows the signing key.
pub fn key_set_max_age(configured: Duration) -> i64 {
    let secs = configured.whole_seconds().max(1);
    secs - rand::random_range(0..=secs / 10)
}

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
            "private_key_jwt".to_owned(),
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
        grant_types_supported: crate::oauth::grant::GRANT_TYPES
            .iter()
            .map(|g| (*g).to_owned())
            .collect(),
        token_endpoint_auth_methods_supported: methods(),
        response_types_supported: vec![],
        // EdDSA for assertions signed with a client's registered key; RS256 and ES256
        // (and EdDSA) for external JWTs of trusted issuers (workload identity
        // federation), whose verifier accepts no other.
        token_endpoint_auth_signing_alg_values_supported: vec![
            crate::client_auth::assertion::ALGORITHM.into(),
            mayfly_federation::Algorithm::Rs256.as_str().into(),
            mayfly_federation::Algorithm::Es256.as_str().into(),
        ],
        dpop_signing_alg_values_supported: mayfly_core::dpop::ALGORITHMS
            .iter()
            .map(|a| (*a).to_owned())
            .collect(),
    };
    let mut response = Json(body).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// The published signing keys (`next`, `active`, `retired`); only the active one signs.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "discovery",
    params(("If-None-Match" = Option<String>, Header, description = "ETag of a cached copy")),
    responses(
        (status = 200, description = "Every key a valid token may be signed with (next, active and retired keys)", body = mayfly_core::wire::JwkSet,
            headers(
                ("Cache-Control" = String, description = "public, max-age=N: the configured key-set cache age less a random 0-10 %"),
                ("ETag" = String, description = "Strong validator of this key set, the same on every replica"),
            )),
        (status = 304, description = "The cached copy is current",
            headers(
                ("Cache-Control" = String, description = "public, max-age=N"),
                ("ETag" = String, description = "Strong validator of this key set"),
            )),
    ))]
pub async fn jwks(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let keys = state.keyring.current();
    let etag =
        HeaderValue::from_str(&keys.etag).unwrap_or_else(|_| HeaderValue::from_static("\"\""));
    let max_age = key_set_max_age(state.config.key_set_max_age);
    let cache = HeaderValue::from_str(&format!("public, max-age={max_age}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_set_max_age_is_jittered_down_by_at_most_ten_percent() {
        let ages: std::collections::BTreeSet<i64> = (0..500)
            .map(|_| key_set_max_age(Duration::seconds(300)))
            .collect();
        assert!(ages.iter().all(|a| (270..=300).contains(a)), "{ages:?}");
        assert!(ages.len() > 10, "spread out: {ages:?}");
        assert_eq!(key_set_max_age(Duration::seconds(1)), 1);
        assert_eq!(key_set_max_age(Duration::ZERO), 1);
    }
}
