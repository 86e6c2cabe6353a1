//! People, and their login failure bookkeeping.

use super::*;
use crate::{LoginFailure, NewUser, Page, Subject, UserRecord, UserStore};

fn user<R: RowExt>(row: &R) -> StoreResult<UserRecord> {
    let Json(labels) = row.col("labels")?;
    Ok(UserRecord {
        id: row.col("id")?,
        username: row.col("username")?,
        password_hash: row.col("password_hash")?,
        enabled: row.col("enabled")?,
        failed_logins: row.col("failed_logins")?,
        locked_until: row.col::<Option<Ts>>("locked_until")?.map(|t| t.0),
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
        let query = sqlx::query(COUNT_FAILURE)
            .arg(f.user_id)
            .arg(f.max_failures)
            .arg(Ts(f.now + f.lockout))
            .arg(not_locked_at.map(Ts));
        self.optional(query, user, "user").await
    }
}

#[async_trait]
impl<DB: Dialect> UserStore for SqlStore<DB> {
    async fn create_user(&self, new: NewUser, effects: &ChangeEffects) -> StoreResult<UserRecord> {
        let query = sqlx::query(
            "INSERT INTO users (id, username, password_hash, enabled, created_at, updated_at, labels)
             VALUES ($1, $2, $3, $4, $5, $5, $6) RETURNING *",
        )
        .arg(new.id)
        .arg(&new.username)
        .arg(&new.password_hash)
        .arg(new.enabled)
        .arg(Ts(new.now))
        .arg(Json(&new.labels));
        self.change_returning(query, user, effects, "username", true)
            .await?
            .ok_or(StoreError::NotFound("username"))
    }

    async fn user(&self, id: Uuid) -> StoreResult<Option<UserRecord>> {
        let query = sqlx::query("SELECT * FROM users WHERE id = $1").arg(id);
        self.optional(query, user, "user").await
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        let query = sqlx::query("SELECT * FROM users WHERE username = $1").arg(username);
        self.optional(query, user, "user").await
    }

    async fn list_users(&self, page: Page) -> StoreResult<Vec<UserRecord>> {
        let sql = "SELECT * FROM users WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2";
        let query = sqlx::query(sql).arg(page.after).arg(i64::from(page.limit));
        self.all(query, user, "user").await
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
        let query = sqlx::query(
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
        .arg(Json(&u.labels));
        match self
            .change_returning(query, user, effects, "user", issuance_changed)
            .await?
        {
            Some(record) => Ok(record),
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
        self.count_failure(f, Some(f.now)).await
    }

    async fn record_login_success(&self, user_id: Uuid, password_hash: &str) -> StoreResult<bool> {
        let sql = "UPDATE users SET failed_logins = 0, locked_until = NULL \
                   WHERE id = $1 AND password_hash = $2 AND enabled";
        let query = sqlx::query(sql).arg(user_id).arg(password_hash);
        Ok(self.exec(query, "user").await? == 1)
    }
}
