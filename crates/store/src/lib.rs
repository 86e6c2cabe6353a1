//! mayfly-store: everything Mayfly keeps, behind one [`Store`] trait.
//!
//! Two implementations: [`PgStore`] (production; several replicas may share it) and
//! [`SqliteStore`] (the embedded default). Each runs its own migrations from
//! `migrations/<backend>`. Every method is one atomic step in its own transaction; no
//! transaction leaks out. All times are UTC. Secrets are stored only as digests.
//!
//! This crate knows nothing of HTTP, OAuth wire formats or token encoding.

#![deny(missing_docs)]

mod error;
mod lifecycle;
mod postgres;
mod records;
mod sqlite;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

pub use error::StoreError;
pub use lifecycle::{KeyChange, KeyPolicy, KeyStep, active_key, next_key};
pub use postgres::PgStore;
pub use records::*;
pub use sqlite::SqliteStore;

/// Result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// Audiences and their scopes.
#[async_trait]
pub trait AudienceStore: Send + Sync {
    /// Creates an audience. [`StoreError::Conflict`] when the URI exists.
    async fn create_audience(&self, new: NewAudience) -> StoreResult<AudienceRecord>;
    /// The audience with this URI.
    async fn audience_by_uri(&self, uri: &str) -> StoreResult<Option<AudienceRecord>>;
    /// Every audience, ordered by URI.
    async fn list_audiences(&self) -> StoreResult<Vec<AudienceRecord>>;
    /// Adds a scope to an audience. [`StoreError::Conflict`] when the name exists there,
    /// [`StoreError::NotFound`] when the audience does not exist.
    async fn create_scope(&self, new: NewScope) -> StoreResult<ScopeRecord>;
    /// The scopes of an audience, ordered by name.
    async fn scopes_of(&self, audience_id: Uuid) -> StoreResult<Vec<ScopeRecord>>;
}

/// Clients and their credentials.
#[async_trait]
pub trait ClientStore: Send + Sync {
    /// Creates a client.
    async fn create_client(&self, new: NewClient) -> StoreResult<ClientRecord>;
    /// The client with this id.
    async fn client(&self, id: Uuid) -> StoreResult<Option<ClientRecord>>;
    /// Enables or disables a client. [`StoreError::NotFound`] when it does not exist.
    async fn set_client_enabled(
        &self,
        id: Uuid,
        enabled: bool,
        now: OffsetDateTime,
    ) -> StoreResult<()>;
    /// Adds a secret digest to a client. [`StoreError::NotFound`] when it does not exist.
    async fn add_client_secret(&self, new: NewClientSecret) -> StoreResult<ClientSecretRecord>;
    /// Every secret of a client, expired ones included.
    async fn client_secrets(&self, client_id: Uuid) -> StoreResult<Vec<ClientSecretRecord>>;
    /// The client with its secrets and all its grants, for the issuance cache.
    async fn client_view(&self, id: Uuid) -> StoreResult<Option<ClientView>>;
}

/// Grants: which subject may receive which scopes on which audience.
#[async_trait]
pub trait GrantStore: Send + Sync {
    /// Creates a grant. [`StoreError::NotFound`] when the audience or one of the scopes
    /// (by name, within that audience) does not exist.
    async fn create_grant(&self, new: NewGrant) -> StoreResult<GrantRecord>;
}

