//! Workload identity federation (issue #20): the trusted issuers whose external tokens
//! Mayfly accepts, and the federated identities of clients and users those tokens may
//! speak for. Settings and rules are validated by `mayfly-federation` itself
//! (`TrustedIssuer::new`, `FederatedIdentity::new`), so the verifier never meets one it
//! would refuse; an identity that certainly overlaps another of the same issuer
//! (`FederatedIdentity::overlaps`) is refused here, exact duplicates also by the store.

use std::collections::BTreeMap;

use mayfly_federation::{
    Condition, ConfigError, FederatedIdentity, IdentityRule, TrustedIssuer, TrustedIssuerConfig,
};
use mayfly_store::{
    FederatedIdentityRecord, NewFederatedIdentity, NewTrustedIssuer, Page, StoreError, Subject,
    TrustedIssuerRecord,
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Actor, AdminError, invalid};

/// A federated identity with its trusted issuer's URL, as the API shows it.
#[derive(Debug, Clone)]
pub struct FederatedIdentityEntry {
    /// The stored identity.
    pub record: FederatedIdentityRecord,
    /// Its trusted issuer's URL.
    pub issuer: String,
}

/// Validates settings with the verifier's own rules; the error names the field.
fn validate(config: TrustedIssuerConfig) -> Result<TrustedIssuer, AdminError> {
    TrustedIssuer::new(config).map_err(|e| {
        let field = match &e {
            ConfigError::Url {
                what: "jwks_uri", ..
            } => "key_source.jwks_uri",
            ConfigError::Url { .. } => "issuer",
            ConfigError::Algorithm(_) | ConfigError::NoAlgorithm => "algorithms",
            ConfigError::Audience(_) => "audience",
            ConfigError::Duration { what, .. } => what,
            ConfigError::InlineKeys(_) => "key_source.jwks",
        };
        invalid(field, e.to_string())
    })
}

/// The settings as stored (the crate's serde shape).
fn settings_json(issuer: &TrustedIssuer) -> Result<Value, AdminError> {
    serde_json::to_value(issuer.config())
        .map_err(|_| AdminError::Store(StoreError::Corrupt("trusted issuer settings")))
}

fn issuer_json(r: &TrustedIssuerRecord) -> Value {
    json!({ "id": r.id, "issuer": r.issuer, "description": r.description, "settings": r.settings })
}

/// The canonical text of a condition set: each condition's JSON, sorted and without
/// repeats, as a JSON array. Equal sets in any order give equal keys.
fn conditions_key(conditions: &[Condition]) -> Result<String, AdminError> {
    let mut texts = conditions
        .iter()
        .map(serde_json::to_string)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("conditions", e.to_string()))?;
    texts.sort();
    texts.dedup();
    Ok(format!("[{}]", texts.join(",")))
}

/// A stored identity as the crate's type, to compare with a new one.
fn stored_identity(
    record: &FederatedIdentityRecord,
    issuer: &str,
) -> Result<FederatedIdentity, AdminError> {
    serde_json::from_value::<IdentityRule>(record.rule.clone())
        .ok()
        .and_then(|rule| FederatedIdentity::new(issuer, rule).ok())
        .ok_or(AdminError::Store(StoreError::Corrupt(
            "federated identity rule",
        )))
}

fn owner_name(owner: Subject) -> &'static str {
    match owner {
        Subject::Client(_) => "client",
        Subject::User(_) => "user",
    }
}

fn owner_id(owner: Subject) -> Uuid {
    match owner {
        Subject::Client(id) | Subject::User(id) => id,
    }
}

