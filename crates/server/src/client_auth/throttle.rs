//! Throttling of failed client authentication: after too many failures for one client
//! id, or from one source address, within a window, further attempts are refused with
//! 429 and `Retry-After` until the window frees up. Counters live in each replica's
//! memory (an attacker spreading over replicas gets at most N× the budget).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

use time::{Duration, OffsetDateTime};

/// Failures allowed per client id within [`WINDOW`].
pub const PER_CLIENT: usize = 10;
/// Failures allowed per source address within [`WINDOW`].
pub const PER_ADDRESS: usize = 30;
/// The sliding window.
pub const WINDOW: Duration = Duration::minutes(1);
/// Keys tracked before old ones are forgotten (bounds memory under floods).
const MAX_KEYS: usize = 100_000;

/// What failures are counted for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// A claimed client id (not necessarily a real one).
    Client(String),
    /// A source address.
    Address(IpAddr),
}

/// The failure counters.
#[derive(Debug, Default)]
pub struct Throttle {
    failures: Mutex<HashMap<Key, VecDeque<OffsetDateTime>>>,
}

impl Throttle {
    fn keys(
        client_id: Option<&str>,
        address: Option<IpAddr>,
    ) -> impl Iterator<Item = (Key, usize)> {
        client_id
            .map(|c| (Key::Client(c.chars().take(64).collect()), PER_CLIENT))
            .into_iter()
            .chain(address.map(|a| (Key::Address(a), PER_ADDRESS)))
    }

    /// `Some(wait)` when attempts for this client or from this address are refused now.
    pub fn check(
        &self,
        client_id: Option<&str>,
        address: Option<IpAddr>,
        now: OffsetDateTime,
    ) -> Option<Duration> {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Self::keys(client_id, address)
            .filter_map(|(key, limit)| {
                let times = failures.get_mut(&key)?;
                while times.front().is_some_and(|t| *t <= now - WINDOW) {
                    times.pop_front();
                }
                (times.len() >= limit).then(|| {
                    times
                        .front()
                        .map_or(WINDOW, |oldest| *oldest + WINDOW - now)
                })
            })
            .max()
    }

    /// Records a failed authentication; returns the keys whose limit this failure just
    /// reached (a burst, worth an anomaly event once per window).
    pub fn fail(
        &self,
        client_id: Option<&str>,
        address: Option<IpAddr>,
        now: OffsetDateTime,
    ) -> Vec<Key> {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if failures.len() >= MAX_KEYS {
            failures.retain(|_, times| times.back().is_some_and(|t| *t > now - WINDOW));
            if failures.len() >= MAX_KEYS {
                failures.clear();
            }
        }
        let mut tripped = Vec::new();
        for (key, limit) in Self::keys(client_id, address) {
            let times = failures.entry(key.clone()).or_default();
            while times.front().is_some_and(|t| *t <= now - WINDOW) {
                times.pop_front();
            }
            times.push_back(now);
            if times.len() == limit {
                tripped.push(key);
            }
            while times.len() > limit {
                times.pop_front();
            }
        }
        tripped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T: OffsetDateTime = datetime!(2026-11-28 12:00:00 UTC);

    #[test]
    fn per_client_and_per_address_windows() {
        let throttle = Throttle::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for i in 0..PER_CLIENT {
            assert_eq!(throttle.check(Some("c1"), Some(ip), T), None, "attempt {i}");
            let tripped = throttle.fail(Some("c1"), Some(ip), T + Duration::seconds(i as i64));
            // The failure that reaches the limit reports the burst, once.
            let expected = if i + 1 == PER_CLIENT {
                vec![Key::Client("c1".into())]
            } else {
                vec![]
            };
            assert_eq!(tripped, expected, "attempt {i}");
        }
        let wait = throttle
            .check(Some("c1"), None, T + Duration::seconds(20))
            .unwrap();
        assert_eq!(
            wait,
            Duration::seconds(40),
            "until the oldest failure leaves the window"
        );
        assert_eq!(
            throttle.check(Some("c2"), None, T + Duration::seconds(20)),
            None,
            "another client is not affected"
        );
        assert_eq!(
            throttle.check(Some("c1"), None, T + Duration::seconds(61)),
            None,
            "the window moves on"
        );

        // Many clients from one address trip the address limit.
        let other: IpAddr = "198.51.100.7".parse().unwrap();
        let tripped: Vec<Key> = (0..PER_ADDRESS)
            .flat_map(|i| throttle.fail(Some(&format!("x{i}")), Some(other), T))
            .collect();
        assert_eq!(tripped, vec![Key::Address(other)]);
        assert!(throttle.check(Some("fresh"), Some(other), T).is_some());
        assert!(
            throttle
                .check(Some("fresh"), Some(ip), T + Duration::seconds(61))
                .is_none()
        );
    }
}
