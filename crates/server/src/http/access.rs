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

use super::admin::access::context;
use super::admin::{Admin, AdminErrors, Body, Ids, Paged, Params};
use super::error::Problem;
use crate::admin::AdminError;
use crate::admin::access::AccessRequestSpec;
use crate::api::{AccessRequestOut, AccessRequestParams, DecisionComment, NewAccessRequestIn};
use crate::runtime::AppState;

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
    let ctx = super::request_context(&state, &parts.headers, &parts.extensions);
    let request = caller
        .subject_actor(&state)
        .request_access(
            AccessRequestSpec {
                subject,
                audience: body.audience,
                scopes: body.scopes,
                duration: Duration::seconds(body.duration_secs.clamp(0, i64::from(u32::MAX))),
                reason: body.reason,
                break_glass: body.break_glass,
            },
            &context(&state, &ctx),
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
    let (page, limit) = super::admin::page(q.limit, q.cursor.as_deref())?;
    let ctx = super::request_context(&state, &parts.headers, &parts.extensions);
    let records = caller
        .subject_actor(&state)
        .access_requests(q.filter(Some(subject)), page, &context(&state, &ctx))
        .await?;
    Ok(Json(super::admin::paged(
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
    let ctx = super::request_context(&state, &parts.headers, &parts.extensions);
    let request = caller
        .subject_actor(&state)
        .access_request(id, &context(&state, &ctx))
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
    let ctx = super::request_context(&state, &parts.headers, &parts.extensions);
    let request = caller
        .subject_actor(&state)
        .cancel_access(id, subject, &body.comment, &context(&state, &ctx))
        .await?;
    Ok(Json(request.into()))
}
