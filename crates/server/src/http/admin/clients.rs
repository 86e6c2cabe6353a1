//! `/admin/v1/clients`, with their secrets and public keys.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use time::Duration;
use uuid::Uuid;

use super::{
    Admin, AdminErrors, Body, ClientCreated, ClientOut, ClientPatch, Ids, ListParams, NewClientIn,
    NewSecretIn, OkpJwk, Paged, Params, PublicKeyOut, SecretCreated, SecretOut, page, paged,
};
use crate::http::error::Problem;
use crate::runtime::AppState;
use crate::service::{ClientChanges, ClientSpec};

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/clients", get(list).post(create))
        .route(
            "/admin/v1/clients/{id}",
            get(read).patch(update).delete(remove),
        )
        .route(
            "/admin/v1/clients/{id}/secrets",
            get(list_secrets).post(add_secret),
        )
        .route(
            "/admin/v1/clients/{id}/secrets/{secret_id}",
            delete(remove_secret),
        )
        .route(
            "/admin/v1/clients/{id}/public-keys",
            get(list_keys).post(add_key),
        )
        .route(
            "/admin/v1/clients/{id}/public-keys/{key_id}",
            delete(remove_key),
        )
}

fn secs(value: Option<i64>) -> Option<Duration> {
    value.map(Duration::seconds)
}

/// Create a client. The response shows its first secret, once; a client created with
/// `public_keys` authenticates with private_key_jwt only and has no secret at all.
#[utoipa::path(post, operation_id = "create_clients", path = "/admin/v1/clients", tag = "admin", security(("bearer" = [])),
    request_body = NewClientIn,
    responses((status = 201, description = "Created, with its secret", body = ClientCreated), AdminErrors))]
pub async fn create(
    State(state): State<AppState>,
    admin: Admin,
    Body(body): Body<NewClientIn>,
) -> Result<(StatusCode, Json<ClientCreated>), Problem> {
    let spec = ClientSpec {
        name: body.name,
        enabled: body.enabled,
        default_ttl: secs(body.default_ttl_secs),
        max_ttl: secs(body.max_ttl_secs),
        allowed_cidrs: body.allowed_cidrs,
        require_dpop: body.require_dpop,
        anomaly_policy: body.anomaly_policy.into(),
        grant_types: body.grant_types,
        labels: body.labels,
    };
    if !body.public_keys.is_empty() {
        if body.secret == Some(true) {
            return Err(crate::service::invalid(
                "secret",
                "a client created with public_keys gets no secret",
            )
            .into());
        }
        let keys = body
            .public_keys
            .iter()
            .map(|jwk| Ok((jwk.kid.clone(), okp_key(jwk)?)))
            .collect::<Result<Vec<_>, Problem>>()?;
        let (client, keys) = admin.actor(&state).create_keyed_client(spec, &keys).await?;
        return Ok((
            StatusCode::CREATED,
            Json(ClientCreated {
                client: client.into(),
                client_secret: None,
                public_keys: keys.into_iter().map(Into::into).collect(),
            }),
        ));
    }
    if body.secret == Some(false) {
        let client = admin.actor(&state).create_bare_client(spec).await?;
        return Ok((
            StatusCode::CREATED,
            Json(ClientCreated {
                client: client.into(),
                client_secret: None,
                public_keys: vec![],
            }),
        ));
    }
    let created = admin.actor(&state).create_client(spec).await?;
    let client_secret = created.secret.expose().to_owned();
    Ok((
        StatusCode::CREATED,
        Json(ClientCreated {
            client: created.client.into(),
            client_secret: Some(client_secret),
            public_keys: vec![],
        }),
    ))
}

/// List clients.
#[utoipa::path(get, operation_id = "list_clients", path = "/admin/v1/clients", tag = "admin", security(("bearer" = [])),
    params(ListParams),
    responses((status = 200, description = "A page", body = Paged<ClientOut>), AdminErrors))]
pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
    Params(q): Params<ListParams>,
) -> Result<Json<Paged<ClientOut>>, Problem> {
    let (page, limit) = page(q.limit, q.cursor.as_deref())?;
    let records = admin.actor(&state).list_clients(page).await?;
    Ok(Json(paged(records, limit, |c| c.id, ClientOut::from)))
}

/// Get a client.
#[utoipa::path(get, operation_id = "read_clients", path = "/admin/v1/clients/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Client id")),
    responses((status = 200, description = "The client", body = ClientOut), AdminErrors))]
pub async fn read(
    State(state): State<AppState>,
    admin: Admin,
    Ids(id): Ids<Uuid>,
) -> Result<Json<ClientOut>, Problem> {
    Ok(Json(admin.actor(&state).get_client(id).await?.into()))
}

/// Change a client. Disabling it stops issuance at once.
#[utoipa::path(patch, operation_id = "update_clients", path = "/admin/v1/clients/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Client id")),
    request_body = ClientPatch,
    responses((status = 200, description = "Changed", body = ClientOut), AdminErrors))]
pub async fn update(
    State(state): State<AppState>,
    admin: Admin,
    Ids(id): Ids<Uuid>,
    Body(body): Body<ClientPatch>,
) -> Result<Json<ClientOut>, Problem> {
    let changes = ClientChanges {
        name: body.name,
        enabled: body.enabled,
        default_ttl: body.default_ttl_secs.map(secs),
        max_ttl: body.max_ttl_secs.map(secs),
        allowed_cidrs: body.allowed_cidrs,
        require_dpop: body.require_dpop,
        anomaly_policy: body.anomaly_policy.map(Into::into),
        grant_types: body.grant_types,
        labels: body.labels,
    };
    Ok(Json(
        admin.actor(&state).update_client(id, changes).await?.into(),
    ))
}

