//! `/admin/v1/grants`

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use mayfly_store::{GrantFilter, Subject};
use time::Duration;
use uuid::Uuid;

use super::{
    Admin, AdminErrors, Body, GrantOut, GrantParams, GrantPatch, Ids, NewGrantIn, Paged, Params,
    SubjectKind, page, paged,
};
use crate::http::error::Problem;
use crate::runtime::AppState;
use crate::service::{GrantChanges, GrantSpec};

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/grants", get(list).post(create))
        .route(
            "/admin/v1/grants/{id}",
            get(read).patch(update).delete(remove),
        )
}

/// Grant a client or user scopes on an audience.
#[utoipa::path(post, operation_id = "create_grants", path = "/admin/v1/grants", tag = "admin", security(("bearer" = [])),
    request_body = NewGrantIn,
    responses((status = 201, description = "Created", body = GrantOut), AdminErrors))]
pub async fn create(
    State(state): State<AppState>,
    admin: Admin,
    Body(body): Body<NewGrantIn>,
) -> Result<(StatusCode, Json<GrantOut>), Problem> {
    let spec = GrantSpec {
        subject: body.subject.into(),
        audience: body.audience,
        scopes: body.scopes,
        not_before: body.not_before.map(|t| t.0),
        expires_at: body.expires_at.map(|t| t.0),
        allowed_cidrs: body.allowed_cidrs,
        max_ttl: body.max_ttl_secs.map(Duration::seconds),
        may_act: body.may_act,
        reason: body.reason,
    };
    let grant = admin.actor(&state).create_grant(spec).await?;
    Ok((StatusCode::CREATED, Json(grant.into())))
}

/// List grants, optionally of one subject or audience.
#[utoipa::path(get, operation_id = "list_grants", path = "/admin/v1/grants", tag = "admin", security(("bearer" = [])),
    params(GrantParams),
    responses((status = 200, description = "A page", body = Paged<GrantOut>), AdminErrors))]
pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
    Params(q): Params<GrantParams>,
) -> Result<Json<Paged<GrantOut>>, Problem> {
    let (page, limit) = page(q.limit, q.cursor.as_deref())?;
    let subject = match (q.subject_kind, q.subject_id) {
        (Some(SubjectKind::Client), Some(id)) => Some(Subject::Client(id)),
        (Some(SubjectKind::User), Some(id)) => Some(Subject::User(id)),
        (None, None) => None,
        _ => {
            return Err(Problem::field(
                "subject_id",
                "give subject_kind and subject_id together",
            ));
        }
    };
    let records = admin
        .actor(&state)
        .list_grants(
            GrantFilter {
                subject,
                audience_id: q.audience_id,
            },
            page,
        )
        .await?;
    Ok(Json(paged(records, limit, |g| g.id, GrantOut::from)))
}

/// Get a grant.
#[utoipa::path(get, operation_id = "read_grants", path = "/admin/v1/grants/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Grant id")),
    responses((status = 200, description = "The grant", body = GrantOut), AdminErrors))]
pub async fn read(
    State(state): State<AppState>,
    admin: Admin,
    Ids(id): Ids<Uuid>,
) -> Result<Json<GrantOut>, Problem> {
    Ok(Json(admin.actor(&state).get_grant(id).await?.into()))
}

/// Change a grant's window, networks, lifetime or reason.
#[utoipa::path(patch, operation_id = "update_grants", path = "/admin/v1/grants/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Grant id")),
    request_body = GrantPatch,
    responses((status = 200, description = "Changed", body = GrantOut), AdminErrors))]
pub async fn update(
    State(state): State<AppState>,
    admin: Admin,
    Ids(id): Ids<Uuid>,
    Body(body): Body<GrantPatch>,
) -> Result<Json<GrantOut>, Problem> {
    let changes = GrantChanges {
        not_before: body.not_before.map(|t| t.map(|t| t.0)),
        expires_at: body.expires_at.map(|t| t.map(|t| t.0)),
        allowed_cidrs: body.allowed_cidrs,
        max_ttl: body.max_ttl_secs.map(|t| t.map(Duration::seconds)),
        reason: body.reason,
        may_act: body.may_act,
    };
    Ok(Json(
        admin.actor(&state).update_grant(id, changes).await?.into(),
    ))
}

/// Delete a grant; issuance under it stops at once.
#[utoipa::path(delete, operation_id = "remove_grants", path = "/admin/v1/grants/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Grant id")),
    responses((status = 204, description = "Deleted"), AdminErrors))]
pub async fn remove(
    State(state): State<AppState>,
    admin: Admin,
    Ids(id): Ids<Uuid>,
) -> Result<StatusCode, Problem> {
    admin.actor(&state).delete_grant(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
