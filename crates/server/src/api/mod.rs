//! The admin API's wire types, in one place: the REST handlers (`http/admin`), the
//! command line (`cli/`) and the webhook and anomaly notices (the service layer) all
//! speak them. Request types reject unknown fields; times are RFC 3339. Pure data: no
//! HTTP, no service calls (utoipa schema names are these type names).

pub mod access;
pub mod audit;
pub mod federation;
pub mod keys;

pub use access::*;
pub use audit::*;
pub use federation::*;
pub use keys::*;

use mayfly_store::{
    AnomalyPolicy, AudienceRecord, ClientPublicKeyRecord, ClientRecord, ClientSecretRecord,
    GrantRecord, KeyState, ScopeRecord, SigningKeyRecord, Subject, UserRecord,
};
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// One page of a listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct Paged<T> {
    /// The items, in creation order.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `limit` and `cursor` of a listing.
#[derive(Debug, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Items per page, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// `Some(value)` when the field is present (even as `null`), `None` when absent: lets
/// PATCH tell "clear this" from "leave it".
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// An RFC 3339 time in a request.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, format = DateTime)]
pub struct Time(#[serde(with = "time::serde::rfc3339")] pub OffsetDateTime);

// ---- audiences and scopes ----

/// An audience (resource server).
#[derive(Debug, Serialize, ToSchema)]
pub struct AudienceOut {
    /// Id.
    pub id: Uuid,
    /// The URI tokens carry as `aud`.
    pub uri: String,
    /// Free text.
    pub description: String,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<AudienceRecord> for AudienceOut {
    fn from(a: AudienceRecord) -> Self {
        Self {
            id: a.id,
            uri: a.uri,
            description: a.description,
            created_at: a.created_at,
        }
    }
}

/// An audience to create.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAudienceIn {
    /// Absolute URI without fragment, e.g. `https://api.example.com/orders`.
    #[schema(
        pattern = r"^[A-Za-z][A-Za-z0-9+.-]*:[!-\x22\x24-~]+$",
        max_length = 2048
    )]
    pub uri: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Scopes to create on it at once.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// Changes to an audience or scope.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DescriptionPatch {
    /// New description.
    pub description: String,
}

/// A scope.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScopeOut {
    /// Id.
    pub id: Uuid,
    /// The audience it belongs to.
    pub audience_id: Uuid,
    /// `resource:action`.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<ScopeRecord> for ScopeOut {
    fn from(s: ScopeRecord) -> Self {
        Self {
            id: s.id,
            audience_id: s.audience_id,
            name: s.name,
            description: s.description,
            created_at: s.created_at,
        }
    }
}

/// A scope to create.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewScopeIn {
    /// The owning audience.
    pub audience_id: Uuid,
    /// `resource:action`, e.g. `orders:read`.
    #[schema(pattern = r"^[A-Za-z0-9._-]+(:[A-Za-z0-9._-]+)+$", max_length = 128)]
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
}

// ---- clients ----

