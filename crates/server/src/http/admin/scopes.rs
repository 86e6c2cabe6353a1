//! `/admin/v1/scopes`

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use uuid::Uuid;

use super::{
    Admin, AdminErrors, Body, DescriptionPatch, Ids, NewScopeIn, Paged, Params, ScopeOut,
    ScopeParams, page, paged,
};
use crate::http::error::Problem;
use crate::runtime::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/scopes", get(list).post(create))
        .route(
            "/admin/v1/scopes/{id}",
            get(read).patch(update).delete(remove),
        )
}

/// Create a scope on an audience.
#[utoipa::path(post, operation_id = "create_scopes", path = "/admin/v1/scopes", tag = "admin", security(("bearer" = [])),
    request_body = NewScopeIn,
    responses((status = 201, description = "Created", body = ScopeOut), AdminErrors))]
pub async fn create(
    State(state): State<AppState>,
    admin: Admin,
    Body(body): Body<NewScopeIn>,
) -> Result<(StatusCode, Json<ScopeOut>), Problem> {
    let scope = admin
        .actor(&state)
        .create_scope(body.audience_id, &body.name, &body.description)
        .await?;
    Ok((StatusCode::CREATED, Json(scope.into())))
}

/// List scopes, of one audience or all.
#[utoipa::path(get, operation_id = "list_scopes", path = "/admin/v1/scopes", tag = "admin", security(("bearer" = [])),
    params(ScopeParams),
    responses((status = 200, description = "A page", body = Paged<ScopeOut>), AdminErrors))]
pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
    Params(q): Params<ScopeParams>,
) -> Result<Json<Paged<ScopeOut>>, Problem> {
    let (page, limit) = page(q.limit, q.cursor.as_deref())?;
    let records = admin.actor(&state).list_scopes(q.audience_id, page).await?;
    Ok(Json(paged(records, limit, |s| s.id, ScopeOut::from)))
}

/// Get a scope.
#[utoipa::path(get, operation_id = "read_scopes", path = "/admin/v1/scopes/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Scope id")),
    responses((status = 200, description = "The scope", body = ScopeOut), AdminErrors))]
pub async fn read(
    State(state): State<AppState>,
    admin: Admin,
    Ids(id): Ids<Uuid>,
) -> Result<Json<ScopeOut>, Problem> {
    Ok(Json(admin.actor(&state).get_scope(id).await?.into()))
}

/// Change a scope's description.
#[utoipa::path(patch, operation_id = "update_scopes", path = "/admin/v1/scopes/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Scope id")),
    request_body = DescriptionPatch,
    responses((status = 200, description = "Changed", body = ScopeOut), AdminErrors))]
pub async fn update(
    State(state): State<AppState>,
    admin: Admin,
    Ids(id): Ids<Uuid>,
    Body(body): Body<DescriptionPatch>,
) -> Result<Json<ScopeOut>, Problem> {
    Ok(Json(
        admin
            .actor(&state)
            .update_scope(id, &body.description)
            .await?
            .into(),
    ))
}

/// Delete a scope (refused while grants use it).
#[utoipa::path(delete, operation_id = "remove_scopes", path = "/admin/v1/scopes/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Scope id")),
    responses((status = 204, description = "Deleted"), AdminErrors))]
pub async fn remove(
    State(state): State<AppState>,
    admin: Admin,
    Ids(id): Ids<Uuid>,
) -> Result<StatusCode, Problem> {
    admin.actor(&state).delete_scope(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
