//! The Postgres store: production, shareable by several replicas.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Postgres, Row, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::ChangeEffects;
use crate::error::SqlxResultExt;
use crate::{
    AccessApproval, AccessPolicyRecord, AccessRequestFilter, AccessRequestRecord, AccessStore,
    AccessTransition,
};
use crate::{AnomalyPolicy, Sighting, SightingKind, SightingStore};
use crate::{
    AudienceRecord, AudienceStore, AuditEvent, AuditQuery, AuditStore, Backend, ClientRecord,
    ClientSecretRecord, ClientStore, ClientView, GrantRecord, GrantStore, KeyChange, KeyState,
    KeyStep, KeyStore, NewAudience, NewClient, NewClientSecret, NewGrant, NewScope, NewSigningKey,
    RewrappedKey, ScopeRecord, SigningKeyRecord, Store, StoreError, StoreResult, Subject,
    SubjectGrant, active_key, next_key,
};
use crate::{
    ClientPublicKeyRecord, GrantFilter, NewClientPublicKey, NewUser, Page, UserRecord, UserStore,
};
use crate::{
    LoginFailure, NewRefreshFamily, RefreshFamilyRecord, RefreshRotation, RefreshStore,
    RefreshTokenRecord,
};
use crate::{NewRevocation, ReplayStore, RevocationRecord, RevocationStore};

/// Audit events per INSERT statement: 14 parameters each, well under Postgres's 65,535.
const AUDIT_CHUNK: usize = 1000;

/// Advisory lock key serializing revocation inserts ("mayflyr").
const REVOCATION_LOCK: i64 = 0x006d_6179_666c_7972;
/// `NOTIFY` channel announcing new revocations.
const REVOCATION_CHANNEL: &str = "mayfly_revocations";

/// Advisory lock key serializing signing-key changes across replicas ("mayflyk").
const KEY_LOCK: i64 = 0x006d_6179_666c_796b;

/// A Postgres-backed [`Store`].
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    changes: Arc<AtomicU64>,
    /// The revocation signal, once someone asked for it.
    signal: Arc<tokio::sync::Mutex<Option<Arc<tokio::sync::Notify>>>>,
}

impl PgStore {
    /// Connects lazily: the pool opens connections on first use, so a database that is
    /// down at start-up surfaces as [`StoreError::Unavailable`] on the first call.
    ///
    /// # Errors
    /// [`StoreError::InvalidUrl`] when the URL cannot be parsed.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options: PgConnectOptions = url.parse().map_err(|_| StoreError::InvalidUrl)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .min_connections(0)
            // Fail fast when the database is down, so callers can answer 503 quickly.
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy_with(options);
        Ok(Self {
            pool,
            changes: Arc::default(),
            signal: Arc::default(),
        })
    }

    /// The pool, for tests and tools in this crate.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl PgStore {
    /// Records a committed change to issuance data (see [`Store::local_changes`]).
    fn changed(&self) {
        self.changes.fetch_add(1, Ordering::Release);
    }

    /// After a commit: nothing to do (the revocation's `NOTIFY` went out with it).
    fn announce(&self, _effects: &ChangeEffects) {}

    /// Deletes a client or user together with its grants, in one transaction.
    async fn delete_subject(&self, subject: Subject, effects: &ChangeEffects) -> StoreResult<()> {
        let (entity, delete_row) = match subject {
            Subject::Client(_) => ("client", "DELETE FROM clients WHERE id = $1"),
            Subject::User(_) => ("user", "DELETE FROM users WHERE id = $1"),
        };
        let mut tx = self.pool.begin().await.or_store(entity)?;
        sqlx::query("DELETE FROM grants WHERE subject_kind = $1 AND subject_id = $2")
            .bind(subject.kind())
            .bind(subject.id())
            .execute(&mut *tx)
            .await
            .or_store(entity)?;
        if let Subject::Client(id) = subject {
            sqlx::query("DELETE FROM client_sightings WHERE client_id = $1")
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .or_store(entity)?;
        }
        let done = sqlx::query(delete_row)
            .bind(subject.id())
            .execute(&mut *tx)
            .await
            .or_store(entity)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(entity));
        }
        commit_effects(&mut tx, effects).await?;
        tx.commit().await.or_store(entity)?;
        self.changed();
        self.announce(effects);
        Ok(())
    }
}

fn audience(row: &PgRow) -> Result<AudienceRecord, sqlx::Error> {
    Ok(AudienceRecord {
        id: row.try_get("id")?,
        uri: row.try_get("uri")?,
        description: row.try_get("description")?,
        created_at: row.try_get("created_at")?,
    })
}

