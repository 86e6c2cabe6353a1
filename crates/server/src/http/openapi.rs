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
        super::token::token,
        super::introspect::introspect,
        super::revoke::revoke,
        super::feed::page,
        super::feed::stream,
        super::usage::report,
        super::metadata::metadata,
        super::metadata::jwks,
        super::health::healthz,
        super::health::readyz,
        super::metrics::metrics,
        super::admin::audiences::create,
        super::admin::audiences::list,
        super::admin::audiences::read,
        super::admin::audiences::update,
        super::admin::audiences::remove,
        super::admin::scopes::create,
        super::admin::scopes::list,
        super::admin::scopes::read,
        super::admin::scopes::update,
        super::admin::scopes::remove,
        super::admin::clients::create,
        super::admin::clients::list,
        super::admin::clients::read,
        super::admin::clients::update,
        super::admin::clients::remove,
        super::admin::clients::add_secret,
        super::admin::clients::list_secrets,
        super::admin::clients::remove_secret,
        super::admin::clients::add_key,
        super::admin::clients::list_keys,
        super::admin::clients::remove_key,
        super::admin::users::create,
        super::admin::users::list,
        super::admin::users::read,
        super::admin::users::update,
        super::admin::users::remove,
        super::admin::grants::create,
        super::admin::grants::list,
        super::admin::grants::read,
        super::admin::grants::update,
        super::admin::grants::remove,
        super::admin::audit::search,
        super::admin::keys::list,
        super::admin::keys::rotate,
        super::admin::revocations::create,
        super::admin::revocations::list,
        super::admin::access::create_policy,
        super::admin::access::list_policies,
        super::admin::access::read_policy,
        super::admin::access::update_policy,
        super::admin::access::remove_policy,
        super::admin::access::queue,
        super::admin::access::read_request,
        super::admin::access::approve,
        super::admin::access::deny,
        super::admin::access::review,
        super::access::create,
        super::access::list,
        super::access::read,
        super::access::cancel,
    ),
    components(schemas(mayfly_core::wire::ErrorCode, super::error::Problem, super::error::FieldError)),
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
