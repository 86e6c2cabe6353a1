//! Audiences and their scopes.

use super::*;
use crate::{AudienceRecord, AudienceStore, NewAudience, NewScope, Page, ScopeRecord};

fn audience<R: RowExt>(row: &R) -> StoreResult<AudienceRecord> {
    Ok(AudienceRecord {
        id: row.col("id")?,
        uri: row.col("uri")?,
        description: row.col("description")?,
        created_at: row.col::<Ts>("created_at")?.0,
    })
}

fn scope<R: RowExt>(row: &R) -> StoreResult<ScopeRecord> {
    Ok(ScopeRecord {
        id: row.col("id")?,
        audience_id: row.col("audience_id")?,
        name: row.col("name")?,
        description: row.col("description")?,
        created_at: row.col::<Ts>("created_at")?.0,
    })
}

impl<DB: Dialect> SqlStore<DB> {
    /// Deletes the row `delete` names by `$1`, unless `used` (an `EXISTS` on `$1`,
    /// named `used`) finds a user of it: `InUse(entity)`, or `NotFound(entity)`.
    pub(super) async fn delete_unused(
        conn: &mut DB::Connection,
        (used, delete): (Option<&'static str>, &'static str),
        id: Uuid,
        entity: &'static str,
    ) -> StoreResult<()> {
        if let Some(used) = used {
            let row = sqlx::query(used)
                .arg(id)
                .fetch_one(DB::conn(conn))
                .await
                .or_store(entity)?;
            if row.col::<bool>("used")? {
                return Err(StoreError::InUse(entity));
            }
        }
        let deleted = Self::run(conn, sqlx::query(delete).arg(id), entity).await?;
        (deleted > 0)
            .then_some(())
            .ok_or(StoreError::NotFound(entity))
    }
}

#[async_trait]
impl<DB: Dialect> AudienceStore for SqlStore<DB> {
    async fn create_audience(
        &self,
        new: NewAudience,
        effects: &ChangeEffects,
    ) -> StoreResult<AudienceRecord> {
        let query = sqlx::query(
            "INSERT INTO audiences (id, uri, description, created_at) VALUES ($1, $2, $3, $4)
             RETURNING id, uri, description, created_at",
        )
        .arg(new.id)
        .arg(&new.uri)
        .arg(&new.description)
        .arg(Ts(new.now));
        self.change_returning(query, audience, effects, "audience", true)
            .await?
            .ok_or(StoreError::NotFound("audience"))
    }

    async fn audience_by_uri(&self, uri: &str) -> StoreResult<Option<AudienceRecord>> {
        let sql = "SELECT id, uri, description, created_at FROM audiences WHERE uri = $1";
        self.optional(sqlx::query(sql).arg(uri), audience, "audience")
            .await
    }

    async fn audience(&self, id: Uuid) -> StoreResult<Option<AudienceRecord>> {
        let sql = "SELECT id, uri, description, created_at FROM audiences WHERE id = $1";
        self.optional(sqlx::query(sql).arg(id), audience, "audience")
            .await
    }

    async fn list_audiences(&self, page: Page) -> StoreResult<Vec<AudienceRecord>> {
        let query = sqlx::query(
            "SELECT id, uri, description, created_at FROM audiences
             WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2",
        )
        .arg(page.after)
        .arg(i64::from(page.limit));
        self.all(query, audience, "audience").await
    }

    async fn update_audience(
        &self,
        id: Uuid,
        description: &str,
        effects: &ChangeEffects,
    ) -> StoreResult<AudienceRecord> {
        let query = sqlx::query(
            "UPDATE audiences SET description = $2 WHERE id = $1 RETURNING id, uri, description, created_at",
        )
        .arg(id)
        .arg(description);
        self.change_returning(query, audience, effects, "audience", true)
            .await?
            .ok_or(StoreError::NotFound("audience"))
    }

    async fn delete_audience(&self, id: Uuid, effects: &ChangeEffects) -> StoreResult<()> {
        let mut tx = self.begin("audience").await?;
        let sql = (
            Some("SELECT EXISTS (SELECT 1 FROM grants WHERE audience_id = $1) AS used"),
            "DELETE FROM audiences WHERE id = $1",
        );
        Self::delete_unused(&mut tx, sql, id, "audience").await?;
        self.commit_change(tx, effects, "audience", true).await
    }

    async fn create_scope(
        &self,
        new: NewScope,
        effects: &ChangeEffects,
    ) -> StoreResult<ScopeRecord> {
        let query = sqlx::query(
            "INSERT INTO scopes (id, audience_id, name, description, created_at) VALUES ($1, $2, $3, $4, $5)
             RETURNING id, audience_id, name, description, created_at",
        )
        .arg(new.id)
        .arg(new.audience_id)
        .arg(&new.name)
        .arg(&new.description)
        .arg(Ts(new.now));
        self.change_returning(query, scope, effects, "scope", true)
            .await
            .map_err(parent_missing("audience"))?
            .ok_or(StoreError::NotFound("scope"))
    }

    async fn scopes_of(&self, audience_id: Uuid) -> StoreResult<Vec<ScopeRecord>> {
        let query = sqlx::query(
            "SELECT id, audience_id, name, description, created_at FROM scopes WHERE audience_id = $1 ORDER BY name",
        )
        .arg(audience_id);
        self.all(query, scope, "scope").await
    }

    async fn scope(&self, id: Uuid) -> StoreResult<Option<ScopeRecord>> {
        let sql = "SELECT id, audience_id, name, description, created_at FROM scopes WHERE id = $1";
        self.optional(sqlx::query(sql).arg(id), scope, "scope")
            .await
    }

    async fn list_scopes(
        &self,
        audience_id: Option<Uuid>,
        page: Page,
    ) -> StoreResult<Vec<ScopeRecord>> {
        let query = sqlx::query(
            "SELECT id, audience_id, name, description, created_at FROM scopes
             WHERE ($1 IS NULL OR audience_id = $1) AND ($2 IS NULL OR id > $2)
             ORDER BY id LIMIT $3",
        )
        .arg(audience_id)
        .arg(page.after)
        .arg(i64::from(page.limit));
        self.all(query, scope, "scope").await
    }

    async fn update_scope(
        &self,
        id: Uuid,
        description: &str,
        effects: &ChangeEffects,
    ) -> StoreResult<ScopeRecord> {
        let query = sqlx::query(
            "UPDATE scopes SET description = $2 WHERE id = $1
             RETURNING id, audience_id, name, description, created_at",
        )
        .arg(id)
        .arg(description);
        self.change_returning(query, scope, effects, "scope", true)
            .await?
            .ok_or(StoreError::NotFound("scope"))
    }

    async fn delete_scope(&self, id: Uuid, effects: &ChangeEffects) -> StoreResult<()> {
        let mut tx = self.begin("scope").await?;
        let sql = (
            Some("SELECT EXISTS (SELECT 1 FROM grant_scopes WHERE scope_id = $1) AS used"),
            "DELETE FROM scopes WHERE id = $1",
        );
        Self::delete_unused(&mut tx, sql, id, "scope").await?;
        self.commit_change(tx, effects, "scope", true).await
    }
}