fn scope(row: &PgRow) -> Result<ScopeRecord, sqlx::Error> {
    Ok(ScopeRecord {
        id: row.try_get("id")?,
        audience_id: row.try_get("audience_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        created_at: row.try_get("created_at")?,
    })
}

fn policy(stored: String) -> Result<AnomalyPolicy, sqlx::Error> {
    AnomalyPolicy::parse(&stored)
        .ok_or_else(|| sqlx::Error::Decode("unknown anomaly_policy".into()))
}

fn client(row: &PgRow) -> Result<ClientRecord, sqlx::Error> {
    let Json(allowed_cidrs) = row.try_get::<Json<Vec<String>>, _>("allowed_cidrs")?;
    let Json(grant_types) = row.try_get::<Json<Vec<String>>, _>("grant_types")?;
    let Json(labels) = row.try_get::<Json<Vec<String>>, _>("labels")?;
    Ok(ClientRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        enabled: row.try_get("enabled")?,
        default_ttl_secs: row.try_get("default_ttl_secs")?,
        max_ttl_secs: row.try_get("max_ttl_secs")?,
        allowed_cidrs,
        require_dpop: row.try_get("require_dpop")?,
        anomaly_policy: policy(row.try_get("anomaly_policy")?)?,
        grant_types,
        labels,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn secret(row: &PgRow) -> StoreResult<ClientSecretRecord> {
    let digest: Vec<u8> = row.try_get("digest").or_store("client secret")?;
    Ok(ClientSecretRecord {
        id: row.try_get("id").or_store("client secret")?,
        client_id: row.try_get("client_id").or_store("client secret")?,
        digest: digest
            .try_into()
            .map_err(|_| StoreError::Corrupt("client_secrets.digest"))?,
        created_at: row.try_get("created_at").or_store("client secret")?,
        expires_at: row.try_get("expires_at").or_store("client secret")?,
    })
}

/// Reads a grant row without its scopes.
fn grant(row: &PgRow) -> StoreResult<GrantRecord> {
    let kind: String = row.try_get("subject_kind").or_store("grant")?;
    let subject_id: Uuid = row.try_get("subject_id").or_store("grant")?;
    let Json(allowed_cidrs) = row
        .try_get::<Json<Vec<String>>, _>("allowed_cidrs")
        .or_store("grant")?;
    let Json(may_act) = row
        .try_get::<Json<Vec<Uuid>>, _>("may_act")
        .or_store("grant")?;
    Ok(GrantRecord {
        id: row.try_get("id").or_store("grant")?,
        subject: Subject::from_parts(&kind, subject_id)
            .ok_or(StoreError::Corrupt("grants.subject_kind"))?,
        audience_id: row.try_get("audience_id").or_store("grant")?,
        scopes: Vec::new(),
        not_before: row.try_get("not_before").or_store("grant")?,
        expires_at: row.try_get("expires_at").or_store("grant")?,
        allowed_cidrs,
        max_ttl_secs: row.try_get("max_ttl_secs").or_store("grant")?,
        may_act,
        reason: row.try_get("reason").or_store("grant")?,
        created_by: row.try_get("created_by").or_store("grant")?,
        created_at: row.try_get("created_at").or_store("grant")?,
    })
}

fn signing_key(row: &PgRow) -> StoreResult<SigningKeyRecord> {
    let state: String = row.try_get("state").or_store("signing key")?;
    Ok(SigningKeyRecord {
        id: row.try_get("id").or_store("signing key")?,
        state: KeyState::parse(&state).ok_or(StoreError::Corrupt("signing_keys.state"))?,
        public_key: row.try_get("public_key").or_store("signing key")?,
        private_key_enc: row.try_get("private_key_enc").or_store("signing key")?,
        created_at: row.try_get("created_at").or_store("signing key")?,
        published_at: row.try_get("published_at").or_store("signing key")?,
        activated_at: row.try_get("activated_at").or_store("signing key")?,
        rotate_requested_at: row.try_get("rotate_requested_at").or_store("signing key")?,
        retired_at: row.try_get("retired_at").or_store("signing key")?,
        removes_at: row.try_get("removes_at").or_store("signing key")?,
        removed_at: row.try_get("removed_at").or_store("signing key")?,
        revoked_at: row.try_get("revoked_at").or_store("signing key")?,
    })
}

/// Appends audit events on `conn`: one multi-row INSERT, one round trip.
async fn insert_audit_events(conn: &mut PgConnection, events: &[AuditEvent]) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut builder = sqlx::QueryBuilder::<sqlx::Postgres>::new(
        "INSERT INTO audit_events (id, occurred_at, event_type, outcome, actor, subject, client_id, jti, audience, scopes, source_ip, user_agent, request_id, detail) ",
    );
    builder.push_values(events, |mut b, e| {
        b.push_bind(e.id)
            .push_bind(e.occurred_at)
            .push_bind(&e.event_type)
            .push_bind(&e.outcome)
            .push_bind(&e.actor)
            .push_bind(&e.subject)
            .push_bind(&e.client_id)
            .push_bind(&e.jti)
            .push_bind(&e.audience)
            .push_bind(&e.scopes)
            .push_bind(&e.source_ip)
            .push_bind(&e.user_agent)
            .push_bind(&e.request_id)
            .push_bind(Json(&e.detail));
    });
    builder
        .build()
        .execute(conn)
        .await
        .or_store("audit event")?;
    Ok(())
}

fn audit_event(row: &PgRow) -> Result<AuditEvent, sqlx::Error> {
    let Json(detail) = row.try_get::<Json<serde_json::Value>, _>("detail")?;
    Ok(AuditEvent {
        id: row.try_get("id")?,
        occurred_at: row.try_get("occurred_at")?,
        event_type: row.try_get("event_type")?,
        outcome: row.try_get("outcome")?,
        actor: row.try_get("actor")?,
        subject: row.try_get("subject")?,
        client_id: row.try_get("client_id")?,
        jti: row.try_get("jti")?,
        audience: row.try_get("audience")?,
        scopes: row.try_get("scopes")?,
        source_ip: row.try_get("source_ip")?,
        user_agent: row.try_get("user_agent")?,
        request_id: row.try_get("request_id")?,
        detail,
    })
}

/// Folds `grant row ⋈ scope name` rows into grants with their scopes.
fn fold_grants(rows: &[PgRow]) -> StoreResult<Vec<GrantRecord>> {
    let mut grants: BTreeMap<Uuid, GrantRecord> = BTreeMap::new();
    for row in rows {
        let id: Uuid = row.try_get("id").or_store("grant")?;
        let name: String = row.try_get("scope_name").or_store("grant")?;
        if let Some(g) = grants.get_mut(&id) {
            g.scopes.push(name);
        } else {
            let mut g = grant(row)?;
            g.scopes.push(name);
            grants.insert(id, g);
        }
    }
    Ok(grants.into_values().collect())
}

/// Folds `grant row ⋈ scope name ⋈ audience uri` rows into grants with their scopes.
fn fold_subject_grants(rows: &[PgRow]) -> StoreResult<Vec<SubjectGrant>> {
    let mut uris: BTreeMap<Uuid, String> = BTreeMap::new();
    for row in rows {
        let id: Uuid = row.try_get("id").or_store("grant")?;
        if let std::collections::btree_map::Entry::Vacant(slot) = uris.entry(id) {
            slot.insert(row.try_get("audience_uri").or_store("grant")?);
        }
    }
    fold_grants(rows)?
        .into_iter()
        .map(|grant| {
            let audience_uri = uris.remove(&grant.id).unwrap_or_default();
            Ok(SubjectGrant {
                grant,
                audience_uri,
            })
        })
        .collect()
}

#[async_trait]
impl AudienceStore for PgStore {
    async fn create_audience(
        &self,
        new: NewAudience,
        effects: &ChangeEffects,
    ) -> StoreResult<AudienceRecord> {
        let mut tx = self.pool.begin().await.or_store("audience")?;
        let row = sqlx::query(
            "INSERT INTO audiences (id, uri, description, created_at) VALUES ($1, $2, $3, $4)
             RETURNING id, uri, description, created_at",
        )
        .bind(new.id)
        .bind(&new.uri)
        .bind(&new.description)
        .bind(new.now)
        .fetch_one(&mut *tx)
        .await
        .or_store("audience")?;
        let record = audience(&row).or_store("audience")?;
        commit_effects(&mut tx, effects).await?;
        tx.commit().await.or_store("audience")?;
        self.changed();
        self.announce(effects);
        Ok(record)
    }

    async fn audience_by_uri(&self, uri: &str) -> StoreResult<Option<AudienceRecord>> {
        let row =
            sqlx::query("SELECT id, uri, description, created_at FROM audiences WHERE uri = $1")
                .bind(uri)
                .fetch_optional(&self.pool)
                .await
                .or_store("audience")?;
        row.as_ref().map(audience).transpose().or_store("audience")
    }

    async fn create_scope(
        &self,
        new: NewScope,
        effects: &ChangeEffects,
    ) -> StoreResult<ScopeRecord> {
        let mut tx = self.pool.begin().await.or_store("scope")?;
        let row = sqlx::query(
            "INSERT INTO scopes (id, audience_id, name, description, created_at) VALUES ($1, $2, $3, $4, $5)
             RETURNING id, audience_id, name, description, created_at",
        )
        .bind(new.id)
        .bind(new.audience_id)
        .bind(&new.name)
        .bind(&new.description)
        .bind(new.now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match StoreError::from_sqlx(e, "scope") {
            StoreError::NotFound(_) => StoreError::NotFound("audience"),
            other => other,
        })?;
        let record = scope(&row).or_store("scope")?;
        commit_effects(&mut tx, effects).await?;
        tx.commit().await.or_store("scope")?;
        self.changed();
        self.announce(effects);
        Ok(record)
    }

    async fn scopes_of(&self, audience_id: Uuid) -> StoreResult<Vec<ScopeRecord>> {
        let rows = sqlx::query(
            "SELECT id, audience_id, name, description, created_at FROM scopes WHERE audience_id = $1 ORDER BY name",
        )
        .bind(audience_id)
        .fetch_all(&self.pool)
        .await
        .or_store("scope")?;
        rows.iter()
            .map(scope)
            .collect::<Result<_, _>>()
            .or_store("scope")
    }

    async fn audience(&self, id: Uuid) -> StoreResult<Option<AudienceRecord>> {
        let row =
            sqlx::query("SELECT id, uri, description, created_at FROM audiences WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .or_store("audience")?;
        row.as_ref().map(audience).transpose().or_store("audience")
    }

    async fn list_audiences(&self, page: Page) -> StoreResult<Vec<AudienceRecord>> {
        let rows = sqlx::query(
            "SELECT id, uri, description, created_at FROM audiences
             WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2",
        )
        .bind(page.after)
        .bind(i64::from(page.limit))
        .fetch_all(&self.pool)
        .await
        .or_store("audience")?;
        rows.iter()
            .map(audience)
            .collect::<Result<_, _>>()
            .or_store("audience")
    }

    async fn update_audience(
        &self,
        id: Uuid,
        description: &str,
        effects: &ChangeEffects,
    ) -> StoreResult<AudienceRecord> {
        let mut tx = self.pool.begin().await.or_store("audience")?;
        let row = sqlx::query(
            "UPDATE audiences SET description = $2 WHERE id = $1 RETURNING id, uri, description, created_at",
        )
        .bind(id)
        .bind(description)
        .fetch_optional(&mut *tx)
        .await
        .or_store("audience")?
        .ok_or(StoreError::NotFound("audience"))?;
        let record = audience(&row).or_store("audience")?;
        commit_effects(&mut tx, effects).await?;
        tx.commit().await.or_store("audience")?;
        self.changed();
        self.announce(effects);
        Ok(record)
    }

    async fn delete_audience(&self, id: Uuid, effects: &ChangeEffects) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.or_store("audience")?;
        let used: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM grants WHERE audience_id = $1)")
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .or_store("audience")?;
        if used {
            return Err(StoreError::InUse("audience"));
        }
        let done = sqlx::query("DELETE FROM audiences WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .or_store("audience")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("audience"));
        }
        commit_effects(&mut tx, effects).await?;
        tx.commit().await.or_store("audience")?;
        self.changed();
        self.announce(effects);
        Ok(())
    }

    async fn scope(&self, id: Uuid) -> StoreResult<Option<ScopeRecord>> {
        let row = sqlx::query(
            "SELECT id, audience_id, name, description, created_at FROM scopes WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .or_store("scope")?;
        row.as_ref().map(scope).transpose().or_store("scope")
    }

    async fn list_scopes(
        &self,
        audience_id: Option<Uuid>,
        page: Page,
    ) -> StoreResult<Vec<ScopeRecord>> {
        let rows = sqlx::query(
            "SELECT id, audience_id, name, description, created_at FROM scopes
             WHERE ($1::uuid IS NULL OR audience_id = $1) AND ($2::uuid IS NULL OR id > $2)
             ORDER BY id LIMIT $3",
        )
        .bind(audience_id)
        .bind(page.after)
        .bind(i64::from(page.limit))
        .fetch_all(&self.pool)
        .await
        .or_store("scope")?;
        rows.iter()
            .map(scope)
            .collect::<Result<_, _>>()
            .or_store("scope")
    }

    async fn update_scope(
        &self,
        id: Uuid,
        description: &str,
        effects: &ChangeEffects,
    ) -> StoreResult<ScopeRecord> {
        let mut tx = self.pool.begin().await.or_store("scope")?;
        let row = sqlx::query(
            "UPDATE scopes SET description = $2 WHERE id = $1
             RETURNING id, audience_id, name, description, created_at",
        )
        .bind(id)
        .bind(description)
        .fetch_optional(&mut *tx)
        .await
        .or_store("scope")?
        .ok_or(StoreError::NotFound("scope"))?;
        let record = scope(&row).or_store("scope")?;
        commit_effects(&mut tx, effects).await?;
        tx.commit().await.or_store("scope")?;
        self.changed();
        self.announce(effects);
        Ok(record)
    }

    async fn delete_scope(&self, id: Uuid, effects: &ChangeEffects) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.or_store("scope")?;
        let used: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM grant_scopes WHERE scope_id = $1)")
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .or_store("scope")?;
        if used {
            return Err(StoreError::InUse("scope"));
        }
        let done = sqlx::query("DELETE FROM scopes WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .or_store("scope")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("scope"));
        }
        commit_effects(&mut tx, effects).await?;
        tx.commit().await.or_store("scope")?;
        self.changed();
        self.announce(effects);
        Ok(())
    }
}

