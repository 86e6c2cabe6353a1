//! Clients, their secrets and their public keys.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mayfly_store::{
    AnomalyPolicy, ClientPublicKeyRecord, ClientRecord, ClientSecretRecord, NewClientPublicKey,
    Page,
};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use time::Duration;
use uuid::Uuid;

use mayfly_core::revocation::RevocationKind;

use super::authority::Authority;
use super::{ADMIN_SCOPE, Actor, AdminError, ClientSpec, RevokeSpec, cidrs, invalid, ttl_secs};

/// Why the token-exchange grant type needs `mayfly:admin`.
const EXCHANGE_NEEDS: &str = "the token-exchange grant type lets a client act for others";

/// Most public keys registered at once (the current one and its replacement).
pub const MAX_PUBLIC_KEYS: usize = 2;

/// Changes to a client; `None` leaves a field alone, `Some(None)` clears a TTL.
#[derive(Debug, Clone, Default)]
pub struct ClientChanges {
    /// New name.
    pub name: Option<String>,
    /// Enable or disable.
    pub enabled: Option<bool>,
    /// New default TTL.
    pub default_ttl: Option<Option<Duration>>,
    /// New maximum TTL.
    pub max_ttl: Option<Option<Duration>>,
    /// New networks.
    pub allowed_cidrs: Option<Vec<String>>,
    /// Require DPoP-bound tokens.
    pub require_dpop: Option<bool>,
    /// New anomaly policy.
    pub anomaly_policy: Option<AnomalyPolicy>,
    /// New grant types.
    pub grant_types: Option<Vec<String>>,
    /// New labels (replacing the old ones).
    pub labels: Option<Vec<String>>,
}

/// Validates a client's grant types: each one Mayfly supports, none twice.
pub(super) fn grant_types(list: &[String]) -> Result<Vec<String>, AdminError> {
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for g in list {
        if !crate::vocab::GRANT_TYPES.contains(&g.as_str()) {
            return Err(invalid(
                "grant_types",
                format!(
                    "{:?} is not one of {}",
                    g.chars().take(80).collect::<String>(),
                    crate::vocab::GRANT_TYPES.join(", ")
                ),
            ));
        }
        if !out.contains(g) {
            out.push(g.clone());
        }
    }
    Ok(out)
}

pub(super) fn client_name(name: &str) -> Result<String, AdminError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(invalid("name", "must be 1 to 200 characters"));
    }
    super::free_text("name", name, 200)?;
    Ok(name.to_owned())
}

pub(super) fn check_ttls(default: Option<i64>, max: Option<i64>) -> Result<(), AdminError> {
    if let (Some(d), Some(m)) = (default, max)
        && d > m
    {
        return Err(invalid("default_ttl_secs", "must not exceed max_ttl_secs"));
    }
    Ok(())
}

pub(super) fn client_json(c: &ClientRecord) -> Value {
    json!({
        "id": c.id, "name": c.name, "enabled": c.enabled,
        "default_ttl_secs": c.default_ttl_secs, "max_ttl_secs": c.max_ttl_secs,
        "allowed_cidrs": c.allowed_cidrs, "require_dpop": c.require_dpop,
        "anomaly_policy": c.anomaly_policy,
        "grant_types": c.grant_types,
        "labels": c.labels,
    })
}

/// [`client_json`] of a client about to be created.
pub(super) fn new_client_json(c: &mayfly_store::NewClient) -> Value {
    json!({
        "id": c.id, "name": c.name, "enabled": c.enabled,
        "default_ttl_secs": c.default_ttl_secs, "max_ttl_secs": c.max_ttl_secs,
        "allowed_cidrs": c.allowed_cidrs, "require_dpop": c.require_dpop,
        "anomaly_policy": c.anomaly_policy,
        "grant_types": c.grant_types,
        "labels": c.labels,
    })
}

/// RFC 7638 thumbprint of an Ed25519 JWK: SHA-256 over its required members, sorted.
pub fn jwk_thumbprint(x: &[u8; 32]) -> String {
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(x)
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// Checks an Ed25519 public key and its kid; returns the kid (by default the RFC 7638
/// thumbprint).
pub(super) fn check_public_key(kid: Option<&str>, key: &[u8; 32]) -> Result<String, AdminError> {
    // A small-order ("weak") key would let anyone forge signatures that verify.
    let usable = ed25519_dalek::VerifyingKey::from_bytes(key).is_ok_and(|k| !k.is_weak());
    if !usable {
        return Err(invalid("x", "not a usable Ed25519 public key"));
    }
    match kid {
        Some(k) if (1..=128).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(k.to_owned())
        }
        Some(_) => Err(invalid(
            "kid",
            "must be 1 to 128 printable ASCII characters",
        )),
        None => Ok(jwk_thumbprint(key)),
    }
}

