//! Grants: which subject may receive which scopes on which audience.

use std::collections::BTreeMap;

use super::*;
use crate::{GrantFilter, GrantRecord, GrantStore, NewGrant, Page, Subject, SubjectGrant};

/// Reads a grant row without its scopes.
fn grant<R: RowExt>(row: &R) -> StoreResult<GrantRecord> {
    let kind: String = row.col("subject_kind")?;
    let Json(allowed_cidrs) = row.col("allowed_cidrs")?;
    let Json(may_act) = row.col("may_act")?;
    Ok(GrantRecord {
        id: row.col("id")?,
        subject: Subject::from_parts(&kind, row.col("subject_id")?)
            .ok_or(StoreError::Corrupt("grants.subject_kind"))?,
        audience_id: row.col("audience_id")?,
        scopes: Vec::new(),
        not_before: row.col::<Option<Ts>>("not_before")?.map(|t| t.0),
        expires_at: row.col::<Option<Ts>>("expires_at")?.map(|t| t.0),
        allowed_cidrs,
        max_ttl_secs: row.col("max_ttl_secs")?,
        may_act,
        reason: row.col("reason")?,
        created_by: row.col("created_by")?,
        created_at: row.col::<Ts>("created_at")?.0,
    })
}

/// Folds `grant row ⋈ scope name` rows into grants with their scopes.
fn fold_grants<R: RowExt>(rows: &[R]) -> StoreResult<Vec<GrantRecord>> {
    let mut grants: BTreeMap<Uuid, GrantRecord> = BTreeMap::new();
    for row in rows {
        let id: Uuid = row.col("id")?;
        let name: String = row.col("scope_name")?;
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
fn fold_subject_grants<R: RowExt>(rows: &[R]) -> StoreResult<Vec<SubjectGrant>> {
    let mut uris: BTreeMap<Uuid, String> = BTreeMap::new();
    for row in rows {
        let id: Uuid = row.col("id")?;
        if let std::collections::btree_map::Entry::Vacant(slot) = uris.entry(id) {
            slot.insert(row.col("audience_uri")?);
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
impl<DB: Dialect> GrantStore for SqlStore<DB> {
    async fn create_grant(
        &self,
        new: NewGrant,
        effects: &ChangeEffects,
    ) -> StoreResult<GrantRecord> {
        let mut tx = self.begin("grant").await?;
        let id = new.id;
        sqlx::query(
            "INSERT INTO grants (id, subject_kind, subject_id, audience_id, not_before, expires_at, allowed_cidrs, max_ttl_secs, reason, created_by, created_at, may_act)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .arg(id)
        .arg(new.subject.kind())
        .arg(new.subject.id())
        .arg(new.audience_id)
        .arg(new.not_before.map(Ts))
        .arg(new.expires_at.map(Ts))
        .arg(Json(&new.allowed_cidrs))
        .arg(new.max_ttl_secs)
        .arg(&new.reason)
        .arg(&new.created_by)
        .arg(Ts(new.now))
        .arg(Json(&new.may_act))
        .execute(DB::conn(&mut tx))
        .await
        .or_store("grant")
        .map_err(parent_missing("audience"))?;
        let mut scopes = new.scopes.clone();
        scopes.sort();
        scopes.dedup();
        for name in &scopes {
            let query = sqlx::query(
                "INSERT INTO grant_scopes (grant_id, scope_id)
                 SELECT $1, id FROM scopes WHERE audience_id = $2 AND name = $3",
            );
            let query = query.arg(id).arg(new.audience_id).arg(name);
            if Self::run(&mut tx, query, "grant").await? == 0 {
                return Err(StoreError::NotFound("scope"));
            }
        }
        self.commit_change(tx, effects, "grant", true).await?;
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
        let query = sqlx::query(
            "SELECT g.*, s.name AS scope_name FROM grants g
             JOIN grant_scopes gs ON gs.grant_id = g.id
             JOIN scopes s ON s.id = gs.scope_id
             WHERE g.id = $1 ORDER BY s.name",
        )
        .arg(id);
        let rows = query.fetch_all(self.db()).await.or_store("grant")?;
        Ok(fold_grants(&rows)?.into_iter().next())
    }

    async fn list_grants(&self, filter: GrantFilter, page: Page) -> StoreResult<Vec<GrantRecord>> {
        let rows = sqlx::query(
            "SELECT g.*, s.name AS scope_name FROM (
                 SELECT * FROM grants
                 WHERE ($1 IS NULL OR subject_kind = $1) AND ($2 IS NULL OR subject_id = $2)
                   AND ($3 IS NULL OR audience_id = $3) AND ($4 IS NULL OR id > $4)
                 ORDER BY id LIMIT $5
             ) g
             JOIN grant_scopes gs ON gs.grant_id = g.id
             JOIN scopes s ON s.id = gs.scope_id
             ORDER BY g.id, s.name",
        )
        .arg(filter.subject.map(Subject::kind))
        .arg(filter.subject.map(Subject::id))
        .arg(filter.audience_id)
        .arg(page.after)
        .arg(i64::from(page.limit))
        .fetch_all(self.db())
        .await
        .or_store("grant")?;
        fold_grants(&rows)
    }

    async fn update_grant(
        &self,
        g: &GrantRecord,
        effects: &ChangeEffects,
    ) -> StoreResult<GrantRecord> {
        let query = sqlx::query(
            "UPDATE grants SET not_before = $2, expires_at = $3, allowed_cidrs = $4, max_ttl_secs = $5, reason = $6,
                 may_act = $7
             WHERE id = $1",
        )
        .arg(g.id)
        .arg(g.not_before.map(Ts))
        .arg(g.expires_at.map(Ts))
        .arg(Json(&g.allowed_cidrs))
        .arg(g.max_ttl_secs)
        .arg(&g.reason)
        .arg(Json(&g.may_act));
        self.change_row(query, effects, "grant", true).await?;
        self.grant(g.id).await?.ok_or(StoreError::NotFound("grant"))
    }

    async fn delete_grant(&self, id: Uuid, effects: &ChangeEffects) -> StoreResult<()> {
        let query = sqlx::query("DELETE FROM grants WHERE id = $1").arg(id);
        self.change_row(query, effects, "grant", true).await
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
        .arg(subject.kind())
        .arg(subject.id())
        .fetch_all(self.db())
        .await
        .or_store("grant")?;
        fold_subject_grants(&rows)
    }
}