#[async_trait]
impl ClientStore for PgStore {
    async fn create_client(
        &self,
        new: NewClient,
        effects: &ChangeEffects,
    ) -> StoreResult<ClientRecord> {
        let mut tx = self.pool.begin().await.or_store("client")?;
        let row = sqlx::query(
            "INSERT INTO clients (id, name, enabled, default_ttl_secs, max_ttl_secs, allowed_cidrs, require_dpop, anomaly_policy, created_at, updated_at, grant_types, labels)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $9, $8, $8, $10, $11) RETURNING *",
        )
        .bind(new.id)
        .bind(&new.name)
        .bind(new.enabled)
        .bind(new.default_ttl_secs)
        .bind(new.max_ttl_secs)
        .bind(Json(&new.allowed_cidrs))
        .bind(new.require_dpop)
        .bind(new.now)
        .bind(new.anomaly_policy.as_str())
        .bind(Json(&new.grant_types))
        .bind(Json(&new.labels))
        .fetch_one(&mut *tx)
        .await
        .or_store("client")?;
        let record = client(&row).or_store("client")?;
        commit_effects(&mut tx, effects).await?;
        tx.commit().await.or_store("client")?;
        self.changed();
        self.announce(effects);
        Ok(record)
    }

    async fn client(&self, id: Uuid) -> StoreResult<Option<ClientRecord>> {
        let row = sqlx::query("SELECT * FROM clients WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .or_store("client")?;
        row.as_ref().map(client).transpose().or_store("client")
    }

    async fn set_client_enabled(
        &self,
        id: Uuid,
        enabled: bool,
        now: OffsetDateTime,
        effects: &ChangeEffects,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.or_store("client")?;
        let done = sqlx::query("UPDATE clients SET enabled = $2, updated_at = $3 WHERE id = $1")
            .bind(id)
            .bind(enabled)
            .bind(now)
            .execute(&mut *tx)
            .await
            .or_store("client")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("client"));
        }
        commit_effects(&mut tx, effects).await?;
        tx.commit().await.or_store("client")?;
        self.announce(effects);
        self.changed();
        Ok(())
    }

    async fn add_client_secret(
        &self,
        new: NewClientSecret,
        effects: &ChangeEffects,
    ) -> StoreResult<ClientSecretRecord> {
        let mut tx = self.pool.begin().await.or_store("client")?;
        let row = sqlx::query(
            "INSERT INTO client_secrets (id, client_id, digest, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)
             RETURNING id, client_id, digest, created_at, expires_at",
        )
        .bind(new.id)
        .bind(new.client_id)
        .bind(&new.digest[..])
        .bind(new.now)
        .bind(new.expires_at)
        .fetch_one(&mut *tx)
        .await
        .or_store("client")?;
        let record = secret(&row)?;
        commit_effects(&mut tx, effects).await?;
        tx.commit().await.or_store("client")?;
        self.changed();
        self.announce(effects);
        Ok(record)
    }

    async fn client_secrets(&self, client_id: Uuid) -> StoreResult<Vec<ClientSecretRecord>> {
        let rows = sqlx::query(
            "SELECT id, client_id, digest, created_at, expires_at FROM client_secrets WHERE client_id = $1 ORDER BY created_at",
        )
        .bind(client_id)
        .fetch_all(&self.pool)
        .await
        .or_store("client secret")?;
        rows.iter().map(secret).collect()
    }

    async fn client_view(&self, id: Uuid) -> StoreResult<Option<ClientView>> {
        let Some(client) = self.client(id).await? else {
            return Ok(None);
        };
        let secrets = self.client_secrets(id).await?;
        let rows = sqlx::query(
            "SELECT g.*, s.name AS scope_name, a.uri AS audience_uri FROM grants g
             JOIN grant_scopes gs ON gs.grant_id = g.id
             JOIN scopes s ON s.id = gs.scope_id
             JOIN audiences a ON a.id = g.audience_id
             WHERE g.subject_kind = 'client' AND g.subject_id = $1
             ORDER BY g.id, s.name",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .or_store("grant")?;
        let grants = fold_subject_grants(&rows)?;
        let public_keys = self.client_public_keys(id).await?;
        Ok(Some(ClientView {
            client,
            secrets,
            public_keys,
            grants,
        }))
    }

    async fn list_clients(&self, page: Page) -> StoreResult<Vec<ClientRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM clients WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2",
        )
        .bind(page.after)
        .bind(i64::from(page.limit))
        .fetch_all(&self.pool)
        .await
        .or_store("client")?;
        rows.iter()
            .map(client)
            .collect::<Result<_, _>>()
            .or_store("client")
    }

    async fn update_client(
        &self,
        c: &ClientRecord,
        seen_updated_at: OffsetDateTime,
        effects: &ChangeEffects,
    ) -> StoreResult<ClientRecord> {
        let mut tx = self.pool.begin().await.or_store("client")?;
        let row = sqlx::query(
            "UPDATE clients SET name = $2, enabled = $3, default_ttl_secs = $4, max_ttl_secs = $5,
                 allowed_cidrs = $6, require_dpop = $7, updated_at = $8, anomaly_policy = $10,
                 grant_types = $11, labels = $12
             WHERE id = $1 AND updated_at = $9 RETURNING *",
        )
        .bind(c.id)
        .bind(&c.name)
        .bind(c.enabled)
        .bind(c.default_ttl_secs)
        .bind(c.max_ttl_secs)
        .bind(Json(&c.allowed_cidrs))
        .bind(c.require_dpop)
        .bind(c.updated_at)
        .bind(seen_updated_at)
        .bind(c.anomaly_policy.as_str())
        .bind(Json(&c.grant_types))
        .bind(Json(&c.labels))
        .fetch_optional(&mut *tx)
        .await
        .or_store("client")?;
        match row {
            Some(row) => {
                let record = client(&row).or_store("client")?;
                commit_effects(&mut tx, effects).await?;
                tx.commit().await.or_store("client")?;
                self.changed();
                self.announce(effects);
                Ok(record)
            }
            None if self.client(c.id).await?.is_some() => {
                Err(StoreError::Conflict("client (changed concurrently)"))
            }
            None => Err(StoreError::NotFound("client")),
        }
    }

    async fn delete_client(&self, id: Uuid, effects: &ChangeEffects) -> StoreResult<()> {
        self.delete_subject(Subject::Client(id), effects).await
    }

    async fn delete_client_secret(
        &self,
        client_id: Uuid,
        secret_id: Uuid,
        effects: &ChangeEffects,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.or_store("client secret")?;
        let done = sqlx::query("DELETE FROM client_secrets WHERE client_id = $1 AND id = $2")
            .bind(client_id)
            .bind(secret_id)
            .execute(&mut *tx)
            .await
            .or_store("client secret")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("client secret"));
        }
        commit_effects(&mut tx, effects).await?;
        tx.commit().await.or_store("client secret")?;
        self.changed();
        self.announce(effects);
        Ok(())
    }

    async fn add_client_public_key(
        &self,
        new: NewClientPublicKey,
        effects: &ChangeEffects,
    ) -> StoreResult<ClientPublicKeyRecord> {
        let mut tx = self.pool.begin().await.or_store("public key")?;
        let row = sqlx::query(
            "INSERT INTO client_public_keys (id, client_id, kid, public_key, created_at) VALUES ($1, $2, $3, $4, $5)
             RETURNING id, client_id, kid, public_key, created_at",
        )
        .bind(new.id)
        .bind(new.client_id)
        .bind(&new.kid)
        .bind(&new.public_key[..])
        .bind(new.now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match StoreError::from_sqlx(e, "public key") {
            StoreError::NotFound(_) => StoreError::NotFound("client"),
            other => other,
        })?;
        let record = public_key(&row).or_store("public key")?;
        commit_effects(&mut tx, effects).await?;
        tx.commit().await.or_store("public key")?;
        self.changed();
        self.announce(effects);
        Ok(record)
    }

    async fn client_public_keys(&self, client_id: Uuid) -> StoreResult<Vec<ClientPublicKeyRecord>> {
        let rows = sqlx::query(
            "SELECT id, client_id, kid, public_key, created_at FROM client_public_keys WHERE client_id = $1 ORDER BY id",
        )
        .bind(client_id)
        .fetch_all(&self.pool)
        .await
        .or_store("public key")?;
        rows.iter()
            .map(public_key)
            .collect::<Result<_, _>>()
            .or_store("public key")
    }

    async fn delete_client_public_key(
        &self,
        client_id: Uuid,
        key_id: Uuid,
        effects: &ChangeEffects,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.or_store("public key")?;
        let done = sqlx::query("DELETE FROM client_public_keys WHERE client_id = $1 AND id = $2")
            .bind(client_id)
            .bind(key_id)
            .execute(&mut *tx)
            .await
            .or_store("public key")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("public key"));
        }
        commit_effects(&mut tx, effects).await?;
        tx.commit().await.or_store("public key")?;
        self.changed();
        self.announce(effects);
        Ok(())
    }
}

fn public_key(row: &PgRow) -> Result<ClientPublicKeyRecord, sqlx::Error> {
    Ok(ClientPublicKeyRecord {
        id: row.try_get("id")?,
        client_id: row.try_get("client_id")?,
        kid: row.try_get("kid")?,
        public_key: row.try_get("public_key")?,
        created_at: row.try_get("created_at")?,
    })
}

