//! `/admin/v1/revocations`

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use mayfly_core::wire::RevocationPage;

use super::{Admin, AdminErrors, Body, NewRevocationIn, Params, RevocationOut};
use crate::http::error::Problem;
use crate::http::v1::feed::FeedParams;
use crate::runtime::AppState;
use crate::service::RevokeSpec;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/admin/v1/revocations", get(list).post(create))
}

/// Revoke one token, or every token of a subject, client, grant or signing key issued
/// before a time. Effective at once here, within 100 ms on other replicas.
#[utoipa::path(post, operation_id = "create_revocations", path = "/admin/v1/revocations", tag = "admin", security(("bearer" = [])),
    request_body = NewRevocationIn,
    responses((status = 201, description = "Recorded", body = RevocationOut), AdminErrors))]
pub async fn create(
    State(state): State<AppState>,
    admin: Admin,
    Body(body): Body<NewRevocationIn>,
) -> Result<(StatusCode, Json<RevocationOut>), Problem> {
    let spec = RevokeSpec {
        issued_before: body.issued_before.map(|t| t.0),
        ..RevokeSpec::now(body.kind, body.value, &body.reason)
    };
    let record = admin.actor(&state).create_revocation(spec).await?;
    let out = RevocationOut::from_record(record)
        .ok_or_else(|| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// The revocations still kept, in feed order (same as `GET /v1/revocations`).
#[utoipa::path(get, operation_id = "list_revocations", path = "/admin/v1/revocations", tag = "admin", security(("bearer" = [])),
    params(FeedParams),
    responses((status = 200, description = "A page", body = RevocationPage), AdminErrors))]
pub async fn list(
    state: State<AppState>,
    _: Admin,
    params: Params<FeedParams>,
) -> Result<Json<RevocationPage>, Problem> {
    crate::http::v1::feed::read_page(&state, params.0).await
}
