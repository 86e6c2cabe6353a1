//! Records the store reads and writes. Plain data: validation happens before a value
//! reaches the store (in mayfly-core's types and the server's service layer).

use std::fmt;

use time::OffsetDateTime;
use uuid::Uuid;

/// An audience to create.
#[derive(Debug, Clone)]
pub struct NewAudience {
    /// Chosen by the caller, so the change's audit event can name it before the insert.
    pub id: Uuid,
    /// The URI (already validated).
    pub uri: String,
    /// Free text.
    pub description: String,
    /// Creation time.
    pub now: OffsetDateTime,
}

/// A stored audience.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudienceRecord {
    /// Id.
    pub id: Uuid,
    /// The URI, unique.
    pub uri: String,
    /// Free text.
    pub description: String,
    /// Creation time.
    pub created_at: OffsetDateTime,
}

/// A scope to create.
#[derive(Debug, Clone)]
pub struct NewScope {
    /// Chosen by the caller, so the change's audit event can name it before the insert.
    pub id: Uuid,
    /// The owning audience.
    pub audience_id: Uuid,
    /// `resource:action` (already validated).
    pub name: String,
    /// Free text.
    pub description: String,
    /// Creation time.
    pub now: OffsetDateTime,
}

/// A stored scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeRecord {
    /// Id.
    pub id: Uuid,
    /// The owning audience.
    pub audience_id: Uuid,
    /// `resource:action`.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Creation time.
    pub created_at: OffsetDateTime,
}

/// A client to create.
#[derive(Debug, Clone)]
pub struct NewClient {
    /// Chosen by the caller, so the change's audit event can name it before the insert.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Whether it may obtain tokens.
    pub enabled: bool,
    /// Token lifetime when the request does not ask for less.
    pub default_ttl_secs: Option<i64>,
    /// Longest token lifetime for this client.
    pub max_ttl_secs: Option<i64>,
    /// Networks it may call from (CIDR notation; empty: anywhere).
    pub allowed_cidrs: Vec<String>,
    /// Whether its tokens must be DPoP-bound.
    pub require_dpop: bool,
    /// What an anomaly concerning it triggers.
    pub anomaly_policy: AnomalyPolicy,
    /// Grant types it may use (RFC 7591 `grant_types`); `refresh_token` lets it receive
    /// refresh tokens.
    pub grant_types: Vec<String>,
    /// Labels that access policies may select it by (`label:<name>`).
    pub labels: Vec<String>,
    /// Creation time.
    pub now: OffsetDateTime,
}

/// A stored client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    /// The client id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Whether it may obtain tokens.
    pub enabled: bool,
    /// Default token lifetime.
    pub default_ttl_secs: Option<i64>,
    /// Longest token lifetime.
    pub max_ttl_secs: Option<i64>,
    /// Networks it may call from.
    pub allowed_cidrs: Vec<String>,
    /// Whether its tokens must be DPoP-bound.
    pub require_dpop: bool,
    /// What an anomaly concerning it triggers.
    pub anomaly_policy: AnomalyPolicy,
    /// Grant types it may use (RFC 7591 `grant_types`).
    pub grant_types: Vec<String>,
    /// Labels that access policies may select it by (`label:<name>`).
    pub labels: Vec<String>,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Last change.
    pub updated_at: OffsetDateTime,
}

impl ClientRecord {
    /// Whether it may use `grant_type` (and, for `refresh_token`, receive refresh tokens).
    pub fn allows(&self, grant_type: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant_type)
    }
}

/// A client secret digest to add.
#[derive(Clone)]
pub struct NewClientSecret {
    /// Chosen by the caller, so the change's audit event can name it before the insert.
    pub id: Uuid,
    /// The owning client.
    pub client_id: Uuid,
    /// SHA-256 of the secret.
    pub digest: [u8; 32],
    /// Optional expiry.
    pub expires_at: Option<OffsetDateTime>,
    /// Creation time.
    pub now: OffsetDateTime,
}

