//! Audiences and their scopes.

use async_trait::async_trait;
use uuid::Uuid;

use super::{Dialect, QueryExt, RowExt, SqlStore, Ts, parent_missing};
use crate::error::SqlxResultExt;
use crate::{
    AudienceRecord, AudienceStore, ChangeEffects, NewAudience, NewScope, Page, ScopeRecord,
    StoreError, StoreResult,
};

fn audience<R: RowExt>(row: &R) -> Result<AudienceRecord, sqlx::Error>
where
    R::Database: Dialect,
{
    Ok(AudienceRecord {
        id: row.col("id")?,
        uri: row.col("uri")?,
        description: row.col("description")?,
        created_at: row.col::<Ts>("created_at")?.0,
    })
}

fn scope<R: RowExt>(row: &R) -> Result<ScopeRecord, sqlx::Error>
where
    R::Database: Dialect,
{
    Ok(ScopeRecord {
        id: row.col("id")?,
        audience_id: row.col("audience_id")?,
        name: row.col("name")?,
        description: row.col("description")?,
        created_at: row.col::<Ts>("created_at")?.0,
    })
}

impl<DB: Dialect> SqlStore<DB> {
    /// Fails with `InUse(entity)` when `sql` (an `EXISTS` on `$1`) finds a user of `id`.
    pub(super) async fn unused(
        conn: &mut DB::Connection,
        sql: &'static str,
        id: Uuid,
        entity: &'static str,
    ) -> StoreResult<()> {
        let row = sqlx::query(sql)
            .arg(id)
            .fetch_one(DB::conn(conn))
            .await
            .or_store(entity)?;
        if row.col::<bool>("used").or_store(entity)? {
            return Err(StoreError::InUse(entity));
        }
        Ok(())
    }

    /// Deletes the row `sql` names by `$1`; `NotFound(entity)` when there is none.
    pub(super) async fn delete_row(
        conn: &mut DB::Connection,
        sql: &'static str,
        id: Uuid,
        entity: &'static str,
    ) -> StoreResult<()> {
        let done = sqlx::query(sql)
            .arg(id)
            .execute(DB::conn(conn))
            .await
            .or_store(entity)?;
        if DB::affected(&done) == 0 {
            return Err(StoreError::NotFound(entity));
        }
        Ok(())
    }
}

#[async_trait]
impl<DB: Dialect> AudienceStore for SqlStore<DB> {
    async fn create_audience(
        &self,
        new: NewAudience,
        effects: &ChangeEffects,
    ) -> StoreResult<AudienceRecord> {
        let mut tx = self.begin("audience").await?;
        let row = sqlx::query(
            "INSERT INTO audiences (id, uri, description, created_at) VALUES ($1, $2, $3, $4)
             RETURNING id, uri, description, created_at",
        )
        .arg(new.id)
        .arg(&new.uri)
        .arg(&new.description)
        .arg(Ts(new.now))
        .fetch_one(DB::conn(&mut tx))
        .await
        .or_store("audience")?;
        let record = audience(&row).or_store("audience")?;
        self.commit_change(tx, effects, "audience", true).await?;
        Ok(record)
    }

    async fn audience_by_uri(&self, uri: &str) -> StoreResult<Option<AudienceRecord>> {
        let row =
            sqlx::query("SELECT id, uri, description, created_at FROM audiences WHERE uri = $1")
                .arg(uri)
                .fetch_optional(self.db())
                .await
                .or_store("audience")?;
        row.as_ref().map(audience).transpose().or_store("audience")
    }

    async fn audience(&self, id: Uuid) -> StoreResult<Option<AudienceRecord>> {
        let row =
            sqlx::query("SELECT id, uri, description, created_at FROM audiences WHERE id = $1")
                .arg(id)
                .fetch_optional(self.db())
                .await
                .or_store("audience")?;
        row.as_ref().map(audience).transpose().or_store("audience")
    }