/// Signing keys (private halves encrypted by the caller) and their lifecycle,
/// `next → active → retired → gone`.
///
/// Every lifecycle step is one transaction holding a lock that serializes key changes
/// across processes (Postgres: an advisory transaction lock; SQLite: `BEGIN IMMEDIATE`).
/// Under it the step re-reads the keys and checks its rule ([`KeyPolicy`]), so when
/// several replicas attempt a step at once exactly one performs it. Each step returns
/// the changes it made, and commits their audit events (built by [`KeyStep::audit`])
/// with them.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Returns the active key; when there is none, stores `candidate` as active and
    /// returns it. Safe against concurrent callers, across processes.
    async fn ensure_active_key(&self, candidate: SigningKeyRecord)
    -> StoreResult<SigningKeyRecord>;
    /// Every key not yet `gone`, newest first.
    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>>;
    /// Every key, `gone` ones included, newest first.
    async fn all_signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>>;
    /// Publishes `candidate` as `next` if [`KeyPolicy::next_key_due`]; else does nothing.
    async fn publish_next_key(
        &self,
        candidate: NewSigningKey,
        step: &KeyStep<'_>,
    ) -> StoreResult<Vec<KeyChange>>;
    /// Asks for the active key to be replaced as soon as its successor has been
    /// published for the lead time, and publishes `candidate` as `next` when there is
    /// no `next` key yet.
    async fn request_rotation(
        &self,
        candidate: NewSigningKey,
        step: &KeyStep<'_>,
    ) -> StoreResult<Vec<KeyChange>>;
    /// If [`KeyPolicy::activation_due`]: the `next` key becomes active and the active
    /// key retired (to be removed at `now` + retire hold). Else does nothing.
    async fn activate_next_key(&self, step: &KeyStep<'_>) -> StoreResult<Vec<KeyChange>>;
    /// Emergency: the active key is revoked and removed at once (`gone`, private key
    /// wiped, `revoked_at` set), and the `next` key, or `candidate` when there is none,
    /// becomes active without waiting for the lead time.
    async fn emergency_rotate(
        &self,
        candidate: NewSigningKey,
        step: &KeyStep<'_>,
    ) -> StoreResult<Vec<KeyChange>>;
    /// Removes the retired keys whose hold is over ([`KeyPolicy::removal_due`]): they
    /// become `gone` and their private keys are wiped.
    async fn remove_retired_keys(&self, step: &KeyStep<'_>) -> StoreResult<Vec<KeyChange>>;
    /// Replaces the private key ciphertext of every key that has one, in one
    /// transaction, and appends `audit`. `keys` must name each of them exactly once with
    /// the ciphertext it holds now; otherwise nothing changes and the result is
    /// [`StoreError::Stale`] (a key was added or changed meanwhile).
    async fn rewrap_signing_keys(
        &self,
        keys: &[RewrappedKey],
        audit: AuditEvent,
    ) -> StoreResult<()>;
}

/// The append-only audit log.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends events in one transaction: all are durable when this returns `Ok`.
    async fn append_audit_events(&self, events: &[AuditEvent]) -> StoreResult<()>;
    /// Events matching `query`, newest first.
    async fn audit_events(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>>;
}

/// The whole store.
#[async_trait]
pub trait Store: AudienceStore + ClientStore + GrantStore + KeyStore + AuditStore {
    /// Applies pending migrations.
    async fn migrate(&self) -> StoreResult<()>;
    /// Checks that the database answers.
    async fn ping(&self) -> StoreResult<()>;
    /// Which backend this is, for logs and metrics.
    fn backend(&self) -> Backend;
    /// The database's revision counter: it moves whenever audiences, scopes, clients,
    /// secrets or grants change, by any process.
    async fn revision(&self) -> StoreResult<i64>;
    /// How many changes to that data this store object has committed; lets a cache in
    /// the same process notice its own process's changes at once, without polling.
    fn local_changes(&self) -> u64;
}

/// Which database backs a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL.
    Postgres,
    /// SQLite.
    Sqlite,
}

/// Opens the store a database URL names: `postgres://…` / `postgresql://…` or `sqlite://…`.
/// A SQLite file is created when missing. Does not migrate.
///
/// # Errors
/// [`StoreError::InvalidUrl`] for another scheme or a malformed URL, or a connection error.
pub async fn connect(url: &str) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(url).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else {
        Err(StoreError::InvalidUrl)
    }
}

#[cfg(test)]
mod contract_tests;
