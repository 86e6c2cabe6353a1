//! The signing-key lifecycle rules: `next → active → retired → gone`.
//!
//! Every lifecycle step of [`KeyStore`](crate::KeyStore) re-reads the keys inside its
//! locked transaction and asks these functions whether it is due. Of several replicas
//! attempting the same step at once, the first performs it and the others, reading the
//! result under the same lock, find nothing to do. The server asks the same functions
//! about an unlocked snapshot, only to decide whether a step is worth attempting.

use std::collections::{BTreeMap, BTreeSet};

use time::{Duration, OffsetDateTime};

use crate::{AuditEvent, KeyState, RewrappedKey, SigningKeyRecord};

/// The lifecycle periods. The server validates them (see its configuration) so that a
/// cached key set always knows the signing key and a key outlives its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPolicy {
    /// How long a key signs before its successor takes over.
    pub lifetime: Duration,
    /// How long a key is published as `next` before it may sign: longer than any cache
    /// may hold the key set, so verifiers know a key before they see its first token.
    pub publish_lead: Duration,
    /// How long a retired key stays published: longer than any token it signed lives.
    pub retire_hold: Duration,
}

/// The key that signs, if any.
pub fn active_key(keys: &[SigningKeyRecord]) -> Option<&SigningKeyRecord> {
    keys.iter().find(|k| k.state == KeyState::Active)
}

/// The key waiting to sign, if any.
pub fn next_key(keys: &[SigningKeyRecord]) -> Option<&SigningKeyRecord> {
    keys.iter().find(|k| k.state == KeyState::Next)
}

impl KeyPolicy {
    /// When the active key is due to be replaced: at the end of its lifetime, or at once
    /// when an operator asked for it.
    pub fn replace_at(&self, active: &SigningKeyRecord) -> OffsetDateTime {
        let scheduled = active.activated_at.unwrap_or(active.published_at) + self.lifetime;
        match active.rotate_requested_at {
            Some(asked) => asked.min(scheduled),
            None => scheduled,
        }
    }

    /// The earliest time a `next` key may sign: once published for the lead time.
    pub fn ready_at(&self, next: &SigningKeyRecord) -> OffsetDateTime {
        next.published_at + self.publish_lead
    }

    /// Whether a new `next` key should be published now: there is none, and the active
    /// key is due to be replaced within the lead time.
    pub fn next_key_due(&self, keys: &[SigningKeyRecord], now: OffsetDateTime) -> bool {
        if next_key(keys).is_some() {
            return false;
        }
        // With no active key there is nothing to succeed; first start creates one.
        active_key(keys).is_some_and(|active| self.replace_at(active) - self.publish_lead <= now)
    }

    /// The `next` key that may start signing now, if any: the active key is due to be
    /// replaced and the `next` key has been published for the lead time. An overdue
    /// active key keeps signing until its successor is ready: never the other way round.
    pub fn activation_due<'k>(
        &self,
        keys: &'k [SigningKeyRecord],
        now: OffsetDateTime,
    ) -> Option<&'k SigningKeyRecord> {
        let next = next_key(keys)?;
        let replace = active_key(keys).is_none_or(|active| self.replace_at(active) <= now);
        (replace && self.ready_at(next) <= now).then_some(next)
    }

    /// When a key retiring at `retired_at` leaves the key set.
    pub fn removes_at(&self, retired_at: OffsetDateTime) -> OffsetDateTime {
        retired_at + self.retire_hold
    }

    /// Whether a retired key may leave the key set now: its recorded removal time has
    /// come, and so has the one this policy gives (whichever is later, so changing the
    /// configuration never cuts a hold short).
    pub fn removal_due(&self, key: &SigningKeyRecord, now: OffsetDateTime) -> bool {
        key.state == KeyState::Retired
            && key
                .retired_at
                .is_some_and(|retired| self.removes_at(retired) <= now)
            && key.removes_at.is_none_or(|at| at <= now)
    }
}

/// One state change of one key, as a lifecycle step made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyChange {
    /// PASERK `k4.pid` of the key.
    pub id: String,
    /// Its state before; `None` for a key created by this step.
    pub from: Option<KeyState>,
    /// Its state after.
    pub to: KeyState,
    /// When.
    pub at: OffsetDateTime,
    /// Whether the key was revoked (emergency rotation): its tokens are no longer valid.
    pub revoked: bool,
}

/// The context of one lifecycle step.
#[derive(Clone, Copy)]
pub struct KeyStep<'a> {
    /// The time the step happens at.
    pub now: OffsetDateTime,
    /// The rules it checks.
    pub policy: KeyPolicy,
    /// Builds the audit event of each change; the events commit in the same transaction
    /// as the changes, so no transition goes unaudited.
    pub audit: &'a (dyn Fn(&KeyChange) -> AuditEvent + Send + Sync),
}