    async fn list_audiences(&self, page: Page) -> StoreResult<Vec<AudienceRecord>> {
        let rows = sqlx::query(
            "SELECT id, uri, description, created_at FROM audiences WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2",
        )
        .arg(page.after)
        .arg(i64::from(page.limit))
        .fetch_all(self.db())
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
        let mut tx = self.begin("audience").await?;
        let row = sqlx::query(
            "UPDATE audiences SET description = $2 WHERE id = $1 RETURNING id, uri, description, created_at",
        )
        .arg(id)
        .arg(description)
        .fetch_optional(DB::conn(&mut tx))
        .await
        .or_store("audience")?
        .ok_or(StoreError::NotFound("audience"))?;
        let record = audience(&row).or_store("audience")?;
        self.commit_change(tx, effects, "audience", true).await?;
        Ok(record)
    }

    async fn delete_audience(&self, id: Uuid, effects: &ChangeEffects) -> StoreResult<()> {
        let mut tx = self.begin("audience").await?;
        Self::unused(
            &mut tx,
            "SELECT EXISTS (SELECT 1 FROM grants WHERE audience_id = $1) AS used",
            id,
            "audience",
        )
        .await?;
        Self::delete_row(
            &mut tx,
            "DELETE FROM audiences WHERE id = $1",
            id,
            "audience",
        )
        .await?;
        self.commit_change(tx, effects, "audience", true).await
    }

    async fn create_scope(
        &self,
        new: NewScope,
        effects: &ChangeEffects,
    ) -> StoreResult<ScopeRecord> {
        let mut tx = self.begin("scope").await?;
        let row = sqlx::query(
            "INSERT INTO scopes (id, audience_id, name, description, created_at) VALUES ($1, $2, $3, $4, $5)
             RETURNING id, audience_id, name, description, created_at",
        )
        .arg(new.id)
        .arg(new.audience_id)
        .arg(&new.name)
        .arg(&new.description)
        .arg(Ts(new.now))
        .fetch_one(DB::conn(&mut tx))
        .await
        .map_err(|e| parent_missing(e, "scope", "audience"))?;
        let record = scope(&row).or_store("scope")?;
        self.commit_change(tx, effects, "scope", true).await?;
        Ok(record)
    }

    async fn scopes_of(&self, audience_id: Uuid) -> StoreResult<Vec<ScopeRecord>> {
        let rows = sqlx::query(
            "SELECT id, audience_id, name, description, created_at FROM scopes WHERE audience_id = $1 ORDER BY name",
        )
        .arg(audience_id)
        .fetch_all(self.db())
        .await
        .or_store("scope")?;
        rows.iter()
            .map(scope)
            .collect::<Result<_, _>>()
            .or_store("scope")
    }

    async fn scope(&self, id: Uuid) -> StoreResult<Option<ScopeRecord>> {
        let row = sqlx::query(
            "SELECT id, audience_id, name, description, created_at FROM scopes WHERE id = $1",
        )
        .arg(id)
        .fetch_optional(self.db())
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
             WHERE ($1 IS NULL OR audience_id = $1) AND ($2 IS NULL OR id > $2)
             ORDER BY id LIMIT $3",
        )
        .arg(audience_id)
        .arg(page.after)
        .arg(i64::from(page.limit))
        .fetch_all(self.db())
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
        let mut tx = self.begin("scope").await?;
        let row = sqlx::query(
            "UPDATE scopes SET description = $2 WHERE id = $1
             RETURNING id, audience_id, name, description, created_at",
        )
        .arg(id)
        .arg(description)
        .fetch_optional(DB::conn(&mut tx))
        .await
        .or_store("scope")?
        .ok_or(StoreError::NotFound("scope"))?;
        let record = scope(&row).or_store("scope")?;
        self.commit_change(tx, effects, "scope", true).await?;
        Ok(record)
    }

    async fn delete_scope(&self, id: Uuid, effects: &ChangeEffects) -> StoreResult<()> {
        let mut tx = self.begin("scope").await?;
        Self::unused(
            &mut tx,
            "SELECT EXISTS (SELECT 1 FROM grant_scopes WHERE scope_id = $1) AS used",
            id,
            "scope",
        )
        .await?;
        Self::delete_row(&mut tx, "DELETE FROM scopes WHERE id = $1", id, "scope").await?;
        self.commit_change(tx, effects, "scope", true).await
    }
}
