//! The OpenAPI document, generated from the handlers and wire types by utoipa, served
//! at `GET /openapi.json` and committed as `openapi/openapi.json`.

use axum::Json;
use axum::Router;
use axum::routing::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::state::AppState;

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "Mayfly", description = "Zero-trust security token service: short-lived PASETO v4.public tokens for narrow scopes on one audience."),
    paths(
        super::token::token,
        super::metadata::metadata,
        super::metadata::jwks,
        super::health::healthz,
        super::health::readyz,
    ),
    components(schemas(mayfly_core::wire::ErrorCode)),
    modifiers(&Security),
    tags(
        (name = "oauth", description = "OAuth 2.0 endpoints"),
        (name = "discovery", description = "Metadata and keys"),
        (name = "ops", description = "Health"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "client_secret_basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
    }
}

/// The document as pretty JSON with a trailing newline, exactly as committed.
pub fn document() -> String {
    let mut text = ApiDoc::openapi().to_pretty_json().unwrap_or_default();
    text.push('\n');
    text
}

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn committed_spec_matches_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi/openapi.json");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == super::document(),
            "openapi/openapi.json is out of date; regenerate it with:\n    cargo run -q -p mayfly-server --bin mayfly -- openapi > openapi/openapi.json"
        );
    }
}