/// A stored client secret (its digest only).
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecretRecord {
    /// Id, for deletion.
    pub id: Uuid,
    /// The owning client.
    pub client_id: Uuid,
    /// SHA-256 of the secret.
    pub digest: [u8; 32],
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Optional expiry.
    pub expires_at: Option<OffsetDateTime>,
}

impl ClientSecretRecord {
    /// Whether the secret may still be used at `now`.
    pub fn is_valid_at(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_none_or(|exp| now < exp)
    }
}

impl fmt::Debug for ClientSecretRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSecretRecord")
            .field("id", &self.id)
            .field("client_id", &self.client_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for NewClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewClientSecret")
            .field("client_id", &self.client_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Who a grant is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A workload.
    Client(Uuid),
    /// A person.
    User(Uuid),
}

impl Subject {
    pub(crate) fn kind(self) -> &'static str {
        match self {
            Self::Client(_) => "client",
            Self::User(_) => "user",
        }
    }

    pub(crate) fn id(self) -> Uuid {
        match self {
            Self::Client(id) | Self::User(id) => id,
        }
    }

    pub(crate) fn from_parts(kind: &str, id: Uuid) -> Option<Self> {
        match kind {
            "client" => Some(Self::Client(id)),
            "user" => Some(Self::User(id)),
            _ => None,
        }
    }
}

/// A grant to create.
#[derive(Debug, Clone)]
pub struct NewGrant {
    /// Chosen by the caller, so the change's audit event can name it before the insert.
    pub id: Uuid,
    /// Who receives it.
    pub subject: Subject,
    /// On which audience.
    pub audience_id: Uuid,
    /// Scope names, each existing on the audience.
    pub scopes: Vec<String>,
    /// Not in force before this time.
    pub not_before: Option<OffsetDateTime>,
    /// Not in force from this time on.
    pub expires_at: Option<OffsetDateTime>,
    /// Networks tokens under it may be used from (empty: anywhere).
    pub allowed_cidrs: Vec<String>,
    /// Longest token lifetime under it.
    pub max_ttl_secs: Option<i64>,
    /// Who may act for the subject under it (RFC 8693 delegation): client or user ids.
    pub may_act: Vec<Uuid>,
    /// Why it exists.
    pub reason: String,
    /// Who created it.
    pub created_by: String,
    /// Creation time.
    pub now: OffsetDateTime,
}

/// A stored grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRecord {
    /// Id.
    pub id: Uuid,
    /// Who receives it.
    pub subject: Subject,
    /// On which audience.
    pub audience_id: Uuid,
    /// Scope names, sorted.
    pub scopes: Vec<String>,
    /// Not in force before.
    pub not_before: Option<OffsetDateTime>,
    /// Not in force from.
    pub expires_at: Option<OffsetDateTime>,
    /// Networks tokens may be used from.
    pub allowed_cidrs: Vec<String>,
    /// Longest token lifetime.
    pub max_ttl_secs: Option<i64>,
    /// Who may act for the subject under it (RFC 8693 delegation).
    pub may_act: Vec<Uuid>,
    /// Why it exists.
    pub reason: String,
    /// Who created it.
    pub created_by: String,
    /// Creation time.
    pub created_at: OffsetDateTime,
}

/// A grant together with its audience's URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectGrant {
    /// The grant.
    pub grant: GrantRecord,
    /// The URI of `grant.audience_id`.
    pub audience_uri: String,
}

/// Everything that decides whether a client gets a token: the client, its secrets and
/// all its grants (in force or not; callers filter by time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientView {
    /// The client.
    pub client: ClientRecord,
    /// Its secrets (digests), expired ones included.
    pub secrets: Vec<ClientSecretRecord>,
    /// Its public keys (private_key_jwt), at most two.
    pub public_keys: Vec<ClientPublicKeyRecord>,
    /// Its grants on every audience.
    pub grants: Vec<SubjectGrant>,
}

/// Lifecycle state of a signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Published, not yet signing.
    Next,
    /// Signing.
    Active,
    /// Published, no longer signing.
    Retired,
    /// Neither published nor signing.
    Gone,
}