impl std::fmt::Debug for KeyStep<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStep")
            .field("now", &self.now)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Whether `keys` names every held private key exactly once, each with the ciphertext
/// the store holds now (`held`: id → ciphertext), so a rewrap misses nothing.
pub(crate) fn rewrap_matches(held: &BTreeMap<String, Vec<u8>>, keys: &[RewrappedKey]) -> bool {
    let ids: BTreeSet<&str> = keys.iter().map(|k| k.id.as_str()).collect();
    ids.len() == keys.len()
        && keys.len() == held.len()
        && keys.iter().all(|k| held.get(&k.id) == Some(&k.old))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: OffsetDateTime = time::macros::datetime!(2030-01-01 00:00 UTC);

    fn policy() -> KeyPolicy {
        KeyPolicy {
            lifetime: Duration::hours(24),
            publish_lead: Duration::hours(1),
            retire_hold: Duration::minutes(65),
        }
    }

    fn key(id: &str, state: KeyState, published: OffsetDateTime) -> SigningKeyRecord {
        SigningKeyRecord {
            id: id.into(),
            state,
            public_key: vec![],
            private_key_enc: vec![],
            created_at: published,
            published_at: published,
            activated_at: (state == KeyState::Active).then_some(published),
            rotate_requested_at: None,
            retired_at: None,
            removes_at: None,
            removed_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn a_next_key_is_published_the_lead_time_before_the_active_one_is_due() {
        let p = policy();
        let keys = [key("a", KeyState::Active, T0)];
        assert!(!p.next_key_due(&keys, T0 + Duration::hours(23) - Duration::SECOND));
        assert!(p.next_key_due(&keys, T0 + Duration::hours(23)));
        let with_next = [
            keys[0].clone(),
            key("b", KeyState::Next, T0 + Duration::hours(23)),
        ];
        assert!(
            !p.next_key_due(&with_next, T0 + Duration::hours(30)),
            "one next at a time"
        );
        assert!(!p.next_key_due(&[], T0), "first start is not a rotation");
        let asked = [SigningKeyRecord {
            rotate_requested_at: Some(T0 + Duration::hours(2)),
            ..keys[0].clone()
        }];
        assert!(p.next_key_due(&asked, T0 + Duration::hours(2)));
    }

    #[test]
    fn a_key_activates_only_when_due_and_published_long_enough() {
        let p = policy();
        let active = key("a", KeyState::Active, T0);
        let late_next = key(
            "b",
            KeyState::Next,
            T0 + Duration::hours(23) + Duration::minutes(30),
        );
        let keys = [active.clone(), late_next];
        assert_eq!(
            p.activation_due(&keys, T0 + Duration::hours(23) + Duration::minutes(59)),
            None
        );
        // Due, but the next key was published late: the old key signs on until it is ready.
        assert_eq!(p.activation_due(&keys, T0 + Duration::hours(24)), None);
        assert_eq!(
            p.activation_due(&keys, T0 + Duration::hours(24) + Duration::minutes(30))
                .map(|k| k.id.as_str()),
            Some("b")
        );
        // Asked for: as soon as the next key is ready, whatever the active key's age.
        let asked = SigningKeyRecord {
            rotate_requested_at: Some(T0 + Duration::hours(1)),
            ..active
        };
        let fresh = key("c", KeyState::Next, T0 + Duration::hours(1));
        let keys = [asked, fresh];
        assert_eq!(
            p.activation_due(&keys, T0 + Duration::hours(2) - Duration::SECOND),
            None
        );
        assert!(p.activation_due(&keys, T0 + Duration::hours(2)).is_some());
    }

    #[test]
    fn retired_keys_leave_after_the_later_of_both_holds() {
        let p = policy();
        let retired_at = T0 + Duration::hours(24);
        let retired = SigningKeyRecord {
            state: KeyState::Retired,
            retired_at: Some(retired_at),
            removes_at: Some(retired_at + Duration::hours(2)),
            ..key("a", KeyState::Retired, T0)
        };
        assert!(!p.removal_due(&retired, retired_at + Duration::minutes(65)));
        assert!(p.removal_due(&retired, retired_at + Duration::hours(2)));
        let recorded_shorter = SigningKeyRecord {
            removes_at: Some(retired_at + Duration::minutes(1)),
            ..retired.clone()
        };
        assert!(!p.removal_due(&recorded_shorter, retired_at + Duration::minutes(64)));
        assert!(p.removal_due(&recorded_shorter, retired_at + Duration::minutes(65)));
        let active = key("b", KeyState::Active, T0);
        assert!(!p.removal_due(&active, T0 + Duration::days(9)));
    }
}
