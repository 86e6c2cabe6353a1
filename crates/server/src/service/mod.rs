//! The service layer: admin operations on audiences, scopes, clients, secrets, users,
//! grants, revocations, access and trusted issuers with federated identities, and
//! bootstrap of the first admin. The CLI and the admin REST API call the same functions,
//! on an [`Actor`]. One verb set: `create_*`, `get_*`, `list_*`, `update_*`, `delete_*`;
//! state transitions are named for what they do (`approve_access`, `cancel_access`,
//! `expire_access_requests`, `bootstrap`). Knows no HTTP, no runtime state and no OAuth
//! (`tests/layering.rs`). Every change writes an `admin.change` audit event naming the
//! actor.

use mayfly_core::{Audience, Scope};
use mayfly_store::{
    AnomalyPolicy, AudienceRecord, ClientRecord, NewAudience, NewClient, NewClientSecret, NewScope,
    ScopeRecord, Store, StoreError, Subject,
};
use serde_json::json;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::audit::{self, kind, outcome};
use crate::client_auth::secret::ClientSecret;
use crate::config::TTL_CEILING;

pub use crate::vocab::{
    ADMIN_READ_SCOPE, ADMIN_SCOPE, ADMIN_SCOPES, INTROSPECT_SCOPE, REVOCATIONS_READ_SCOPE,
    SERVICE_SCOPES, USAGE_WRITE_SCOPE,
};
/// Most client secrets valid at once (the current one and its replacement).
pub const MAX_VALID_SECRETS: usize = 2;

/// Why an admin operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A field is invalid.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// It exists already.
    #[error("{0}")]
    Conflict(String),
    /// Refused by policy (e.g. no access policy covers a request, or a requester tries
    /// to approve their own).
    #[error("{0}")]
    Forbidden(String),
    /// The caller lacks a scope the change needs (the ceiling, or a privileged
    /// subject): 403 `insufficient_scope` naming it.
    #[error("this needs the scope {scope}: {why}")]
    InsufficientScope {
        /// The scope missing.
        scope: String,
        /// Why the change needs it.
        why: String,
    },
    /// Something referenced does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The store failed.
    #[error("store failed")]
    Store(#[source] StoreError),
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => Self::Conflict(format!("{what} already exists")),
            StoreError::NotFound(what) => Self::NotFound(what),
            StoreError::InUse(what) => Self::Conflict(format!("{what} is still used by grants")),
            StoreError::Unstorable(_) => invalid(
                "request",
                "a value holds a control character (such as NUL) that cannot be stored",
            ),
            other => Self::Store(other),
        }
    }
}

pub mod access;
mod audiences;
mod authority;
mod clients;
mod federation;
mod grants;
mod revocations;
mod users;

pub use authority::{Authority, Caller};
pub use clients::ClientChanges;
pub use federation::FederatedIdentityEntry;
pub use grants::GrantChanges;
pub use revocations::{REVOCATION_MARGIN, REVOCATION_SKEW, RevokeSpec};
pub use users::UserChanges;

