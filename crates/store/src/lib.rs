//! mayfly-store: everything Mayfly keeps, behind one [`Store`] trait.
//!
//! Two implementations: [`PgStore`] (production; several replicas may share it) and
//! [`SqliteStore`] (the embedded default), one SQL body (`sql/`) generic over what
//! differs between them. Each runs its own migrations from
//! `migrations/<backend>`. Every method is one atomic step in its own transaction; no
//! transaction leaks out. All times are UTC. Secrets are stored only as digests.
//!
//! This crate knows nothing of HTTP, OAuth wire formats or token encoding.

#![deny(missing_docs)]

mod error;
mod lifecycle;
mod postgres;
mod records;
mod sql;
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

/// The statement that ends the refresh families a revocation of `kind` = `value`
/// covers (`$1` now, `$2` the id, `$3` the cutoff), and the id it names; `None` when the
/// kind ends no refresh family (or the value is no id, so it can name none).
fn ended_families(kind: &str, value: &str) -> Option<(&'static str, Uuid)> {
    let sql = match kind {
        "subject" => {
            "UPDATE refresh_families SET revoked_at = COALESCE(revoked_at, $1)
             WHERE user_id = $2 AND created_at < $3"
        }
        "client" => {
            "UPDATE refresh_families SET revoked_at = COALESCE(revoked_at, $1)
             WHERE client_id = $2 AND created_at < $3"
        }
        "family" => {
            "UPDATE refresh_families SET revoked_at = COALESCE(revoked_at, $1)
             WHERE id = $2 AND created_at < $3"
        }
        _ => return None,
    };
    Some((sql, Uuid::parse_str(value).ok()?))
}

/// Result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// Audiences and their scopes.
#[async_trait]
pub trait AudienceStore: Send + Sync {
    /// Creates an audience. [`StoreError::Conflict`] when the URI exists.
    /// `effects` commit with it.
    async fn create_audience(
        &self,
        new: NewAudience,
        effects: &ChangeEffects,
    ) -> StoreResult<AudienceRecord>;
    /// The audience with this URI.
    async fn audience_by_uri(&self, uri: &str) -> StoreResult<Option<AudienceRecord>>;
    /// The audience with this id.
    async fn audience(&self, id: Uuid) -> StoreResult<Option<AudienceRecord>>;
    /// A page of audiences, in id (creation) order.
    async fn list_audiences(&self, page: Page) -> StoreResult<Vec<AudienceRecord>>;
    /// Changes an audience's description. [`StoreError::NotFound`] when it does not exist.
    /// `effects` commit with it (so with each change below).
    async fn update_audience(
        &self,
        id: Uuid,
        description: &str,
        effects: &ChangeEffects,
    ) -> StoreResult<AudienceRecord>;
    /// Deletes an audience and its scopes. [`StoreError::Conflict`] while grants use it.
    async fn delete_audience(&self, id: Uuid, effects: &ChangeEffects) -> StoreResult<()>;
    /// Adds a scope to an audience. [`StoreError::Conflict`] when the name exists there,
    /// [`StoreError::NotFound`] when the audience does not exist.
    async fn create_scope(
        &self,
        new: NewScope,
        effects: &ChangeEffects,
    ) -> StoreResult<ScopeRecord>;
    /// The scopes of an audience, ordered by name.
    async fn scopes_of(&self, audience_id: Uuid) -> StoreResult<Vec<ScopeRecord>>;
    /// The scope with this id.
    async fn scope(&self, id: Uuid) -> StoreResult<Option<ScopeRecord>>;
    /// A page of scopes (of one audience, or all), in id order.
    async fn list_scopes(
        &self,
        audience_id: Option<Uuid>,
        page: Page,
    ) -> StoreResult<Vec<ScopeRecord>>;
    /// Changes a scope's description. [`StoreError::NotFound`] when it does not exist.
    async fn update_scope(
        &self,
        id: Uuid,
        description: &str,
        effects: &ChangeEffects,
    ) -> StoreResult<ScopeRecord>;
    /// Deletes a scope. [`StoreError::Conflict`] while grants use it.
    async fn delete_scope(&self, id: Uuid, effects: &ChangeEffects) -> StoreResult<()>;
}

