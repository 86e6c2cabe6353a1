//! Refresh tokens this process minted and has not seen presented yet (issue #18).
//!
//! A refresh read its token from the store before signing: a query on Postgres, a trip
//! to a connection thread on SQLite, on every refresh. Yet the usual next use of a
//! refresh token is at the process that minted it, and what that process stored is
//! what it would read back. So a minted token's record is kept here and taken (once) by
//! its next presentation, which then skips the read.
//!
//! The read was never what made a refresh safe: the rotation commits with the token's
//! audit event only if the token is still unused, its family not revoked and its user
//! enabled, checked by the store at commit ([`mayfly_store::RefreshRotation`]), and no
//! token leaves unless it applied. What can change after minting (a use at another
//! replica, a revocation, a disabled or deleted user) is found there, and the refusal is
//! worked out from a fresh read (`grant::refresh::lost_race`). What is kept cannot
//! change: the family's client, audience, scopes, binding and lifetime, and the
//! token's idle timeout.
//!
//! Entries are keyed by the token's selector and answer only to the right digest
//! (compared in constant time), so a guessed selector finds nothing. The clear token is
//! never kept.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use mayfly_store::{RefreshKey, RefreshTokenRecord};
use subtle::ConstantTimeEq as _;
use uuid::Uuid;

/// How many minted tokens are kept at most. An entry is the record of one login (well
/// under 1 KiB), so a few MiB at most; when full, the oldest (selectors are UUIDv7,
/// time-ordered) make room, and their next use reads the store as any other.
pub const CAPACITY: usize = 4096;

/// A minted token's record and its digest.
struct Minted {
    digest: [u8; 32],
    record: RefreshTokenRecord,
}

/// The minted tokens of this process, shared by every request.
pub struct MintedTokens {
    capacity: usize,
    entries: Mutex<BTreeMap<Uuid, Minted>>,
}

impl Default for MintedTokens {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

impl fmt::Debug for MintedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MintedTokens")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl MintedTokens {
    /// At most `capacity` tokens (0: none, every refresh reads the store).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(BTreeMap::new()),
        }
    }

    /// Keeps the record of a token this process just stored (unused, its user enabled).
    pub fn remember(&self, key: &RefreshKey, record: RefreshTokenRecord) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.lock();
        entries.insert(
            key.selector,
            Minted {
                digest: key.digest,
                record,
            },
        );
        while entries.len() > self.capacity {
            entries.pop_first();
        }
    }

    /// The record of the token `key` proves, if this process minted it and it was not
    /// taken before: a presentation takes it, so the next one reads the store.
    pub fn take(&self, key: &RefreshKey) -> Option<RefreshTokenRecord> {
        let mut entries = self.lock();
        let minted = entries.get(&key.selector)?;
        if !bool::from(minted.digest.ct_eq(&key.digest)) {
            return None;
        }
        entries.remove(&key.selector).map(|m| m.record)
    }

    /// A panic elsewhere while holding the lock leaves the map as valid as before.
    fn lock(&self) -> MutexGuard<'_, BTreeMap<Uuid, Minted>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mayfly_store::RefreshFamilyRecord;
    use time::OffsetDateTime;

    fn record(scope: &str) -> RefreshTokenRecord {
        let t = OffsetDateTime::UNIX_EPOCH;
        RefreshTokenRecord {
            family: RefreshFamilyRecord {
                id: Uuid::now_v7(),
                user_id: Uuid::now_v7(),
                client_id: Uuid::now_v7(),
                audience: "https://orders".into(),
                scope: scope.into(),
                created_at: t,
                expires_at: t,
                revoked_at: None,
                jkt: None,
            },
            created_at: t,
            expires_at: t,
            used_at: None,
            user_enabled: true,
        }
    }

    fn key(n: u8) -> RefreshKey {
        RefreshKey {
            selector: Uuid::now_v7(),
            digest: [n; 32],
        }
    }

    #[test]
    fn a_minted_token_is_taken_once_and_only_with_its_digest() {
        let minted = MintedTokens::default();
        let k = key(1);
        minted.remember(&k, record("a:read"));
        let forged = RefreshKey {
            digest: [2; 32],
            ..k
        };
        assert_eq!(minted.take(&forged), None);
        assert_eq!(
            minted.take(&k).map(|r| r.family.scope),
            Some("a:read".into())
        );
        assert_eq!(
            minted.take(&k),
            None,
            "a second presentation reads the store"
        );
    }

    #[test]
    fn the_oldest_make_room_and_capacity_zero_keeps_nothing() {
        let minted = MintedTokens::with_capacity(2);
        let keys: Vec<RefreshKey> = (0..3).map(key).collect();
        for k in &keys {
            minted.remember(k, record("a:read"));
        }
        assert_eq!(minted.take(&keys[0]), None);
        assert!(minted.take(&keys[1]).is_some());
        assert!(minted.take(&keys[2]).is_some());

        let none = MintedTokens::with_capacity(0);
        none.remember(&keys[0], record("a:read"));
        assert_eq!(none.take(&keys[0]), None);
    }
}
