//! `/admin/v1/access-policies` (scope `mayfly:admin:access`) and the approvers' side of
//! `/admin/v1/access-requests` (scope `mayfly:approve`): the queue, approve and deny.

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use time::Duration;
use uuid::Uuid;

use super::{Admin, AdminErrors, Body, Ids, Paged, Params, page, paged};
use crate::api::access::*;
use crate::http::error::Problem;
use crate::runtime::AppState;
use crate::service::access::{AccessPolicySpec, Decision};

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/admin/v1/access-policies",
            get(list_policies).post(create_policy),
        )
        .route(
            "/admin/v1/access-policies/{id}",
            get(read_policy).patch(update_policy).delete(remove_policy),
        )
        .route("/admin/v1/access-requests", get(queue))
        .route("/admin/v1/access-requests/{id}", get(read_request))
        .route("/admin/v1/access-requests/{id}/approve", post(approve))
        .route("/admin/v1/access-requests/{id}/deny", post(deny))
        .route("/admin/v1/access-requests/{id}/review", post(review))
}

impl From<DecisionIn> for Decision {
    fn from(d: DecisionIn) -> Self {
        match d {
            DecisionIn::Auto => Self::Auto,
            DecisionIn::Approval => Self::Approval,
            DecisionIn::Deny => Self::Deny,
        }
    }
}

/// Create an access policy.
#[utoipa::path(post, operation_id = "create_access_policies", path = "/admin/v1/access-policies", tag = "admin", security(("bearer" = [])),
    request_body = NewAccessPolicyIn,
    responses((status = 201, description = "Created", body = AccessPolicyOut), AdminErrors))]
pub async fn create_policy(
    State(state): State<AppState>,
    admin: Admin,
    Body(body): Body<NewAccessPolicyIn>,
) -> Result<(StatusCode, Json<AccessPolicyOut>), Problem> {
    let policy = admin
        .actor(&state)
        .create_access_policy(AccessPolicySpec {
            name: body.name,
            audience: body.audience,
            scopes: body.scopes,
            subjects: body.subjects,
            max_duration: Duration::seconds(body.max_duration_secs),
            decision: body.decision.into(),
            approvals_required: body.approvals_required,
            break_glass: body.break_glass,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(policy.into())))
}

/// List access policies.
#[utoipa::path(get, operation_id = "list_access_policies", path = "/admin/v1/access-policies", tag = "admin", security(("bearer" = [])),
    params(PolicyParams),
    responses((status = 200, description = "A page", body = Paged<AccessPolicyOut>), AdminErrors))]
pub async fn list_policies(
    State(state): State<AppState>,
    admin: Admin,
    Params(q): Params<PolicyParams>,
) -> Result<Json<Paged<AccessPolicyOut>>, Problem> {
    let (page, limit) = page(q.limit, q.cursor.as_deref())?;
    let records = admin
        .actor(&state)
        .list_access_policies(q.audience_id, page)
        .await?;
    Ok(Json(paged(records, limit, |p| p.id, AccessPolicyOut::from)))
}

/// Get an access policy.
#[utoipa::path(get, operation_id = "read_access_policies", path = "/admin/v1/access-policies/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Policy id")),
    responses((status = 200, description = "The policy", body = AccessPolicyOut), AdminErrors))]
pub async fn read_policy(
    State(state): State<AppState>,
    admin: Admin,
    Ids(id): Ids<Uuid>,
) -> Result<Json<AccessPolicyOut>, Problem> {
    Ok(Json(
        admin.actor(&state).get_access_policy(id).await?.into(),
    ))
}

/// Change an access policy.
#[utoipa::path(patch, operation_id = "update_access_policies", path = "/admin/v1/access-policies/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Policy id")),
    request_body = AccessPolicyPatch,
    responses((status = 200, description = "Changed", body = AccessPolicyOut), AdminErrors))]
pub async fn update_policy(
    State(state): State<AppState>,
    admin: Admin,
    Ids(id): Ids<Uuid>,
    Body(body): Body<AccessPolicyPatch>,
) -> Result<Json<AccessPolicyOut>, Problem> {
    let policy = admin
        .actor(&state)
        .update_access_policy(id, |spec| {
            if let Some(v) = body.name {
                spec.name = v;
            }
            if let Some(v) = body.scopes {
                spec.scopes = v;
            }
            if let Some(v) = body.subjects {
                spec.subjects = v;
            }
            if let Some(v) = body.max_duration_secs {
                spec.max_duration = Duration::seconds(v);
            }
            if let Some(v) = body.decision {
                spec.decision = v.into();
            }
            if let Some(v) = body.approvals_required {
                spec.approvals_required = v;
            }
            if let Some(v) = body.break_glass {
                spec.break_glass = v;
            }
        })
        .await?;
    Ok(Json(policy.into()))
}

/// Delete an access policy (its requests and their grants stay).
#[utoipa::path(delete, operation_id = "remove_access_policies", path = "/admin/v1/access-policies/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Policy id")),
    responses((status = 204, description = "Deleted"), AdminErrors))]