/// Clients and their credentials.
#[async_trait]
pub trait ClientStore: Send + Sync {
    /// Creates a client. `effects` commit with it.
    async fn create_client(
        &self,
        new: NewClient,
        effects: &ChangeEffects,
    ) -> StoreResult<ClientRecord>;
    /// The client with this id.
    async fn client(&self, id: Uuid) -> StoreResult<Option<ClientRecord>>;
    /// Enables or disables a client. [`StoreError::NotFound`] when it does not exist.
    async fn set_client_enabled(
        &self,
        id: Uuid,
        enabled: bool,
        now: OffsetDateTime,
        effects: &ChangeEffects,
    ) -> StoreResult<()>;
    /// Adds a secret digest to a client. [`StoreError::NotFound`] when it does not exist.
    async fn add_client_secret(
        &self,
        new: NewClientSecret,
        effects: &ChangeEffects,
    ) -> StoreResult<ClientSecretRecord>;
    /// Every secret of a client, expired ones included.
    async fn client_secrets(&self, client_id: Uuid) -> StoreResult<Vec<ClientSecretRecord>>;
    /// The client with its secrets and all its grants, for the issuance cache.
    async fn client_view(&self, id: Uuid) -> StoreResult<Option<ClientView>>;
    /// A page of clients, in id order.
    async fn list_clients(&self, page: Page) -> StoreResult<Vec<ClientRecord>>;
    /// Writes `client`'s mutable fields if it was last changed at `seen_updated_at`
    /// (optimistic concurrency), committing `effects` in the same transaction.
    /// [`StoreError::Conflict`] when it changed since, [`StoreError::NotFound`] when it
    /// is gone; either way nothing is stored.
    async fn update_client(
        &self,
        client: &ClientRecord,
        seen_updated_at: OffsetDateTime,
        effects: &ChangeEffects,
    ) -> StoreResult<ClientRecord>;
    /// Deletes a client with its secrets, public keys, grants and federated identities,
    /// committing `effects` in the same transaction.
    async fn delete_client(&self, id: Uuid, effects: &ChangeEffects) -> StoreResult<()>;
    /// Deletes one secret of a client.
    async fn delete_client_secret(
        &self,
        client_id: Uuid,
        secret_id: Uuid,
        effects: &ChangeEffects,
    ) -> StoreResult<()>;
    /// Registers a public key. [`StoreError::Conflict`] when the kid exists for the client.
    async fn add_client_public_key(
        &self,
        new: NewClientPublicKey,
        effects: &ChangeEffects,
    ) -> StoreResult<ClientPublicKeyRecord>;
    /// The public keys of a client.
    async fn client_public_keys(&self, client_id: Uuid) -> StoreResult<Vec<ClientPublicKeyRecord>>;
    /// Deletes one public key of a client.
    async fn delete_client_public_key(
        &self,
        client_id: Uuid,
        key_id: Uuid,
        effects: &ChangeEffects,
    ) -> StoreResult<()>;
}

