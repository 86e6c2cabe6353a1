//! `/v1/access-requests`: a subject (a user through `mayfly login`, or a client) asks
//! for just-in-time access for itself, lists and cancels its own requests. Needs a
//! Mayfly token for the issuer audience with `mayfly:access`; who asks is the token's
//! subject, never a field of the body.

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use time::Duration;
use uuid::Uuid;

use crate::api::Paged;
use crate::api::{AccessRequestOut, AccessRequestParams, DecisionComment, NewAccessRequestIn};
use crate::http::auth::Admin;
use crate::http::error::Problem;
use crate::http::extract::{AdminErrors, Body, Ids, Params};
use crate::runtime::AppState;
use crate::service::AdminError;
use crate::service::access::AccessRequestSpec;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/access-requests", get(list).post(create))
        .route("/v1/access-requests/{id}", get(read))
        .route("/v1/access-requests/{id}/cancel", post(cancel))
}

/// Request just-in-time access. `auto` policies approve at once (the grant exists when
/// this answers); `approval` policies leave it pending for approvers.
#[utoipa::path(post, operation_id = "create_access_requests", path = "/v1/access-requests", tag = "access",
    security(("bearer" = [])),
    request_body = NewAccessRequestIn,
    responses((status = 201, description = "Created (pending or approved)", body = AccessRequestOut), AdminErrors))]
pub async fn create(
    State(state): State<AppState>,
    caller: Admin,
    parts: Parts,
    Body(body): Body<NewAccessRequestIn>,
) -> Result<(StatusCode, Json<AccessRequestOut>), Problem> {
    let subject = caller.subject(&state).await?;
    let ctx = crate::http::request_context(&state, &parts.headers, &parts.extensions);
    let request = caller
        .subject_actor(&state)
        .create_access_request(
            AccessRequestSpec {
                subject,
                audience: body.audience,
                scopes: body.scopes,
                duration: Duration::seconds(body.duration_secs.clamp(0, i64::from(u32::MAX))),
                reason: body.reason,
                break_glass: body.break_glass,
            },
            &crate::http::access_context(&state, &ctx),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(request.into())))
}

/// List one's own access requests.
#[utoipa::path(get, operation_id = "list_own_access_requests", path = "/v1/access-requests", tag = "access",
    security(("bearer" = [])),
    params(AccessRequestParams),
    responses((status = 200, description = "A page", body = Paged<AccessRequestOut>), AdminErrors))]
pub async fn list(
    State(state): State<AppState>,
    caller: Admin,
    parts: Parts,
    Params(q): Params<AccessRequestParams>,
) -> Result<Json<Paged<AccessRequestOut>>, Problem> {
    let subject = caller.subject(&state).await?;
    let (page, limit) = crate::http::extract::page(q.limit, q.cursor.as_deref())?;
    let ctx = crate::http::request_context(&state, &parts.headers, &parts.extensions);
    let records = caller
        .subject_actor(&state)
        .list_access_requests(
            q.filter(Some(subject)),
            page,
            &crate::http::access_context(&state, &ctx),
        )
        .await?;
    Ok(Json(crate::http::extract::paged(
        records,
        limit,
        |r| r.id,
        AccessRequestOut::from,
    )))
}

/// Get one of one's own access requests.
#[utoipa::path(get, operation_id = "read_own_access_requests", path = "/v1/access-requests/{id}", tag = "access",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Request id")),
    responses((status = 200, description = "The request", body = AccessRequestOut), AdminErrors))]
pub async fn read(
    State(state): State<AppState>,
    caller: Admin,
    parts: Parts,
    Ids(id): Ids<Uuid>,
) -> Result<Json<AccessRequestOut>, Problem> {
    let subject = caller.subject(&state).await?;
    let ctx = crate::http::request_context(&state, &parts.headers, &parts.extensions);
    let request = caller
        .subject_actor(&state)
        .get_access_request(id, &crate::http::access_context(&state, &ctx))
        .await?;
    if request.subject != subject {
        return Err(AdminError::NotFound("access request").into());
    }
    Ok(Json(request.into()))
}

/// Cancel one's own request: a pending one, or an approved one, whose grant then ends
/// and whose tokens are revoked at once.
#[utoipa::path(post, operation_id = "cancel_access_requests", path = "/v1/access-requests/{id}/cancel", tag = "access",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Request id")),
    request_body = DecisionComment,
    responses((status = 200, description = "Cancelled", body = AccessRequestOut), AdminErrors))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Admin,
    parts: Parts,
    Ids(id): Ids<Uuid>,
    Body(body): Body<DecisionComment>,
) -> Result<Json<AccessRequestOut>, Problem> {
    let subject = caller.subject(&state).await?;
    let ctx = crate::http::request_context(&state, &parts.headers, &parts.extensions);
    let request = caller
        .subject_actor(&state)
        .cancel_access(
            id,
            subject,
            &body.comment,
            &crate::http::access_context(&state, &ctx),
        )
        .await?;
    Ok(Json(request.into()))
}
