//! `/admin/v1/keys`: the signing keys (public facts only), and rotation on demand.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::{Admin, AdminErrors, Body, KeyOut};
use crate::api::keys::*;
use crate::http::error::Problem;
use crate::keys::rotation::{RotateOptions, Rotator};
use crate::runtime::AppState;
use crate::service::AdminError;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/keys", get(list))
        .route("/admin/v1/keys/rotate", post(rotate))
}

/// List signing keys with their state, newest first.
#[utoipa::path(get, operation_id = "list_keys", path = "/admin/v1/keys", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "The keys", body = Vec<KeyOut>), AdminErrors))]
pub async fn list(State(state): State<AppState>, _: Admin) -> Result<Json<Vec<KeyOut>>, Problem> {
    let keys = state.store.signing_keys().await.map_err(AdminError::from)?;
    Ok(Json(keys.into_iter().map(KeyOut::from).collect()))
}

/// Rotate the signing key now (`emergency` also revokes the current one).
#[utoipa::path(post, operation_id = "rotate_keys", path = "/admin/v1/keys/rotate", tag = "admin", security(("bearer" = [])),
    request_body = RotateIn,
    responses((status = 200, description = "Rotated, or the successor is scheduled", body = RotateOut), AdminErrors))]
pub async fn rotate(
    State(state): State<AppState>,
    admin: Admin,
    Body(body): Body<RotateIn>,
) -> Result<Json<RotateOut>, Problem> {
    let outcome = Rotator::new(
        state.store.as_ref(),
        &state.keyring,
        state.config.key_policy(),
        admin.client_id(),
    )
    .with_context(admin.request().clone())
    .rotate_now(
        state.clock.now(),
        RotateOptions {
            emergency: body.emergency,
        },
    )
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "key rotation failed");
        match e {
            crate::keys::rotation::RotationError::Store(e) => Problem::from(AdminError::from(e)),
            _ => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
        }
    })?;
    Ok(Json(RotateOut::from(&outcome)))
}