impl Actor<'_> {
    /// The ceiling for a new client: the token-exchange grant type, and what access
    /// policies would give it by its labels.
    pub(super) async fn may_create_client(&self, spec: &ClientSpec) -> Result<(), AdminError> {
        if spec
            .grant_types
            .iter()
            .any(|g| g == crate::vocab::TOKEN_EXCHANGE)
        {
            self.need(ADMIN_SCOPE, EXCHANGE_NEEDS)?;
        }
        self.may_create_subject(mayfly_store::Subject::Client(Uuid::nil()), &spec.labels)
            .await
    }

    /// The privileged-subject rule for client `id`, which may get `new_labels`.
    pub(super) async fn may_change_client(
        &self,
        id: Uuid,
        new_labels: Option<&[String]>,
    ) -> Result<(), AdminError> {
        if matches!(self.caller.authority, Authority::Trusted) {
            return Ok(());
        }
        let Some(client) = self.store.client(id).await? else {
            return Ok(());
        };
        self.may_change_subject(
            mayfly_store::Subject::Client(id),
            &client.labels,
            new_labels.unwrap_or(&client.labels),
        )
        .await
    }

    /// Refuses to lock the acting admin out: its own client cannot be disabled or
    /// deleted through itself (another admin can).
    fn not_self(&self, id: Uuid, action: &str) -> Result<(), AdminError> {
        if self.id == id.to_string() {
            return Err(AdminError::Conflict(format!(
                "an admin cannot {action} the client it acts as; use another admin"
            )));
        }
        Ok(())
    }

    /// One client.
    ///
    /// # Errors
    /// [`AdminError::NotFound`] when it does not exist.
    pub async fn get_client(&self, id: Uuid) -> Result<ClientRecord, AdminError> {
        self.store
            .client(id)
            .await?
            .ok_or(AdminError::NotFound("client"))
    }

    /// A page of clients.
    ///
    /// # Errors
    /// The store's.
    pub async fn list_clients(&self, page: Page) -> Result<Vec<ClientRecord>, AdminError> {
        Ok(self.store.list_clients(page).await?)
    }

    /// Applies `changes` to a client. Disabling stops issuance at once.
    ///
    /// # Errors
    /// [`AdminError`] for invalid values, an unknown client, or a concurrent change.
    pub async fn update_client(
        &self,
        id: Uuid,
        changes: ClientChanges,
    ) -> Result<ClientRecord, AdminError> {
        let before = self.get_client(id).await?;
        self.may_change_client(id, changes.labels.as_deref())
            .await?;
        let mut after = before.clone();
        if let Some(name) = &changes.name {
            after.name = client_name(name)?;
        }
        if let Some(enabled) = changes.enabled {
            after.enabled = enabled;
        }
        if let Some(ttl) = changes.default_ttl {
            after.default_ttl_secs = ttl_secs("default_ttl_secs", ttl)?;
        }
        if let Some(ttl) = changes.max_ttl {
            after.max_ttl_secs = ttl_secs("max_ttl_secs", ttl)?;
        }
        if let Some(list) = &changes.allowed_cidrs {
            after.allowed_cidrs = cidrs("allowed_cidrs", list)?;
        }
        if let Some(dpop) = changes.require_dpop {
            after.require_dpop = dpop;
        }
        if let Some(policy) = changes.anomaly_policy {
            after.anomaly_policy = policy;
        }
        if let Some(list) = &changes.grant_types {
            after.grant_types = grant_types(list)?;
            if after.allows(crate::vocab::TOKEN_EXCHANGE)
                && !before.allows(crate::vocab::TOKEN_EXCHANGE)
            {
                self.need(ADMIN_SCOPE, EXCHANGE_NEEDS)?;
            }
        }
        if let Some(list) = &changes.labels {
            after.labels = super::labels(list)?;
        }
        check_ttls(after.default_ttl_secs, after.max_ttl_secs)?;
        if before.enabled && !after.enabled {
            self.not_self(id, "disable")?;
        }
        // Strictly increasing, so the optimistic check always sees a change.
        after.updated_at = self.now.max(before.updated_at + Duration::microseconds(1));
        // Tokens issued under looser rules must not outlive them: disabling, changing the
        // networks, or starting to require DPoP revokes the client's live tokens.
        let reason = if before.enabled && !after.enabled {
            Some("client disabled")
        } else if before.allowed_cidrs != after.allowed_cidrs {
            Some("client networks changed")
        } else if !before.require_dpop && after.require_dpop {
            Some("client now requires DPoP")
        } else {
            None
        };
        let change = self.change_event(
            "client.update",
            id.to_string(),
            client_json(&before),
            client_json(&after),
        );
        let revoke =
            reason.map(|reason| RevokeSpec::now(RevocationKind::Client, id.to_string(), reason));
        // The change, its audit event and its revocation commit together or not at all.
        let effects = self.effects(change, revoke)?;
        let after = self
            .store
            .update_client(&after, before.updated_at, &effects)
            .await?;
        Ok(after)
    }

    /// Deletes a client with its secrets, keys and grants.
    ///
    /// # Errors
    /// [`AdminError::NotFound`].
    pub async fn delete_client(&self, id: Uuid) -> Result<(), AdminError> {
        let before = self.get_client(id).await?;
        self.not_self(id, "delete")?;
        self.may_change_client(id, None).await?;
        let change = self.change_event(
            "client.delete",
            id.to_string(),
            client_json(&before),
            Value::Null,
        );
        let revoke = RevokeSpec::now(RevocationKind::Client, id.to_string(), "client deleted");
        let effects = self.effects(change, Some(revoke))?;
        self.store.delete_client(id, &effects).await?;
        Ok(())
    }

    /// The secrets of a client (digests stay inside).
    ///
    /// # Errors
    /// [`AdminError::NotFound`] for an unknown client.
    pub async fn list_client_secrets(
        &self,
        id: Uuid,
    ) -> Result<Vec<ClientSecretRecord>, AdminError> {
        self.get_client(id).await?;
        Ok(self.store.client_secrets(id).await?)
    }

    /// Deletes one secret; it stops working at once.
    ///
    /// # Errors
    /// [`AdminError::NotFound`].
    pub async fn delete_client_secret(
        &self,
        client_id: Uuid,
        secret_id: Uuid,
    ) -> Result<(), AdminError> {
        self.may_change_client(client_id, None).await?;
        let event = self.change_event(
            "client.secret.delete",
            client_id.to_string(),
            json!({ "secret_id": secret_id }),
            Value::Null,
        );
        self.store
            .delete_client_secret(client_id, secret_id, &self.effects(event, None)?)
            .await?;
        Ok(())
    }

    /// Registers an Ed25519 public key; `kid` defaults to its RFC 7638 thumbprint.
    ///
    /// # Errors
    /// [`AdminError`] for an invalid key or kid, an unknown client, a duplicate, or too
    /// many keys.
    pub async fn create_client_public_key(
        &self,
        client_id: Uuid,
        kid: Option<&str>,
        key: [u8; 32],
    ) -> Result<ClientPublicKeyRecord, AdminError> {
        let kid = check_public_key(kid, &key)?;
        self.get_client(client_id).await?;
        self.may_change_client(client_id, None).await?;
        if self.store.client_public_keys(client_id).await?.len() >= MAX_PUBLIC_KEYS {
            return Err(AdminError::Conflict(format!(
                "the client already has {MAX_PUBLIC_KEYS} public keys; delete one first"
            )));
        }
        let new = NewClientPublicKey {
            id: Uuid::now_v7(),
            client_id,
            kid,
            public_key: key,
            now: self.now,
        };
        let event = self.change_event(
            "client.public_key.add",
            client_id.to_string(),
            Value::Null,
            json!({ "key_id": new.id, "kid": new.kid }),
        );
        Ok(self
            .store
            .add_client_public_key(new, &self.effects(event, None)?)
            .await?)
    }

    /// The public keys of a client.
    ///
    /// # Errors
    /// [`AdminError::NotFound`] for an unknown client.
    pub async fn list_client_public_keys(
        &self,
        client_id: Uuid,
    ) -> Result<Vec<ClientPublicKeyRecord>, AdminError> {
        self.get_client(client_id).await?;
        Ok(self.store.client_public_keys(client_id).await?)
    }

    /// Deletes one public key.
    ///
    /// # Errors
    /// [`AdminError::NotFound`].
    pub async fn delete_client_public_key(
        &self,
        client_id: Uuid,
        key_id: Uuid,
    ) -> Result<(), AdminError> {
        self.may_change_client(client_id, None).await?;
        let event = self.change_event(
            "client.public_key.delete",
            client_id.to_string(),
            json!({ "key_id": key_id }),
            Value::Null,
        );
        self.store
            .delete_client_public_key(client_id, key_id, &self.effects(event, None)?)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn thumbprint_matches_rfc_8037_appendix_a3() {
        // RFC 8037 A.3: the thumbprint of the A.2 public key.
        let x = base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
        )
        .unwrap();
        let x: [u8; 32] = x.try_into().unwrap();
        assert_eq!(
            super::jwk_thumbprint(&x),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }
}