/// Delete a client with its secrets, keys and grants.
#[utoipa::path(delete, operation_id = "remove_clients", path = "/admin/v1/clients/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Client id")),
    responses((status = 204, description = "Deleted"), AdminErrors))]
pub async fn remove(
    State(state): State<AppState>,
    admin: Admin,
    Ids(id): Ids<Uuid>,
) -> Result<StatusCode, Problem> {
    admin.actor(&state).delete_client(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Add a secret (at most two valid at once); the response shows it, once.
#[utoipa::path(post, operation_id = "add_secret_clients", path = "/admin/v1/clients/{id}/secrets", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Client id")),
    request_body = NewSecretIn,
    responses((status = 201, description = "Added", body = SecretCreated), AdminErrors))]
pub async fn add_secret(
    State(state): State<AppState>,
    admin: Admin,
    Ids(id): Ids<Uuid>,
    Body(body): Body<NewSecretIn>,
) -> Result<(StatusCode, Json<SecretCreated>), Problem> {
    let added = admin
        .actor(&state)
        .create_client_secret(id, body.expires_at.map(|t| t.0))
        .await?;
    let created = SecretCreated {
        id: added.record.id,
        client_secret: added.secret.expose().to_owned(),
        expires_at: added.record.expires_at,
    };
    Ok((StatusCode::CREATED, Json(created)))
}

/// List a client's secrets (metadata only).
#[utoipa::path(get, operation_id = "list_secrets_clients", path = "/admin/v1/clients/{id}/secrets", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Client id")),
    responses((status = 200, description = "Its secrets", body = Vec<SecretOut>), AdminErrors))]
pub async fn list_secrets(
    State(state): State<AppState>,
    admin: Admin,
    Ids(id): Ids<Uuid>,
) -> Result<Json<Vec<SecretOut>>, Problem> {
    let secrets = admin.actor(&state).list_client_secrets(id).await?;
    Ok(Json(secrets.into_iter().map(SecretOut::from).collect()))
}

/// Delete a secret; it stops working at once.
#[utoipa::path(delete, operation_id = "remove_secret_clients", path = "/admin/v1/clients/{id}/secrets/{secret_id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Client id"), ("secret_id" = Uuid, Path, description = "Secret id")),
    responses((status = 204, description = "Deleted"), AdminErrors))]
pub async fn remove_secret(
    State(state): State<AppState>,
    admin: Admin,
    Ids((id, secret_id)): Ids<(Uuid, Uuid)>,
) -> Result<StatusCode, Problem> {
    admin
        .actor(&state)
        .delete_client_secret(id, secret_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The raw key of an OKP/Ed25519 JWK.
fn okp_key(jwk: &OkpJwk) -> Result<[u8; 32], Problem> {
    if jwk.kty != "OKP" || jwk.crv != "Ed25519" {
        return Err(Problem::field(
            "crv",
            "only OKP keys on Ed25519 are accepted",
        ));
    }
    URL_SAFE_NO_PAD
        .decode(&jwk.x)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Problem::field("x", "must be the base64url of 32 bytes"))
}

/// Register an Ed25519 public key for private_key_jwt (at most two at once).
#[utoipa::path(post, operation_id = "add_key_clients", path = "/admin/v1/clients/{id}/public-keys", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Client id")),
    request_body = OkpJwk,
    responses((status = 201, description = "Registered", body = PublicKeyOut), AdminErrors))]
pub async fn add_key(
    State(state): State<AppState>,
    admin: Admin,
    Ids(id): Ids<Uuid>,
    Body(jwk): Body<OkpJwk>,
) -> Result<(StatusCode, Json<PublicKeyOut>), Problem> {
    let key = okp_key(&jwk)?;
    let record = admin
        .actor(&state)
        .create_client_public_key(id, jwk.kid.as_deref(), key)
        .await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// List a client's public keys.
#[utoipa::path(get, operation_id = "list_keys_clients", path = "/admin/v1/clients/{id}/public-keys", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Client id")),
    responses((status = 200, description = "Its keys", body = Vec<PublicKeyOut>), AdminErrors))]
pub async fn list_keys(
    State(state): State<AppState>,
    admin: Admin,
    Ids(id): Ids<Uuid>,
) -> Result<Json<Vec<PublicKeyOut>>, Problem> {
    let keys = admin.actor(&state).list_client_public_keys(id).await?;
    Ok(Json(keys.into_iter().map(PublicKeyOut::from).collect()))
}

/// Remove a public key.
#[utoipa::path(delete, operation_id = "remove_key_clients", path = "/admin/v1/clients/{id}/public-keys/{key_id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Client id"), ("key_id" = Uuid, Path, description = "Key id")),
    responses((status = 204, description = "Deleted"), AdminErrors))]
pub async fn remove_key(
    State(state): State<AppState>,
    admin: Admin,
    Ids((id, key_id)): Ids<(Uuid, Uuid)>,
) -> Result<StatusCode, Problem> {
    admin
        .actor(&state)
        .delete_client_public_key(id, key_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