impl KeyState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Next => "next",
            Self::Active => "active",
            Self::Retired => "retired",
            Self::Gone => "gone",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "next" => Self::Next,
            "active" => Self::Active,
            "retired" => Self::Retired,
            "gone" => Self::Gone,
            _ => return None,
        })
    }
}

/// A stored signing key.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// PASERK `k4.pid`.
    pub id: String,
    /// Lifecycle state.
    pub state: KeyState,
    /// Raw Ed25519 public key.
    pub public_key: Vec<u8>,
    /// Private key, encrypted by the server under its master key; empty once `gone`.
    pub private_key_enc: Vec<u8>,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// When it entered the key set. A key signs only after being published for the
    /// lead time, so caches of the key set know it before any token carries it.
    pub published_at: OffsetDateTime,
    /// When it started signing.
    pub activated_at: Option<OffsetDateTime>,
    /// When an operator asked for it to be replaced (active keys only): it then retires
    /// as soon as its successor has been published long enough, whatever its age.
    pub rotate_requested_at: Option<OffsetDateTime>,
    /// When it stopped signing.
    pub retired_at: Option<OffsetDateTime>,
    /// When a retired key leaves the key set (every token it signed has expired).
    pub removes_at: Option<OffsetDateTime>,
    /// When it left the key set.
    pub removed_at: Option<OffsetDateTime>,
    /// When it was revoked by an emergency rotation (its tokens are no longer valid).
    pub revoked_at: Option<OffsetDateTime>,
}

impl fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("id", &self.id)
            .field("state", &self.state)
            .field("created_at", &self.created_at)
            .field("published_at", &self.published_at)
            .field("activated_at", &self.activated_at)
            .field("retired_at", &self.retired_at)
            .field("removes_at", &self.removes_at)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

/// A freshly generated key for a lifecycle step; the store decides its state and times.
#[derive(Clone)]
pub struct NewSigningKey {
    /// PASERK `k4.pid`.
    pub id: String,
    /// Raw Ed25519 public key.
    pub public_key: Vec<u8>,
    /// Private key, encrypted by the server under its master key.
    pub private_key_enc: Vec<u8>,
}

impl fmt::Debug for NewSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewSigningKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A private key re-encrypted under a new master key, for
/// [`KeyStore::rewrap_signing_keys`](crate::KeyStore::rewrap_signing_keys).
#[derive(Clone)]
pub struct RewrappedKey {
    /// PASERK `k4.pid`.
    pub id: String,
    /// The ciphertext that was read (the row must still hold it).
    pub old: Vec<u8>,
    /// The ciphertext to store.
    pub new: Vec<u8>,
}

impl fmt::Debug for RewrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RewrappedKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// One audit event. Never holds a token, secret or password.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// UUIDv7: sorts by time.
    pub id: Uuid,
    /// When it happened.
    pub occurred_at: OffsetDateTime,
    /// e.g. `token.issued`, `token.denied`, `client.auth_failed`, `admin.change`.
    pub event_type: String,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    /// Who acted (client id, admin id, `cli`).
    pub actor: Option<String>,
    /// Whom it concerns.
    pub subject: Option<String>,
    /// The client involved.
    pub client_id: Option<String>,
    /// The token involved.
    pub jti: Option<String>,
    /// The audience involved.
    pub audience: Option<String>,
    /// Scopes involved, space-separated.
    pub scopes: Option<String>,
    /// Source address.
    pub source_ip: Option<String>,
    /// User agent.
    pub user_agent: Option<String>,
    /// Request id.
    pub request_id: Option<String>,
    /// Anything else, as JSON.
    pub detail: serde_json::Value,
}

/// An audit search.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only this event type.
    pub event_type: Option<String>,
    /// Only events about this client.
    pub client_id: Option<String>,
    /// Only this outcome.
    pub outcome: Option<String>,
    /// Only events about this subject.
    pub subject: Option<String>,
    /// Only events about this token.
    pub jti: Option<String>,
    /// Only events about this audience.
    pub audience: Option<String>,
    /// Only events from this network (a CIDR, or one address as /32 or /128).
    pub network: Option<ipnet::IpNet>,
    /// Only events at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only events before this time.
    pub until: Option<OffsetDateTime>,
    /// Only events older than this one (`occurred_at`, `id`): the previous page's last.
    pub before: Option<(OffsetDateTime, Uuid)>,
    /// At most this many (capped at 1000).
    pub limit: u32,
}

