//! `/admin/v1/keys`: the signing keys (public facts only).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use super::{Admin, AdminErrors, Family, KeyOut};
use crate::admin::AdminError;
use crate::http::error::Problem;
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/admin/v1/keys", get(list))
}

/// List signing keys with their state, newest first.
#[utoipa::path(get, operation_id = "list_keys", path = "/admin/v1/keys", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "The keys", body = Vec<KeyOut>), AdminErrors))]
pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
) -> Result<Json<Vec<KeyOut>>, Problem> {
    admin.may_read(Family::Keys)?;
    let keys = state.store.signing_keys().await.map_err(AdminError::from)?;
    Ok(Json(keys.into_iter().map(KeyOut::from).collect()))
}
