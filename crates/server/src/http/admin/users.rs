//! `/admin/v1/users`

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{
    Admin, AdminErrors, Body, Ids, ListParams, NewUserIn, Paged, Params, UserOut, UserPatch, page,
    paged,
};
use crate::http::error::Problem;
use crate::password::PasswordError;
use crate::runtime::AppState;
use crate::service::UserChanges;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/users", get(list).post(create))
        .route(
            "/admin/v1/users/{id}",
            get(read).patch(update).delete(remove),
        )
}

async fn hash(state: &AppState, password: String) -> Result<String, Problem> {
    state
        .passwords
        .hash(Zeroizing::new(password))
        .await
        .map_err(|e| match e {
            PasswordError::Length => Problem::field("password", e.to_string()),
            PasswordError::Busy => Problem::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            PasswordError::Hashing => {
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        })
}

/// Create a user; the password is stored only as an argon2id hash.
#[utoipa::path(post, operation_id = "create_users", path = "/admin/v1/users", tag = "admin", security(("bearer" = [])),
    request_body = NewUserIn,
    responses((status = 201, description = "Created", body = UserOut), AdminErrors))]
pub async fn create(
    State(state): State<AppState>,
    admin: Admin,
    Body(body): Body<NewUserIn>,
) -> Result<(StatusCode, Json<UserOut>), Problem> {
    let password_hash = hash(&state, body.password).await?;
    let user = admin
        .actor(&state)
        .create_user(&body.username, password_hash, body.enabled, &body.labels)
        .await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// List users.
#[utoipa::path(get, operation_id = "list_users", path = "/admin/v1/users", tag = "admin", security(("bearer" = [])),
    params(ListParams),
    responses((status = 200, description = "A page", body = Paged<UserOut>), AdminErrors))]
pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
    Params(q): Params<ListParams>,
) -> Result<Json<Paged<UserOut>>, Problem> {
    let (page, limit) = page(q.limit, q.cursor.as_deref())?;
    let records = admin.actor(&state).list_users(page).await?;
    Ok(Json(paged(records, limit, |u| u.id, UserOut::from)))
}

/// Get a user.
#[utoipa::path(get, operation_id = "read_users", path = "/admin/v1/users/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses((status = 200, description = "The user", body = UserOut), AdminErrors))]
pub async fn read(
    State(state): State<AppState>,
    admin: Admin,
    Ids(id): Ids<Uuid>,
) -> Result<Json<UserOut>, Problem> {
    Ok(Json(admin.actor(&state).get_user(id).await?.into()))
}

/// Change a user's password or labels, or enable/disable them.
#[utoipa::path(patch, operation_id = "update_users", path = "/admin/v1/users/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    request_body = UserPatch,
    responses((status = 200, description = "Changed", body = UserOut), AdminErrors))]
pub async fn update(
    State(state): State<AppState>,
    admin: Admin,
    Ids(id): Ids<Uuid>,
    Body(body): Body<UserPatch>,
) -> Result<Json<UserOut>, Problem> {
    let password_hash = match body.password {
        Some(p) => Some(hash(&state, p).await?),
        None => None,
    };
    let user = admin
        .actor(&state)
        .update_user(
            id,
            UserChanges {
                password_hash,
                enabled: body.enabled,
                labels: body.labels,
            },
        )
        .await?;
    Ok(Json(user.into()))
}

/// Delete a user and their grants.
#[utoipa::path(delete, operation_id = "remove_users", path = "/admin/v1/users/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses((status = 204, description = "Deleted"), AdminErrors))]
pub async fn remove(
    State(state): State<AppState>,
    admin: Admin,
    Ids(id): Ids<Uuid>,
) -> Result<StatusCode, Problem> {
    admin.actor(&state).delete_user(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