/// One page of a listing: items with an id greater than `after`, in id order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Start after this id (the previous page's last).
    pub after: Option<Uuid>,
    /// At most this many items.
    pub limit: u32,
}

/// A public key a client authenticates with (private_key_jwt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPublicKeyRecord {
    /// Id, for deletion.
    pub id: Uuid,
    /// The owning client.
    pub client_id: Uuid,
    /// Key id as JWT headers name it (RFC 7638 thumbprint unless given).
    pub kid: String,
    /// Raw Ed25519 public key.
    pub public_key: Vec<u8>,
    /// Creation time.
    pub created_at: OffsetDateTime,
}

/// A public key to register.
#[derive(Debug, Clone)]
pub struct NewClientPublicKey {
    /// Chosen by the caller, so the change's audit event can name it before the insert.
    pub id: Uuid,
    /// The owning client.
    pub client_id: Uuid,
    /// Key id.
    pub kid: String,
    /// Raw Ed25519 public key.
    pub public_key: [u8; 32],
    /// Creation time.
    pub now: OffsetDateTime,
}

/// A person.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Id.
    pub id: Uuid,
    /// Unique login name.
    pub username: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Whether they may log in.
    pub enabled: bool,
    /// Consecutive failed logins.
    pub failed_logins: i32,
    /// Locked out until then.
    pub locked_until: Option<OffsetDateTime>,
    /// Labels that access policies may select them by (`label:<name>`).
    pub labels: Vec<String>,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Last change.
    pub updated_at: OffsetDateTime,
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("enabled", &self.enabled)
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

/// A person to create.
#[derive(Clone)]
pub struct NewUser {
    /// Chosen by the caller, so the change's audit event can name it before the insert.
    pub id: Uuid,
    /// Unique login name.
    pub username: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Whether they may log in.
    pub enabled: bool,
    /// Labels that access policies may select them by (`label:<name>`).
    pub labels: Vec<String>,
    /// Creation time.
    pub now: OffsetDateTime,
}

impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser")
            .field("username", &self.username)
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

/// Which grants to list.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrantFilter {
    /// Only this subject's.
    pub subject: Option<Subject>,
    /// Only on this audience.
    pub audience_id: Option<Uuid>,
}

/// A user's login failure to record (lockout bookkeeping).
#[derive(Debug, Clone, Copy)]
pub struct LoginFailure {
    /// The user.
    pub user_id: Uuid,
    /// When.
    pub now: OffsetDateTime,
    /// Consecutive failures that lock the account.
    pub max_failures: i32,
    /// How long a lockout lasts.
    pub lockout: time::Duration,
}

/// A refresh-token family (one login session) to start, with its first token.
#[derive(Clone)]
pub struct NewRefreshFamily {
    /// Family id (carried by its access tokens as `fam`).
    pub id: Uuid,
    /// The user who logged in.
    pub user_id: Uuid,
    /// The client the tokens are bound to.
    pub client_id: Uuid,
    /// The audience of its access tokens.
    pub audience: String,
    /// The most a refresh may ask for (space-separated).
    pub scope: String,
    /// How the first refresh token is found and checked.
    pub key: RefreshKey,
    /// When the first token stops working unless used (idle timeout).
    pub token_expires_at: OffsetDateTime,
    /// Absolute end of the family.
    pub expires_at: OffsetDateTime,
    /// The DPoP key (RFC 7638 thumbprint) the login was bound to; every refresh must
    /// prove possession of it.
    pub jkt: Option<String>,
    /// Creation time.
    pub now: OffsetDateTime,
}