/// Builds an [`AdminError::Invalid`].
pub fn invalid(field: &'static str, reason: impl Into<String>) -> AdminError {
    AdminError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Free text an admin gives (names, descriptions, reasons, revocation values): at most
/// `max_chars`, and none of the control or reordering characters that
/// [`UntrustedText`](mayfly_core::UntrustedText) escapes. Databases refuse some (Postgres
/// refuses NUL), logs and terminals interpret others; an admin's text is stored and shown
/// as it was given, so it is refused (422 naming the field) rather than escaped.
///
/// # Errors
/// [`AdminError::Invalid`] naming `field`.
pub fn free_text(field: &'static str, value: &str, max_chars: usize) -> Result<(), AdminError> {
    if value.chars().count() > max_chars {
        return Err(invalid(field, format!("at most {max_chars} characters")));
    }
    if !mayfly_core::UntrustedText::is_clean(value, max_chars) {
        return Err(invalid(
            field,
            "must not contain control or bidirectional formatting characters",
        ));
    }
    Ok(())
}

/// Most labels on one user or client.
pub const MAX_LABELS: usize = 32;

/// Whether `name` is a label: 1 to 64 characters of `a-z 0-9 . _ -`.
pub fn is_label(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

/// Validates a user's or client's labels: each [`is_label`], at most [`MAX_LABELS`]
/// once duplicates are dropped (the first occurrence keeps its place).
pub(crate) fn labels(list: &[String]) -> Result<Vec<String>, AdminError> {
    let mut out: Vec<String> = Vec::with_capacity(list.len().min(MAX_LABELS));
    for label in list {
        if !is_label(label) {
            return Err(invalid(
                "labels",
                format!(
                    "{:?} is not 1 to 64 characters of a-z 0-9 . _ -",
                    label.chars().take(80).collect::<String>()
                ),
            ));
        }
        if !out.contains(label) {
            out.push(label.clone());
        }
    }
    if out.len() > MAX_LABELS {
        return Err(invalid("labels", format!("at most {MAX_LABELS} labels")));
    }
    Ok(out)
}

/// A client and its first secret, shown once.
#[derive(Debug)]
pub struct CreatedClient {
    /// The client.
    pub client: ClientRecord,
    /// Its secret in clear.
    pub secret: ClientSecret,
}

/// A secret just added: its record and, once, its clear text.
#[derive(Debug)]
pub struct AddedSecret {
    /// What is stored (the digest).
    pub record: mayfly_store::ClientSecretRecord,
    /// The secret in clear.
    pub secret: ClientSecret,
}

/// Who acts and when: the context of every admin call.
#[derive(Clone)]
pub struct Actor<'a> {
    /// The store.
    pub store: &'a dyn Store,
    /// Who acts (an admin client id, or `cli`).
    pub id: String,
    /// Now.
    pub now: OffsetDateTime,
    /// What the caller holds, and where its request came from.
    pub caller: Caller,
}

impl std::fmt::Debug for Actor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actor")
            .field("id", &self.id)
            .field("now", &self.now)
            .field("caller", &self.caller)
            .finish_non_exhaustive()
    }
}

