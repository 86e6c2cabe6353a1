//! People.

use mayfly_store::{NewUser, Page, Subject, UserRecord};
use serde_json::{Value, json};
use time::Duration;
use uuid::Uuid;

use mayfly_core::revocation::RevocationKind;

use super::{Actor, AdminError, RevokeSpec, invalid};

/// Changes to a user; `None` leaves a field alone.
#[derive(Clone, Default)]
pub struct UserChanges {
    /// A new argon2id PHC string (hash the password first).
    pub password_hash: Option<String>,
    /// Enable or disable.
    pub enabled: Option<bool>,
    /// New labels (replacing the old ones).
    pub labels: Option<Vec<String>>,
}

impl std::fmt::Debug for UserChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserChanges")
            .field("password", &self.password_hash.as_ref().map(|_| "<new>"))
            .field("enabled", &self.enabled)
            .field("labels", &self.labels)
            .finish()
    }
}

fn username(name: &str) -> Result<&str, AdminError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    if !ok {
        return Err(invalid(
            "username",
            "1 to 64 characters of A-Z a-z 0-9 . _ - @",
        ));
    }
    Ok(name)
}

fn user_json(u: &UserRecord) -> Value {
    json!({
        "id": u.id, "username": u.username, "enabled": u.enabled, "labels": u.labels,
    })
}

impl Actor<'_> {
    /// Creates a user with an already hashed password.
    ///
    /// # Errors
    /// [`AdminError`] for an invalid or taken username or invalid labels.
    pub async fn create_user(
        &self,
        name: &str,
        password_hash: String,
        enabled: bool,
        labels: &[String],
    ) -> Result<UserRecord, AdminError> {
        self.may_create_subject(Subject::User(Uuid::nil()), labels)
            .await?;
        let new = NewUser {
            id: Uuid::now_v7(),
            username: username(name)?.to_owned(),
            password_hash,
            enabled,
            labels: super::labels(labels)?,
            now: self.now,
        };
        let after = json!({
            "id": new.id, "username": new.username, "enabled": new.enabled, "labels": new.labels,
        });
        let event = self.change_event("user.create", new.id.to_string(), Value::Null, after);
        Ok(self
            .store
            .create_user(new, &self.effects(event, None)?)
            .await?)
    }

    /// One user.
    ///
    /// # Errors
    /// [`AdminError::NotFound`].
    pub async fn get_user(&self, id: Uuid) -> Result<UserRecord, AdminError> {
        self.store
            .user(id)
            .await?
            .ok_or(AdminError::NotFound("user"))
    }

    /// A page of users.
    ///
    /// # Errors
    /// The store's.
    pub async fn list_users(&self, page: Page) -> Result<Vec<UserRecord>, AdminError> {
        Ok(self.store.list_users(page).await?)
    }

    /// Applies `changes`; a new password also clears a lockout. Disabling or a new
    /// password revokes the user's tokens and ends their logins.
    ///
    /// # Errors
    /// [`AdminError`] for invalid labels, an unknown user or a concurrent change.
    pub async fn update_user(
        &self,
        id: Uuid,
        changes: UserChanges,
    ) -> Result<UserRecord, AdminError> {
        let before = self.get_user(id).await?;
        self.may_change_subject(
            Subject::User(id),
            &before.labels,
            changes.labels.as_deref().unwrap_or(&before.labels),
        )
        .await?;
        let mut after = before.clone();
        let password_changed = changes.password_hash.is_some();
        if let Some(hash) = changes.password_hash {
            after.password_hash = hash;
            after.failed_logins = 0;
            after.locked_until = None;
        }
        if let Some(enabled) = changes.enabled {
            after.enabled = enabled;
        }
        if let Some(list) = &changes.labels {
            after.labels = super::labels(list)?;
        }
        after.updated_at = self.now.max(before.updated_at + Duration::microseconds(1));
        let mut after_json = user_json(&after);
        after_json["password_changed"] = json!(password_changed);
        let change = self.change_event(
            "user.update",
            id.to_string(),
            user_json(&before),
            after_json,
        );
        // Disabling and a new password end every login: access tokens, and (the store
        // marks them) refresh families, which re-enabling does not revive.
        let ended = if before.enabled && !after.enabled {
            Some("user disabled")
        } else if password_changed {
            Some("password changed")
        } else {
            None
        };
        let revoke =
            ended.map(|reason| RevokeSpec::now(RevocationKind::Subject, id.to_string(), reason));
        // The change, its audit event and its revocation commit together or not at all.
        let effects = self.effects(change, revoke)?;
        let after = self
            .store
            .update_user(&after, before.updated_at, &effects)
            .await?;
        Ok(after)
    }

    /// Deletes a user and their grants.
    ///
    /// # Errors
    /// [`AdminError::NotFound`].
    pub async fn delete_user(&self, id: Uuid) -> Result<(), AdminError> {
        let before = self.get_user(id).await?;
        self.may_change_subject(Subject::User(id), &before.labels, &before.labels)
            .await?;
        let change = self.change_event(
            "user.delete",
            id.to_string(),
            user_json(&before),
            Value::Null,
        );
        let revoke = RevokeSpec::now(RevocationKind::Subject, id.to_string(), "user deleted");
        let effects = self.effects(change, Some(revoke))?;
        self.store.delete_user(id, &effects).await?;
        Ok(())
    }
}