impl fmt::Debug for NewRefreshFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewRefreshFamily")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// A stored refresh-token family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshFamilyRecord {
    /// Family id.
    pub id: Uuid,
    /// The user.
    pub user_id: Uuid,
    /// The client its tokens are bound to.
    pub client_id: Uuid,
    /// The audience of its access tokens.
    pub audience: String,
    /// The most a refresh may ask for.
    pub scope: String,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Absolute end.
    pub expires_at: OffsetDateTime,
    /// When it was revoked (reuse detected, or by an admin).
    pub revoked_at: Option<OffsetDateTime>,
    /// The DPoP key its login was bound to, if any.
    pub jkt: Option<String>,
}

/// How a refresh token is found and checked. The selector is the lookup key and no
/// secret: a time-ordered value, so new rows go to the end of the index. The digest
/// (SHA-256 of the whole token) is compared in constant time after the lookup and is
/// never an index key.
#[derive(Clone, Copy)]
pub struct RefreshKey {
    /// The lookup key.
    pub selector: Uuid,
    /// SHA-256 of the token.
    pub digest: [u8; 32],
}

/// Equal keys: the digests compared in constant time, like the store's check, so that
/// no comparison of keys can leak how much of a digest matched.
impl PartialEq for RefreshKey {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq as _;
        self.selector == other.selector && bool::from(self.digest.ct_eq(&other.digest))
    }
}

impl Eq for RefreshKey {}

impl fmt::Debug for RefreshKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshKey")
            .field("selector", &self.selector)
            .finish_non_exhaustive()
    }
}

/// A stored refresh token (its digest only) with its family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    /// The family.
    pub family: RefreshFamilyRecord,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Idle timeout: unusable from then on.
    pub expires_at: OffsetDateTime,
    /// When it was used (rotated); a second use is reuse.
    pub used_at: Option<OffsetDateTime>,
    /// Whether the family's user is enabled (read with the token: a refresh needs both).
    pub user_enabled: bool,
}

/// One refresh-token rotation: the old token is marked used and the new one stored,
/// only if the old one was unused, its family is not revoked and its user is enabled.
#[derive(Clone)]
pub struct RefreshRotation {
    /// Selector of the presented token (its digest checked when it was read).
    pub old: Uuid,
    /// Its successor.
    pub new: RefreshKey,
    /// Idle timeout of the successor.
    pub expires_at: OffsetDateTime,
    /// Now.
    pub now: OffsetDateTime,
}

impl fmt::Debug for RefreshRotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshRotation")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// An audit event with the change it records, committed together
/// ([`AuditStore::append_audit_entries`](crate::AuditStore::append_audit_entries)).
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// The event.
    pub event: AuditEvent,
    /// A refresh token rotation the event records (a refresh's `token.issued`).
    pub rotation: Option<RefreshRotation>,
}

/// A revocation to record.
#[derive(Debug, Clone)]
pub struct NewRevocation {
    /// `jti`, `subject`, `client`, `grant` or `key`.
    pub kind: String,
    /// The target's id.
    pub value: String,
    /// Tokens issued before this are revoked.
    pub issued_before: OffsetDateTime,
    /// When every token it can match has expired (then it is pruned).
    pub expires_at: OffsetDateTime,
    /// Why.
    pub reason: String,
    /// Who.
    pub created_by: String,
    /// When.
    pub now: OffsetDateTime,
}

/// A stored revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationRecord {
    /// Position in the feed (increasing, never reused).
    pub seq: i64,
    /// Id.
    pub id: Uuid,
    /// `jti`, `subject`, `client`, `grant` or `key`.
    pub kind: String,
    /// The target's id.
    pub value: String,
    /// Tokens issued before this are revoked.
    pub issued_before: OffsetDateTime,
    /// Pruned after this.
    pub expires_at: OffsetDateTime,
    /// Why.
    pub reason: String,
    /// Who.
    pub created_by: String,
    /// When.
    pub created_at: OffsetDateTime,
}

/// What kind of thing a client was seen with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SightingKind {
    /// A source network (a /24 or /64).
    Network,
    /// An audience it used a token at.
    Audience,
    /// An endpoint it called: `audience METHOD /path`.
    Endpoint,
}