fn user(row: &PgRow) -> Result<UserRecord, sqlx::Error> {
    let Json(labels) = row.try_get::<Json<Vec<String>>, _>("labels")?;
    Ok(UserRecord {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        enabled: row.try_get("enabled")?,
        failed_logins: row.try_get("failed_logins")?,
        locked_until: row.try_get("locked_until")?,
        labels,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

#[async_trait]
impl UserStore for PgStore {
    async fn create_user(&self, new: NewUser, effects: &ChangeEffects) -> StoreResult<UserRecord> {
        let mut tx = self.pool.begin().await.or_store("username")?;
        let row = sqlx::query(
            "INSERT INTO users (id, username, password_hash, enabled, created_at, updated_at, labels)
             VALUES ($1, $2, $3, $4, $5, $5, $6) RETURNING *",
        )
        .bind(new.id)
        .bind(&new.username)
        .bind(&new.password_hash)
        .bind(new.enabled)
        .bind(new.now)
        .bind(Json(&new.labels))
        .fetch_one(&mut *tx)
        .await
        .or_store("username")?;
        let record = user(&row).or_store("user")?;
        commit_effects(&mut tx, effects).await?;
        tx.commit().await.or_store("username")?;
        self.changed();
        self.announce(effects);
        Ok(record)
    }

    async fn user(&self, id: Uuid) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query("SELECT * FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .or_store("user")?;
        row.as_ref().map(user).transpose().or_store("user")
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query("SELECT * FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await
            .or_store("user")?;
        row.as_ref().map(user).transpose().or_store("user")
    }

    async fn list_users(&self, page: Page) -> StoreResult<Vec<UserRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM users WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2",
        )
        .bind(page.after)
        .bind(i64::from(page.limit))
        .fetch_all(&self.pool)
        .await
        .or_store("user")?;
        rows.iter()
            .map(user)
            .collect::<Result<_, _>>()
            .or_store("user")
    }

    async fn update_user(
        &self,
        u: &UserRecord,
        seen_updated_at: OffsetDateTime,
        effects: &ChangeEffects,
    ) -> StoreResult<UserRecord> {
        // Labels and lockout bookkeeping are not issuance data: only a change to the
        // username, password or enabled flag counts as one (the revision trigger of
        // 0012 compares the same columns). When the update below succeeds, this read
        // was its pre-image (the update is conditional on `updated_at`); when in doubt,
        // count it.
        let issuance_changed = self.user(u.id).await?.is_none_or(|old| {
            old.updated_at != seen_updated_at
                || old.username != u.username
                || old.password_hash != u.password_hash
                || old.enabled != u.enabled
        });
        let mut tx = self.pool.begin().await.or_store("user")?;
        let row = sqlx::query(
            "UPDATE users SET password_hash = $2, enabled = $3, failed_logins = $4, locked_until = $5, updated_at = $6,
                 labels = $8
             WHERE id = $1 AND updated_at = $7 RETURNING *",
        )
        .bind(u.id)
        .bind(&u.password_hash)
        .bind(u.enabled)
        .bind(u.failed_logins)
        .bind(u.locked_until)
        .bind(u.updated_at)
        .bind(seen_updated_at)
        .bind(Json(&u.labels))
        .fetch_optional(&mut *tx)
        .await
        .or_store("user")?;
        match row {
            Some(row) => {
                let record = user(&row).or_store("user")?;
                commit_effects(&mut tx, effects).await?;
                tx.commit().await.or_store("user")?;
                if issuance_changed {
                    self.changed();
                }
                self.announce(effects);
                Ok(record)
            }
            None if self.user(u.id).await?.is_some() => {
                Err(StoreError::Conflict("user (changed concurrently)"))
            }
            None => Err(StoreError::NotFound("user")),
        }
    }

    async fn delete_user(&self, id: Uuid, effects: &ChangeEffects) -> StoreResult<()> {
        self.delete_subject(Subject::User(id), effects).await
    }

    async fn record_login_failure(&self, f: LoginFailure) -> StoreResult<UserRecord> {
        let row = sqlx::query(
            "UPDATE users SET
                 failed_logins = CASE WHEN failed_logins + 1 >= $2 THEN 0 ELSE failed_logins + 1 END,
                 locked_until = CASE WHEN failed_logins + 1 >= $2 THEN $3 ELSE locked_until END
             WHERE id = $1 RETURNING *",
        )
        .bind(f.user_id)
        .bind(f.max_failures)
        .bind(f.now + f.lockout)
        .fetch_optional(&self.pool)
        .await
        .or_store("user")?;
        row.as_ref()
            .map(user)
            .transpose()
            .or_store("user")?
            .ok_or(StoreError::NotFound("user"))
    }

    async fn begin_login_attempt(&self, f: LoginFailure) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query(
            "UPDATE users SET
                 failed_logins = CASE WHEN failed_logins + 1 >= $2 THEN 0 ELSE failed_logins + 1 END,
                 locked_until = CASE WHEN failed_logins + 1 >= $2 THEN $3 ELSE locked_until END
             WHERE id = $1 AND (locked_until IS NULL OR locked_until <= $4) RETURNING *",
        )
        .bind(f.user_id)
        .bind(f.max_failures)
        .bind(f.now + f.lockout)
        .bind(f.now)
        .fetch_optional(&self.pool)
        .await
        .or_store("user")?;
        row.as_ref().map(user).transpose().or_store("user")
    }

    async fn record_login_success(&self, user_id: Uuid) -> StoreResult<()> {
        sqlx::query("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = $1")
            .bind(user_id)
            .execute(&self.pool)
            .await
            .or_store("user")?;
        Ok(())
    }
}

#[async_trait]
impl GrantStore for PgStore {
    async fn create_grant(
        &self,
        new: NewGrant,
        effects: &ChangeEffects,
    ) -> StoreResult<GrantRecord> {
        let mut tx = self.pool.begin().await.or_store("grant")?;
        let id = new.id;
        sqlx::query(
            "INSERT INTO grants (id, subject_kind, subject_id, audience_id, not_before, expires_at, allowed_cidrs, max_ttl_secs, reason, created_by, created_at, may_act)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(id)
        .bind(new.subject.kind())
        .bind(new.subject.id())
        .bind(new.audience_id)
        .bind(new.not_before)
        .bind(new.expires_at)
        .bind(Json(&new.allowed_cidrs))
        .bind(new.max_ttl_secs)
        .bind(&new.reason)
        .bind(&new.created_by)
        .bind(new.now)
        .bind(Json(&new.may_act))
        .execute(&mut *tx)
        .await
        .map_err(|e| match StoreError::from_sqlx(e, "grant") {
            StoreError::NotFound(_) => StoreError::NotFound("audience"),
            other => other,
        })?;
        let mut scopes = new.scopes.clone();
        scopes.sort();
        scopes.dedup();
        for name in &scopes {
            let done = sqlx::query(
                "INSERT INTO grant_scopes (grant_id, scope_id)
                 SELECT $1, id FROM scopes WHERE audience_id = $2 AND name = $3",
            )
            .bind(id)
            .bind(new.audience_id)
            .bind(name)
            .execute(&mut *tx)
            .await
            .or_store("grant")?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound("scope"));
            }
        }
        commit_effects(&mut tx, effects).await?;
        tx.commit().await.or_store("grant")?;
        self.changed();
        self.announce(effects);
        Ok(GrantRecord {
            id,
            subject: new.subject,
            audience_id: new.audience_id,
            scopes,
            not_before: new.not_before,
            expires_at: new.expires_at,
            allowed_cidrs: new.allowed_cidrs,
            max_ttl_secs: new.max_ttl_secs,
            may_act: new.may_act,
            reason: new.reason,
            created_by: new.created_by,
            created_at: new.now,
        })
    }

    async fn grant(&self, id: Uuid) -> StoreResult<Option<GrantRecord>> {
        let rows = sqlx::query(
            "SELECT g.*, s.name AS scope_name FROM grants g
             JOIN grant_scopes gs ON gs.grant_id = g.id
             JOIN scopes s ON s.id = gs.scope_id
             WHERE g.id = $1 ORDER BY s.name",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .or_store("grant")?;
        Ok(fold_grants(&rows)?.into_iter().next())
    }

    async fn list_grants(&self, filter: GrantFilter, page: Page) -> StoreResult<Vec<GrantRecord>> {
        let rows = sqlx::query(
            "SELECT g.*, s.name AS scope_name FROM (
                 SELECT * FROM grants
                 WHERE ($1::text IS NULL OR subject_kind = $1) AND ($2::uuid IS NULL OR subject_id = $2)
                   AND ($3::uuid IS NULL OR audience_id = $3) AND ($4::uuid IS NULL OR id > $4)
                 ORDER BY id LIMIT $5
             ) g
             JOIN grant_scopes gs ON gs.grant_id = g.id
             JOIN scopes s ON s.id = gs.scope_id
             ORDER BY g.id, s.name",
        )
        .bind(filter.subject.map(Subject::kind))
        .bind(filter.subject.map(Subject::id))
        .bind(filter.audience_id)
        .bind(page.after)
        .bind(i64::from(page.limit))
        .fetch_all(&self.pool)
        .await
        .or_store("grant")?;
        fold_grants(&rows)
    }

    async fn update_grant(
        &self,
        g: &GrantRecord,
        effects: &ChangeEffects,
    ) -> StoreResult<GrantRecord> {
        let mut tx = self.pool.begin().await.or_store("grant")?;
        let done = sqlx::query(
            "UPDATE grants SET not_before = $2, expires_at = $3, allowed_cidrs = $4, max_ttl_secs = $5, reason = $6,
                 may_act = $7
             WHERE id = $1",
        )
        .bind(g.id)
        .bind(g.not_before)
        .bind(g.expires_at)
        .bind(Json(&g.allowed_cidrs))
        .bind(g.max_ttl_secs)
        .bind(&g.reason)
        .bind(Json(&g.may_act))
        .execute(&mut *tx)
        .await
        .or_store("grant")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("grant"));
        }
        commit_effects(&mut tx, effects).await?;
        tx.commit().await.or_store("grant")?;
        self.changed();
        self.announce(effects);
        self.grant(g.id).await?.ok_or(StoreError::NotFound("grant"))
    }

    async fn delete_grant(&self, id: Uuid, effects: &ChangeEffects) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.or_store("grant")?;
        let done = sqlx::query("DELETE FROM grants WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .or_store("grant")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("grant"));
        }
        commit_effects(&mut tx, effects).await?;
        tx.commit().await.or_store("grant")?;
        self.changed();
        self.announce(effects);
        Ok(())
    }

    async fn subject_grants(&self, subject: Subject) -> StoreResult<Vec<SubjectGrant>> {
        let rows = sqlx::query(
            "SELECT g.*, s.name AS scope_name, a.uri AS audience_uri FROM grants g
             JOIN grant_scopes gs ON gs.grant_id = g.id
             JOIN scopes s ON s.id = gs.scope_id
             JOIN audiences a ON a.id = g.audience_id
             WHERE g.subject_kind = $1 AND g.subject_id = $2
             ORDER BY g.id, s.name",
        )
        .bind(subject.kind())
        .bind(subject.id())
        .fetch_all(&self.pool)
        .await
        .or_store("grant")?;
        fold_subject_grants(&rows)
    }
}

