//! What every JSON route of the admin and `/v1` APIs shares: extractors whose rejections
//! are RFC 7807 problems, paging (`limit` and `cursor`), and the problems any such route
//! may answer (for the API description).

use axum::extract::{FromRequest, FromRequestParts};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mayfly_store::Page;
use uuid::Uuid;

use crate::api::Paged;
use crate::http::error::Problem;

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
