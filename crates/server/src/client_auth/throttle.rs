//! Throttling of failed client authentication, built so that a client id alone cannot
//! trigger it against its owner:
//! - failures count against a client only when the client exists (ids are canonical
//!   UUIDs, so one client has one counter), and only for the network they came from
//!   (/24 for IPv4, /64 for IPv6): guesses from elsewhere throttle elsewhere, never the
//!   owner's own network;
//! - every failure also counts against its source (one IPv4 address, one IPv6 /64),
//!   whatever id it named.
//!
//! A key over its limit is refused with 429 and `Retry-After` until the window frees
//! up. Counters live in each replica's memory (an attacker spreading over replicas gets
//! at most N× the budget). Memory is bounded: when full, expired keys go first, then the
//! least recently failed ones, never all at once.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

use ipnet::IpNet;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// Failures allowed per client and network within [`WINDOW`].
pub const PER_CLIENT: usize = 10;
/// Failures allowed per source address within [`WINDOW`].
pub const PER_ADDRESS: usize = 30;
/// The sliding window.
pub const WINDOW: Duration = Duration::minutes(1);
/// Keys tracked at most (bounds memory under floods).
const MAX_KEYS: usize = 100_000;

/// What failures are counted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    /// An existing client, failing from one network (`None`: the address is unknown).
    Client {
        /// The client.
        id: Uuid,
        /// The network the failures came from.
        network: Option<IpNet>,
    },
    /// A source: one IPv4 address or one IPv6 /64.
    Address(IpNet),
}

impl Key {
    /// The key for failures of client `id` from `address`.
    pub fn client(id: Uuid, address: Option<IpAddr>) -> Self {
        Self::Client {
            id,
            network: address.map(|a| prefix(a, 24, 64)),
        }
    }

    /// The key for failures from `address`.
    pub fn address(address: IpAddr) -> Self {
        Self::Address(prefix(address, 32, 64))
    }

    fn limit(&self) -> usize {
        match self {
            Self::Client { .. } => PER_CLIENT,
            Self::Address(_) => PER_ADDRESS,
        }
    }
}

/// `address` truncated to `v4` or `v6` prefix bits.
pub fn prefix(address: IpAddr, v4: u8, v6: u8) -> IpNet {
    let address = address.to_canonical();
    let bits = if address.is_ipv4() { v4 } else { v6 };
    IpNet::new(address, bits).map_or_else(|_| IpNet::from(address), |n| n.trunc())
}

/// Failure times within the window, per key, bounded in count and in keys.
#[derive(Debug)]
pub struct Counters<K> {
    failures: Mutex<HashMap<K, VecDeque<OffsetDateTime>>>,
}

