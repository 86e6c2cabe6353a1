//! Clients, their secrets and public keys; deleting a subject (client or user).

use super::*;
use crate::{
    AnomalyPolicy, ClientPublicKeyRecord, ClientRecord, ClientSecretRecord, ClientStore,
    ClientView, GrantStore, NewClient, NewClientPublicKey, NewClientSecret, Page, Subject,
};

fn client<R: RowExt>(row: &R) -> StoreResult<ClientRecord> {
    let policy: String = row.col("anomaly_policy")?;
    let Json(allowed_cidrs) = row.col("allowed_cidrs")?;
    let Json(grant_types) = row.col("grant_types")?;
    let Json(labels) = row.col("labels")?;
    Ok(ClientRecord {
        id: row.col("id")?,
        name: row.col("name")?,
        enabled: row.col("enabled")?,
        default_ttl_secs: row.col("default_ttl_secs")?,
        max_ttl_secs: row.col("max_ttl_secs")?,
        allowed_cidrs,
        require_dpop: row.col("require_dpop")?,
        anomaly_policy: AnomalyPolicy::parse(&policy)
            .ok_or(StoreError::Corrupt("unknown anomaly_policy"))?,
        grant_types,
        labels,
        created_at: row.col::<Ts>("created_at")?.0,
        updated_at: row.col::<Ts>("updated_at")?.0,
    })
}

fn secret<R: RowExt>(row: &R) -> StoreResult<ClientSecretRecord> {
    let digest: Vec<u8> = row.col("digest")?;
    Ok(ClientSecretRecord {
        id: row.col("id")?,
        client_id: row.col("client_id")?,
        digest: digest
            .try_into()
            .map_err(|_| StoreError::Corrupt("client_secrets.digest"))?,
        created_at: row.col::<Ts>("created_at")?.0,
        expires_at: row.col::<Option<Ts>>("expires_at")?.map(|t| t.0),
    })
}

fn public_key<R: RowExt>(row: &R) -> StoreResult<ClientPublicKeyRecord> {
    Ok(ClientPublicKeyRecord {
        id: row.col("id")?,
        client_id: row.col("client_id")?,
        kid: row.col("kid")?,
        public_key: row.col("public_key")?,
        created_at: row.col::<Ts>("created_at")?.0,
    })
}

impl<DB: Dialect> SqlStore<DB> {
    /// Deletes a client or user together with its grants and federated identities, in
    /// one transaction.
    pub(super) async fn delete_subject(
        &self,
        subject: Subject,
        effects: &ChangeEffects,
    ) -> StoreResult<()> {
        let (entity, delete_row) = match subject {
            Subject::Client(_) => ("client", "DELETE FROM clients WHERE id = $1"),
            Subject::User(_) => ("user", "DELETE FROM users WHERE id = $1"),
        };
        let mut tx = self.begin(entity).await?;
        let sql = "DELETE FROM grants WHERE subject_kind = $1 AND subject_id = $2";
        let query = sqlx::query(sql).arg(subject.kind()).arg(subject.id());
        Self::run(&mut tx, query, entity).await?;
        Self::delete_identities_of(&mut tx, subject, entity).await?;
        if let Subject::Client(id) = subject {
            let sql = "DELETE FROM client_sightings WHERE client_id = $1";
            Self::run(&mut tx, sqlx::query(sql).arg(id.to_string()), entity).await?;
        }
        Self::delete_unused(&mut tx, (None, delete_row), subject.id(), entity).await?;
        self.commit_change(tx, effects, entity, true).await
    }
}

#[async_trait]
impl<DB: Dialect> ClientStore for SqlStore<DB> {
    async fn create_client(
        &self,
        new: NewClient,
        effects: &ChangeEffects,
    ) -> StoreResult<ClientRecord> {
        let query = sqlx::query(
            "INSERT INTO clients (id, name, enabled, default_ttl_secs, max_ttl_secs, allowed_cidrs, require_dpop, anomaly_policy, created_at, updated_at, grant_types, labels)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $9, $8, $8, $10, $11) RETURNING *",
        )
        .arg(new.id)
        .arg(&new.name)
        .arg(new.enabled)
        .arg(new.default_ttl_secs)
        .arg(new.max_ttl_secs)
        .arg(Json(&new.allowed_cidrs))
        .arg(new.require_dpop)
        .arg(Ts(new.now))
        .arg(new.anomaly_policy.as_str())
        .arg(Json(&new.grant_types))
        .arg(Json(&new.labels));
        self.change_returning(query, client, effects, "client", true)
            .await?
            .ok_or(StoreError::NotFound("client"))
    }

    async fn client(&self, id: Uuid) -> StoreResult<Option<ClientRecord>> {
        let query = sqlx::query("SELECT * FROM clients WHERE id = $1").arg(id);
        self.optional(query, client, "client").await
    }

