//! The keyring: the signing key in use and the public keys published in the key set.
//!
//! Private halves live in the store encrypted under the [`MasterKey`], which the keyring
//! keeps to open the active key and to seal new ones. On first start a key is generated
//! and made active; [`KeyStore::ensure_active_key`] makes that safe when several replicas
//! start at once. Afterwards `rotation` drives the lifecycle `next → active → retired →
//! gone` and every process reloads the keyring from the store, so each signs only with
//! the key the store says is active. The keyring is swapped whole (`Arc<KeySet>`).

pub mod master;
pub mod rotation;

use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mayfly_core::wire::{Jwk, JwkSet};
use mayfly_core::{KeyId, PublicKey, SigningKey};
use mayfly_store::{
    AuditEvent, KeyState, KeyStore, NewSigningKey, RewrappedKey, SigningKeyRecord, Store,
    StoreError,
};
use rand::Rng as _;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use zeroize::Zeroizing;

pub use master::{MasterKey, MasterKeyError};

/// Why the keyring could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// The store failed.
    #[error("loading signing keys")]
    Store(#[from] StoreError),
    /// A private key did not decrypt.
    #[error("signing key {0}")]
    MasterKey(String, #[source] MasterKeyError),
    /// A stored key is malformed.
    #[error("stored signing key {0} is malformed")]
    Corrupt(String),
    /// The store holds no active key (it was changed by hand).
    #[error("the store holds no active signing key")]
    NoActiveKey,
}

/// One consistent view of the keys: who signs, what is published.
#[derive(Debug)]
pub struct KeySet {
    /// The key that signs new tokens.
    pub active: SigningKey,
    /// Every key a valid token may carry (`next`, `active`, `retired`), newest first.
    pub published: Vec<PublicKey>,
    /// The key set document, serialized once.
    pub jwks_json: String,
    /// Strong ETag of `jwks_json`; equal on every replica that sees the same keys.
    pub etag: String,
    /// Since when the active key signs (for the key-age metric, without a query).
    pub active_since: OffsetDateTime,
}

impl KeySet {
    fn new(active: SigningKey, published: Vec<PublicKey>, active_since: OffsetDateTime) -> Self {
        let doc = JwkSet {
            keys: published.iter().map(Jwk::from_public).collect(),
        };
        let jwks_json = serde_json::to_string(&doc).unwrap_or_else(|_| r#"{"keys":[]}"#.to_owned());
        let etag = format!(
            "\"{}\"",
            URL_SAFE_NO_PAD.encode(&Sha256::digest(jwks_json.as_bytes())[..16])
        );
        Self {
            active,
            published,
            jwks_json,
            etag,
            active_since,
        }
    }

    /// The published key with this id.
    pub fn public_key(&self, id: &KeyId) -> Option<&PublicKey> {
        self.published.iter().find(|k| k.id() == id)
    }

    /// Whether this set is what `active` and `published` (ids) describe.
    fn is(&self, active: &str, published: &[&SigningKeyRecord]) -> bool {
        self.active.id().as_str() == active
            && self.published.len() == published.len()
            && self
                .published
                .iter()
                .zip(published)
                .all(|(k, r)| k.id().as_str() == r.id)
    }
}

/// The current [`KeySet`], shared by every request, and the master key.
#[derive(Debug)]
pub struct Keyring {
    master: MasterKey,
    current: RwLock<Arc<KeySet>>,
}

impl Keyring {
    /// Loads the keys, creating and activating the first one when there is none.
    ///
    /// # Errors
    /// [`KeyringError`] when the store fails or a key does not decrypt.
    pub async fn load(
        store: &dyn KeyStore,
        master: MasterKey,
        now: OffsetDateTime,
    ) -> Result<Self, KeyringError> {
        store
            .ensure_active_key(first_key_record(&master, now))
            .await?;
        let keys = store.signing_keys().await?;
        let set = build(&keys, &master)?;
        Ok(Self {
            master,
            current: RwLock::new(Arc::new(set)),
        })
    }

    /// The current key set.
    pub fn current(&self) -> Arc<KeySet> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the keys from the store and installs them (see [`Keyring::install`]).
    ///
    /// # Errors
    /// [`KeyringError`]; the current key set stays in place.
    pub async fn reload(&self, store: &dyn KeyStore) -> Result<bool, KeyringError> {
        let keys = store.signing_keys().await?;
        self.install(&keys)
    }

    /// Makes `keys` (the store's keys not yet `gone`, newest first) the key set: the
    /// `active` one signs, `next`, `active` and `retired` ones are published. Returns
    /// whether anything changed; an unchanged set is not rebuilt.
    ///
    /// # Errors
    /// [`KeyringError`] when there is no active key or it does not decrypt; the current
    /// key set stays in place.
    pub fn install(&self, keys: &[SigningKeyRecord]) -> Result<bool, KeyringError> {
        let active = keys
            .iter()
            .find(|k| k.state == KeyState::Active)
            .ok_or(KeyringError::NoActiveKey)?;
        if self.current().is(&active.id, &published(keys)) {
            return Ok(false);
        }
        let set = Arc::new(build(keys, &self.master)?);
        match self.current.write() {
            Ok(mut guard) => *guard = set,
            Err(poisoned) => *poisoned.into_inner() = set,
        }
        Ok(true)
    }

    /// A fresh Ed25519 key, its private half sealed under the master key.
    pub fn new_key(&self) -> NewSigningKey {
        new_key(&self.master)
    }
}

fn new_key(master: &MasterKey) -> NewSigningKey {
    let (key, private_key_enc) = generate(master);
    NewSigningKey {
        id: key.id().to_string(),
        public_key: key.public().to_bytes().to_vec(),
        private_key_enc,
    }
}

/// The keys a key set publishes, in the store's order (the same on every replica, so
/// every replica serves the same document and ETag).
fn published(keys: &[SigningKeyRecord]) -> Vec<&SigningKeyRecord> {
    keys.iter()
        .filter(|k| {
            matches!(
                k.state,
                KeyState::Next | KeyState::Active | KeyState::Retired
            )
        })
        .collect()
}

fn build(keys: &[SigningKeyRecord], master: &MasterKey) -> Result<KeySet, KeyringError> {
    let active = keys
        .iter()
        .find(|k| k.state == KeyState::Active)
        .ok_or(KeyringError::NoActiveKey)?;
    let active_since = active.activated_at.unwrap_or(active.created_at);
    let active = open_signing_key(active, master)?;
    let published = published(keys)
        .into_iter()
        .map(public_key)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(KeySet::new(active, published, active_since))
}

/// A fresh key and its sealed seed.
fn generate(master: &MasterKey) -> (SigningKey, Vec<u8>) {
    let mut seed = Zeroizing::new([0u8; 32]);
    rand::rng().fill_bytes(&mut seed[..]);
    let key = SigningKey::from_seed(&seed);
    let sealed = master.seal(&seed[..], key.id().as_str().as_bytes());
    (key, sealed)
}

/// A fresh key as the `active` record of a first start.
fn first_key_record(master: &MasterKey, now: OffsetDateTime) -> SigningKeyRecord {
    let (key, private_key_enc) = generate(master);
    SigningKeyRecord {
        id: key.id().to_string(),
        private_key_enc,
        public_key: key.public().to_bytes().to_vec(),
        state: KeyState::Active,
        created_at: now,
        published_at: now,
        activated_at: Some(now),
        rotate_requested_at: None,
        retired_at: None,
        removes_at: None,
        removed_at: None,
        revoked_at: None,
    }
}

/// Re-encrypts every stored private key under `new` in one transaction, and audits it
/// as `actor`. Every `mayfly` process must be stopped first and started again with the
/// new key file: a process still holding the old key cannot open keys sealed under the
/// new one. Returns how many keys were re-encrypted.
///
/// # Errors
/// [`KeyringError`] when a key does not open under `old` (nothing changes), or the
/// store fails or the keys changed meanwhile ([`StoreError::Stale`]; run it again).
pub async fn rewrap(
    store: &dyn Store,
    old: &MasterKey,
    new: &MasterKey,
    actor: &str,
    now: OffsetDateTime,
) -> Result<usize, KeyringError> {
    let mut rewrapped = Vec::new();
    for key in store.all_signing_keys().await? {
        // Removed keys have no private half left.
        if key.private_key_enc.is_empty() {
            continue;
        }
        let seed = old
            .open(&key.private_key_enc, key.id.as_bytes())
            .map_err(|e| KeyringError::MasterKey(key.id.clone(), e))?;
        let sealed = new.seal(&seed, key.id.as_bytes());
        rewrapped.push(RewrappedKey {
            old: key.private_key_enc,
            new: sealed,
            id: key.id,
        });
    }
    let kids: Vec<&str> = rewrapped.iter().map(|k| k.id.as_str()).collect();
    let event = AuditEvent {
        actor: Some(actor.to_owned()),
        detail: serde_json::json!({ "action": "rewrap", "kids": kids }),
        ..crate::audit::event(
            crate::audit::kind::KEY_CHANGE,
            crate::audit::outcome::SUCCESS,
            now,
            &crate::audit::RequestContext::default(),
        )
    };
    store.rewrap_signing_keys(&rewrapped, event).await?;
    Ok(rewrapped.len())
}

/// What an operator sees of a signing key (`mayfly keys list`; the admin API may reuse
/// it). Never key material beyond the public key's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KeyInfo {
    /// PASERK `k4.pid`.
    pub kid: String,
    /// `next`, `active`, `retired` or `gone`.
    pub state: String,
    /// Created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Entered the key set.
    #[serde(with = "time::serde::rfc3339")]
    pub published_at: OffsetDateTime,
    /// Started signing.
    #[serde(with = "time::serde::rfc3339::option")]
    pub activated_at: Option<OffsetDateTime>,
    /// An operator asked for its replacement.
    #[serde(with = "time::serde::rfc3339::option")]
    pub rotate_requested_at: Option<OffsetDateTime>,
    /// Stopped signing.
    #[serde(with = "time::serde::rfc3339::option")]
    pub retired_at: Option<OffsetDateTime>,
    /// Leaves (or left, if `removed_at` is set) the key set.
    #[serde(with = "time::serde::rfc3339::option")]
    pub removes_at: Option<OffsetDateTime>,
    /// Left the key set.
    #[serde(with = "time::serde::rfc3339::option")]
    pub removed_at: Option<OffsetDateTime>,
    /// Revoked by an emergency rotation: its tokens are invalid.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

impl From<&SigningKeyRecord> for KeyInfo {
    fn from(k: &SigningKeyRecord) -> Self {
        Self {
            kid: k.id.clone(),
            state: k.state.as_str().to_owned(),
            created_at: k.created_at,
            published_at: k.published_at,
            activated_at: k.activated_at,
            rotate_requested_at: k.rotate_requested_at,
            retired_at: k.retired_at,
            removes_at: k.removes_at,
            removed_at: k.removed_at,
            revoked_at: k.revoked_at,
        }
    }
}

fn public_key(record: &SigningKeyRecord) -> Result<PublicKey, KeyringError> {
    let bytes: [u8; 32] = record
        .public_key
        .as_slice()
        .try_into()
        .map_err(|_| KeyringError::Corrupt(record.id.clone()))?;
    let key =
        PublicKey::from_bytes(&bytes).map_err(|_| KeyringError::Corrupt(record.id.clone()))?;
    if key.id().as_str() != record.id {
        return Err(KeyringError::Corrupt(record.id.clone()));
    }
    Ok(key)
}

fn open_signing_key(
    record: &SigningKeyRecord,
    master: &MasterKey,
) -> Result<SigningKey, KeyringError> {
    let seed = master
        .open(&record.private_key_enc, record.id.as_bytes())
        .map_err(|e| KeyringError::MasterKey(record.id.clone(), e))?;
    let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
        seed.as_slice()
            .try_into()
            .map_err(|_| KeyringError::Corrupt(record.id.clone()))?,
    );
    let key = SigningKey::from_seed(&seed);
    if key.id().as_str() != record.id {
        return Err(KeyringError::Corrupt(record.id.clone()));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(master: &MasterKey, state: KeyState) -> SigningKeyRecord {
        let new = new_key(master);
        let at = OffsetDateTime::UNIX_EPOCH;
        SigningKeyRecord {
            id: new.id,
            state,
            public_key: new.public_key,
            private_key_enc: new.private_key_enc,
            created_at: at,
            published_at: at,
            activated_at: None,
            rotate_requested_at: None,
            retired_at: None,
            removes_at: None,
            removed_at: None,
            revoked_at: None,
        }
    }

    fn ids(set: &KeySet) -> Vec<String> {
        set.published.iter().map(|k| k.id().to_string()).collect()
    }

    fn with_state(key: &SigningKeyRecord, state: KeyState) -> SigningKeyRecord {
        SigningKeyRecord {
            state,
            ..key.clone()
        }
    }

    #[test]
    fn install_follows_the_store_and_keeps_the_last_good_set() {
        let master = MasterKey::from_bytes([1; 32]);
        let a = record(&master, KeyState::Active);
        let ring = Keyring {
            current: RwLock::new(Arc::new(build(std::slice::from_ref(&a), &master).unwrap())),
            master,
        };
        let etag = ring.current().etag.clone();
        assert!(
            !ring.install(std::slice::from_ref(&a)).unwrap(),
            "unchanged"
        );

        // A successor is published: the key set grows, the signer stays.
        let b = record(&ring.master, KeyState::Next);
        assert!(ring.install(&[b.clone(), a.clone()]).unwrap());
        let set = ring.current();
        assert_eq!(ids(&set), [b.id.clone(), a.id.clone()]);
        assert_eq!(set.active.id().as_str(), a.id);
        assert_ne!(set.etag, etag);

        // The successor signs; the retired key stays published; a gone one does not.
        let gone = record(&ring.master, KeyState::Gone);
        let rotated = [
            with_state(&b, KeyState::Active),
            with_state(&a, KeyState::Retired),
            gone,
        ];
        assert!(ring.install(&rotated).unwrap());
        assert_eq!(ring.current().active.id().as_str(), b.id);
        assert_eq!(ids(&ring.current()), [b.id.clone(), a.id.clone()]);

        // No active key, or one this master key cannot open: the last set stays.
        assert!(matches!(
            ring.install(&rotated[1..]),
            Err(KeyringError::NoActiveKey)
        ));
        let foreign = record(&MasterKey::from_bytes([2; 32]), KeyState::Active);
        assert!(matches!(
            ring.install(&[foreign, with_state(&b, KeyState::Retired)]),
            Err(KeyringError::MasterKey(..))
        ));
        assert_eq!(ring.current().active.id().as_str(), b.id);
        assert_eq!(ids(&ring.current()), [b.id.clone(), a.id.clone()]);
    }
}
