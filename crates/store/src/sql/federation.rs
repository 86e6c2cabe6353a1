//! Workload identity federation: trusted issuers and federated identities.

use super::*;
use crate::{
    FederatedIdentityRecord, FederationStore, NewFederatedIdentity, NewTrustedIssuer, Page,
    Subject, TrustedIssuerRecord,
};

const ISSUER: &str = "trusted issuer";
const IDENTITY: &str = "federated identity";
/// What blocks deleting an issuer: the foreign key of its identities.
const ISSUER_IDENTITIES: &str = "federated identity of this trusted issuer";

/// The columns of a trusted issuer, as every statement reads them.
macro_rules! issuer_columns {
    () => {
        "id, issuer, description, settings, created_at, updated_at"
    };
}

/// The columns of a federated identity, as every statement reads them.
macro_rules! identity_columns {
    () => {
        "id, trusted_issuer_id, client_id, user_id, rule, exact_subject, conditions_key, created_at"
    };
}

/// Federated identities selected by `$where`.
macro_rules! identities_where {
    ($where:literal) => {
        concat!(
            "SELECT ",
            identity_columns!(),
            " FROM federated_identities WHERE ",
            $where,
            " ORDER BY id"
        )
    };
}

fn trusted_issuer<R: RowExt>(row: &R) -> StoreResult<TrustedIssuerRecord> {
    let Json(settings) = row.col("settings")?;
    Ok(TrustedIssuerRecord {
        id: row.col("id")?,
        issuer: row.col("issuer")?,
        description: row.col("description")?,
        settings,
        created_at: row.col::<Ts>("created_at")?.0,
        updated_at: row.col::<Ts>("updated_at")?.0,
    })
}

fn identity<R: RowExt>(row: &R) -> StoreResult<FederatedIdentityRecord> {
    let Json(rule) = row.col("rule")?;
    let owner = match (row.col("client_id")?, row.col("user_id")?) {
        (Some(id), None) => Subject::Client(id),
        (None, Some(id)) => Subject::User(id),
        _ => return Err(StoreError::Corrupt("federated_identities owner")),
    };
    Ok(FederatedIdentityRecord {
        id: row.col("id")?,
        trusted_issuer_id: row.col("trusted_issuer_id")?,
        owner,
        rule,
        exact_subject: row.col("exact_subject")?,
        conditions_key: row.col("conditions_key")?,
        created_at: row.col::<Ts>("created_at")?.0,
    })
}

/// The owner as the two owner columns (`client_id`, `user_id`).
fn owner_columns(owner: Subject) -> (Option<Uuid>, Option<Uuid>) {
    match owner {
        Subject::Client(id) => (Some(id), None),
        Subject::User(id) => (None, Some(id)),
    }
}

impl<DB: Dialect> SqlStore<DB> {
    /// Deletes the federated identities of a client or user on `conn` (part of deleting
    /// the subject).
    pub(super) async fn delete_identities_of(
        conn: &mut DB::Connection,
        owner: Subject,
        entity: &'static str,
    ) -> StoreResult<()> {
        let query = match owner {
            Subject::Client(id) => {
                sqlx::query("DELETE FROM federated_identities WHERE client_id = $1").arg(id)
            }
            Subject::User(id) => {
                sqlx::query("DELETE FROM federated_identities WHERE user_id = $1").arg(id)
            }
        };
        Self::run(conn, query, entity).await.map(drop)
    }
}

#[async_trait]
impl<DB: Dialect> FederationStore for SqlStore<DB> {
    async fn create_trusted_issuer(
        &self,
        new: NewTrustedIssuer,
        effects: &ChangeEffects,
    ) -> StoreResult<TrustedIssuerRecord> {
        let sql = concat!(
            "INSERT INTO trusted_issuers (id, issuer, description, settings, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING ",
            issuer_columns!()
        );
        let query = sqlx::query(sql)
            .arg(new.id)
            .arg(&new.issuer)
            .arg(&new.description)
            .arg(Json(&new.settings))
            .arg(Ts(new.now));
        self.change_returning(query, trusted_issuer, effects, ISSUER, true)
            .await?
            .ok_or(StoreError::NotFound(ISSUER))
    }

    async fn trusted_issuer(&self, id: Uuid) -> StoreResult<Option<TrustedIssuerRecord>> {
        let sql = concat!(
            "SELECT ",
            issuer_columns!(),
            " FROM trusted_issuers WHERE id = $1"
        );
        self.optional(sqlx::query(sql).arg(id), trusted_issuer, ISSUER)
            .await
    }

    async fn trusted_issuer_by_url(
        &self,
        issuer: &str,
    ) -> StoreResult<Option<TrustedIssuerRecord>> {
        let sql = concat!(
            "SELECT ",
            issuer_columns!(),
            " FROM trusted_issuers WHERE issuer = $1"
        );
        self.optional(sqlx::query(sql).arg(issuer), trusted_issuer, ISSUER)
            .await
    }