/// A client (workload).
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientOut {
    /// The client id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Whether it may obtain tokens.
    pub enabled: bool,
    /// Default token lifetime in seconds.
    pub default_ttl_secs: Option<i64>,
    /// Longest token lifetime in seconds.
    pub max_ttl_secs: Option<i64>,
    /// Networks it may call from (empty: anywhere).
    pub allowed_cidrs: Vec<String>,
    /// Whether its tokens must be DPoP-bound.
    pub require_dpop: bool,
    /// What an anomaly concerning it triggers.
    pub anomaly_policy: Policy,
    /// Grant types it may use (RFC 7591 `grant_types`).
    pub grant_types: Vec<String>,
    /// Labels that access policies may select it by (`label:<name>`).
    pub labels: Vec<String>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<ClientRecord> for ClientOut {
    fn from(c: ClientRecord) -> Self {
        Self {
            id: c.id,
            name: c.name,
            enabled: c.enabled,
            default_ttl_secs: c.default_ttl_secs,
            max_ttl_secs: c.max_ttl_secs,
            allowed_cidrs: c.allowed_cidrs,
            require_dpop: c.require_dpop,
            anomaly_policy: c.anomaly_policy.into(),
            grant_types: c.grant_types,
            labels: c.labels,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// A client just created, with its first secret: shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientCreated {
    /// The client.
    #[serde(flatten)]
    pub client: ClientOut,
    /// Its first secret (`mfy_cs_…`). Store it now: it cannot be shown again. Absent for
    /// a client created with public keys or with `secret: false`: it has no secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// The public keys it was created with (private_key_jwt).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub public_keys: Vec<PublicKeyOut>,
}

/// A client to create.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewClientIn {
    /// Display name.
    pub name: String,
    /// Whether it may obtain tokens (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Default token lifetime in seconds (1–3600).
    #[schema(minimum = 1, maximum = 3600)]
    pub default_ttl_secs: Option<i64>,
    /// Longest token lifetime in seconds (1–3600).
    #[schema(minimum = 1, maximum = 3600)]
    pub max_ttl_secs: Option<i64>,
    /// Networks it may call from, CIDR notation (empty: anywhere).
    #[serde(default)]
    pub allowed_cidrs: Vec<String>,
    /// Whether its tokens must be DPoP-bound.
    #[serde(default)]
    pub require_dpop: bool,
    /// What an anomaly concerning it triggers (default `alert`).
    #[serde(default)]
    pub anomaly_policy: Policy,
    /// Ed25519 public keys (at most two) for private_key_jwt. When given, the client
    /// gets no secret: it can authenticate only with its keys.
    #[serde(default)]
    #[schema(max_items = 2)]
    pub public_keys: Vec<OkpJwk>,
    /// Whether the client gets a first secret (default: yes, unless `public_keys` are
    /// given). `false` creates a client with no credential at all, for a workload that
    /// will authenticate with a federated identity: no secret ever exists to leak.
    #[serde(default)]
    pub secret: Option<bool>,
    /// Grant types it may use (RFC 7591 `grant_types`): `client_credentials` (the
    /// default), `password`, `refresh_token` (lets it receive refresh tokens on user
    /// logins), `urn:ietf:params:oauth:grant-type:token-exchange`.
    #[serde(default = "default_grant_types")]
    #[schema(example = json!(["client_credentials"]))]
    pub grant_types: Vec<String>,
    /// Labels that access policies may select it by (`label:<name>`): at most 32,
    /// each 1–64 characters of `a-z 0-9 . _ -`; duplicates are dropped.
    #[serde(default)]
    #[schema(max_items = 32, example = json!(["oncall"]))]
    pub labels: Vec<String>,
}

/// What an anomaly (new network, new audience or endpoint, burst of failures) triggers:
/// `alert` records it and calls the webhook; `revoke` also revokes the token concerned,
/// or the client's live tokens, at once.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Record and notify.
    #[default]
    Alert,
    /// Record, notify and revoke.
    Revoke,
}

impl From<AnomalyPolicy> for Policy {
    fn from(p: AnomalyPolicy) -> Self {
        match p {
            AnomalyPolicy::Alert => Self::Alert,
            AnomalyPolicy::Revoke => Self::Revoke,
        }
    }
}

impl From<Policy> for AnomalyPolicy {
    fn from(p: Policy) -> Self {
        match p {
            Policy::Alert => Self::Alert,
            Policy::Revoke => Self::Revoke,
        }
    }
}

fn yes() -> bool {
    true
}

fn default_grant_types() -> Vec<String> {
    vec![crate::vocab::CLIENT_CREDENTIALS.to_owned()]
}

/// Changes to a client; absent fields stay, `null` clears a lifetime.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientPatch {
    /// New name.
    pub name: Option<String>,
    /// Enable or disable (disabling stops issuance at once).
    pub enabled: Option<bool>,
    /// New default lifetime in seconds, or null.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 3600)]
    pub default_ttl_secs: Option<Option<i64>>,
    /// New longest lifetime in seconds, or null.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 3600)]
    pub max_ttl_secs: Option<Option<i64>>,
    /// New networks.
    pub allowed_cidrs: Option<Vec<String>>,
    /// Require DPoP.
    pub require_dpop: Option<bool>,
    /// New anomaly policy.
    pub anomaly_policy: Option<Policy>,
    /// New grant types.
    pub grant_types: Option<Vec<String>>,
    /// New labels, replacing the old ones (at most 32, each 1–64 characters of
    /// `a-z 0-9 . _ -`; duplicates are dropped).
    #[schema(max_items = 32, example = json!(["oncall"]))]
    pub labels: Option<Vec<String>>,
}

