//! Audiences and their scopes.

use mayfly_core::Scope;
use mayfly_store::{AudienceRecord, NewScope, Page, ScopeRecord};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Actor, AdminError, invalid};

/// Longest description kept.
const MAX_DESCRIPTION: usize = 1000;

pub(super) fn description(text: &str) -> Result<&str, AdminError> {
    super::free_text("description", text, MAX_DESCRIPTION)?;
    Ok(text)
}

fn audience_json(a: &AudienceRecord) -> Value {
    json!({ "id": a.id, "uri": a.uri, "description": a.description })
}

fn scope_json(s: &ScopeRecord) -> Value {
    json!({ "id": s.id, "audience_id": s.audience_id, "name": s.name, "description": s.description })
}

impl Actor<'_> {
    /// One audience.
    ///
    /// # Errors
    /// [`AdminError::NotFound`] when it does not exist.
    pub async fn get_audience(&self, id: Uuid) -> Result<AudienceRecord, AdminError> {
        self.store
            .audience(id)
            .await?
            .ok_or(AdminError::NotFound("audience"))
    }

    /// A page of audiences.
    ///
    /// # Errors
    /// The store's.
    pub async fn list_audiences(&self, page: Page) -> Result<Vec<AudienceRecord>, AdminError> {
        Ok(self.store.list_audiences(page).await?)
    }

    /// Changes an audience's description.
    ///
    /// # Errors
    /// [`AdminError`] when it does not exist or the description is too long.
    pub async fn update_audience(
        &self,
        id: Uuid,
        text: &str,
    ) -> Result<AudienceRecord, AdminError> {
        let before = self.get_audience(id).await?;
        self.may_change_issuer_audience(&before.uri)?;
        let text = description(text)?;
        let after = AudienceRecord {
            description: text.to_owned(),
            ..before.clone()
        };
        let event = self.change_event(
            "audience.update",
            id.to_string(),
            audience_json(&before),
            audience_json(&after),
        );
        Ok(self
            .store
            .update_audience(id, text, &self.effects(event, None)?)
            .await?)
    }

    /// Deletes an audience and its scopes; refused while grants use it.
    ///
    /// # Errors
    /// [`AdminError::Conflict`] while in use, [`AdminError::NotFound`].
    pub async fn delete_audience(&self, id: Uuid) -> Result<(), AdminError> {
        let before = self.get_audience(id).await?;
        self.may_change_issuer_audience(&before.uri)?;
        let event = self.change_event(
            "audience.delete",
            id.to_string(),
            audience_json(&before),
            Value::Null,
        );
        self.store
            .delete_audience(id, &self.effects(event, None)?)
            .await?;
        Ok(())
    }

    /// Adds one scope to an audience.
    ///
    /// # Errors
    /// [`AdminError`] for an invalid name, an unknown audience, or a duplicate.
    pub async fn create_scope(
        &self,
        audience_id: Uuid,
        name: &str,
        text: &str,
    ) -> Result<ScopeRecord, AdminError> {
        let scope = Scope::parse(name).map_err(|e| invalid("name", e.to_string()))?;
        self.may_hand_out_on(audience_id, &[scope.to_string()], "creating a scope")
            .await?;
        let new = NewScope {
            id: Uuid::now_v7(),
            audience_id,
            name: scope.to_string(),
            description: description(text)?.to_owned(),
            now: self.now,
        };
        let after = json!({
            "id": new.id, "audience_id": new.audience_id, "name": new.name,
            "description": new.description,
        });
        let event = self.change_event("scope.create", new.id.to_string(), Value::Null, after);
        Ok(self
            .store
            .create_scope(new, &self.effects(event, None)?)
            .await?)
    }

    /// One scope.
    ///
    /// # Errors
    /// [`AdminError::NotFound`] when it does not exist.
    pub async fn get_scope(&self, id: Uuid) -> Result<ScopeRecord, AdminError> {
        self.store
            .scope(id)
            .await?
            .ok_or(AdminError::NotFound("scope"))
    }

    /// A page of scopes, of one audience or all.
    ///
    /// # Errors
    /// The store's.
    pub async fn list_scopes(
        &self,
        audience_id: Option<Uuid>,
        page: Page,
    ) -> Result<Vec<ScopeRecord>, AdminError> {
        Ok(self.store.list_scopes(audience_id, page).await?)
    }

    /// Changes a scope's description.
    ///
    /// # Errors
    /// [`AdminError`] when it does not exist or the description is too long.
    pub async fn update_scope(&self, id: Uuid, text: &str) -> Result<ScopeRecord, AdminError> {
        let before = self.get_scope(id).await?;
        self.may_hand_out_on(
            before.audience_id,
            std::slice::from_ref(&before.name),
            "changing a scope",
        )
        .await?;
        let text = description(text)?;
        let after = ScopeRecord {
            description: text.to_owned(),
            ..before.clone()
        };
        let event = self.change_event(
            "scope.update",
            id.to_string(),
            scope_json(&before),
            scope_json(&after),
        );
        Ok(self
            .store
            .update_scope(id, text, &self.effects(event, None)?)
            .await?)
    }

    /// Deletes a scope; refused while grants use it.
    ///
    /// # Errors
    /// [`AdminError::Conflict`] while in use, [`AdminError::NotFound`].
    pub async fn delete_scope(&self, id: Uuid) -> Result<(), AdminError> {
        let before = self.get_scope(id).await?;
        self.may_hand_out_on(
            before.audience_id,
            std::slice::from_ref(&before.name),
            "deleting a scope",
        )
        .await?;
        let event = self.change_event(
            "scope.delete",
            id.to_string(),
            scope_json(&before),
            Value::Null,
        );
        self.store
            .delete_scope(id, &self.effects(event, None)?)
            .await?;
        Ok(())
    }
}
