//! `/admin/v1/trusted-issuers` and the federated identities of clients and users
//! (`/admin/v1/{clients,users}/{id}/federated-identities`): workload identity
//! federation (issue #20). The token endpoint does not use them yet.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use mayfly_store::Subject;
use uuid::Uuid;

use super::{
    Admin, AdminErrors, Body, FederatedIdentityOut, Ids, ListParams, NewFederatedIdentityIn,
    NewTrustedIssuerIn, Paged, Params, TrustedIssuerOut, TrustedIssuerPatch, page, paged,
};
use crate::http::error::Problem;
use crate::runtime::AppState;
use crate::service::FederatedIdentityEntry;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/trusted-issuers", get(list).post(create))
        .route(
            "/admin/v1/trusted-issuers/{id}",
            get(read).patch(update).delete(remove),
        )
        .route(
            "/admin/v1/clients/{id}/federated-identities",
            get(list_client_identities).post(add_client_identity),
        )
        .route(
            "/admin/v1/clients/{id}/federated-identities/{identity_id}",
            delete(remove_client_identity),
        )
        .route(
            "/admin/v1/users/{id}/federated-identities",
            get(list_user_identities).post(add_user_identity),
        )
        .route(
            "/admin/v1/users/{id}/federated-identities/{identity_id}",
            delete(remove_user_identity),
        )
}

fn out(entry: FederatedIdentityEntry) -> FederatedIdentityOut {
    FederatedIdentityOut::new(entry.record, entry.issuer)
}

/// Trust an external issuer (Kubernetes, GitHub Actions, SPIFFE, OIDC): its settings
/// are checked as the verifier checks them (https issuer, RS256/ES256/EdDSA only).
#[utoipa::path(post, operation_id = "create_trusted_issuers", path = "/admin/v1/trusted-issuers", tag = "admin", security(("bearer" = [])),
    request_body = NewTrustedIssuerIn,
    responses((status = 201, description = "Created", body = TrustedIssuerOut), AdminErrors))]
pub async fn create(
    State(state): State<AppState>,
    admin: Admin,
    Body(body): Body<NewTrustedIssuerIn>,
) -> Result<(StatusCode, Json<TrustedIssuerOut>), Problem> {
    let record = admin
        .actor(&state)
        .create_trusted_issuer(body.config(), &body.description)
        .await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// List trusted issuers.
#[utoipa::path(get, operation_id = "list_trusted_issuers", path = "/admin/v1/trusted-issuers", tag = "admin", security(("bearer" = [])),
    params(ListParams),
    responses((status = 200, description = "A page", body = Paged<TrustedIssuerOut>), AdminErrors))]
pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
    Params(q): Params<ListParams>,
) -> Result<Json<Paged<TrustedIssuerOut>>, Problem> {
    let (page, limit) = page(q.limit, q.cursor.as_deref())?;
    let records = admin.actor(&state).list_trusted_issuers(page).await?;
    Ok(Json(paged(
        records,
        limit,
        |r| r.id,
        TrustedIssuerOut::from,
    )))
}

/// Get a trusted issuer.
#[utoipa::path(get, operation_id = "read_trusted_issuers", path = "/admin/v1/trusted-issuers/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Trusted issuer id")),
    responses((status = 200, description = "The trusted issuer", body = TrustedIssuerOut), AdminErrors))]
pub async fn read(
    State(state): State<AppState>,
    admin: Admin,
    Ids(id): Ids<Uuid>,
) -> Result<Json<TrustedIssuerOut>, Problem> {
    Ok(Json(
        admin.actor(&state).get_trusted_issuer(id).await?.into(),
    ))
}

/// Change a trusted issuer's description and settings (not its issuer URL). Its
/// settings decide which tokens speak for the owners of its identities: changing them
/// needs what changing each owner needs (403 `insufficient_scope` otherwise).
#[utoipa::path(patch, operation_id = "update_trusted_issuers", path = "/admin/v1/trusted-issuers/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Trusted issuer id")),
    request_body = TrustedIssuerPatch,
    responses((status = 200, description = "Changed", body = TrustedIssuerOut), AdminErrors))]
pub async fn update(
    State(state): State<AppState>,
    admin: Admin,
    Ids(id): Ids<Uuid>,
    Body(body): Body<TrustedIssuerPatch>,
) -> Result<Json<TrustedIssuerOut>, Problem> {
    let record = admin
        .actor(&state)
        .update_trusted_issuer(id, body.description.as_deref(), |config| body.apply(config))
        .await?;
    Ok(Json(record.into()))
}

/// Stop trusting an issuer (refused while federated identities use it).
#[utoipa::path(delete, operation_id = "remove_trusted_issuers", path = "/admin/v1/trusted-issuers/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Trusted issuer id")),
    responses((status = 204, description = "Deleted"), AdminErrors))]