    async fn list_trusted_issuers(&self, page: Page) -> StoreResult<Vec<TrustedIssuerRecord>> {
        let sql = concat!(
            "SELECT ",
            issuer_columns!(),
            " FROM trusted_issuers WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2"
        );
        let query = sqlx::query(sql).arg(page.after).arg(i64::from(page.limit));
        self.all(query, trusted_issuer, ISSUER).await
    }

    async fn update_trusted_issuer(
        &self,
        issuer: &TrustedIssuerRecord,
        seen_updated_at: OffsetDateTime,
        effects: &ChangeEffects,
    ) -> StoreResult<TrustedIssuerRecord> {
        let sql = concat!(
            "UPDATE trusted_issuers SET description = $2, settings = $3, updated_at = $4
             WHERE id = $1 AND updated_at = $5 RETURNING ",
            issuer_columns!()
        );
        let query = sqlx::query(sql)
            .arg(issuer.id)
            .arg(&issuer.description)
            .arg(Json(&issuer.settings))
            .arg(Ts(issuer.updated_at))
            .arg(Ts(seen_updated_at));
        match self
            .change_returning(query, trusted_issuer, effects, ISSUER, true)
            .await?
        {
            Some(record) => Ok(record),
            None if self.trusted_issuer(issuer.id).await?.is_some() => Err(StoreError::Conflict(
                "trusted issuer (changed concurrently)",
            )),
            None => Err(StoreError::NotFound(ISSUER)),
        }
    }

    async fn delete_trusted_issuer(&self, id: Uuid, effects: &ChangeEffects) -> StoreResult<()> {
        let mut tx = self.begin(ISSUER).await?;
        // The identities' foreign key refuses the delete while any exist, including one
        // added concurrently: no check-then-delete race.
        let query = sqlx::query("DELETE FROM trusted_issuers WHERE id = $1").arg(id);
        let deleted = Self::run(&mut tx, query, ISSUER_IDENTITIES)
            .await
            .map_err(|e| match e {
                StoreError::NotFound(what) => StoreError::Conflict(what),
                other => other,
            })?;
        if deleted == 0 {
            return Err(StoreError::NotFound(ISSUER));
        }
        self.commit_change(tx, effects, ISSUER, true).await
    }

    async fn add_federated_identity(
        &self,
        new: NewFederatedIdentity,
        effects: &ChangeEffects,
    ) -> StoreResult<FederatedIdentityRecord> {
        let (client_id, user_id) = owner_columns(new.owner);
        let sql = concat!(
            "INSERT INTO federated_identities (id, trusted_issuer_id, client_id, user_id, rule, exact_subject, conditions_key, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ",
            identity_columns!()
        );
        let query = sqlx::query(sql)
            .arg(new.id)
            .arg(new.trusted_issuer_id)
            .arg(client_id)
            .arg(user_id)
            .arg(Json(&new.rule))
            .arg(&new.exact_subject)
            .arg(&new.conditions_key)
            .arg(Ts(new.now));
        match self
            .change_returning(query, identity, effects, IDENTITY, true)
            .await
        {
            Ok(record) => record.ok_or(StoreError::NotFound(IDENTITY)),
            // A foreign key failed: name the parent that is missing.
            Err(StoreError::NotFound(_)) => Err(StoreError::NotFound(
                if self.trusted_issuer(new.trusted_issuer_id).await?.is_none() {
                    ISSUER
                } else {
                    new.owner.kind()
                },
            )),
            Err(other) => Err(other),
        }
    }

    async fn federated_identity(&self, id: Uuid) -> StoreResult<Option<FederatedIdentityRecord>> {
        let sql = identities_where!("id = $1");
        self.optional(sqlx::query(sql).arg(id), identity, IDENTITY)
            .await
    }

    async fn federated_identities_of(
        &self,
        owner: Subject,
    ) -> StoreResult<Vec<FederatedIdentityRecord>> {
        // One branch per owner column, so each can use its index.
        let query = match owner {
            Subject::Client(id) => sqlx::query(identities_where!("client_id = $1")).arg(id),
            Subject::User(id) => sqlx::query(identities_where!("user_id = $1")).arg(id),
        };
        self.all(query, identity, IDENTITY).await
    }

    async fn federated_identities_of_issuer(
        &self,
        trusted_issuer_id: Uuid,
    ) -> StoreResult<Vec<FederatedIdentityRecord>> {
        // Served by the index behind UNIQUE (trusted_issuer_id, exact_subject).
        let sql = identities_where!("trusted_issuer_id = $1");
        self.all(sqlx::query(sql).arg(trusted_issuer_id), identity, IDENTITY)
            .await
    }

    async fn delete_federated_identity(
        &self,
        id: Uuid,
        effects: &ChangeEffects,
    ) -> StoreResult<()> {
        let query = sqlx::query("DELETE FROM federated_identities WHERE id = $1").arg(id);
        self.change_row(query, effects, IDENTITY, true).await
    }
}