impl SightingKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Network => "network",
            Self::Audience => "audience",
            Self::Endpoint => "endpoint",
        }
    }
}

/// How a sighting compares with what was seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sighting {
    /// Seen before.
    Known,
    /// Never seen, and nothing else of its kind either: the start of the baseline.
    FirstOfKind,
    /// Never seen, while other values of its kind were: a surprise.
    New,
}

/// What a client does when an anomaly concerns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnomalyPolicy {
    /// Record the anomaly and call the webhook.
    #[default]
    Alert,
    /// Also revoke the token concerned (or the client's live tokens) at once.
    Revoke,
}

impl AnomalyPolicy {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alert => "alert",
            Self::Revoke => "revoke",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "alert" => Some(Self::Alert),
            "revoke" => Some(Self::Revoke),
            _ => None,
        }
    }
}

/// Who may request just-in-time access to which scopes of an audience, for how long,
/// and how such a request is decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicyRecord {
    /// Id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// The audience it covers.
    pub audience_id: Uuid,
    /// The scopes (names on that audience) it covers.
    pub scopes: Vec<String>,
    /// Who it covers: `user:<id>`, `client:<id>`, `users` (every user) or `clients`
    /// (every client). The server validates them; the store keeps them as given.
    pub subjects: Vec<String>,
    /// Longest access it allows, in seconds.
    pub max_duration_secs: i64,
    /// `auto`, `approval` or `deny`.
    pub decision: String,
    /// Distinct approvers needed (`approval` only; else 0).
    pub approvals_required: i64,
    /// Whether a requester may approve their own request in an emergency.
    pub break_glass: bool,
    /// Who created it.
    pub created_by: String,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Last change.
    pub updated_at: OffsetDateTime,
}

/// One approval of an access request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessApproval {
    /// Who approved (a user or client id).
    pub approver: String,
    /// Why.
    pub comment: String,
    /// When.
    pub at: OffsetDateTime,
}

/// A request for just-in-time access: `pending → approved | denied | cancelled |
/// expired` (an approved one may still be cancelled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRequestRecord {
    /// Id.
    pub id: Uuid,
    /// Who asks.
    pub subject: Subject,
    /// For which audience.
    pub audience_id: Uuid,
    /// Its URI.
    pub audience: String,
    /// Which scopes.
    pub scopes: Vec<String>,
    /// For how long, in seconds, from approval.
    pub duration_secs: i64,
    /// Why.
    pub reason: String,
    /// Whether the requester invoked break-glass (self-approval).
    pub break_glass: bool,
    /// `pending`, `approved`, `denied`, `cancelled` or `expired`.
    pub state: String,
    /// The policy that covered it.
    pub policy_id: Option<Uuid>,
    /// Distinct approvals needed.
    pub approvals_required: i64,
    /// Approvals so far, oldest first.
    pub approvals: Vec<AccessApproval>,
    /// The grant approval created.
    pub grant_id: Option<Uuid>,
    /// Marked for review after the fact (break-glass).
    pub needs_review: bool,
    /// When it was made.
    pub created_at: OffsetDateTime,
    /// A pending request expires at this time.
    pub pending_until: OffsetDateTime,
    /// When it left `pending` (or was cancelled).
    pub decided_at: Option<OffsetDateTime>,
    /// Who decided (approver, requester, or `system`).
    pub decided_by: Option<String>,
    /// The decision's comment.
    pub decision_comment: String,
}

/// Filters of [`AccessStore::list_access_requests`].
#[derive(Debug, Clone, Default)]
pub struct AccessRequestFilter {
    /// Only this subject's.
    pub subject: Option<Subject>,
    /// Only in this state.
    pub state: Option<String>,
    /// Only those marked (or not) for review.
    pub needs_review: Option<bool>,
}

/// A state change of an access request, applied only from `from`.
#[derive(Debug, Clone)]
pub struct AccessTransition {
    /// The request.
    pub id: Uuid,
    /// The state it must be in.
    pub from: &'static str,
    /// The state it moves to.
    pub to: &'static str,
    /// Who decides.
    pub by: String,
    /// Why.
    pub comment: String,
    /// The grant created (approval).
    pub grant_id: Option<Uuid>,
    /// Mark it for review.
    pub needs_review: bool,
    /// Now.
    pub now: OffsetDateTime,
}