pub async fn remove(
    State(state): State<AppState>,
    admin: Admin,
    Ids(id): Ids<Uuid>,
) -> Result<StatusCode, Problem> {
    admin.actor(&state).delete_trusted_issuer(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn add(
    state: &AppState,
    admin: &Admin,
    owner: Subject,
    body: NewFederatedIdentityIn,
) -> Result<(StatusCode, Json<FederatedIdentityOut>), Problem> {
    let conditions = body
        .conditions
        .map(|list| list.into_iter().map(Into::into).collect());
    let entry = admin
        .actor(state)
        .create_federated_identity(owner, &body.issuer, body.subject, conditions)
        .await?;
    Ok((StatusCode::CREATED, Json(out(entry))))
}

async fn list_of(
    state: &AppState,
    admin: &Admin,
    owner: Subject,
) -> Result<Json<Vec<FederatedIdentityOut>>, Problem> {
    let entries = admin.actor(state).list_federated_identities(owner).await?;
    Ok(Json(entries.into_iter().map(out).collect()))
}

/// Let external tokens of a trusted issuer (exact `sub`, or conditions on claims)
/// obtain tokens as this client. Refused when it overlaps an identity of that issuer.
#[utoipa::path(post, operation_id = "add_federated_identity_clients", path = "/admin/v1/clients/{id}/federated-identities", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Client id")),
    request_body = NewFederatedIdentityIn,
    responses((status = 201, description = "Added", body = FederatedIdentityOut), AdminErrors))]
pub async fn add_client_identity(
    State(state): State<AppState>,
    admin: Admin,
    Ids(id): Ids<Uuid>,
    Body(body): Body<NewFederatedIdentityIn>,
) -> Result<(StatusCode, Json<FederatedIdentityOut>), Problem> {
    add(&state, &admin, Subject::Client(id), body).await
}

/// List a client's federated identities.
#[utoipa::path(get, operation_id = "list_federated_identities_clients", path = "/admin/v1/clients/{id}/federated-identities", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Client id")),
    responses((status = 200, description = "Its federated identities", body = Vec<FederatedIdentityOut>), AdminErrors))]
pub async fn list_client_identities(
    State(state): State<AppState>,
    admin: Admin,
    Ids(id): Ids<Uuid>,
) -> Result<Json<Vec<FederatedIdentityOut>>, Problem> {
    list_of(&state, &admin, Subject::Client(id)).await
}

/// Remove a client's federated identity.
#[utoipa::path(delete, operation_id = "remove_federated_identity_clients", path = "/admin/v1/clients/{id}/federated-identities/{identity_id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Client id"), ("identity_id" = Uuid, Path, description = "Federated identity id")),
    responses((status = 204, description = "Deleted"), AdminErrors))]
pub async fn remove_client_identity(
    State(state): State<AppState>,
    admin: Admin,
    Ids((id, identity_id)): Ids<(Uuid, Uuid)>,
) -> Result<StatusCode, Problem> {
    admin
        .actor(&state)
        .delete_federated_identity(Subject::Client(id), identity_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Let external tokens of a trusted issuer (exact `sub`, or conditions on claims)
/// obtain tokens as this user. Refused when it overlaps an identity of that issuer.
#[utoipa::path(post, operation_id = "add_federated_identity_users", path = "/admin/v1/users/{id}/federated-identities", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    request_body = NewFederatedIdentityIn,
    responses((status = 201, description = "Added", body = FederatedIdentityOut), AdminErrors))]
pub async fn add_user_identity(
    State(state): State<AppState>,
    admin: Admin,
    Ids(id): Ids<Uuid>,
    Body(body): Body<NewFederatedIdentityIn>,
) -> Result<(StatusCode, Json<FederatedIdentityOut>), Problem> {
    add(&state, &admin, Subject::User(id), body).await
}

/// List a user's federated identities.
#[utoipa::path(get, operation_id = "list_federated_identities_users", path = "/admin/v1/users/{id}/federated-identities", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses((status = 200, description = "Their federated identities", body = Vec<FederatedIdentityOut>), AdminErrors))]
pub async fn list_user_identities(
    State(state): State<AppState>,
    admin: Admin,
    Ids(id): Ids<Uuid>,
) -> Result<Json<Vec<FederatedIdentityOut>>, Problem> {
    list_of(&state, &admin, Subject::User(id)).await
}

/// Remove a user's federated identity.
#[utoipa::path(delete, operation_id = "remove_federated_identity_users", path = "/admin/v1/users/{id}/federated-identities/{identity_id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id"), ("identity_id" = Uuid, Path, description = "Federated identity id")),
    responses((status = 204, description = "Deleted"), AdminErrors))]
pub async fn remove_user_identity(
    State(state): State<AppState>,
    admin: Admin,
    Ids((id, identity_id)): Ids<(Uuid, Uuid)>,
) -> Result<StatusCode, Problem> {
    admin
        .actor(&state)
        .delete_federated_identity(Subject::User(id), identity_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