/// People.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Creates a user. [`StoreError::Conflict`] when the username exists.
    /// `effects` commit with it.
    async fn create_user(&self, new: NewUser, effects: &ChangeEffects) -> StoreResult<UserRecord>;
    /// The user with this id.
    async fn user(&self, id: Uuid) -> StoreResult<Option<UserRecord>>;
    /// The user with this username.
    async fn user_by_username(&self, username: &str) -> StoreResult<Option<UserRecord>>;
    /// A page of users, in id order.
    async fn list_users(&self, page: Page) -> StoreResult<Vec<UserRecord>>;
    /// Writes `user`'s mutable fields if it was last changed at `seen_updated_at`,
    /// committing `effects` in the same transaction.
    async fn update_user(
        &self,
        user: &UserRecord,
        seen_updated_at: OffsetDateTime,
        effects: &ChangeEffects,
    ) -> StoreResult<UserRecord>;
    /// Deletes a user with their grants and federated identities, committing `effects`
    /// in the same transaction.
    async fn delete_user(&self, id: Uuid, effects: &ChangeEffects) -> StoreResult<()>;
    /// Counts a failed login, atomically: at `max_failures` consecutive failures the
    /// user is locked until `now + lockout` and the count starts over. Returns the user
    /// as changed. Lockout bookkeeping does not move the revision.
    /// [`StoreError::NotFound`] when the user does not exist.
    async fn record_login_failure(&self, failure: LoginFailure) -> StoreResult<UserRecord>;
    /// Counts a login attempt as a failure before its password is checked, atomically and
    /// only if the user is not locked out at `now` (as [`Self::record_login_failure`]
    /// counts, locking at `max_failures`); returns the user as changed. `None` when the
    /// user is locked out (or gone): nothing changed and the password must not be
    /// checked. Concurrent attempts thus
    /// each see the count the others left: at most `max_failures` are checked per
    /// lockout. A right password then clears the count ([`Self::record_login_success`]).
    async fn begin_login_attempt(&self, attempt: LoginFailure) -> StoreResult<Option<UserRecord>>;
    /// Clears the failure count and any lockout after a successful login, if the user is
    /// still enabled and still has `password_hash`, the hash the password was checked
    /// against; whether it did. A check can wait in the password queue: a password
    /// changed or a user disabled meanwhile must not let it through, since the change's
    /// revocation covers only logins it can see.
    async fn record_login_success(&self, user_id: Uuid, password_hash: &str) -> StoreResult<bool>;
}

/// Grants: which subject may receive which scopes on which audience.
#[async_trait]
pub trait GrantStore: Send + Sync {
    /// Creates a grant. [`StoreError::NotFound`] when the audience or one of the scopes
    /// (by name, within that audience) does not exist. `effects` commit with it.
    async fn create_grant(
        &self,
        new: NewGrant,
        effects: &ChangeEffects,
    ) -> StoreResult<GrantRecord>;
    /// The grant with this id.
    async fn grant(&self, id: Uuid) -> StoreResult<Option<GrantRecord>>;
    /// A page of grants matching `filter`, in id order.
    async fn list_grants(&self, filter: GrantFilter, page: Page) -> StoreResult<Vec<GrantRecord>>;
    /// Writes a grant's mutable fields (window, CIDRs, max TTL, reason), committing
    /// `effects` in the same transaction.
    async fn update_grant(
        &self,
        grant: &GrantRecord,
        effects: &ChangeEffects,
    ) -> StoreResult<GrantRecord>;
    /// Deletes a grant, committing `effects` in the same transaction.
    async fn delete_grant(&self, id: Uuid, effects: &ChangeEffects) -> StoreResult<()>;
    /// Every grant of a subject, with its audience's URI (in force or not).
    async fn subject_grants(&self, subject: Subject) -> StoreResult<Vec<SubjectGrant>>;
}

/// Refresh tokens (digests only), grouped in families: one family per login, one live
/// token per family at a time (rotation).
#[async_trait]
pub trait RefreshStore: Send + Sync {
    /// Starts a family with its first token. [`StoreError::NotFound`] when the user or
    /// client does not exist.
    async fn create_refresh_family(
        &self,
        new: NewRefreshFamily,
    ) -> StoreResult<RefreshFamilyRecord>;
    /// The token `key` names, with its family: `None` when no token has its selector,
    /// or when the stored digest is not `key`'s (compared in constant time).
    async fn refresh_token(&self, key: &RefreshKey) -> StoreResult<Option<RefreshTokenRecord>>;
    /// Revokes a family (no token of it refreshes again) and records `revocation`
    /// (normally of kind `family`) in the same transaction, announcing it like
    /// [`RevocationStore::insert_revocation`].
    async fn revoke_refresh_family(
        &self,
        family_id: Uuid,
        revocation: NewRevocation,
    ) -> StoreResult<RevocationRecord>;
    /// Deletes families past their absolute end, then the tokens of every family that
    /// is gone (past its end, or deleted with its user or client); how many of each.
    async fn prune_refresh_families(&self, now: OffsetDateTime) -> StoreResult<PrunedRefresh>;
}

