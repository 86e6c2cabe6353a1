//! The OpenAPI document, generated from the handlers and wire types by utoipa, served
//! at `GET /openapi.json` and committed as `openapi/openapi.json`.

use axum::Json;
use axum::Router;
use axum::routing::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::runtime::AppState;

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "Mayfly", description = "Zero-trust security token service: short-lived PASETO v4.public tokens for narrow scopes on one audience."),
    paths(
        crate::http::oauth::token::token,
        crate::http::oauth::introspect::introspect,
        crate::http::oauth::revoke::revoke,
        crate::http::v1::feed::page,
        crate::http::v1::feed::stream,
        crate::http::v1::usage::report,
        crate::http::oauth::metadata::metadata,
        crate::http::oauth::metadata::jwks,
        crate::http::ops::health::healthz,
        crate::http::ops::health::readyz,
        crate::http::ops::metrics::metrics,
        crate::http::admin::audiences::create,
        crate::http::admin::audiences::list,
        crate::http::admin::audiences::read,
        crate::http::admin::audiences::update,
        crate::http::admin::audiences::remove,
        crate::http::admin::scopes::create,
        crate::http::admin::scopes::list,
        crate::http::admin::scopes::read,
        crate::http::admin::scopes::update,
        crate::http::admin::scopes::remove,
        crate::http::admin::clients::create,
        crate::http::admin::clients::list,
        crate::http::admin::clients::read,
        crate::http::admin::clients::update,
        crate::http::admin::clients::remove,
        crate::http::admin::clients::add_secret,
        crate::http::admin::clients::list_secrets,
        crate::http::admin::clients::remove_secret,
        crate::http::admin::clients::add_key,
        crate::http::admin::clients::list_keys,
        crate::http::admin::clients::remove_key,
        crate::http::admin::users::create,
        crate::http::admin::users::list,
        crate::http::admin::users::read,
        crate::http::admin::users::update,
        crate::http::admin::users::remove,
        crate::http::admin::federation::create,
        crate::http::admin::federation::list,
        crate::http::admin::federation::read,
        crate::http::admin::federation::update,
        crate::http::admin::federation::remove,
        crate::http::admin::federation::add_client_identity,
        crate::http::admin::federation::list_client_identities,
        crate::http::admin::federation::remove_client_identity,
        crate::http::admin::federation::add_user_identity,
        crate::http::admin::federation::list_user_identities,
        crate::http::admin::federation::remove_user_identity,
        crate::http::admin::grants::create,
        crate::http::admin::grants::list,
        crate::http::admin::grants::read,
        crate::http::admin::grants::update,
        crate::http::admin::grants::remove,
        crate::http::admin::audit::search,
        crate::http::admin::keys::list,
        crate::http::admin::keys::rotate,
        crate::http::admin::revocations::create,
        crate::http::admin::revocations::list,
        crate::http::admin::access::create_policy,
        crate::http::admin::access::list_policies,
        crate::http::admin::access::read_policy,
        crate::http::admin::access::update_policy,
        crate::http::admin::access::remove_policy,
        crate::http::admin::access::queue,
        crate::http::admin::access::read_request,
        crate::http::admin::access::approve,
        crate::http::admin::access::deny,
        crate::http::admin::access::review,
        crate::http::v1::access::create,
        crate::http::v1::access::list,
        crate::http::v1::access::read,
        crate::http::v1::access::cancel,
    ),
    components(schemas(mayfly_core::wire::ErrorCode, crate::http::error::Problem, crate::http::error::FieldError)),
    modifiers(&Security),
    tags(
        (name = "oauth", description = "OAuth 2.0 endpoints"),
        (name = "discovery", description = "Metadata and keys"),
        (name = "ops", description = "Health"),
        (name = "revocations", description = "The revocation feed for resource servers (needs mayfly:revocations:read)"),
        (name = "resource servers", description = "Reporting token use (needs mayfly:usage:write)"),
        (name = "access", description = "Just-in-time access requests for oneself (needs mayfly:access)"),
        (name = "admin", description = "Admin API: needs a Mayfly token for the issuer's own audience with mayfly:admin or a finer admin scope"),
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
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("PASETO v4.public")
                    .build(),
            ),
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
