//! Grants: which subject may receive which scopes on which audience.

use mayfly_store::{GrantFilter, GrantRecord, NewGrant, Page, Subject};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use mayfly_core::revocation::RevocationKind;

use super::{ADMIN_SCOPE, Actor, AdminError, GrantSpec, RevokeSpec, cidrs, invalid, ttl_secs};

/// Why naming actors needs `mayfly:admin`.
const MAY_ACT_NEEDS: &str = "naming actors in may_act lets them act for the subject";

/// Longest reason kept.
const MAX_REASON: usize = 1000;

/// Changes to a grant; `None` leaves a field alone, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct GrantChanges {
    /// New start of the window.
    pub not_before: Option<Option<OffsetDateTime>>,
    /// New end of the window.
    pub expires_at: Option<Option<OffsetDateTime>>,
    /// New networks.
    pub allowed_cidrs: Option<Vec<String>>,
    /// New maximum token lifetime.
    pub max_ttl: Option<Option<Duration>>,
    /// New reason.
    pub reason: Option<String>,
    /// New list of who may act for the subject.
    pub may_act: Option<Vec<Uuid>>,
}

fn check_window(
    not_before: Option<OffsetDateTime>,
    expires_at: Option<OffsetDateTime>,
) -> Result<(), AdminError> {
    if let (Some(nbf), Some(exp)) = (not_before, expires_at)
        && exp <= nbf
    {
        return Err(invalid("expires_at", "must be after not_before"));
    }
    Ok(())
}

fn reason(text: &str) -> Result<String, AdminError> {
    super::free_text("reason", text, MAX_REASON)?;
    Ok(text.to_owned())
}

fn subject_json(s: Subject) -> Value {
    match s {
        Subject::Client(id) => json!({ "kind": "client", "id": id }),
        Subject::User(id) => json!({ "kind": "user", "id": id }),
    }
}

fn grant_json(g: &GrantRecord) -> Value {
    json!({
        "id": g.id, "subject": subject_json(g.subject), "audience_id": g.audience_id, "scopes": g.scopes,
        "not_before": g.not_before.map(OffsetDateTime::unix_timestamp),
        "expires_at": g.expires_at.map(OffsetDateTime::unix_timestamp),
        "allowed_cidrs": g.allowed_cidrs, "max_ttl_secs": g.max_ttl_secs, "reason": g.reason,
        "may_act": g.may_act,
    })
}

/// [`grant_json`] of a grant about to be created (its scopes as the store keeps them).
fn new_grant_json(g: &NewGrant) -> Value {
    let mut scopes = g.scopes.clone();
    scopes.sort();
    scopes.dedup();
    json!({
        "id": g.id, "subject": subject_json(g.subject), "audience_id": g.audience_id, "scopes": scopes,
        "not_before": g.not_before.map(OffsetDateTime::unix_timestamp),
        "expires_at": g.expires_at.map(OffsetDateTime::unix_timestamp),
        "allowed_cidrs": g.allowed_cidrs, "max_ttl_secs": g.max_ttl_secs, "reason": g.reason,
        "may_act": g.may_act,
    })
}