/// A client secret's metadata (never the secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretOut {
    /// Id, for deletion.
    pub id: Uuid,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Expiry, if any.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

impl From<ClientSecretRecord> for SecretOut {
    fn from(s: ClientSecretRecord) -> Self {
        Self {
            id: s.id,
            created_at: s.created_at,
            expires_at: s.expires_at,
        }
    }
}

/// A secret just added: shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretCreated {
    /// Id, for deletion.
    pub id: Uuid,
    /// The secret (`mfy_cs_…`).
    pub client_secret: String,
    /// Expiry, if any.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

/// A secret to add.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSecretIn {
    /// When it stops working (for rotation: give the old one an expiry).
    pub expires_at: Option<Time>,
}

/// An Ed25519 public key as an OKP JWK (RFC 8037).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OkpJwk {
    /// `OKP`.
    #[schema(pattern = "^OKP$")]
    pub kty: String,
    /// `Ed25519`.
    #[schema(pattern = "^Ed25519$")]
    pub crv: String,
    /// base64url of the 32-byte key.
    pub x: String,
    /// Key id; defaults to the RFC 7638 thumbprint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
}

/// A registered public key.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicKeyOut {
    /// Id, for deletion.
    pub id: Uuid,
    /// Key id as JWT headers name it.
    pub kid: String,
    /// The key.
    pub jwk: OkpJwk,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<ClientPublicKeyRecord> for PublicKeyOut {
    fn from(k: ClientPublicKeyRecord) -> Self {
        use base64::Engine as _;
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&k.public_key);
        Self {
            id: k.id,
            jwk: OkpJwk {
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                x,
                kid: Some(k.kid.clone()),
            },
            kid: k.kid,
            created_at: k.created_at,
        }
    }
}

// ---- users ----

/// A user (a person).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserOut {
    /// Id.
    pub id: Uuid,
    /// Login name.
    pub username: String,
    /// Whether they may log in.
    pub enabled: bool,
    /// Locked out until then, after repeated failures.
    #[serde(with = "time::serde::rfc3339::option")]
    pub locked_until: Option<OffsetDateTime>,
    /// Labels that access policies may select them by (`label:<name>`).
    pub labels: Vec<String>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<UserRecord> for UserOut {
    fn from(u: UserRecord) -> Self {
        Self {
            id: u.id,
            username: u.username,
            enabled: u.enabled,
            locked_until: u.locked_until,
            labels: u.labels,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// A user to create.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserIn {
    /// Login name: 1–64 of A-Z a-z 0-9 . _ - @.
    #[schema(pattern = "^[A-Za-z0-9._@-]{1,64}$")]
    pub username: String,
    /// 12–1024 characters; stored only as an argon2id hash.
    #[schema(min_length = 12, max_length = 1024)]
    pub password: String,
    /// Whether they may log in (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Labels that access policies may select them by (`label:<name>`): at most 32,
    /// each 1–64 characters of `a-z 0-9 . _ -`; duplicates are dropped.
    #[serde(default)]
    #[schema(max_items = 32, example = json!(["oncall"]))]
    pub labels: Vec<String>,
}

/// Changes to a user.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// A new password (also clears a lockout).
    #[schema(min_length = 12, max_length = 1024)]
    pub password: Option<String>,
    /// Enable or disable.
    pub enabled: Option<bool>,
    /// New labels, replacing the old ones (at most 32, each 1–64 characters of
    /// `a-z 0-9 . _ -`; duplicates are dropped).
    #[schema(max_items = 32, example = json!(["oncall"]))]
    pub labels: Option<Vec<String>>,
}

// ---- grants ----

/// Who a grant is for.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubjectRef {
    /// `client` or `user`.
    pub kind: SubjectKind,
    /// The client or user id.
    pub id: Uuid,
}