impl Actor<'_> {
    /// The `admin.change` event of a change, with its before and after states.
    fn change_event(
        &self,
        action: &str,
        target: String,
        before: serde_json::Value,
        after: serde_json::Value,
    ) -> mayfly_store::AuditEvent {
        let mut event = mayfly_store::AuditEvent {
            actor: Some(self.id.clone()),
            subject: Some(target),
            detail: json!({ "action": action, "before": before, "after": after }),
            ..audit::event(
                kind::ADMIN_CHANGE,
                outcome::SUCCESS,
                self.now,
                &self.caller.request,
            )
        };
        audit::sanitize(&mut event);
        event
    }

    /// What commits with a change (one transaction): its `admin.change` event and,
    /// when it ends tokens, the revocation with its own audit event.
    fn effects(
        &self,
        change: mayfly_store::AuditEvent,
        revoke: Option<RevokeSpec>,
    ) -> Result<mayfly_store::ChangeEffects, AdminError> {
        let mut effects = mayfly_store::ChangeEffects {
            audit: vec![change],
            revocation: None,
        };
        if let Some(spec) = revoke {
            let (revocation, event) = self.revocation(&spec)?;
            effects.revocation = Some(revocation);
            effects.audit.push(event);
        }
        Ok(effects)
    }

    /// Inserts a client with its `client.create` event, in one transaction.
    async fn store_new_client(&self, new: NewClient) -> Result<ClientRecord, AdminError> {
        let event = self.change_event(
            "client.create",
            new.id.to_string(),
            serde_json::Value::Null,
            clients::new_client_json(&new),
        );
        Ok(self
            .store
            .create_client(new, &self.effects(event, None)?)
            .await?)
    }

    /// Creates an audience with its scopes.
    ///
    /// # Errors
    /// [`AdminError`] for an invalid URI or scope, or when it exists.
    pub async fn create_audience(
        &self,
        uri: &str,
        description: &str,
        scopes: &[String],
    ) -> Result<(AudienceRecord, Vec<ScopeRecord>), AdminError> {
        let uri = Audience::parse(uri).map_err(|e| invalid("uri", e.to_string()))?;
        self.may_change_issuer_audience(uri.as_str())?;
        let description = audiences::description(description)?;
        for name in scopes {
            Scope::parse(name).map_err(|e| invalid("scope", e.to_string()))?;
        }
        let new = NewAudience {
            id: Uuid::now_v7(),
            uri: uri.to_string(),
            description: description.to_owned(),
            now: self.now,
        };
        let event = self.change_event(
            "audience.create",
            new.uri.clone(),
            serde_json::Value::Null,
            json!({ "id": new.id, "uri": new.uri }),
        );
        let audience = self
            .store
            .create_audience(new, &self.effects(event, None)?)
            .await?;
        let created = self.add_scopes(&audience, scopes).await?;
        Ok((audience, created))
    }

    /// Adds scopes to an existing audience.
    ///
    /// # Errors
    /// [`AdminError`] for an unknown audience, an invalid or duplicate scope.
    pub async fn create_scopes(
        &self,
        audience_uri: &str,
        scopes: &[String],
    ) -> Result<Vec<ScopeRecord>, AdminError> {
        let audience = self
            .store
            .audience_by_uri(audience_uri)
            .await?
            .ok_or(AdminError::NotFound("audience"))?;
        self.add_scopes(&audience, scopes).await
    }

    async fn add_scopes(
        &self,
        audience: &AudienceRecord,
        scopes: &[String],
    ) -> Result<Vec<ScopeRecord>, AdminError> {
        let mut created = Vec::with_capacity(scopes.len());
        for name in scopes {
            let scope = Scope::parse(name).map_err(|e| invalid("scope", e.to_string()))?;
            let new = NewScope {
                id: Uuid::now_v7(),
                audience_id: audience.id,
                name: scope.to_string(),
                description: String::new(),
                now: self.now,
            };
            let event = self.change_event(
                "scope.create",
                audience.uri.clone(),
                serde_json::Value::Null,
                json!({ "id": new.id, "name": new.name }),
            );
            let record = self
                .store
                .create_scope(new, &self.effects(event, None)?)
                .await?;
            created.push(record);
        }
        Ok(created)
    }

    /// Creates a client with a first secret.
    ///
    /// # Errors
    /// [`AdminError`] for an invalid name, lifetimes outside 1 s–1 h, or bad CIDRs.
    pub async fn create_client(&self, spec: ClientSpec) -> Result<CreatedClient, AdminError> {
        let client = self.create_bare_client(spec).await?;
        let secret = self.create_client_secret(client.id, None).await?.secret;
        Ok(CreatedClient { client, secret })
    }

    /// Creates a client with no credential at all: no secret is ever made for it. It
    /// authenticates once it gets a federated identity (workload identity federation),
    /// or a secret or key added later.
    ///
    /// # Errors
    /// [`AdminError`] as [`Actor::create_client`].
    pub async fn create_bare_client(&self, spec: ClientSpec) -> Result<ClientRecord, AdminError> {
        self.may_create_client(&spec).await?;
        let default_ttl_secs = ttl_secs("default_ttl_secs", spec.default_ttl)?;
        let max_ttl_secs = ttl_secs("max_ttl_secs", spec.max_ttl)?;
        clients::check_ttls(default_ttl_secs, max_ttl_secs)?;
        self.store_new_client(NewClient {
            id: Uuid::now_v7(),
            name: clients::client_name(&spec.name)?,
            enabled: spec.enabled,
            default_ttl_secs,
            max_ttl_secs,
            allowed_cidrs: cidrs("allowed_cidrs", &spec.allowed_cidrs)?,
            require_dpop: spec.require_dpop,
            anomaly_policy: spec.anomaly_policy,
            grant_types: clients::grant_types(&spec.grant_types)?,
            labels: labels(&spec.labels)?,
            now: self.now,
        })
        .await
    }

    /// Creates a client that authenticates with `private_key_jwt` only: it gets the given
    /// Ed25519 public keys (`(kid, x)`, at most two) and no secret at all.
    ///
    /// # Errors
    /// [`AdminError`] as [`Actor::create_client`], or for unusable or too many keys.
    pub async fn create_keyed_client(
        &self,
        spec: ClientSpec,
        keys: &[(Option<String>, [u8; 32])],
    ) -> Result<(ClientRecord, Vec<mayfly_store::ClientPublicKeyRecord>), AdminError> {
        if keys.is_empty() || keys.len() > clients::MAX_PUBLIC_KEYS {
            return Err(invalid(
                "public_keys",
                format!("give 1 to {} keys", clients::MAX_PUBLIC_KEYS),
            ));
        }
        // Check every key before anything is created.
        let mut kids = Vec::new();
        for (kid, x) in keys {
            let kid = clients::check_public_key(kid.as_deref(), x)?;
            if kids.contains(&kid) {
                return Err(invalid("kid", "two keys with the same kid"));
            }
            kids.push(kid);
        }
        let client = self.create_bare_client(spec).await?;
        let mut records = Vec::with_capacity(keys.len());
        for (kid, x) in keys {
            records.push(
                self.create_client_public_key(client.id, kid.as_deref(), *x)
                    .await?,
            );
        }
        Ok((client, records))
    }

    /// Adds a secret to a client; at most [`MAX_VALID_SECRETS`] may be valid at once.
    ///
    /// # Errors
    /// [`AdminError`] for an unknown client, a past expiry, or too many valid secrets;
    /// [`AdminError::InsufficientScope`] for a privileged client.
    pub async fn create_client_secret(
        &self,
        client_id: Uuid,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<AddedSecret, AdminError> {
        self.may_change_client(client_id, None).await?;
        if expires_at.is_some_and(|t| t <= self.now) {
            return Err(invalid("expires_at", "must be in the future"));
        }
        let valid = self
            .store
            .client_secrets(client_id)
            .await?
            .iter()
            .filter(|s| s.is_valid_at(self.now))
            .count();
        if valid >= MAX_VALID_SECRETS {
            return Err(AdminError::Conflict(format!(
                "the client already has {MAX_VALID_SECRETS} valid secrets; delete or expire one first"
            )));
        }
        let secret = ClientSecret::generate();
        let new = NewClientSecret {
            id: Uuid::now_v7(),
            client_id,
            digest: secret.digest(),
            expires_at,
            now: self.now,
        };
        let event = self.change_event(
            "client.secret.add",
            client_id.to_string(),
            serde_json::Value::Null,
            json!({ "secret_id": new.id, "expires_at": expires_at.map(|t| t.unix_timestamp()) }),
        );
        let record = self
            .store
            .add_client_secret(new, &self.effects(event, None)?)
            .await?;
        Ok(AddedSecret { record, secret })
    }

    /// Enables or disables a client. Disabling stops new issuance at once.
    ///
    /// # Errors
    /// [`AdminError::NotFound`] for an unknown client.
    pub async fn update_client_enabled(
        &self,
        client_id: Uuid,
        enabled: bool,
    ) -> Result<(), AdminError> {
        let event = self.change_event(
            if enabled {
                "client.enable"
            } else {
                "client.disable"
            },
            client_id.to_string(),
            serde_json::Value::Null,
            json!({ "enabled": enabled }),
        );
        self.store
            .set_client_enabled(client_id, enabled, self.now, &self.effects(event, None)?)
            .await?;
        Ok(())
    }

    /// Creates the first admin: the issuer's own audience with `mayfly:admin`, a client,
    /// and a grant. Refused once the issuer audience exists.
    ///
    /// # Errors
    /// [`AdminError::Conflict`] when already bootstrapped.
    pub async fn bootstrap(&self, issuer: &str) -> Result<CreatedClient, AdminError> {
        if self.store.audience_by_uri(issuer).await?.is_some() {
            return Err(AdminError::Conflict(format!(
                "already bootstrapped (audience {issuer} exists); create further admins with `mayfly admin client create` and `mayfly admin grant create`"
            )));
        }
        let scopes: Vec<String> = ADMIN_SCOPES
            .iter()
            .chain(SERVICE_SCOPES)
            .map(|s| (*s).to_owned())
            .collect();
        self.create_audience(issuer, "Mayfly admin API", &scopes)
            .await?;
        let created = self
            .create_client(ClientSpec::named("mayfly-admin"))
            .await?;
        self.create_grant(GrantSpec {
            reason: "bootstrap".into(),
            ..GrantSpec::new(Subject::Client(created.client.id), issuer, &[ADMIN_SCOPE])
        })
        .await?;
        Ok(created)
    }
}