/// Starts a key-lifecycle transaction: takes the advisory lock that serializes key
/// changes across replicas, then reads the keys not yet `gone` as they are under it.
async fn begin_key_step(
    pool: &PgPool,
) -> StoreResult<(Transaction<'static, Postgres>, Vec<SigningKeyRecord>)> {
    let mut tx = pool.begin().await.or_store("signing key")?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(KEY_LOCK)
        .execute(&mut *tx)
        .await
        .or_store("signing key")?;
    let rows = sqlx::query(
        "SELECT * FROM signing_keys WHERE state <> 'gone' ORDER BY created_at DESC, id",
    )
    .fetch_all(&mut *tx)
    .await
    .or_store("signing key")?;
    let keys = rows.iter().map(signing_key).collect::<StoreResult<_>>()?;
    Ok((tx, keys))
}

/// Commits a key-lifecycle transaction with the audit events of its changes.
async fn commit_key_step(
    mut tx: Transaction<'static, Postgres>,
    changes: Vec<KeyChange>,
    step: &KeyStep<'_>,
) -> StoreResult<Vec<KeyChange>> {
    let events: Vec<AuditEvent> = changes.iter().map(|c| (step.audit)(c)).collect();
    insert_audit_events(&mut tx, &events).await?;
    tx.commit().await.or_store("signing key")?;
    Ok(changes)
}

async fn insert_key(
    tx: &mut PgConnection,
    key: &NewSigningKey,
    state: KeyState,
    now: OffsetDateTime,
) -> StoreResult<KeyChange> {
    let activated_at = (state == KeyState::Active).then_some(now);
    sqlx::query(
        "INSERT INTO signing_keys (id, state, public_key, private_key_enc, created_at, published_at, activated_at)
         VALUES ($1, $2, $3, $4, $5, $5, $6)",
    )
    .bind(&key.id)
    .bind(state.as_str())
    .bind(&key.public_key)
    .bind(&key.private_key_enc)
    .bind(now)
    .bind(activated_at)
    .execute(tx)
    .await
    .or_store("signing key")?;
    Ok(KeyChange {
        id: key.id.clone(),
        from: None,
        to: state,
        at: now,
        revoked: false,
    })
}

/// Retires the active key: it signs no more and leaves the key set after the hold.
async fn retire_key(
    tx: &mut PgConnection,
    key: &SigningKeyRecord,
    step: &KeyStep<'_>,
) -> StoreResult<KeyChange> {
    let done = sqlx::query(
        "UPDATE signing_keys SET state = 'retired', retired_at = $2, removes_at = $3
         WHERE id = $1 AND state = 'active'",
    )
    .bind(&key.id)
    .bind(step.now)
    .bind(step.policy.removes_at(step.now))
    .execute(tx)
    .await
    .or_store("signing key")?;
    exactly_one(done.rows_affected())?;
    Ok(change(key, KeyState::Retired, step, false))
}

/// The `next` key starts signing.
async fn activate_key(
    tx: &mut PgConnection,
    key: &SigningKeyRecord,
    step: &KeyStep<'_>,
) -> StoreResult<KeyChange> {
    let done = sqlx::query(
        "UPDATE signing_keys SET state = 'active', activated_at = $2 WHERE id = $1 AND state = 'next'",
    )
    .bind(&key.id)
    .bind(step.now)
    .execute(tx)
    .await
    .or_store("signing key")?;
    exactly_one(done.rows_affected())?;
    Ok(change(key, KeyState::Active, step, false))
}

/// Unpublishes a key and wipes its private half; `revoke` also marks its tokens invalid.
async fn remove_key(
    tx: &mut PgConnection,
    key: &SigningKeyRecord,
    step: &KeyStep<'_>,
    revoke: bool,
) -> StoreResult<KeyChange> {
    let done = sqlx::query(
        "UPDATE signing_keys SET state = 'gone', private_key_enc = $3, removed_at = $2,
             retired_at = COALESCE(retired_at, $2),
             revoked_at = CASE WHEN $4 THEN $2 ELSE revoked_at END
         WHERE id = $1 AND state = $5",
    )
    .bind(&key.id)
    .bind(step.now)
    .bind(Vec::<u8>::new())
    .bind(revoke)
    .bind(key.state.as_str())
    .execute(tx)
    .await
    .or_store("signing key")?;
    exactly_one(done.rows_affected())?;
    Ok(change(key, KeyState::Gone, step, revoke))
}

/// Every lifecycle update names one row in the state the locked read found it in; any
/// other count means the read was stale, and the whole step is rolled back.
fn exactly_one(rows: u64) -> StoreResult<()> {
    if rows == 1 {
        Ok(())
    } else {
        Err(StoreError::Stale("signing key"))
    }
}

fn change(key: &SigningKeyRecord, to: KeyState, step: &KeyStep<'_>, revoked: bool) -> KeyChange {
    KeyChange {
        id: key.id.clone(),
        from: Some(key.state),
        to,
        at: step.now,
        revoked,
    }
}