/// A subject's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SubjectKind {
    /// A workload.
    Client,
    /// A person.
    User,
}

impl From<SubjectRef> for Subject {
    fn from(s: SubjectRef) -> Self {
        match s.kind {
            SubjectKind::Client => Self::Client(s.id),
            SubjectKind::User => Self::User(s.id),
        }
    }
}

impl From<Subject> for SubjectRef {
    fn from(s: Subject) -> Self {
        match s {
            Subject::Client(id) => Self {
                kind: SubjectKind::Client,
                id,
            },
            Subject::User(id) => Self {
                kind: SubjectKind::User,
                id,
            },
        }
    }
}

/// A grant.
#[derive(Debug, Serialize, ToSchema)]
pub struct GrantOut {
    /// Id.
    pub id: Uuid,
    /// Who receives it.
    pub subject: SubjectRef,
    /// On which audience.
    pub audience_id: Uuid,
    /// The scopes, sorted.
    pub scopes: Vec<String>,
    /// Not in force before.
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_before: Option<OffsetDateTime>,
    /// Not in force from.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Networks tokens under it may be used from.
    pub allowed_cidrs: Vec<String>,
    /// Longest token lifetime in seconds.
    pub max_ttl_secs: Option<i64>,
    /// Clients or users that may act for the subject under it (RFC 8693 delegation).
    pub may_act: Vec<Uuid>,
    /// Why it exists.
    pub reason: String,
    /// Who created it.
    pub created_by: String,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<GrantRecord> for GrantOut {
    fn from(g: GrantRecord) -> Self {
        Self {
            id: g.id,
            subject: g.subject.into(),
            audience_id: g.audience_id,
            scopes: g.scopes,
            not_before: g.not_before,
            expires_at: g.expires_at,
            allowed_cidrs: g.allowed_cidrs,
            max_ttl_secs: g.max_ttl_secs,
            may_act: g.may_act,
            reason: g.reason,
            created_by: g.created_by,
            created_at: g.created_at,
        }
    }
}

/// A grant to create.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGrantIn {
    /// Who receives it.
    pub subject: SubjectRef,
    /// The audience URI.
    pub audience: String,
    /// Scope names on that audience.
    #[schema(min_items = 1)]
    pub scopes: Vec<String>,
    /// Not in force before.
    pub not_before: Option<Time>,
    /// Not in force from.
    pub expires_at: Option<Time>,
    /// Networks tokens under it may be used from.
    #[serde(default)]
    pub allowed_cidrs: Vec<String>,
    /// Longest token lifetime in seconds.
    #[schema(minimum = 1, maximum = 3600)]
    pub max_ttl_secs: Option<i64>,
    /// Clients or users that may act for the subject under it: with a token of their
    /// own as `actor_token`, they may exchange the subject's token for a delegated one
    /// (RFC 8693, `act` claim) covering this grant's scopes.
    #[serde(default)]
    #[schema(max_items = 64)]
    pub may_act: Vec<Uuid>,
    /// Why it exists.
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub reason: String,
}