/// A client to create.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    /// Display name.
    pub name: String,
    /// Whether it may obtain tokens.
    pub enabled: bool,
    /// Default token lifetime.
    pub default_ttl: Option<Duration>,
    /// Longest token lifetime.
    pub max_ttl: Option<Duration>,
    /// Networks it may call from (empty: anywhere).
    pub allowed_cidrs: Vec<String>,
    /// Whether its tokens must be DPoP-bound.
    pub require_dpop: bool,
    /// What an anomaly concerning it triggers.
    pub anomaly_policy: AnomalyPolicy,
    /// Grant types it may use (RFC 7591 `grant_types`); `refresh_token` lets it receive
    /// refresh tokens on user logins.
    pub grant_types: Vec<String>,
    /// Labels that access policies may select it by (`label:<name>`).
    pub labels: Vec<String>,
}

impl ClientSpec {
    /// An enabled client with default settings (client_credentials only).
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            enabled: true,
            default_ttl: None,
            max_ttl: None,
            allowed_cidrs: Vec::new(),
            require_dpop: false,
            anomaly_policy: AnomalyPolicy::Alert,
            grant_types: vec![crate::vocab::CLIENT_CREDENTIALS.to_owned()],
            labels: Vec::new(),
        }
    }
}

/// A grant to create.
#[derive(Debug, Clone)]
pub struct GrantSpec {
    /// Who receives it.
    pub subject: Subject,
    /// The audience URI.
    pub audience: String,
    /// Scope names on that audience.
    pub scopes: Vec<String>,
    /// Not in force before.
    pub not_before: Option<OffsetDateTime>,
    /// Not in force from.
    pub expires_at: Option<OffsetDateTime>,
    /// Networks tokens under it may be used from (CIDR notation; empty: anywhere).
    pub allowed_cidrs: Vec<String>,
    /// Longest token lifetime under it.
    pub max_ttl: Option<Duration>,
    /// Clients or users that may act for the subject under it (RFC 8693 delegation).
    pub may_act: Vec<Uuid>,
    /// Why.
    pub reason: String,
}