/// What commits together with an admin change, in its transaction: the change's audit
/// events and the revocation it makes. Either all of it is stored or none: a failure
/// leaves nothing half done, and a retry does the whole change again.
#[derive(Debug, Clone, Default)]
pub struct ChangeEffects {
    /// Audit events of the change.
    pub audit: Vec<AuditEvent>,
    /// The revocation the change makes, if any (announced like
    /// [`crate::RevocationStore::insert_revocation`]).
    pub revocation: Option<NewRevocation>,
}

/// A trusted issuer to create: an external token issuer (a Kubernetes cluster, GitHub
/// Actions, a SPIFFE trust domain, an OpenID provider) whose tokens workloads present
/// instead of a stored secret.
#[derive(Debug, Clone)]
pub struct NewTrustedIssuer {
    /// Chosen by the caller, so the change's audit event can name it before the insert.
    pub id: Uuid,
    /// The issuer URL, exactly as tokens carry it in `iss` (already validated); unique.
    pub issuer: String,
    /// Free text.
    pub description: String,
    /// The verifier settings as JSON (mayfly-federation's `TrustedIssuerConfig`,
    /// serialized by the caller); the store keeps them opaque.
    pub settings: serde_json::Value,
    /// Creation time.
    pub now: OffsetDateTime,
}

/// A stored trusted issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedIssuerRecord {
    /// Id.
    pub id: Uuid,
    /// The issuer URL, unique. Fixed once created: identities, replay namespaces and
    /// audit events name it.
    pub issuer: String,
    /// Free text.
    pub description: String,
    /// The verifier settings as the caller stored them.
    pub settings: serde_json::Value,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Last change; the optimistic concurrency token of
    /// [`crate::FederationStore::update_trusted_issuer`].
    pub updated_at: OffsetDateTime,
}

/// A federated identity to add: tokens of one trusted issuer matching `rule` may
/// obtain tokens as `owner`.
///
/// The caller derives exactly one of `exact_subject` / `conditions_key` from `rule`;
/// the store refuses a second identity of the same issuer with the same value, even
/// when both are added at once.
#[derive(Debug, Clone)]
pub struct NewFederatedIdentity {
    /// Chosen by the caller, so the change's audit event can name it before the insert.
    pub id: Uuid,
    /// The trusted issuer whose tokens it accepts.
    pub trusted_issuer_id: Uuid,
    /// The client or user those tokens speak for.
    pub owner: Subject,
    /// The rule as JSON (mayfly-federation's `IdentityRule`); opaque to the store.
    pub rule: serde_json::Value,
    /// For a subject rule: the subject.
    pub exact_subject: Option<String>,
    /// For a claims rule: a canonical text of its condition set (equal sets, equal keys).
    pub conditions_key: Option<String>,
    /// Creation time.
    pub now: OffsetDateTime,
}

/// A stored federated identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatedIdentityRecord {
    /// Id.
    pub id: Uuid,
    /// The trusted issuer whose tokens it accepts.
    pub trusted_issuer_id: Uuid,
    /// The client or user those tokens speak for.
    pub owner: Subject,
    /// The rule as the caller stored it.
    pub rule: serde_json::Value,
    /// For a subject rule: the subject (unique per issuer).
    pub exact_subject: Option<String>,
    /// For a claims rule: its canonical condition set (unique per issuer).
    pub conditions_key: Option<String>,
    /// Creation time.
    pub created_at: OffsetDateTime,
}

/// Narrows an audit search to events about one external identity: those whose `detail`
/// carries `external.issuer` / `external.subject` (written by federated issuance and
/// its denials). `None` does not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExternalIdentityFilter {
    /// Only events whose `detail.external.issuer` is this.
    pub issuer: Option<String>,
    /// Only events whose `detail.external.subject` is this.
    pub subject: Option<String>,
}