impl<K> Default for Counters<K> {
    fn default() -> Self {
        Self {
            failures: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone> Counters<K> {
    /// `Some(wait)` when any of `keys` has reached its limit within `window` at `now`.
    pub fn check(
        &self,
        keys: &[(K, usize)],
        window: Duration,
        now: OffsetDateTime,
    ) -> Option<Duration> {
        let mut failures = self.lock();
        keys.iter()
            .filter_map(|(key, limit)| {
                let times = failures.get_mut(key)?;
                expire(times, window, now);
                (times.len() >= *limit).then(|| {
                    times
                        .front()
                        .map_or(window, |oldest| *oldest + window - now)
                })
            })
            .max()
    }

    /// Records one failure for each of `keys`; returns those whose limit it just reached.
    pub fn fail(&self, keys: &[(K, usize)], window: Duration, now: OffsetDateTime) -> Vec<K> {
        let mut failures = self.lock();
        if failures.len() + keys.len() > MAX_KEYS {
            make_room(&mut failures, window, now);
        }
        let mut tripped = Vec::new();
        for (key, limit) in keys {
            let times = failures.entry(key.clone()).or_default();
            expire(times, window, now);
            times.push_back(now);
            if times.len() == *limit {
                tripped.push(key.clone());
            }
            while times.len() > *limit {
                times.pop_front();
            }
        }
        tripped
    }

    /// Forgets the most recent failure of each of `keys` (an attempt counted in advance
    /// that turned out not to fail).
    pub fn refund(&self, keys: &[K]) {
        let mut failures = self.lock();
        for key in keys {
            if let Some(times) = failures.get_mut(key) {
                times.pop_back();
                if times.is_empty() {
                    failures.remove(key);
                }
            }
        }
    }

    /// Counts one attempt for each of `keys` unless one of them is at its limit, all
    /// under one lock, so that concurrent attempts cannot all pass a check made before
    /// any of them failed. `Err(wait)` when refused.
    ///
    /// # Errors
    /// How long until the fullest key frees up.
    pub fn reserve(
        &self,
        keys: &[(K, usize)],
        window: Duration,
        now: OffsetDateTime,
    ) -> Result<(), Duration> {
        let mut failures = self.lock();
        let mut wait = None;
        for (key, limit) in keys {
            if let Some(times) = failures.get_mut(key) {
                expire(times, window, now);
                if times.len() >= *limit {
                    let until = times.front().map_or(window, |t| *t + window - now);
                    wait = wait.max(Some(until));
                }
            }
        }
        if let Some(wait) = wait {
            return Err(wait);
        }
        if failures.len() + keys.len() > MAX_KEYS {
            make_room(&mut failures, window, now);
        }
        for (key, _) in keys {
            failures.entry(key.clone()).or_default().push_back(now);
        }
        Ok(())
    }

    /// How many keys are tracked.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, VecDeque<OffsetDateTime>>> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn expire(times: &mut VecDeque<OffsetDateTime>, window: Duration, now: OffsetDateTime) {
    while times.front().is_some_and(|t| *t <= now - window) {
        times.pop_front();
    }
}

/// Drops expired keys; if that is not enough, the tenth of keys that failed least
/// recently. Live counters of an attack in progress are the most recent: they stay.
fn make_room<K: std::hash::Hash + Eq + Clone>(
    failures: &mut HashMap<K, VecDeque<OffsetDateTime>>,
    window: Duration,
    now: OffsetDateTime,
) {
    failures.retain(|_, times| times.back().is_some_and(|t| *t > now - window));
    if failures.len() < MAX_KEYS * 9 / 10 {
        return;
    }
    let mut last: Vec<(OffsetDateTime, K)> = failures
        .iter()
        .filter_map(|(k, times)| times.back().map(|t| (*t, k.clone())))
        .collect();
    let evict = MAX_KEYS / 10;
    if last.len() > evict {
        last.select_nth_unstable_by_key(evict, |(t, _)| *t);
        last.truncate(evict);
    }
    for (_, key) in last {
        failures.remove(&key);
    }
}

/// The failure counters of client authentication.
#[derive(Debug, Default)]
pub struct Throttle {
    counters: Counters<Key>,
}

impl Throttle {
    fn keys(client: Option<Uuid>, address: Option<IpAddr>) -> Vec<(Key, usize)> {
        client
            .map(|id| Key::client(id, address))
            .into_iter()
            .chain(address.map(Key::address))
            .map(|k| (k, k.limit()))
            .collect()
    }

    /// `Some(wait)` when attempts for this client from this address's network, or from
    /// this address, are refused now. `client` is the canonical id claimed, whether or
    /// not it exists (only existing clients ever have a counter).
    pub fn check(
        &self,
        client: Option<Uuid>,
        address: Option<IpAddr>,
        now: OffsetDateTime,
    ) -> Option<Duration> {
        self.counters
            .check(&Self::keys(client, address), WINDOW, now)
    }

    /// Records a failed authentication. `existing` is the client when it exists (a
    /// failure naming an unknown id counts against the address only). Returns the keys
    /// whose limit this failure just reached (a burst, worth an anomaly event once per
    /// window).
    pub fn fail(
        &self,
        existing: Option<Uuid>,
        address: Option<IpAddr>,
        now: OffsetDateTime,
    ) -> Vec<Key> {
        self.counters
            .fail(&Self::keys(existing, address), WINDOW, now)
    }

    /// How many keys are tracked (for tests of the memory bound).
    pub fn len(&self) -> usize {
        self.counters.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T: OffsetDateTime = datetime!(2026-11-28 12:00:00 UTC);

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn per_client_network_and_per_address_windows() {
        let throttle = Throttle::default();
        let c1 = Uuid::now_v7();
        for i in 0..PER_CLIENT {
            assert_eq!(
                throttle.check(Some(c1), ip("192.0.2.1"), T),
                None,
                "attempt {i}"
            );
            // Spread over one /24, so only the client's key fills up.
            let from = ip(&format!("192.0.2.{i}"));
            let tripped = throttle.fail(Some(c1), from, T + Duration::seconds(i as i64));
            // The failure that reaches the limit reports the burst, once.
            let expected = if i + 1 == PER_CLIENT {
                vec![Key::client(c1, ip("192.0.2.1"))]
            } else {
                vec![]
            };
            assert_eq!(tripped, expected, "attempt {i}");
        }
        let later = T + Duration::seconds(20);
        let wait = throttle.check(Some(c1), ip("192.0.2.200"), later).unwrap();
        assert_eq!(
            wait,
            Duration::seconds(40),
            "until the oldest failure leaves the window"
        );
        assert_eq!(
            throttle.check(Some(c1), ip("198.51.100.1"), later),
            None,
            "the same client from another network is not affected"
        );
        assert_eq!(
            throttle.check(Some(Uuid::now_v7()), ip("192.0.2.1"), later),
            None,
            "another client is not affected"
        );
        assert_eq!(
            throttle.check(Some(c1), ip("192.0.2.1"), T + Duration::seconds(61)),
            None,
            "the window moves on"
        );

        // Unknown ids from one address trip the address limit only.
        let tripped: Vec<Key> = (0..PER_ADDRESS)
            .flat_map(|_| throttle.fail(None, ip("198.51.100.7"), T))
            .collect();
        assert_eq!(tripped, vec![Key::address("198.51.100.7".parse().unwrap())]);
        assert!(throttle.check(None, ip("198.51.100.7"), T).is_some());
        assert!(throttle.check(None, ip("198.51.100.8"), T).is_none());
        // An IPv6 host is one /64, however many addresses it uses.
        for i in 0..PER_ADDRESS {
            throttle.fail(None, ip(&format!("2001:db8:1:2::{i:x}")), T);
        }
        assert!(
            throttle
                .check(None, ip("2001:db8:1:2:ffff::1"), T)
                .is_some()
        );
        assert!(throttle.check(None, ip("2001:db8:1:3::1"), T).is_none());
    }

    #[test]
    fn a_flood_of_new_keys_keeps_live_counters() {
        let counters = Counters::<u64>::default();
        let limit = 3;
        for _ in 0..limit {
            counters.fail(&[(0, limit)], WINDOW, T + Duration::seconds(30));
        }
        for k in 1..=(MAX_KEYS as u64 + 10) {
            counters.fail(&[(k, limit)], WINDOW, T);
        }
        assert!(counters.len() <= MAX_KEYS);
        assert!(
            counters
                .check(&[(0, limit)], WINDOW, T + Duration::seconds(31))
                .is_some(),
            "the most recent counter survives the flood"
        );
    }

    #[test]
    fn reservations_are_atomic_and_refundable() {
        let counters = Counters::<u8>::default();
        for _ in 0..2 {
            assert!(counters.reserve(&[(1, 2)], WINDOW, T).is_ok());
        }
        assert!(counters.reserve(&[(1, 2)], WINDOW, T).is_err());
        counters.refund(&[1]);
        assert!(counters.reserve(&[(1, 2)], WINDOW, T).is_ok());
        assert!(
            counters
                .reserve(&[(1, 2)], WINDOW, T + WINDOW + Duration::SECOND)
                .is_ok()
        );
    }
}
