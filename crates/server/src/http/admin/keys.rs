//! `/admin/v1/keys`: the signing keys (public facts only), and rotation on demand.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::{Admin, AdminErrors, Body, KeyOut};
use crate::admin::AdminError;
use crate::http::error::Problem;
use crate::keys::rotation::{RotateOptions, RotateOutcome, Rotator};
use crate::state::AppState;

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

/// How to rotate.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateIn {
    /// Activate a successor at once and revoke the current key: every token it signed
    /// is rejected (introspection, the revocation feed, and verifiers once they refetch
    /// the key set). For a leaked key. Default false: the successor activates once it
    /// has been published for the lead time.
    #[serde(default)]
    pub emergency: bool,
}

/// What rotation achieved.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotateOut {
    /// `activated` (a new key signs now) or `pending` (it will once published long enough).
    pub outcome: String,
    /// The key that signs now, when activated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<String>,
    /// The successor waiting for its lead time, when pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// When the successor starts signing, when pending.
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub activates_at: Option<OffsetDateTime>,
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

impl From<&RotateOutcome> for RotateOut {
    fn from(outcome: &RotateOutcome) -> Self {
        match outcome {
            RotateOutcome::Activated { active, .. } => Self {
                outcome: "activated".into(),
                active: Some(active.clone()),
                next: None,
                activates_at: None,
            },
            RotateOutcome::Pending {
                next, activates_at, ..
            } => Self {
                outcome: "pending".into(),
                active: None,
                next: Some(next.clone()),
                activates_at: Some(*activates_at),
            },
        }
    }
}
