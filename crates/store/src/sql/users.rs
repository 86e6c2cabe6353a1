//! People, and their login failure bookkeeping.

use async_trait::async_trait;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Dialect, QueryExt, RowExt, SqlStore, Ts};
use crate::error::SqlxResultExt;
use crate::{
    ChangeEffects, LoginFailure, NewUser, Page, StoreError, StoreResult, Subject, UserRecord,
    UserStore,
};

fn user<R: RowExt>(row: &R) -> Result<UserRecord, sqlx::Error>
where
    R::Database: Dialect,
{
    let Json(labels) = row.col("labels")?;
    Ok(UserRecord {
        id: row.col("id")?,
        username: row.col("username")?,
        password_hash: row.col("password_hash")?,
        enabled: row.col("enabled")?,
        failed_logins: row.col("failed_logins")?,
        locked_until: row.col::<Option<Ts>>("locked_until")?.map(Into::into),
        labels,
        created_at: row.col::<Ts>("created_at")?.0,
        updated_at: row.col::<Ts>("updated_at")?.0,
    })
}

/// Counts a failure; the lock-out condition `$4` follows when `attempt` (see
/// [`UserStore::begin_login_attempt`]).
const COUNT_FAILURE: &str = "UPDATE users SET
         failed_logins = CASE WHEN failed_logins + 1 >= $2 THEN 0 ELSE failed_logins + 1 END,
         locked_until = CASE WHEN failed_logins + 1 >= $2 THEN $3 ELSE locked_until END
     WHERE id = $1 AND ($4 IS NULL OR locked_until IS NULL OR locked_until <= $4) RETURNING *";

impl<DB: Dialect> SqlStore<DB> {
    /// Counts a login failure; with `not_locked_at`, only if the user is not locked then.
    async fn count_failure(
        &self,
        f: LoginFailure,
        not_locked_at: Option<OffsetDateTime>,
    ) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query(COUNT_FAILURE)
            .arg(f.user_id)
            .arg(f.max_failures)
            .arg(Ts(f.now + f.lockout))
            .arg(not_locked_at.map(Ts))
            .fetch_optional(self.db())
            .await
            .or_store("user")?;
        row.as_ref().map(user).transpose().or_store("user")
    }
}

#[async_trait]
impl<DB: Dialect> UserStore for SqlStore<DB> {
    async fn create_user(&self, new: NewUser, effects: &ChangeEffects) -> StoreResult<UserRecord> {
        let mut tx = self.begin("username").await?;
        let row = sqlx::query(
            "INSERT INTO users (id, username, password_hash, enabled, created_at, updated_at, labels)
             VALUES ($1, $2, $3, $4, $5, $5, $6) RETURNING *",
        )
        .arg(new.id)
        .arg(&new.username)
        .arg(&new.password_hash)
        .arg(new.enabled)
        .arg(Ts(new.now))
        .arg(Json(&new.labels))
        .fetch_one(DB::conn(&mut tx))
        .await
        .or_store("username")?;
        let record = user(&row).or_store("user")?;
        self.commit_change(tx, effects, "username", true).await?;
        Ok(record)
    }

    async fn user(&self, id: Uuid) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query("SELECT * FROM users WHERE id = $1")
            .arg(id)
            .fetch_optional(self.db())
            .await
            .or_store("user")?;
        row.as_ref().map(user).transpose().or_store("user")
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query("SELECT * FROM users WHERE username = $1")
            .arg(username)
            .fetch_optional(self.db())
            .await
            .or_store("user")?;
        row.as_ref().map(user).transpose().or_store("user")
    }

    async fn list_users(&self, page: Page) -> StoreResult<Vec<UserRecord>> {
        let rows =
            sqlx::query("SELECT * FROM users WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2")
                .arg(page.after)
                .arg(i64::from(page.limit))
                .fetch_all(self.db())
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
        let mut tx = self.begin("user").await?;
        let row = sqlx::query(
            "UPDATE users SET password_hash = $2, enabled = $3, failed_logins = $4, locked_until = $5, updated_at = $6,
                 labels = $8
             WHERE id = $1 AND updated_at = $7 RETURNING *",
        )
        .arg(u.id)
        .arg(&u.password_hash)
        .arg(u.enabled)
        .arg(u.failed_logins)
        .arg(u.locked_until.map(Ts))
        .arg(Ts(u.updated_at))
        .arg(Ts(seen_updated_at))
        .arg(Json(&u.labels))
        .fetch_optional(DB::conn(&mut tx))
        .await
        .or_store("user")?;
        match row {
            Some(row) => {
                let record = user(&row).or_store("user")?;
                self.commit_change(tx, effects, "user", issuance_changed)
                    .await?;
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
        self.count_failure(f, None)
            .await?
            .ok_or(StoreError::NotFound("user"))
    }

    async fn begin_login_attempt(&self, f: LoginFailure) -> StoreResult<Option<UserRecord>> {
        let now = f.now;
        self.count_failure(f, Some(now)).await
    }

    async fn record_login_success(&self, user_id: Uuid) -> StoreResult<()> {
        sqlx::query("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = $1")
            .arg(user_id)
            .execute(self.db())
            .await
            .or_store("user")?;
        Ok(())
    }
}