impl GrantSpec {
    /// A grant of `scopes` on `audience` to `subject`, with no window or limits.
    pub fn new(subject: Subject, audience: &str, scopes: &[&str]) -> Self {
        Self {
            subject,
            audience: audience.to_owned(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            not_before: None,
            expires_at: None,
            allowed_cidrs: Vec::new(),
            max_ttl: None,
            may_act: Vec::new(),
            reason: String::new(),
        }
    }
}

/// Validates a list of CIDRs (`10.0.0.0/8`, `2001:db8::/32`, or a bare address).
fn cidrs(field: &'static str, list: &[String]) -> Result<Vec<String>, AdminError> {
    if list.len() > 64 {
        return Err(invalid(field, "at most 64 networks"));
    }
    list.iter()
        .map(|text| {
            let net: ipnet::IpNet = text
                .parse()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    invalid(
                        field,
                        format!(
                            "{:?} is not an IP network in CIDR notation",
                            text.chars().take(64).collect::<String>()
                        ),
                    )
                })?;
            Ok(net.trunc().to_string())
        })
        .collect()
}

fn ttl_secs(field: &'static str, ttl: Option<Duration>) -> Result<Option<i64>, AdminError> {
    match ttl {
        None => Ok(None),
        Some(t) if t >= Duration::SECOND && t <= TTL_CEILING => Ok(Some(t.whole_seconds())),
        Some(_) => Err(invalid(field, "must be between 1s and 3600s")),
    }
}