/// What [`RefreshStore::prune_refresh_families`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrunedRefresh {
    /// Families past their absolute end.
    pub families: u64,
    /// Tokens whose family is gone.
    pub tokens: u64,
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

/// Revocations and their feed.
#[async_trait]
pub trait RevocationStore: Send + Sync {
    /// Records a revocation and announces it to other replicas (Postgres `NOTIFY`). In
    /// the same transaction, a `subject`, `client` or `family` revocation ends the
    /// refresh families it covers (those started before its cutoff): a login outlives
    /// no revocation of it, however long its refresh tokens would have lasted.
    async fn insert_revocation(&self, new: NewRevocation) -> StoreResult<RevocationRecord>;
    /// Like [`Self::insert_revocation`], with `audit` committed in the same transaction:
    /// a revocation is never recorded without its audit events, nor audited without
    /// being recorded.
    async fn insert_audited_revocation(
        &self,
        new: NewRevocation,
        audit: &[AuditEvent],
    ) -> StoreResult<RevocationRecord>;
    /// Revocations with `seq > after`, in `seq` order, at most `limit`.
    async fn revocations_after(&self, after: i64, limit: u32)
    -> StoreResult<Vec<RevocationRecord>>;
    /// Deletes revocations whose every possible token has expired; returns how many.
    async fn prune_revocations(&self, now: OffsetDateTime) -> StoreResult<u64>;
    /// A signal raised when a revocation is recorded: by any process on Postgres
    /// (`LISTEN`), by this store object on SQLite. Listeners must still poll now and
    /// then: a signal can be lost. `None` means poll only.
    async fn revocation_signal(&self) -> StoreResult<Option<Arc<tokio::sync::Notify>>>;
}