    async fn set_client_enabled(
        &self,
        id: Uuid,
        enabled: bool,
        now: OffsetDateTime,
        effects: &ChangeEffects,
    ) -> StoreResult<()> {
        let query = sqlx::query("UPDATE clients SET enabled = $2, updated_at = $3 WHERE id = $1")
            .arg(id)
            .arg(enabled)
            .arg(Ts(now));
        self.change_row(query, effects, "client", true).await
    }

    async fn add_client_secret(
        &self,
        new: NewClientSecret,
        effects: &ChangeEffects,
    ) -> StoreResult<ClientSecretRecord> {
        let query = sqlx::query(
            "INSERT INTO client_secrets (id, client_id, digest, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)
             RETURNING id, client_id, digest, created_at, expires_at",
        )
        .arg(new.id)
        .arg(new.client_id)
        .arg(&new.digest[..])
        .arg(Ts(new.now))
        .arg(new.expires_at.map(Ts));
        self.change_returning(query, secret, effects, "client", true)
            .await?
            .ok_or(StoreError::NotFound("client"))
    }

    async fn client_secrets(&self, client_id: Uuid) -> StoreResult<Vec<ClientSecretRecord>> {
        let query = sqlx::query(
            "SELECT id, client_id, digest, created_at, expires_at FROM client_secrets WHERE client_id = $1 ORDER BY created_at",
        )
        .arg(client_id);
        self.all(query, secret, "client secret").await
    }

    async fn client_view(&self, id: Uuid) -> StoreResult<Option<ClientView>> {
        let Some(client) = self.client(id).await? else {
            return Ok(None);
        };
        let secrets = self.client_secrets(id).await?;
        let grants = self.subject_grants(Subject::Client(id)).await?;
        let public_keys = self.client_public_keys(id).await?;
        Ok(Some(ClientView {
            client,
            secrets,
            public_keys,
            grants,
        }))
    }

    async fn list_clients(&self, page: Page) -> StoreResult<Vec<ClientRecord>> {
        let sql = "SELECT * FROM clients WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2";
        let query = sqlx::query(sql).arg(page.after).arg(i64::from(page.limit));
        self.all(query, client, "client").await
    }

    async fn update_client(
        &self,
        c: &ClientRecord,
        seen_updated_at: OffsetDateTime,
        effects: &ChangeEffects,
    ) -> StoreResult<ClientRecord> {
        let query = sqlx::query(
            "UPDATE clients SET name = $2, enabled = $3, default_ttl_secs = $4, max_ttl_secs = $5,
                 allowed_cidrs = $6, require_dpop = $7, updated_at = $8, anomaly_policy = $10,
                 grant_types = $11, labels = $12
             WHERE id = $1 AND updated_at = $9 RETURNING *",
        )
        .arg(c.id)
        .arg(&c.name)
        .arg(c.enabled)
        .arg(c.default_ttl_secs)
        .arg(c.max_ttl_secs)
        .arg(Json(&c.allowed_cidrs))
        .arg(c.require_dpop)
        .arg(Ts(c.updated_at))
        .arg(Ts(seen_updated_at))
        .arg(c.anomaly_policy.as_str())
        .arg(Json(&c.grant_types))
        .arg(Json(&c.labels));
        match self
            .change_returning(query, client, effects, "client", true)
            .await?
        {
            Some(record) => Ok(record),
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
        let sql = "DELETE FROM client_secrets WHERE client_id = $1 AND id = $2";
        let query = sqlx::query(sql).arg(client_id).arg(secret_id);
        self.change_row(query, effects, "client secret", true).await
    }

    async fn add_client_public_key(
        &self,
        new: NewClientPublicKey,
        effects: &ChangeEffects,
    ) -> StoreResult<ClientPublicKeyRecord> {
        let query = sqlx::query(
            "INSERT INTO client_public_keys (id, client_id, kid, public_key, created_at) VALUES ($1, $2, $3, $4, $5)
             RETURNING id, client_id, kid, public_key, created_at",
        )
        .arg(new.id)
        .arg(new.client_id)
        .arg(&new.kid)
        .arg(&new.public_key[..])
        .arg(Ts(new.now));
        self.change_returning(query, public_key, effects, "public key", true)
            .await
            .map_err(parent_missing("client"))?
            .ok_or(StoreError::NotFound("public key"))
    }

    async fn client_public_keys(&self, client_id: Uuid) -> StoreResult<Vec<ClientPublicKeyRecord>> {
        let query = sqlx::query(
            "SELECT id, client_id, kid, public_key, created_at FROM client_public_keys WHERE client_id = $1 ORDER BY id",
        )
        .arg(client_id);
        self.all(query, public_key, "public key").await
    }

    async fn delete_client_public_key(
        &self,
        client_id: Uuid,
        key_id: Uuid,
        effects: &ChangeEffects,
    ) -> StoreResult<()> {
        let sql = "DELETE FROM client_public_keys WHERE client_id = $1 AND id = $2";
        let query = sqlx::query(sql).arg(client_id).arg(key_id);
        self.change_row(query, effects, "public key", true).await
    }
}