#[async_trait]
impl KeyStore for PgStore {
    async fn ensure_active_key(
        &self,
        candidate: SigningKeyRecord,
    ) -> StoreResult<SigningKeyRecord> {
        let mut tx = self.pool.begin().await.or_store("signing key")?;
        // Serializes first-start key creation across replicas.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(KEY_LOCK)
            .execute(&mut *tx)
            .await
            .or_store("signing key")?;
        let existing = sqlx::query("SELECT * FROM signing_keys WHERE state = 'active'")
            .fetch_optional(&mut *tx)
            .await
            .or_store("signing key")?;
        if let Some(row) = existing {
            return signing_key(&row);
        }
        sqlx::query(
            "INSERT INTO signing_keys (id, state, public_key, private_key_enc, created_at, published_at, activated_at, retired_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&candidate.id)
        .bind(candidate.state.as_str())
        .bind(&candidate.public_key)
        .bind(&candidate.private_key_enc)
        .bind(candidate.created_at)
        .bind(candidate.published_at)
        .bind(candidate.activated_at)
        .bind(candidate.retired_at)
        .execute(&mut *tx)
        .await
        .or_store("signing key")?;
        tx.commit().await.or_store("signing key")?;
        Ok(candidate)
    }

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM signing_keys WHERE state <> 'gone' ORDER BY created_at DESC, id",
        )
        .fetch_all(&self.pool)
        .await
        .or_store("signing key")?;
        rows.iter().map(signing_key).collect()
    }

    async fn all_signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        let rows = sqlx::query("SELECT * FROM signing_keys ORDER BY created_at DESC, id")
            .fetch_all(&self.pool)
            .await
            .or_store("signing key")?;
        rows.iter().map(signing_key).collect()
    }

    async fn publish_next_key(
        &self,
        candidate: NewSigningKey,
        step: &KeyStep<'_>,
    ) -> StoreResult<Vec<KeyChange>> {
        let (mut tx, keys) = begin_key_step(&self.pool).await?;
        if !step.policy.next_key_due(&keys, step.now) {
            return Ok(Vec::new());
        }
        let published = insert_key(&mut tx, &candidate, KeyState::Next, step.now).await?;
        commit_key_step(tx, vec![published], step).await
    }

    async fn request_rotation(
        &self,
        candidate: NewSigningKey,
        step: &KeyStep<'_>,
    ) -> StoreResult<Vec<KeyChange>> {
        let (mut tx, keys) = begin_key_step(&self.pool).await?;
        if let Some(active) = active_key(&keys) {
            sqlx::query(
                "UPDATE signing_keys SET rotate_requested_at = $2
                 WHERE id = $1 AND rotate_requested_at IS NULL",
            )
            .bind(&active.id)
            .bind(step.now)
            .execute(&mut *tx)
            .await
            .or_store("signing key")?;
        }
        let mut changes = Vec::new();
        if next_key(&keys).is_none() {
            changes.push(insert_key(&mut tx, &candidate, KeyState::Next, step.now).await?);
        }
        commit_key_step(tx, changes, step).await
    }

    async fn activate_next_key(&self, step: &KeyStep<'_>) -> StoreResult<Vec<KeyChange>> {
        let (mut tx, keys) = begin_key_step(&self.pool).await?;
        let Some(next) = step.policy.activation_due(&keys, step.now) else {
            return Ok(Vec::new());
        };
        let mut changes = Vec::new();
        // Retire first: at most one key is active at any moment (unique index).
        if let Some(active) = active_key(&keys) {
            changes.push(retire_key(&mut tx, active, step).await?);
        }
        changes.push(activate_key(&mut tx, next, step).await?);
        commit_key_step(tx, changes, step).await
    }

    async fn emergency_rotate(
        &self,
        candidate: NewSigningKey,
        step: &KeyStep<'_>,
    ) -> StoreResult<Vec<KeyChange>> {
        let (mut tx, keys) = begin_key_step(&self.pool).await?;
        let mut changes = Vec::new();
        if let Some(active) = active_key(&keys) {
            changes.push(remove_key(&mut tx, active, step, true).await?);
        }
        match next_key(&keys) {
            Some(next) => changes.push(activate_key(&mut tx, next, step).await?),
            None => {
                changes.push(insert_key(&mut tx, &candidate, KeyState::Active, step.now).await?);
            }
        }
        commit_key_step(tx, changes, step).await
    }

    async fn remove_retired_keys(&self, step: &KeyStep<'_>) -> StoreResult<Vec<KeyChange>> {
        let (mut tx, keys) = begin_key_step(&self.pool).await?;
        let mut changes = Vec::new();
        for key in keys.iter().filter(|k| step.policy.removal_due(k, step.now)) {
            changes.push(remove_key(&mut tx, key, step, false).await?);
        }
        if changes.is_empty() {
            return Ok(changes);
        }
        commit_key_step(tx, changes, step).await
    }

    async fn rewrap_signing_keys(
        &self,
        keys: &[RewrappedKey],
        audit: AuditEvent,
    ) -> StoreResult<()> {
        let (mut tx, _) = begin_key_step(&self.pool).await?;
        let held: BTreeMap<String, Vec<u8>> = sqlx::query_as(
            "SELECT id, private_key_enc FROM signing_keys WHERE octet_length(private_key_enc) > 0",
        )
        .fetch_all(&mut *tx)
        .await
        .or_store("signing key")?
        .into_iter()
        .collect();
        if !crate::lifecycle::rewrap_matches(&held, keys) {
            return Err(StoreError::Stale("signing keys"));
        }
        for key in keys {
            sqlx::query("UPDATE signing_keys SET private_key_enc = $2 WHERE id = $1")
                .bind(&key.id)
                .bind(&key.new)
                .execute(&mut *tx)
                .await
                .or_store("signing key")?;
        }
        insert_audit_events(&mut tx, &[audit]).await?;
        tx.commit().await.or_store("signing key")?;
        Ok(())
    }
}