/// Changes to a grant; absent fields stay, `null` clears.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantPatch {
    /// New start of the window, or null.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub not_before: Option<Option<Time>>,
    /// New end of the window, or null (ending it now stops issuance at once).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Option<Time>>,
    /// New networks.
    pub allowed_cidrs: Option<Vec<String>>,
    /// New longest lifetime in seconds, or null.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i64>)]
    pub max_ttl_secs: Option<Option<i64>>,
    /// New reason.
    pub reason: Option<String>,
    /// New list of who may act for the subject (removing one revokes the grant's tokens).
    #[schema(max_items = 64)]
    pub may_act: Option<Vec<Uuid>>,
}

/// Grant listing filters.
#[derive(Debug, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GrantParams {
    /// Only grants of this kind of subject (with `subject_id`).
    pub subject_kind: Option<SubjectKind>,
    /// Only grants of this subject.
    pub subject_id: Option<Uuid>,
    /// Only grants on this audience.
    pub audience_id: Option<Uuid>,
    /// Items per page, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Scope listing filters.
#[derive(Debug, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ScopeParams {
    /// Only scopes of this audience.
    pub audience_id: Option<Uuid>,
    /// Items per page, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

// ---- keys ----

/// A signing key (public facts only).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyOut {
    /// PASERK `k4.pid`.
    pub id: String,
    /// `next`, `active`, `retired` or `gone`.
    pub state: String,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it started signing.
    #[serde(with = "time::serde::rfc3339::option")]
    pub activated_at: Option<OffsetDateTime>,
    /// When it stopped signing.
    #[serde(with = "time::serde::rfc3339::option")]
    pub retired_at: Option<OffsetDateTime>,
}

impl From<SigningKeyRecord> for KeyOut {
    fn from(k: SigningKeyRecord) -> Self {
        let state: KeyState = k.state;
        Self {
            id: k.id,
            state: state.as_str().into(),
            created_at: k.created_at,
            activated_at: k.activated_at,
            retired_at: k.retired_at,
        }
    }
}

// ---- revocations ----

/// A revocation to make.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRevocationIn {
    /// What to revoke: one token (`jti`), or every token of a `subject`, `client`,
    /// `grant`, signing `key` or refresh-token `family`.
    pub kind: mayfly_core::revocation::RevocationKind,
    /// The jti, subject id, client id, grant id or key id (`k4.pid.…`).
    #[schema(min_length = 1, max_length = 256)]
    pub value: String,
    /// Revoke tokens issued before this time (not in the future). Default: now, plus 2 s
    /// for a subject, client, grant or family (tokens other replicas may sign before
    /// they see the change). A `key` revocation ignores it: every token the key signed
    /// is revoked.
    pub issued_before: Option<Time>,
    /// Why.
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub reason: String,
}

/// A recorded revocation.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevocationOut {
    /// Its feed entry.
    #[serde(flatten)]
    pub entry: mayfly_core::wire::RevocationEntry,
    /// Id.
    pub id: Uuid,
    /// Why.
    pub reason: String,
    /// Who.
    pub created_by: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl RevocationOut {
    /// The admin view of a stored revocation.
    pub fn from_record(r: mayfly_store::RevocationRecord) -> Option<Self> {
        Some(Self {
            entry: entry(&r)?,
            id: r.id,
            reason: r.reason,
            created_by: r.created_by,
            created_at: r.created_at,
        })
    }
}

/// A stored revocation as a feed entry; `None` for a kind this server does not know.
pub fn entry(
    record: &mayfly_store::RevocationRecord,
) -> Option<mayfly_core::wire::RevocationEntry> {
    Some(mayfly_core::wire::RevocationEntry {
        cursor: record.seq.to_string(),
        kind: mayfly_core::revocation::RevocationKind::parse(&record.kind)?,
        value: record.value.clone(),
        issued_before: record.issued_before,
        expires_at: record.expires_at,
    })
}