/// One-time ids (client assertion and DPoP proof `jti`s), shared by every replica.
#[async_trait]
pub trait ReplayStore: Send + Sync {
    /// Records `jti` as used in `namespace` until `expires_at`. `Ok(false)` when it is
    /// already recorded and not yet expired: a replay. Atomic across replicas.
    async fn use_once(
        &self,
        namespace: &str,
        jti: &str,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// Forgets ids expired at `now`; returns how many.
    async fn prune_used_ids(&self, now: OffsetDateTime) -> StoreResult<u64>;
}

/// The append-only audit log.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends events in one transaction: all are durable when this returns `Ok`.
    async fn append_audit_events(&self, events: &[AuditEvent]) -> StoreResult<()>;
    /// Appends entries in one transaction, each event with the change it records (a
    /// refresh token rotation: the presented token marked used, its successor stored in
    /// its family), so that neither commits without the other. A rotation applies only
    /// if its token is unused, its family not revoked, its user enabled, and no earlier
    /// entry of the same call rotates the same token; an entry whose rotation does not
    /// apply changes nothing and its event is not appended. Returns, per entry, whether
    /// it applied; all that applied is durable when this returns `Ok`.
    async fn append_audit_entries(&self, entries: &[AuditEntry]) -> StoreResult<Vec<bool>>;
    /// Events matching `query`, newest first.
    async fn audit_events(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>>;
    /// Events matching `query` that are also about the external identity `external`
    /// names (see [`ExternalIdentityFilter`]), newest first, paged like
    /// [`Self::audit_events`].
    async fn audit_events_by_external(
        &self,
        query: &AuditQuery,
        external: &ExternalIdentityFilter,
    ) -> StoreResult<Vec<AuditEvent>>;
    /// Deletes events older than `before` (retention); returns how many.
    async fn prune_audit_events(&self, before: OffsetDateTime) -> StoreResult<u64>;
}

/// Just-in-time access: policies, and requests with their approvals. State changes
/// are conditional (`… WHERE state = from`), so of concurrent deciders exactly one
/// moves a request; an approver counts once per request (primary key).
#[async_trait]
pub trait AccessStore: Send + Sync {
    /// Stores a policy. [`StoreError::NotFound`] when its audience does not exist.
    async fn create_access_policy(
        &self,
        policy: &AccessPolicyRecord,
        effects: &ChangeEffects,
    ) -> StoreResult<AccessPolicyRecord>;
    /// The policy with this id.
    async fn access_policy(&self, id: Uuid) -> StoreResult<Option<AccessPolicyRecord>>;
    /// A page of policies (of one audience, or all), in id order.
    async fn list_access_policies(
        &self,
        audience_id: Option<Uuid>,
        page: Page,
    ) -> StoreResult<Vec<AccessPolicyRecord>>;
    /// Writes a policy's mutable fields. [`StoreError::NotFound`] when it is gone.
    async fn update_access_policy(
        &self,
        policy: &AccessPolicyRecord,
        effects: &ChangeEffects,
    ) -> StoreResult<AccessPolicyRecord>;
    /// Deletes a policy (its requests keep their history).
    async fn delete_access_policy(&self, id: Uuid, effects: &ChangeEffects) -> StoreResult<()>;
    /// Stores a new request (its approvals are ignored).
    async fn create_access_request(&self, request: &AccessRequestRecord) -> StoreResult<()>;
    /// The request with this id, with its approvals.
    async fn access_request(&self, id: Uuid) -> StoreResult<Option<AccessRequestRecord>>;
    /// A page of requests matching `filter`, in id order, with their approvals.
    async fn list_access_requests(
        &self,
        filter: AccessRequestFilter,
        page: Page,
    ) -> StoreResult<Vec<AccessRequestRecord>>;
    /// Records an approval of a pending request and returns how many distinct approvals
    /// it now has; `None` when it is not pending. [`StoreError::Conflict`] when this
    /// approver approved it already.
    async fn add_access_approval(
        &self,
        request_id: Uuid,
        approval: &AccessApproval,
    ) -> StoreResult<Option<u32>>;
    /// Applies `transition` if the request is in `transition.from`; `false` otherwise
    /// (another decision won, or it expired).
    async fn transition_access_request(&self, transition: &AccessTransition) -> StoreResult<bool>;
    /// Clears a request's review mark; `false` when it was not marked (or is gone).
    async fn clear_access_review(&self, id: Uuid) -> StoreResult<bool>;
    /// Moves every pending request whose time is up at `now` to `expired` and returns
    /// them (as they are now).
    async fn expire_access_requests(
        &self,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<AccessRequestRecord>>;
}

/// Workload identity federation: the external issuers Mayfly trusts, and the
/// identities their tokens may speak for. Every admin change commits with its
/// [`ChangeEffects`] (audit events) in one transaction, or nothing is stored. Both
/// tables decide issuance: a change moves the revision ([`Store::revision`]).
#[async_trait]
pub trait FederationStore: Send + Sync {
    /// Creates a trusted issuer. [`StoreError::Conflict`] when its issuer URL (or id)
    /// exists.
    async fn create_trusted_issuer(
        &self,
        new: NewTrustedIssuer,
        effects: &ChangeEffects,
    ) -> StoreResult<TrustedIssuerRecord>;
    /// The trusted issuer with this id.
    async fn trusted_issuer(&self, id: Uuid) -> StoreResult<Option<TrustedIssuerRecord>>;
    /// The trusted issuer with this issuer URL (a token's `iss`, compared exactly).
    async fn trusted_issuer_by_url(&self, issuer: &str)
    -> StoreResult<Option<TrustedIssuerRecord>>;
    /// A page of trusted issuers, in id order.
    async fn list_trusted_issuers(&self, page: Page) -> StoreResult<Vec<TrustedIssuerRecord>>;
    /// Writes `issuer`'s description, settings and `updated_at` if it was last changed
    /// at `seen_updated_at` (optimistic concurrency; the issuer URL never changes).
    /// [`StoreError::Conflict`] when it changed since, [`StoreError::NotFound`] when it
    /// is gone; either way nothing is stored.
    async fn update_trusted_issuer(
        &self,
        issuer: &TrustedIssuerRecord,
        seen_updated_at: OffsetDateTime,
        effects: &ChangeEffects,
    ) -> StoreResult<TrustedIssuerRecord>;
    /// Deletes a trusted issuer. [`StoreError::Conflict`] while it has identities (the
    /// admin removes them first), [`StoreError::NotFound`] when it does not exist.
    async fn delete_trusted_issuer(&self, id: Uuid, effects: &ChangeEffects) -> StoreResult<()>;
    /// Adds a federated identity. [`StoreError::Conflict`] when the issuer has one with
    /// the same `exact_subject` or `conditions_key` (also when added concurrently:
    /// exactly one wins); [`StoreError::NotFound`] naming the trusted issuer, client or
    /// user that does not exist.
    async fn add_federated_identity(
        &self,
        new: NewFederatedIdentity,
        effects: &ChangeEffects,
    ) -> StoreResult<FederatedIdentityRecord>;
    /// The federated identity with this id.
    async fn federated_identity(&self, id: Uuid) -> StoreResult<Option<FederatedIdentityRecord>>;
    /// The federated identities of a client or user, in id order.
    async fn federated_identities_of(
        &self,
        owner: Subject,
    ) -> StoreResult<Vec<FederatedIdentityRecord>>;
    /// Every identity of a trusted issuer, with its owner, in id order: the candidates a
    /// token of that issuer is matched against (one indexed query).
    async fn federated_identities_of_issuer(
        &self,
        trusted_issuer_id: Uuid,
    ) -> StoreResult<Vec<FederatedIdentityRecord>>;
    /// Deletes a federated identity. [`StoreError::NotFound`] when it does not exist.
    async fn delete_federated_identity(&self, id: Uuid, effects: &ChangeEffects)
    -> StoreResult<()>;
}

/// What each client has been seen doing: the baseline anomaly detection compares with.
#[async_trait]
pub trait SightingStore: Send + Sync {
    /// Records that `client_id` was seen with `kind` = `value` at `now`, and says whether
    /// that was already known, new, or the first of its kind for the client.
    async fn record_sighting(
        &self,
        client_id: &str,
        kind: SightingKind,
        value: &str,
        now: OffsetDateTime,
    ) -> StoreResult<Sighting>;
}

/// The whole store.
#[async_trait]
pub trait Store:
    AudienceStore
    + ClientStore
    + UserStore
    + GrantStore
    + KeyStore
    + RevocationStore
    + AuditStore
    + SightingStore
    + ReplayStore
    + RefreshStore
    + AccessStore
    + FederationStore
{
    /// Applies pending migrations.
    async fn migrate(&self) -> StoreResult<()>;
    /// Checks that the database answers.
    async fn ping(&self) -> StoreResult<()>;
    /// Which backend this is, for logs and metrics.
    fn backend(&self) -> Backend;
    /// The database's revision counter: it moves whenever audiences, scopes, clients,
    /// secrets, grants, trusted issuers or federated identities change, by any process.
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

impl Backend {
    /// Whether a commit's work (B-tree updates, WAL writes, the fsync) runs in this
    /// process: on SQLite it does, on the connection's thread; on Postgres it is the
    /// database server's.
    pub fn commits_in_process(self) -> bool {
        matches!(self, Self::Sqlite)
    }
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
#[cfg(test)]
mod socket_tests;