fn revocation(row: &PgRow) -> Result<RevocationRecord, sqlx::Error> {
    Ok(RevocationRecord {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        value: row.try_get("value")?,
        issued_before: row.try_get("issued_before")?,
        expires_at: row.try_get("expires_at")?,
        reason: row.try_get("reason")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Records a revocation in `tx`: serialized with every other insert so seq order is
/// commit order (the feed never skips a row), announced to the replicas on commit.
async fn insert_revocation(
    tx: &mut Transaction<'_, Postgres>,
    new: &NewRevocation,
) -> StoreResult<RevocationRecord> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(REVOCATION_LOCK)
        .execute(&mut **tx)
        .await
        .or_store("revocation")?;
    let row = sqlx::query(
        "INSERT INTO revocations (id, kind, value, issued_before, expires_at, reason, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
    )
    .bind(Uuid::now_v7())
    .bind(&new.kind)
    .bind(&new.value)
    .bind(new.issued_before)
    .bind(new.expires_at)
    .bind(&new.reason)
    .bind(&new.created_by)
    .bind(new.now)
    .fetch_one(&mut **tx)
    .await
    .or_store("revocation")?;
    let record = revocation(&row).or_store("revocation")?;
    if let Some((sql, id)) = crate::ended_families(&new.kind, &new.value) {
        sqlx::query(sql)
            .bind(new.now)
            .bind(id)
            .bind(new.issued_before)
            .execute(&mut **tx)
            .await
            .or_store("refresh family")?;
    }
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(REVOCATION_CHANNEL)
        .bind(record.seq.to_string())
        .execute(&mut **tx)
        .await
        .or_store("revocation")?;
    Ok(record)
}

/// Writes an admin change's audit events and revocation in its transaction.
async fn commit_effects(
    tx: &mut Transaction<'_, Postgres>,
    effects: &ChangeEffects,
) -> StoreResult<()> {
    insert_audit_events(tx, &effects.audit).await?;
    if let Some(revocation) = &effects.revocation {
        insert_revocation(tx, revocation).await?;
    }
    Ok(())
}

fn refresh_token_record(row: &PgRow) -> Result<RefreshTokenRecord, sqlx::Error> {
    Ok(RefreshTokenRecord {
        family: refresh_family(row)?,
        created_at: row.try_get("token_created_at")?,
        expires_at: row.try_get("token_expires_at")?,
        used_at: row.try_get("used_at")?,
    })
}

fn refresh_family(row: &PgRow) -> Result<RefreshFamilyRecord, sqlx::Error> {
    Ok(RefreshFamilyRecord {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        client_id: row.try_get("client_id")?,
        audience: row.try_get("audience")?,
        scope: row.try_get("scope")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        jkt: row.try_get("jkt")?,
    })
}

#[async_trait]
impl RefreshStore for PgStore {
    async fn create_refresh_family(
        &self,
        new: NewRefreshFamily,
    ) -> StoreResult<RefreshFamilyRecord> {
        let mut tx = self.pool.begin().await.or_store("refresh family")?;
        let row = sqlx::query(
            "INSERT INTO refresh_families (id, user_id, client_id, audience, scope, created_at, expires_at, jkt)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
        )
        .bind(new.id)
        .bind(new.user_id)
        .bind(new.client_id)
        .bind(&new.audience)
        .bind(&new.scope)
        .bind(new.now)
        .bind(new.expires_at)
        .bind(&new.jkt)
        .fetch_one(&mut *tx)
        .await
        .or_store("user or client")?;
        sqlx::query(
            "INSERT INTO refresh_tokens (digest, family_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&new.digest[..])
        .bind(new.id)
        .bind(new.now)
        .bind(new.token_expires_at)
        .execute(&mut *tx)
        .await
        .or_store("refresh token")?;
        tx.commit().await.or_store("refresh family")?;
        refresh_family(&row).or_store("refresh family")
    }

    async fn refresh_token(&self, digest: &[u8; 32]) -> StoreResult<Option<RefreshTokenRecord>> {
        let row = sqlx::query(
            "SELECT f.*, t.created_at AS token_created_at, t.expires_at AS token_expires_at, t.used_at
             FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id
             WHERE t.digest = $1",
        )
        .bind(&digest[..])
        .fetch_optional(&self.pool)
        .await
        .or_store("refresh token")?;
        row.as_ref()
            .map(refresh_token_record)
            .transpose()
            .or_store("refresh token")
    }

    async fn rotate_refresh_token(&self, rotation: RefreshRotation) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.or_store("refresh token")?;
        // Row locks make concurrent uses of one token take turns: exactly one sees it unused.
        let family: Option<Uuid> = sqlx::query_scalar(
            "UPDATE refresh_tokens SET used_at = $2
             WHERE digest = $1 AND used_at IS NULL
               AND family_id IN (SELECT id FROM refresh_families WHERE revoked_at IS NULL)
             RETURNING family_id",
        )
        .bind(&rotation.old[..])
        .bind(rotation.now)
        .fetch_optional(&mut *tx)
        .await
        .or_store("refresh token")?;
        let Some(family) = family else {
            return Ok(false);
        };
        sqlx::query(
            "INSERT INTO refresh_tokens (digest, family_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&rotation.new[..])
        .bind(family)
        .bind(rotation.now)
        .bind(rotation.expires_at)
        .execute(&mut *tx)
        .await
        .or_store("refresh token")?;
        tx.commit().await.or_store("refresh token")?;
        Ok(true)
    }

    async fn revoke_refresh_family(
        &self,
        family_id: Uuid,
        revocation: NewRevocation,
    ) -> StoreResult<RevocationRecord> {
        let mut tx = self.pool.begin().await.or_store("refresh family")?;
        sqlx::query(
            "UPDATE refresh_families SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
        )
        .bind(family_id)
        .bind(revocation.now)
        .execute(&mut *tx)
        .await
        .or_store("refresh family")?;
        let record = insert_revocation(&mut tx, &revocation).await?;
        tx.commit().await.or_store("refresh family")?;
        Ok(record)
    }

    async fn prune_refresh_families(&self, now: OffsetDateTime) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM refresh_families WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .or_store("refresh family")?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl RevocationStore for PgStore {
    async fn insert_audited_revocation(
        &self,
        new: NewRevocation,
        audit: &[AuditEvent],
    ) -> StoreResult<RevocationRecord> {
        let mut tx = self.pool.begin().await.or_store("revocation")?;
        let record = insert_revocation(&mut tx, &new).await?;
        insert_audit_events(&mut tx, audit).await?;
        tx.commit().await.or_store("revocation")?;
        Ok(record)
    }

    async fn insert_revocation(&self, new: NewRevocation) -> StoreResult<RevocationRecord> {
        let mut tx = self.pool.begin().await.or_store("revocation")?;
        let record = insert_revocation(&mut tx, &new).await?;
        tx.commit().await.or_store("revocation")?;
        Ok(record)
    }

    async fn revocations_after(
        &self,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<RevocationRecord>> {
        let rows = sqlx::query("SELECT * FROM revocations WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .or_store("revocation")?;
        rows.iter()
            .map(revocation)
            .collect::<Result<_, _>>()
            .or_store("revocation")
    }

    async fn prune_revocations(&self, now: OffsetDateTime) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM revocations WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .or_store("revocation")?;
        Ok(done.rows_affected())
    }

    async fn revocation_signal(&self) -> StoreResult<Option<Arc<tokio::sync::Notify>>> {
        let mut slot = self.signal.lock().await;
        if let Some(signal) = slot.as_ref() {
            return Ok(Some(signal.clone()));
        }
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool)
            .await
            .or_store("revocation feed")?;
        listener
            .listen(REVOCATION_CHANNEL)
            .await
            .or_store("revocation feed")?;
        let signal = Arc::new(tokio::sync::Notify::new());
        let raised = signal.clone();
        tokio::spawn(async move {
            loop {
                // recv() reconnects by itself after a lost connection; a lost
                // notification is covered by the listeners' periodic catch-up.
                if let Err(e) = listener.recv().await {
                    tracing::warn!(error = %e, "revocation listener interrupted");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
                raised.notify_one();
            }
        });
        *slot = Some(signal.clone());
        Ok(Some(signal))
    }
}

#[async_trait]
impl ReplayStore for PgStore {
    async fn use_once(
        &self,
        namespace: &str,
        jti: &str,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        // Insert, or take over a row whose time is up; a live row makes it a no-op.
        let done = sqlx::query(
            "INSERT INTO used_jtis (namespace, jti, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (namespace, jti) DO UPDATE SET expires_at = excluded.expires_at
             WHERE used_jtis.expires_at <= $4",
        )
        .bind(namespace)
        .bind(jti)
        .bind(expires_at)
        .bind(now)
        .execute(&self.pool)
        .await
        .or_store("one-time id")?;
        Ok(done.rows_affected() == 1)
    }

    async fn prune_used_ids(&self, now: OffsetDateTime) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM used_jtis WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .or_store("one-time id")?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl AuditStore for PgStore {
    async fn append_audit_events(&self, events: &[AuditEvent]) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        if events.len() <= AUDIT_CHUNK {
            // One statement in autocommit: one commit (one WAL flush) per batch.
            let mut conn = self.pool.acquire().await.or_store("audit event")?;
            return insert_audit_events(&mut conn, events).await;
        }
        // Larger than one statement may bind (65,535 parameters): all chunks or none.
        let mut tx = self.pool.begin().await.or_store("audit event")?;
        for chunk in events.chunks(AUDIT_CHUNK) {
            insert_audit_events(&mut tx, chunk).await?;
        }
        tx.commit().await.or_store("audit event")
    }

    async fn audit_events(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
        // Only the filters given become SQL, so the planner can use the matching index.
        let mut sql =
            sqlx::QueryBuilder::<sqlx::Postgres>::new("SELECT * FROM audit_events WHERE TRUE");
        for (column, value) in [
            ("event_type", &query.event_type),
            ("client_id", &query.client_id),
            ("outcome", &query.outcome),
            ("subject", &query.subject),
            ("jti", &query.jti),
            ("audience", &query.audience),
        ] {
            if let Some(value) = value {
                sql.push(" AND ")
                    .push(column)
                    .push(" = ")
                    .push_bind(value.clone());
            }
        }
        if let Some(net) = query.network {
            sql.push(" AND source_ip IS NOT NULL AND source_ip::inet <<= ")
                .push_bind(net.to_string())
                .push("::cidr");
        }
        if let Some(since) = query.since {
            sql.push(" AND occurred_at >= ").push_bind(since);
        }
        if let Some(until) = query.until {
            sql.push(" AND occurred_at < ").push_bind(until);
        }
        if let Some((at, id)) = query.before {
            sql.push(" AND (occurred_at, id) < (")
                .push_bind(at)
                .push(", ")
                .push_bind(id)
                .push(")");
        }
        sql.push(" ORDER BY occurred_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(query.limit.min(1000)));
        let rows = sql
            .build()
            .fetch_all(&self.pool)
            .await
            .or_store("audit event")?;
        rows.iter()
            .map(audit_event)
            .collect::<Result<_, _>>()
            .or_store("audit event")
    }

    async fn prune_audit_events(&self, before: OffsetDateTime) -> StoreResult<u64> {
        // In slices, so a large backlog never holds one long transaction.
        let mut total = 0;
        loop {
            let done = sqlx::query(
                "DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE occurred_at < $1 LIMIT 10000)",
            )
            .bind(before)
            .execute(&self.pool)
            .await
            .or_store("audit event")?;
            total += done.rows_affected();
            if done.rows_affected() < 10000 {
                return Ok(total);
            }
        }
    }
}

#[async_trait]
impl SightingStore for PgStore {
    async fn record_sighting(
        &self,
        client_id: &str,
        kind: SightingKind,
        value: &str,
        now: OffsetDateTime,
    ) -> StoreResult<Sighting> {
        // One statement: the outer SELECT does not see the CTE's insert, so `others`
        // counts only earlier sightings of other values.
        let row = sqlx::query(
            "WITH ins AS (
                 INSERT INTO client_sightings (client_id, kind, value, first_seen)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING 1)
             SELECT EXISTS (SELECT 1 FROM ins) AS inserted,
                    EXISTS (SELECT 1 FROM client_sightings
                            WHERE client_id = $1 AND kind = $2 AND value <> $3) AS others",
        )
        .bind(client_id)
        .bind(kind.as_str())
        .bind(value)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .or_store("sighting")?;
        let inserted: bool = row.try_get("inserted").or_store("sighting")?;
        let others: bool = row.try_get("others").or_store("sighting")?;
        Ok(match (inserted, others) {
            (false, _) => Sighting::Known,
            (true, false) => Sighting::FirstOfKind,
            (true, true) => Sighting::New,
        })
    }
}

fn access_policy(row: &PgRow) -> StoreResult<AccessPolicyRecord> {
    let Json(scopes) = row
        .try_get::<Json<Vec<String>>, _>("scopes")
        .or_store("access policy")?;
    let Json(subjects) = row
        .try_get::<Json<Vec<String>>, _>("subjects")
        .or_store("access policy")?;
    Ok(AccessPolicyRecord {
        id: row.try_get("id").or_store("access policy")?,
        name: row.try_get("name").or_store("access policy")?,
        audience_id: row.try_get("audience_id").or_store("access policy")?,
        scopes,
        subjects,
        max_duration_secs: row.try_get("max_duration_secs").or_store("access policy")?,
        decision: row.try_get("decision").or_store("access policy")?,
        approvals_required: row
            .try_get("approvals_required")
            .or_store("access policy")?,
        break_glass: row.try_get("break_glass").or_store("access policy")?,
        created_by: row.try_get("created_by").or_store("access policy")?,
        created_at: row.try_get("created_at").or_store("access")?,
        updated_at: row.try_get("updated_at").or_store("access")?,
    })
}

/// Reads an access request row without its approvals.
fn access_request(row: &PgRow) -> StoreResult<AccessRequestRecord> {
    let kind: String = row.try_get("subject_kind").or_store("access request")?;
    let subject_id: Uuid = row.try_get("subject_id").or_store("access request")?;
    let Json(scopes) = row
        .try_get::<Json<Vec<String>>, _>("scopes")
        .or_store("access request")?;
    Ok(AccessRequestRecord {
        id: row.try_get("id").or_store("access request")?,
        subject: Subject::from_parts(&kind, subject_id)
            .ok_or(StoreError::Corrupt("access_requests.subject_kind"))?,
        audience_id: row.try_get("audience_id").or_store("access request")?,
        audience: row.try_get("audience").or_store("access request")?,
        scopes,
        duration_secs: row.try_get("duration_secs").or_store("access request")?,
        reason: row.try_get("reason").or_store("access request")?,
        break_glass: row.try_get("break_glass").or_store("access request")?,
        state: row.try_get("state").or_store("access request")?,
        policy_id: row.try_get("policy_id").or_store("access request")?,
        approvals_required: row
            .try_get("approvals_required")
            .or_store("access request")?,
        approvals: Vec::new(),
        grant_id: row.try_get("grant_id").or_store("access request")?,
        needs_review: row.try_get("needs_review").or_store("access request")?,
        created_at: row.try_get("created_at").or_store("access")?,
        pending_until: row.try_get("pending_until").or_store("access")?,
        decided_at: row.try_get("decided_at").or_store("access request")?,
        decided_by: row.try_get("decided_by").or_store("access request")?,
        decision_comment: row.try_get("decision_comment").or_store("access request")?,
    })
}

/// Folds `request ⟕ approval` rows (approval columns prefixed `ap_`) into requests.
fn fold_access_requests(rows: &[PgRow]) -> StoreResult<Vec<AccessRequestRecord>> {
    let mut out: BTreeMap<Uuid, AccessRequestRecord> = BTreeMap::new();
    for row in rows {
        let id: Uuid = row.try_get("id").or_store("access request")?;
        if let std::collections::btree_map::Entry::Vacant(slot) = out.entry(id) {
            slot.insert(access_request(row)?);
        }
        let approver: Option<String> = row.try_get("ap_approver").or_store("access request")?;
        if let (Some(approver), Some(request)) = (approver, out.get_mut(&id)) {
            request.approvals.push(AccessApproval {
                approver,
                comment: row.try_get("ap_comment").or_store("access request")?,
                at: row.try_get("ap_at").or_store("access")?,
            });
        }
    }
    Ok(out.into_values().collect())
}

#[async_trait]
impl AccessStore for PgStore {
    async fn create_access_policy(
        &self,
        p: &AccessPolicyRecord,
        effects: &ChangeEffects,
    ) -> StoreResult<AccessPolicyRecord> {
        let mut tx = self.pool.begin().await.or_store("access policy")?;
        sqlx::query(
            "INSERT INTO access_policies (id, name, audience_id, scopes, subjects, max_duration_secs, decision, approvals_required, break_glass, created_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(p.id)
        .bind(&p.name)
        .bind(p.audience_id)
        .bind(Json(&p.scopes))
        .bind(Json(&p.subjects))
        .bind(p.max_duration_secs)
        .bind(&p.decision)
        .bind(p.approvals_required)
        .bind(p.break_glass)
        .bind(&p.created_by)
        .bind(p.created_at)
        .bind(p.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| match StoreError::from_sqlx(e, "access policy") {
            StoreError::NotFound(_) => StoreError::NotFound("audience"),
            other => other,
        })?;
        commit_effects(&mut tx, effects).await?;
        tx.commit().await.or_store("access policy")?;
        self.announce(effects);
        Ok(p.clone())
    }

    async fn access_policy(&self, id: Uuid) -> StoreResult<Option<AccessPolicyRecord>> {
        sqlx::query("SELECT * FROM access_policies WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .or_store("access policy")?
            .as_ref()
            .map(access_policy)
            .transpose()
    }

    async fn list_access_policies(
        &self,
        audience_id: Option<Uuid>,
        page: Page,
    ) -> StoreResult<Vec<AccessPolicyRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM access_policies
             WHERE ($1::uuid IS NULL OR audience_id = $1) AND ($2::uuid IS NULL OR id > $2)
             ORDER BY id LIMIT $3",
        )
        .bind(audience_id)
        .bind(page.after)
        .bind(i64::from(page.limit))
        .fetch_all(&self.pool)
        .await
        .or_store("access policy")?;
        rows.iter().map(access_policy).collect()
    }

    async fn update_access_policy(
        &self,
        p: &AccessPolicyRecord,
        effects: &ChangeEffects,
    ) -> StoreResult<AccessPolicyRecord> {
        let mut tx = self.pool.begin().await.or_store("access policy")?;
        let done = sqlx::query(
            "UPDATE access_policies SET name = $2, scopes = $3, subjects = $4, max_duration_secs = $5,
                 decision = $6, approvals_required = $7, break_glass = $8, updated_at = $9
             WHERE id = $1",
        )
        .bind(p.id)
        .bind(&p.name)
        .bind(Json(&p.scopes))
        .bind(Json(&p.subjects))
        .bind(p.max_duration_secs)
        .bind(&p.decision)
        .bind(p.approvals_required)
        .bind(p.break_glass)
        .bind(p.updated_at)
        .execute(&mut *tx)
        .await
        .or_store("access policy")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("access policy"));
        }
        commit_effects(&mut tx, effects).await?;
        tx.commit().await.or_store("access policy")?;
        self.announce(effects);
        self.access_policy(p.id)
            .await?
            .ok_or(StoreError::NotFound("access policy"))
    }

    async fn delete_access_policy(&self, id: Uuid, effects: &ChangeEffects) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.or_store("access policy")?;
        let done = sqlx::query("DELETE FROM access_policies WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .or_store("access policy")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("access policy"));
        }
        commit_effects(&mut tx, effects).await?;
        tx.commit().await.or_store("access policy")?;
        self.announce(effects);
        Ok(())
    }

    async fn create_access_request(&self, r: &AccessRequestRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO access_requests (id, subject_kind, subject_id, audience_id, audience, scopes, duration_secs, reason, break_glass, state, policy_id, approvals_required, grant_id, needs_review, created_at, pending_until, decided_at, decided_by, decision_comment)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
        )
        .bind(r.id)
        .bind(r.subject.kind())
        .bind(r.subject.id())
        .bind(r.audience_id)
        .bind(&r.audience)
        .bind(Json(&r.scopes))
        .bind(r.duration_secs)
        .bind(&r.reason)
        .bind(r.break_glass)
        .bind(&r.state)
        .bind(r.policy_id)
        .bind(r.approvals_required)
        .bind(r.grant_id)
        .bind(r.needs_review)
        .bind(r.created_at)
        .bind(r.pending_until)
        .bind(r.decided_at)
        .bind(&r.decided_by)
        .bind(&r.decision_comment)
        .execute(&self.pool)
        .await
        .map_err(|e| match StoreError::from_sqlx(e, "access request") {
            StoreError::NotFound(_) => StoreError::NotFound("audience"),
            other => other,
        })?;
        Ok(())
    }

    async fn access_request(&self, id: Uuid) -> StoreResult<Option<AccessRequestRecord>> {
        let rows = sqlx::query(
            "SELECT r.*, a.approver AS ap_approver, a.comment AS ap_comment, a.created_at AS ap_at FROM access_requests r
             LEFT JOIN access_approvals a ON a.request_id = r.id
             WHERE r.id = $1 ORDER BY a.created_at, a.approver",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .or_store("access request")?;
        Ok(fold_access_requests(&rows)?.into_iter().next())
    }

    async fn list_access_requests(
        &self,
        filter: AccessRequestFilter,
        page: Page,
    ) -> StoreResult<Vec<AccessRequestRecord>> {
        let rows = sqlx::query(
            "SELECT r.*, a.approver AS ap_approver, a.comment AS ap_comment, a.created_at AS ap_at FROM (
                 SELECT * FROM access_requests
                 WHERE ($1::text IS NULL OR subject_kind = $1) AND ($2::uuid IS NULL OR subject_id = $2)
                   AND ($3::text IS NULL OR state = $3) AND ($4::boolean IS NULL OR needs_review = $4)
                   AND ($5::uuid IS NULL OR id > $5)
                 ORDER BY id LIMIT $6
             ) r
             LEFT JOIN access_approvals a ON a.request_id = r.id
             ORDER BY r.id, a.created_at, a.approver",
        )
        .bind(filter.subject.map(Subject::kind))
        .bind(filter.subject.map(Subject::id))
        .bind(filter.state)
        .bind(filter.needs_review)
        .bind(page.after)
        .bind(i64::from(page.limit))
        .fetch_all(&self.pool)
        .await
        .or_store("access request")?;
        fold_access_requests(&rows)
    }

    async fn add_access_approval(
        &self,
        request_id: Uuid,
        approval: &AccessApproval,
    ) -> StoreResult<Option<u32>> {
        let mut tx = self.pool.begin().await.or_store("access approval")?;
        let done = sqlx::query(
            "INSERT INTO access_approvals (request_id, approver, comment, created_at)
             SELECT id, $2, $3, $4 FROM access_requests WHERE id = $1 AND state = 'pending'",
        )
        .bind(request_id)
        .bind(&approval.approver)
        .bind(&approval.comment)
        .bind(approval.at)
        .execute(&mut *tx)
        .await
        .or_store("access approval")?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let count: i64 =
            sqlx::query_scalar("SELECT count(*) FROM access_approvals WHERE request_id = $1")
                .bind(request_id)
                .fetch_one(&mut *tx)
                .await
                .or_store("access approval")?;
        tx.commit().await.or_store("access approval")?;
        Ok(Some(u32::try_from(count).unwrap_or(u32::MAX)))
    }

    async fn transition_access_request(&self, t: &AccessTransition) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE access_requests SET state = $3, decided_at = $4, decided_by = $5, decision_comment = $6,
                 grant_id = COALESCE($7::uuid, grant_id), needs_review = (needs_review OR $8::boolean)
             WHERE id = $1 AND state = $2",
        )
        .bind(t.id)
        .bind(t.from)
        .bind(t.to)
        .bind(t.now)
        .bind(&t.by)
        .bind(&t.comment)
        .bind(t.grant_id)
        .bind(t.needs_review)
        .execute(&self.pool)
        .await
        .or_store("access request")?;
        Ok(done.rows_affected() == 1)
    }

    async fn clear_access_review(&self, id: Uuid) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE access_requests SET needs_review = false WHERE id = $1 AND needs_review",
        )
        .bind(id)
        .execute(&self.pool)
        .await
        .or_store("access request")?;
        Ok(done.rows_affected() == 1)
    }

    async fn expire_access_requests(
        &self,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<AccessRequestRecord>> {
        let rows = sqlx::query(
            "UPDATE access_requests SET state = 'expired', decided_at = pending_until, decided_by = 'system',
                 decision_comment = 'nobody decided in time'
             WHERE state = 'pending' AND pending_until <= $1
             RETURNING *",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .or_store("access request")?;
        rows.iter().map(access_request).collect()
    }
}

#[async_trait]
impl Store for PgStore {
    async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("../../migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .or_store("database")?;
        Ok(())
    }

    async fn revision(&self) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT value FROM revision WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .or_store("revision")
    }

    fn local_changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    fn backend(&self) -> Backend {
        Backend::Postgres
    }
}