pub async fn remove_policy(
    State(state): State<AppState>,
    admin: Admin,
    Ids(id): Ids<Uuid>,
) -> Result<StatusCode, Problem> {
    admin.actor(&state).delete_access_policy(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// List access requests (`?state=pending`: the approvers' queue).
#[utoipa::path(get, operation_id = "list_access_requests", path = "/admin/v1/access-requests", tag = "admin", security(("bearer" = [])),
    params(AccessRequestParams),
    responses((status = 200, description = "A page", body = Paged<AccessRequestOut>), AdminErrors))]
pub async fn queue(
    State(state): State<AppState>,
    admin: Admin,
    parts: Parts,
    Params(q): Params<AccessRequestParams>,
) -> Result<Json<Paged<AccessRequestOut>>, Problem> {
    let (page, limit) = page(q.limit, q.cursor.as_deref())?;
    let ctx = crate::http::request_context(&state, &parts.headers, &parts.extensions);
    let records = admin
        .subject_actor(&state)
        .list_access_requests(
            q.filter(None),
            page,
            &crate::http::access_context(&state, &ctx),
        )
        .await?;
    Ok(Json(paged(
        records,
        limit,
        |r| r.id,
        AccessRequestOut::from,
    )))
}

/// Get an access request.
#[utoipa::path(get, operation_id = "read_access_requests", path = "/admin/v1/access-requests/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Request id")),
    responses((status = 200, description = "The request", body = AccessRequestOut), AdminErrors))]
pub async fn read_request(
    State(state): State<AppState>,
    admin: Admin,
    parts: Parts,
    Ids(id): Ids<Uuid>,
) -> Result<Json<AccessRequestOut>, Problem> {
    let ctx = crate::http::request_context(&state, &parts.headers, &parts.extensions);
    let request = admin
        .subject_actor(&state)
        .get_access_request(id, &crate::http::access_context(&state, &ctx))
        .await?;
    Ok(Json(request.into()))
}

/// Approve an access request (needs `mayfly:approve`; never one's own). Once enough
/// distinct approvers agree, the grant is created.
#[utoipa::path(post, operation_id = "approve_access_requests", path = "/admin/v1/access-requests/{id}/approve", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Request id")),
    request_body = DecisionComment,
    responses((status = 200, description = "The request now", body = AccessRequestOut), AdminErrors))]
pub async fn approve(
    State(state): State<AppState>,
    admin: Admin,
    parts: Parts,
    Ids(id): Ids<Uuid>,
    Body(body): Body<DecisionComment>,
) -> Result<Json<AccessRequestOut>, Problem> {
    admin.subject(&state).await?;
    let ctx = crate::http::request_context(&state, &parts.headers, &parts.extensions);
    let request = admin
        .subject_actor(&state)
        .approve_access(
            id,
            &body.comment,
            &crate::http::access_context(&state, &ctx),
        )
        .await?;
    Ok(Json(request.into()))
}

/// Deny an access request (needs `mayfly:approve`; a comment is required).
#[utoipa::path(post, operation_id = "deny_access_requests", path = "/admin/v1/access-requests/{id}/deny", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Request id")),
    request_body = DecisionComment,
    responses((status = 200, description = "The request now", body = AccessRequestOut), AdminErrors))]
pub async fn deny(
    State(state): State<AppState>,
    admin: Admin,
    parts: Parts,
    Ids(id): Ids<Uuid>,
    Body(body): Body<DecisionComment>,
) -> Result<Json<AccessRequestOut>, Problem> {
    admin.subject(&state).await?;
    let ctx = crate::http::request_context(&state, &parts.headers, &parts.extensions);
    let request = admin
        .subject_actor(&state)
        .deny_access(
            id,
            &body.comment,
            &crate::http::access_context(&state, &ctx),
        )
        .await?;
    Ok(Json(request.into()))
}

/// Record the review of a request marked `needs_review` (break-glass), clearing the
/// mark (needs `mayfly:approve`; never one's own; a comment is required).
#[utoipa::path(post, operation_id = "review_access_requests", path = "/admin/v1/access-requests/{id}/review", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Request id")),
    request_body = DecisionComment,
    responses((status = 200, description = "The request now", body = AccessRequestOut), AdminErrors))]
pub async fn review(
    State(state): State<AppState>,
    admin: Admin,
    parts: Parts,
    Ids(id): Ids<Uuid>,
    Body(body): Body<DecisionComment>,
) -> Result<Json<AccessRequestOut>, Problem> {
    admin.subject(&state).await?;
    let ctx = crate::http::request_context(&state, &parts.headers, &parts.extensions);
    let request = admin
        .subject_actor(&state)
        .review_access(
            id,
            &body.comment,
            &crate::http::access_context(&state, &ctx),
        )
        .await?;
    Ok(Json(request.into()))
}
