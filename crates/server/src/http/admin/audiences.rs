//! `/admin/v1/audiences`

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use uuid::Uuid;

use super::{
    Admin, AdminErrors, AudienceOut, Body, DescriptionPatch, Ids, ListParams, NewAudienceIn, Paged,
    Params, page, paged,
};
use crate::http::error::Problem;
use crate::runtime::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/audiences", get(list).post(create))
        .route(
            "/admin/v1/audiences/{id}",
            get(read).patch(update).delete(remove),
        )
}

/// Create an audience, optionally with scopes.
#[utoipa::path(post, operation_id = "create_audiences", path = "/admin/v1/audiences", tag = "admin", security(("bearer" = [])),
    request_body = NewAudienceIn,
    responses((status = 201, description = "Created", body = AudienceOut), AdminErrors))]
pub async fn create(
    State(state): State<AppState>,
    admin: Admin,
    Body(body): Body<NewAudienceIn>,
) -> Result<(StatusCode, Json<AudienceOut>), Problem> {
    let (audience, _) = admin
        .actor(&state)
        .create_audience(&body.uri, &body.description, &body.scopes)
        .await?;
    Ok((StatusCode::CREATED, Json(audience.into())))
}

/// List audiences.
#[utoipa::path(get, operation_id = "list_audiences", path = "/admin/v1/audiences", tag = "admin", security(("bearer" = [])),
    params(ListParams),
    responses((status = 200, description = "A page", body = Paged<AudienceOut>), AdminErrors))]
pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
    Params(q): Params<ListParams>,
) -> Result<Json<Paged<AudienceOut>>, Problem> {
    let (page, limit) = page(q.limit, q.cursor.as_deref())?;
    let records = admin.actor(&state).list_audiences(page).await?;
    Ok(Json(paged(records, limit, |a| a.id, AudienceOut::from)))
}

/// Get an audience.
#[utoipa::path(get, operation_id = "read_audiences", path = "/admin/v1/audiences/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Audience id")),
    responses((status = 200, description = "The audience", body = AudienceOut), AdminErrors))]
pub async fn read(
    State(state): State<AppState>,
    admin: Admin,
    Ids(id): Ids<Uuid>,
) -> Result<Json<AudienceOut>, Problem> {
    Ok(Json(admin.actor(&state).get_audience(id).await?.into()))
}

/// Change an audience's description.
#[utoipa::path(patch, operation_id = "update_audiences", path = "/admin/v1/audiences/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Audience id")),
    request_body = DescriptionPatch,
    responses((status = 200, description = "Changed", body = AudienceOut), AdminErrors))]
pub async fn update(
    State(state): State<AppState>,
    admin: Admin,
    Ids(id): Ids<Uuid>,
    Body(body): Body<DescriptionPatch>,
) -> Result<Json<AudienceOut>, Problem> {
    Ok(Json(
        admin
            .actor(&state)
            .update_audience(id, &body.description)
            .await?
            .into(),
    ))
}

/// Delete an audience and its scopes (refused while grants use it).
#[utoipa::path(delete, operation_id = "remove_audiences", path = "/admin/v1/audiences/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Audience id")),
    responses((status = 204, description = "Deleted"), AdminErrors))]
pub async fn remove(
    State(state): State<AppState>,
    admin: Admin,
    Ids(id): Ids<Uuid>,
) -> Result<StatusCode, Problem> {
    admin.actor(&state).delete_audience(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
