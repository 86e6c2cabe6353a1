//! The admin REST API under `/admin/v1/`: JSON in, JSON out, RFC 7807 problems on error.
//!
//! Every route needs a Mayfly access token whose audience is the issuer itself, checked
//! exactly as a resource server checks tokens (signature by a published key, `iss`,
//! `aud`, `exp`/`nbf`). Scopes:
//!
//! | scope | allows |
//! |---|---|
//! | `mayfly:admin` | everything |
//! | `mayfly:admin:read` | reading every resource |
//! | `mayfly:admin:audiences` | reading and changing audiences and scopes |
//! | `mayfly:admin:clients` | reading and changing clients, their secrets, keys and federated identities, and trusted issuers |
//! | `mayfly:admin:users` | reading and changing users and their federated identities |
//! | `mayfly:admin:grants` | reading and changing grants |
//! | `mayfly:admin:keys` | reading and rotating signing keys |
//! | `mayfly:admin:revocations` | reading and making revocations |
//! | `mayfly:admin:audit` | searching the audit log |
//! | `mayfly:admin:access` | reading and changing access policies, reading access requests |
//! | `mayfly:approve` | reading, approving and denying access requests (not one's own) |
//!
//! Which operation needs which is one table, [`ROUTES`], enforced by the [`Admin`]
//! extractor; handlers never check scopes themselves.

pub mod access;
pub mod audiences;
pub mod audit;
pub mod clients;
pub mod federation;
pub mod grants;
pub mod keys;
pub mod revocations;
pub mod scopes;
pub mod users;

use axum::Router;

pub use crate::api::*;
pub use crate::http::auth::{Admin, Family, Need, ROUTES, Route, route_of};
pub use crate::http::extract::*;

use crate::runtime::AppState;

/// Routes of the admin API.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(access::router())
        .merge(audiences::router())
        .merge(audit::router())
        .merge(scopes::router())
        .merge(clients::router())
        .merge(users::router())
        .merge(federation::router())
        .merge(grants::router())
        .merge(keys::router())
        .merge(revocations::router())
}