impl Actor<'_> {
    /// Trusts an issuer's external tokens.
    ///
    /// # Errors
    /// [`AdminError::Invalid`] naming the bad setting (a non-https issuer, `none` or
    /// HMAC algorithms, …), [`AdminError::Conflict`] when the issuer URL is trusted
    /// already.
    pub async fn create_trusted_issuer(
        &self,
        config: TrustedIssuerConfig,
        description: &str,
    ) -> Result<TrustedIssuerRecord, AdminError> {
        let description = super::audiences::description(description)?;
        let issuer = validate(config)?;
        let new = NewTrustedIssuer {
            id: Uuid::now_v7(),
            issuer: issuer.issuer().to_owned(),
            description: description.to_owned(),
            settings: settings_json(&issuer)?,
            now: self.now,
        };
        let after = json!({
            "id": new.id, "issuer": new.issuer, "description": new.description,
            "settings": new.settings,
        });
        let event = self.change_event(
            "trusted_issuer.create",
            new.id.to_string(),
            Value::Null,
            after,
        );
        Ok(self
            .store
            .create_trusted_issuer(new, &self.effects(event, None)?)
            .await?)
    }

    /// One trusted issuer.
    ///
    /// # Errors
    /// [`AdminError::NotFound`] when it does not exist.
    pub async fn get_trusted_issuer(&self, id: Uuid) -> Result<TrustedIssuerRecord, AdminError> {
        self.store
            .trusted_issuer(id)
            .await?
            .ok_or(AdminError::NotFound("trusted issuer"))
    }

    /// A page of trusted issuers.
    ///
    /// # Errors
    /// The store's.
    pub async fn list_trusted_issuers(
        &self,
        page: Page,
    ) -> Result<Vec<TrustedIssuerRecord>, AdminError> {
        Ok(self.store.list_trusted_issuers(page).await?)
    }

    /// Changes a trusted issuer's description and settings; `change` turns the stored
    /// settings into the new ones, whose issuer URL must stay the same.
    ///
    /// # Errors
    /// [`AdminError::Invalid`] for a bad setting or a changed issuer URL,
    /// [`AdminError::NotFound`], [`AdminError::Conflict`] when changed concurrently.
    pub async fn update_trusted_issuer(
        &self,
        id: Uuid,
        description: Option<&str>,
        change: impl FnOnce(TrustedIssuerConfig) -> TrustedIssuerConfig,
    ) -> Result<TrustedIssuerRecord, AdminError> {
        let before = self.get_trusted_issuer(id).await?;
        let stored: TrustedIssuerConfig = serde_json::from_value(before.settings.clone())
            .map_err(|_| AdminError::Store(StoreError::Corrupt("trusted issuer settings")))?;
        let config = change(stored);
        if config.issuer != before.issuer {
            return Err(invalid(
                "issuer",
                "the issuer URL cannot change; create another trusted issuer",
            ));
        }
        let issuer = validate(config)?;
        let description = match description {
            Some(text) => super::audiences::description(text)?.to_owned(),
            None => before.description.clone(),
        };
        let settings = settings_json(&issuer)?;
        if settings != before.settings {
            self.may_retrust(id).await?;
        }
        let after = TrustedIssuerRecord {
            description,
            settings,
            updated_at: self.now,
            ..before.clone()
        };
        let event = self.change_event(
            "trusted_issuer.update",
            id.to_string(),
            issuer_json(&before),
            issuer_json(&after),
        );
        self.store
            .update_trusted_issuer(&after, before.updated_at, &self.effects(event, None)?)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => AdminError::Conflict(
                    "the trusted issuer changed meanwhile; read it again and retry".into(),
                ),
                other => other.into(),
            })
    }

    /// Stops trusting an issuer; refused while identities use it.
    ///
    /// # Errors
    /// [`AdminError::Conflict`] while it has federated identities,
    /// [`AdminError::NotFound`].
    pub async fn delete_trusted_issuer(&self, id: Uuid) -> Result<(), AdminError> {
        let before = self.get_trusted_issuer(id).await?;
        let event = self.change_event(
            "trusted_issuer.delete",
            id.to_string(),
            issuer_json(&before),
            Value::Null,
        );
        self.store
            .delete_trusted_issuer(id, &self.effects(event, None)?)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => AdminError::Conflict(
                    "the trusted issuer still has federated identities; delete them first".into(),
                ),
                other => other.into(),
            })
    }

    /// Whether the caller may change which tokens of issuer `id` verify (its keys,
    /// algorithms, audience, …): they speak for every owner of an identity on it, so it
    /// must be allowed to change each (and hold the users family for a user's), as if
    /// it gave each a new credential.
    async fn may_retrust(&self, id: Uuid) -> Result<(), AdminError> {
        for identity in self.store.federated_identities_of_issuer(id).await? {
            if matches!(identity.owner, Subject::User(_)) {
                self.need(
                    crate::vocab::ADMIN_USERS_SCOPE,
                    "users sign in through this issuer; its settings are a credential of theirs",
                )?;
            }
            self.may_change_owner(identity.owner).await?;
        }
        Ok(())
    }

    /// The owner exists, and the caller may change it (the privileged-subject rule: a
    /// federated identity is a way to obtain its tokens).
    async fn may_change_owner(&self, owner: Subject) -> Result<(), AdminError> {
        match owner {
            Subject::Client(id) => {
                self.get_client(id).await?;
                self.may_change_client(id, None).await
            }
            Subject::User(id) => {
                let user = self.get_user(id).await?;
                self.may_change_subject(owner, &user.labels, &user.labels)
                    .await
            }
        }
    }

    /// Lets tokens of a trusted issuer with exactly `subject`, or satisfying every one
    /// of `conditions`, speak for `owner`.
    ///
    /// # Errors
    /// [`AdminError::Invalid`] for an unknown issuer URL, both or neither of `subject`
    /// and `conditions`, or a rule the crate refuses; [`AdminError::Conflict`] when it
    /// overlaps an identity of the same issuer; [`AdminError::NotFound`] for an unknown
    /// owner.
    pub async fn create_federated_identity(
        &self,
        owner: Subject,
        issuer_url: &str,
        subject: Option<String>,
        conditions: Option<Vec<Condition>>,
    ) -> Result<FederatedIdentityEntry, AdminError> {
        self.may_change_owner(owner).await?;
        let issuer = self
            .store
            .trusted_issuer_by_url(issuer_url)
            .await?
            .ok_or_else(|| invalid("issuer", "no trusted issuer has this URL"))?;
        let rule = match (subject, conditions) {
            (Some(subject), None) => IdentityRule::Subject { subject },
            (None, Some(conditions)) => IdentityRule::Claims { conditions },
            _ => {
                return Err(invalid(
                    "subject",
                    "give exactly one of subject and conditions",
                ));
            }
        };
        let field = match rule {
            IdentityRule::Subject { .. } => "subject",
            IdentityRule::Claims { .. } => "conditions",
        };
        // Every string of the rule is stored (and Postgres refuses NUL): the free-text
        // rule of the rest of the admin API applies to each.
        let rule_json = serde_json::to_value(&rule)
            .map_err(|e| invalid(field, format!("cannot be stored: {e}")))?;
        each_string(&rule_json, &mut |text| {
            super::free_text(field, text, MAX_RULE_TEXT)
        })?;
        let identity = FederatedIdentity::new(issuer.issuer.clone(), rule)
            .map_err(|e| invalid(field, e.to_string()))?;
        for existing in self.store.federated_identities_of_issuer(issuer.id).await? {
            if stored_identity(&existing, &issuer.issuer)?.overlaps(&identity) {
                return Err(AdminError::Conflict(format!(
                    "overlaps federated identity {} of this issuer: some tokens would match both",
                    existing.id
                )));
            }
        }
        let (exact_subject, conditions_key) = match identity.rule() {
            IdentityRule::Subject { subject } => (Some(subject.clone()), None),
            IdentityRule::Claims { conditions } => (None, Some(conditions_key(conditions)?)),
        };
        let rule =
            serde_json::to_value(identity.rule()).map_err(|e| invalid(field, e.to_string()))?;
        let new = NewFederatedIdentity {
            id: Uuid::now_v7(),
            trusted_issuer_id: issuer.id,
            owner,
            rule,
            exact_subject,
            conditions_key,
            now: self.now,
        };
        let event = self.change_event(
            &format!("{}.federated_identity.add", owner_name(owner)),
            owner_id(owner).to_string(),
            Value::Null,
            json!({
                "identity_id": new.id, "trusted_issuer_id": issuer.id, "issuer": issuer.issuer,
                "rule": new.rule,
            }),
        );
        let record = self
            .store
            .add_federated_identity(new, &self.effects(event, None)?)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => AdminError::Conflict(
                    "this issuer already has an identity with this subject or these conditions"
                        .into(),
                ),
                other => other.into(),
            })?;
        Ok(FederatedIdentityEntry {
            record,
            issuer: issuer.issuer,
        })
    }

    /// The federated identities of a client or user.
    ///
    /// # Errors
    /// [`AdminError::NotFound`] for an unknown owner; the store's.
    pub async fn list_federated_identities(
        &self,
        owner: Subject,
    ) -> Result<Vec<FederatedIdentityEntry>, AdminError> {
        match owner {
            Subject::Client(id) => drop(self.get_client(id).await?),
            Subject::User(id) => drop(self.get_user(id).await?),
        }
        let records = self.store.federated_identities_of(owner).await?;
        let mut issuers: BTreeMap<Uuid, String> = BTreeMap::new();
        let mut out = Vec::with_capacity(records.len());
        for record in records {
            let issuer = match issuers.get(&record.trusted_issuer_id) {
                Some(url) => url.clone(),
                None => {
                    let url = self
                        .get_trusted_issuer(record.trusted_issuer_id)
                        .await?
                        .issuer;
                    issuers.insert(record.trusted_issuer_id, url.clone());
                    url
                }
            };
            out.push(FederatedIdentityEntry { record, issuer });
        }
        Ok(out)
    }

    /// Removes one federated identity of a client or user.
    ///
    /// # Errors
    /// [`AdminError::NotFound`] when it does not exist or is not `owner`'s.
    pub async fn delete_federated_identity(
        &self,
        owner: Subject,
        identity_id: Uuid,
    ) -> Result<(), AdminError> {
        let before = self
            .store
            .federated_identity(identity_id)
            .await?
            .filter(|r| r.owner == owner)
            .ok_or(AdminError::NotFound("federated identity"))?;
        self.may_change_owner(owner).await?;
        let event = self.change_event(
            &format!("{}.federated_identity.delete", owner_name(owner)),
            owner_id(owner).to_string(),
            json!({
                "identity_id": before.id, "trusted_issuer_id": before.trusted_issuer_id,
                "rule": before.rule,
            }),
            Value::Null,
        );
        self.store
            .delete_federated_identity(identity_id, &self.effects(event, None)?)
            .await?;
        Ok(())
    }
}

/// Longest string in a federated identity's rule, in characters.
const MAX_RULE_TEXT: usize = 2048;

/// Calls `check` on every string and object key of `value`.
fn each_string(
    value: &serde_json::Value,
    check: &mut impl FnMut(&str) -> Result<(), AdminError>,
) -> Result<(), AdminError> {
    match value {
        serde_json::Value::String(s) => check(s),
        serde_json::Value::Array(items) => items.iter().try_for_each(|v| each_string(v, check)),
        serde_json::Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            check(k)?;
            each_string(v, check)
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mayfly_federation::ClaimPath;

    #[test]
    fn conditions_key_ignores_order() {
        let eq = |c: &str, v: &str| Condition::Equals {
            claim: ClaimPath::parse(c).unwrap(),
            value: json!(v),
        };
        let a = conditions_key(&[eq("/repository", "o/r"), eq("/ref", "main")]).unwrap();
        let b = conditions_key(&[eq("/ref", "main"), eq("/repository", "o/r")]).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, conditions_key(&[eq("/ref", "main")]).unwrap());
    }
}
