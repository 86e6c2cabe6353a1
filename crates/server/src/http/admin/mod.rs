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
//! | `mayfly:admin:clients` | reading and changing clients, their secrets and keys |
//! | `mayfly:admin:users` | reading and changing users |
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
mod auth;
pub mod clients;
pub mod grants;
pub mod keys;
pub mod revocations;
pub mod scopes;
pub mod users;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mayfly_store::Page;
use uuid::Uuid;

pub use crate::api::*;
pub use auth::{Admin, Family, Need, ROUTES, Route, route_of};

use super::error::Problem;
use crate::runtime::AppState;

/// Errors every admin route may answer, as RFC 7807 problems.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum AdminErrors {
    /// Malformed request.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// No valid token.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// The token lacks the scope.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// No such resource.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// Conflicts with existing state.
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(Problem),
    /// Body too large.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// Not JSON.
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Problem),
    /// Invalid field values.
    #[response(status = 422, content_type = "application/problem+json")]
    Unprocessable(Problem),
    /// The database is unavailable; retry after `Retry-After`.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(Problem),
}

/// Largest `limit` of a listing.
pub const MAX_LIMIT: u32 = 500;
/// `limit` when none is given.
pub const DEFAULT_LIMIT: u32 = 100;

/// Routes of the admin API.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(access::router())
        .merge(audiences::router())
        .merge(audit::router())
        .merge(scopes::router())
        .merge(clients::router())
        .merge(users::router())
        .merge(grants::router())
        .merge(keys::router())
        .merge(revocations::router())
}

/// After a successful change, waits until this process applies any revocation it caused
/// (disabling a client, ending a grant, …), so the change is in force here before the
/// response; other replicas learn through the store's signal.
pub async fn settle(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let changes = request.method() != axum::http::Method::GET;
    let response = next.run(request).await;
    if changes
        && response.status().is_success()
        && let Err(e) = state.revocations.catch_up().await
    {
        tracing::warn!(error = %e, "revocations: catch-up after an admin change failed; the periodic one will apply it");
    }
    response
}

/// A JSON body whose rejections are problems (and unknown fields 422s).
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(Problem))]
pub struct Body<T>(pub T);

/// Path parameters whose rejections are problems.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(Problem))]
pub struct Ids<T>(pub T);

/// Query parameters whose rejections are problems.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Problem))]
pub struct Params<T>(pub T);

/// Turns `limit` and `cursor` into a store page that fetches one extra item, so the
/// response knows whether another page follows.
pub(crate) fn page(limit: Option<u32>, cursor: Option<&str>) -> Result<(Page, u32), Problem> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Problem::field(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    // An empty cursor is no cursor.
    let after = match cursor.filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => {
            let bytes = URL_SAFE_NO_PAD
                .decode(c)
                .map_err(|_| Problem::field("cursor", "not a cursor from a previous page"))?;
            Some(
                Uuid::from_slice(&bytes)
                    .map_err(|_| Problem::field("cursor", "not a cursor from a previous page"))?,
            )
        }
    };
    Ok((
        Page {
            after,
            limit: limit + 1,
        },
        limit,
    ))
}

/// Cuts a fetched page to `limit` items and computes the next cursor.
pub(crate) fn paged<R, T>(
    mut records: Vec<R>,
    limit: u32,
    id: impl Fn(&R) -> Uuid,
    out: impl Fn(R) -> T,
) -> Paged<T> {
    let more = records.len() > limit as usize;
    records.truncate(limit as usize);
    let next_cursor = if more {
        records
            .last()
            .map(|r| URL_SAFE_NO_PAD.encode(id(r).as_bytes()))
    } else {
        None
    };
    Paged {
        items: records.into_iter().map(out).collect(),
        next_cursor,
    }
}