impl Actor<'_> {
    /// Checks a `may_act` list: at most 64 distinct existing clients or users.
    async fn actors(&self, list: &[Uuid]) -> Result<Vec<Uuid>, AdminError> {
        if list.len() > 64 {
            return Err(invalid("may_act", "at most 64 actors"));
        }
        let mut out: Vec<Uuid> = Vec::with_capacity(list.len());
        for id in list {
            if out.contains(id) {
                continue;
            }
            let exists =
                self.store.client(*id).await?.is_some() || self.store.user(*id).await?.is_some();
            if !exists {
                return Err(invalid("may_act", format!("no client or user {id}")));
            }
            out.push(*id);
        }
        Ok(out)
    }

    /// Creates a grant for a client or user.
    ///
    /// # Errors
    /// [`AdminError`] for an unknown subject, audience or scope, or invalid limits.
    pub async fn create_grant(&self, spec: GrantSpec) -> Result<GrantRecord, AdminError> {
        if spec.scopes.is_empty() {
            return Err(invalid("scopes", "at least one scope is required"));
        }
        check_window(spec.not_before, spec.expires_at)?;
        let max_ttl_secs = ttl_secs("max_ttl_secs", spec.max_ttl)?;
        let allowed_cidrs = cidrs("allowed_cidrs", &spec.allowed_cidrs)?;
        self.may_hand_out(&spec.audience, &spec.scopes, "granting")?;
        if !spec.may_act.is_empty() {
            self.need(ADMIN_SCOPE, MAY_ACT_NEEDS)?;
        }
        let may_act = self.actors(&spec.may_act).await?;
        // What the body refers to must exist: a dangling reference is a bad field (422),
        // not a missing resource (404).
        let exists = match spec.subject {
            Subject::Client(id) => self.store.client(id).await?.is_some(),
            Subject::User(id) => self.store.user(id).await?.is_some(),
        };
        if !exists {
            return Err(invalid("subject", "no such client or user"));
        }
        let audience = self
            .store
            .audience_by_uri(&spec.audience)
            .await?
            .ok_or_else(|| invalid("audience", "no such audience"))?;
        let new = NewGrant {
            id: Uuid::now_v7(),
            subject: spec.subject,
            audience_id: audience.id,
            scopes: spec.scopes,
            not_before: spec.not_before,
            expires_at: spec.expires_at,
            allowed_cidrs,
            max_ttl_secs,
            may_act,
            reason: reason(&spec.reason)?,
            created_by: self.id.clone(),
            now: self.now,
        };
        let mut after = new_grant_json(&new);
        after["audience"] = json!(audience.uri);
        let event = self.change_event("grant.create", new.id.to_string(), Value::Null, after);
        let grant = self
            .store
            .create_grant(new, &self.effects(event, None)?)
            .await
            .map_err(|e| match AdminError::from(e) {
                AdminError::NotFound("scope") => {
                    invalid("scopes", "every scope must exist on the audience")
                }
                other => other,
            })?;
        Ok(grant)
    }

    /// One grant.
    ///
    /// # Errors
    /// [`AdminError::NotFound`].
    pub async fn get_grant(&self, id: Uuid) -> Result<GrantRecord, AdminError> {
        self.store
            .grant(id)
            .await?
            .ok_or(AdminError::NotFound("grant"))
    }

    /// A page of grants.
    ///
    /// # Errors
    /// The store's.
    pub async fn list_grants(
        &self,
        filter: GrantFilter,
        page: Page,
    ) -> Result<Vec<GrantRecord>, AdminError> {
        Ok(self.store.list_grants(filter, page).await?)
    }

    /// Applies `changes`. Ending a grant stops issuance under it at once.
    ///
    /// # Errors
    /// [`AdminError`] for invalid values or an unknown grant.
    pub async fn update_grant(
        &self,
        id: Uuid,
        changes: GrantChanges,
    ) -> Result<GrantRecord, AdminError> {
        let before = self.get_grant(id).await?;
        self.may_hand_out_on(before.audience_id, &before.scopes, "changing a grant")
            .await?;
        let mut after = before.clone();
        if let Some(t) = changes.not_before {
            after.not_before = t;
        }
        if let Some(t) = changes.expires_at {
            after.expires_at = t;
        }
        check_window(after.not_before, after.expires_at)?;
        if let Some(list) = &changes.allowed_cidrs {
            after.allowed_cidrs = cidrs("allowed_cidrs", list)?;
        }
        if let Some(ttl) = changes.max_ttl {
            after.max_ttl_secs = ttl_secs("max_ttl_secs", ttl)?;
        }
        if let Some(text) = &changes.reason {
            after.reason = reason(text)?;
        }
        if let Some(list) = &changes.may_act {
            if list.iter().any(|a| !before.may_act.contains(a)) {
                self.need(ADMIN_SCOPE, MAY_ACT_NEEDS)?;
            }
            after.may_act = self.actors(list).await?;
        }
        // Tokens carry the terms they were issued under: when the terms change, the
        // tokens issued so far go, and clients get new ones under the new terms.
        let changed_terms = before.not_before != after.not_before
            || before.expires_at != after.expires_at
            || before.max_ttl_secs != after.max_ttl_secs
            || before.allowed_cidrs != after.allowed_cidrs
            || before.may_act.iter().any(|a| !after.may_act.contains(a));
        let change = self.change_event(
            "grant.update",
            id.to_string(),
            grant_json(&before),
            grant_json(&after),
        );
        let revoke = changed_terms
            .then(|| RevokeSpec::now(RevocationKind::Grant, id.to_string(), "grant changed"));
        // The change, its audit event and its revocation commit together or not at all.
        let effects = self.effects(change, revoke)?;
        let after = self.store.update_grant(&after, &effects).await?;
        Ok(after)
    }

    /// Deletes a grant; issuance under it stops at once.
    ///
    /// # Errors
    /// [`AdminError::NotFound`].
    pub async fn delete_grant(&self, id: Uuid) -> Result<(), AdminError> {
        let before = self.get_grant(id).await?;
        self.may_hand_out_on(before.audience_id, &before.scopes, "deleting a grant")
            .await?;
        let change = self.change_event(
            "grant.delete",
            id.to_string(),
            grant_json(&before),
            Value::Null,
        );
        let revoke = RevokeSpec::now(RevocationKind::Grant, id.to_string(), "grant deleted");
        let effects = self.effects(change, Some(revoke))?;
        self.store.delete_grant(id, &effects).await?;
        Ok(())
    }
}
