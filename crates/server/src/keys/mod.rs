//! The keyring: the signing key in use and the public keys published in the key set.
//!
//! Private halves live in the store encrypted under the [`MasterKey`]. On first start a
//! key is generated and made active; [`KeyStore::ensure_active_key`] makes that safe when
//! several replicas start at once. The keyring is swapped whole (`Arc<KeySet>`), so the
//! automatic rotation task can slot in by building a new [`KeySet`] and calling
//! [`Keyring::replace`].

pub mod master;

use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mayfly_core::wire::{Jwk, JwkSet};
use mayfly_core::{KeyId, PublicKey, SigningKey};
use mayfly_store::{KeyState, KeyStore, SigningKeyRecord, StoreError};
use rand::Rng as _;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

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
}

/// One consistent view of the keys: who signs, what is published.
#[derive(Debug)]
pub struct KeySet {
    /// The key that signs new tokens.
    pub active: SigningKey,
    /// Every key a valid token may carry (`next`, `active`, `retired`).
    pub published: Vec<PublicKey>,
    /// The key set document, serialized once.
    pub jwks_json: String,
    /// Strong ETag of `jwks_json`.
    pub etag: String,
}

impl KeySet {
    fn new(active: SigningKey, published: Vec<PublicKey>) -> Self {
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
        }
    }

    /// The published key with this id.
    pub fn public_key(&self, id: &KeyId) -> Option<&PublicKey> {
        self.published.iter().find(|k| k.id() == id)
    }
}

/// The current [`KeySet`], shared by every request.
#[derive(Debug)]
pub struct Keyring {
    current: RwLock<Arc<KeySet>>,
}

impl Keyring {
    /// Loads the keys, creating and activating the first one when there is none.
    ///
    /// # Errors
    /// [`KeyringError`] when the store fails or a key does not decrypt.
    pub async fn load(
        store: &dyn KeyStore,
        master: &MasterKey,
        now: OffsetDateTime,
    ) -> Result<Self, KeyringError> {
        let candidate = new_key_record(master, now);
        let active_record = store.ensure_active_key(candidate).await?;
        let active = open_signing_key(&active_record, master)?;
        let mut published = Vec::new();
        for record in store.signing_keys().await? {
            if matches!(
                record.state,
                KeyState::Next | KeyState::Active | KeyState::Retired
            ) {
                published.push(public_key(&record)?);
            }
        }
        if !published.iter().any(|k| k.id() == active.id()) {
            published.push(active.public().clone());
        }
        Ok(Self {
            current: RwLock::new(Arc::new(KeySet::new(active, published))),
        })
    }

    /// The current key set.
    pub fn current(&self) -> Arc<KeySet> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Installs a new key set (used by rotation).
    pub fn replace(&self, active: SigningKey, published: Vec<PublicKey>) {
        let next = Arc::new(KeySet::new(active, published));
        match self.current.write() {
            Ok(mut guard) => *guard = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
    }
}

/// A fresh Ed25519 key, encrypted, as an `active` record.
fn new_key_record(master: &MasterKey, now: OffsetDateTime) -> SigningKeyRecord {
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    rand::rng().fill_bytes(&mut seed[..]);
    let key = SigningKey::from_seed(&seed);
    let id = key.id().to_string();
    SigningKeyRecord {
        private_key_enc: master.seal(&seed[..], id.as_bytes()),
        public_key: key.public().to_bytes().to_vec(),
        id,
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
    let seed: zeroize::Zeroizing<[u8; 32]> = zeroize::Zeroizing::new(
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
