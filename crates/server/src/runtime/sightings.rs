//! What this process remembers for anomaly detection (`crate::anomaly`): the sightings
//! it has seen already, where each token was issued, and recent failure bursts. Only
//! memory: the store holds the baseline.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use mayfly_store::SightingKind;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::RequestContext;
use crate::client_auth::throttle::{self, Key};

/// Sightings remembered in memory before the cache starts over.
const MAX_KNOWN: usize = 200_000;
/// Issued tokens whose origin is remembered.
const MAX_TOKENS: usize = 200_000;

/// Where something was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeenIn {
    /// A token request.
    Issuance,
    /// An introspection request.
    Introspection,
    /// A resource server's usage report.
    Usage,
}

impl SeenIn {
    /// The name audit events and notices use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issuance => "issuance",
            Self::Introspection => "introspection",
            Self::Usage => "usage",
        }
    }
}

/// One thing a token or client was seen doing.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Where.
    pub seen_in: SeenIn,
    /// The client the token belongs to.
    pub client_id: Uuid,
    /// The token's subject.
    pub subject: Option<String>,
    /// The token, if one is concerned.
    pub jti: Option<String>,
    /// Its expiry (bounds how long a revocation is kept).
    pub token_exp: Option<OffsetDateTime>,
    /// The address the client acted from.
    pub address: Option<IpAddr>,
    /// The audience used.
    pub audience: Option<String>,
    /// The endpoint called: `METHOD /path`.
    pub endpoint: Option<String>,
    /// The request that reported it (for the audit event).
    pub request: RequestContext,
}

/// The network an address belongs to, as the baseline records it: /24 for IPv4, /64 for
/// IPv6 (one site or one host's prefix, not one address).
pub fn network(address: IpAddr) -> String {
    Network::of(address).to_string()
}

/// A network of [`network`], held without a heap allocation: one is remembered for every
/// token issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Network {
    V4([u8; 3]),
    V6([u16; 4]),
}

impl Network {
    fn of(address: IpAddr) -> Self {
        match address.to_canonical() {
            IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                Self::V4([a, b, c])
            }
            IpAddr::V6(v6) => {
                let s = v6.segments();
                Self::V6([s[0], s[1], s[2], s[3]])
            }
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::V4([a, b, c]) => write!(f, "{a}.{b}.{c}.0/24"),
            Self::V6([a, b, c, d]) => {
                write!(f, "{}/64", std::net::Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
        }
    }
}

/// Where a token was issued, and until when that matters. No heap allocation per token:
/// with [`origin_key`], an entry is 24 bytes, and [`MAX_TOKENS`] of them about 6 MB
/// (string keys and values took 30 MB under load).
#[derive(Debug, Clone, Copy)]
struct Origin {
    network: Network,
    /// Expiry, in Unix seconds (u32 lasts until 2106).
    exp: u32,
}

/// The key a token's origin is remembered by: the last 8 bytes of its `jti` (our `jti`s
/// are UUIDv7s: there, 62 bits of the per-millisecond counter, randomly seeded, and of
/// random data; not the time). Two of [`MAX_TOKENS`] tokens share a key with odds of
/// about 1 in 2 × 10^8, and then one anomaly check reads the other's origin; nothing else
/// depends on it. Anything but a UUID is not remembered.
fn origin_key(jti: &str) -> Option<u64> {
    let bytes = Uuid::try_parse(jti).ok()?.into_bytes();
    let mut key = [0u8; 8];
    key.copy_from_slice(&bytes[8..]);
    Some(u64::from_le_bytes(key))
}

fn unix_u32(at: OffsetDateTime) -> u32 {
    u32::try_from(at.unix_timestamp().max(0)).unwrap_or(u32::MAX)
}

/// What this process remembers. The store holds the baseline; this only saves trips.
#[derive(Debug)]
pub struct Detector {
    known: Mutex<HashSet<(Uuid, SightingKind, String)>>,
    origins: Mutex<HashMap<u64, Origin>>,
    bursts: Mutex<HashMap<Key, OffsetDateTime>>,
}

/// An anomaly found, before it is recorded.
#[derive(Debug)]
pub struct Found {
    /// The anomaly's name.
    pub name: &'static str,
    /// What was seen.
    pub detail: serde_json::Value,
}

impl Default for Detector {
    /// The token origins table is sized for its cap up front: grown by doubling under
    /// load, it would briefly hold old and new tables (a third more memory at the peak)
    /// and leave the old one to fragment the heap.
    fn default() -> Self {
        Self {
            known: Mutex::default(),
            origins: Mutex::new(HashMap::with_capacity(MAX_TOKENS)),
            bursts: Mutex::default(),
        }
    }
}

impl Detector {
    /// Remembers where a token was issued, so use from elsewhere stands out.
    pub fn issued(
        &self,
        jti: &str,
        address: Option<IpAddr>,
        exp: OffsetDateTime,
        now: OffsetDateTime,
    ) {
        let Some(address) = address else { return };
        let Some(key) = origin_key(jti) else { return };
        let now = unix_u32(now);
        let mut origins = self.origins.lock().unwrap_or_else(PoisonError::into_inner);
        if origins.len() >= MAX_TOKENS {
            origins.retain(|_, o| o.exp > now);
            if origins.len() >= MAX_TOKENS {
                origins.clear();
            }
        }
        origins.insert(
            key,
            Origin {
                network: Network::of(address),
                exp: unix_u32(exp),
            },
        );
    }

    /// The sightings of `obs` this process has not seen yet (no I/O).
    pub fn unknown(&self, obs: &Observation) -> Vec<(SightingKind, String)> {
        let mut wanted = Vec::with_capacity(3);
        if let Some(address) = obs.address {
            wanted.push((SightingKind::Network, network(address)));
        }
        if obs.seen_in != SeenIn::Issuance
            && let Some(aud) = &obs.audience
        {
            wanted.push((SightingKind::Audience, aud.clone()));
            if let Some(endpoint) = &obs.endpoint {
                wanted.push((SightingKind::Endpoint, format!("{aud} {endpoint}")));
            }
        }
        let known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        wanted.retain(|(kind, value)| !known.contains(&(obs.client_id, *kind, value.clone())));
        wanted
    }

    pub fn learn(&self, client_id: Uuid, kind: SightingKind, value: String) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        if known.len() >= MAX_KNOWN {
            known.clear();
        }
        known.insert((client_id, kind, value));
    }

    /// The issuance network of the token, when it differs from where it is used now.
    pub fn moved(&self, obs: &Observation) -> Option<Found> {
        let (jti, address) = (obs.jti.as_ref()?, obs.address?);
        if obs.seen_in == SeenIn::Issuance {
            return None;
        }
        let key = origin_key(jti)?;
        let issued_to = self
            .origins
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)?
            .network;
        let now_in = Network::of(address);
        (issued_to != now_in).then(|| Found {
            name: "token_new_network",
            detail: serde_json::json!({
                "issued_to": issued_to.to_string(),
                "used_from": now_in.to_string(),
            }),
        })
    }

    /// Whether a burst for `key` was already reported within the throttle window.
    pub fn burst_is_new(&self, key: &Key, now: OffsetDateTime) -> bool {
        let mut bursts = self.bursts.lock().unwrap_or_else(PoisonError::into_inner);
        if bursts.len() >= MAX_KNOWN {
            bursts.retain(|_, at| *at > now - throttle::WINDOW);
        }
        if bursts.len() >= MAX_KNOWN {
            bursts.clear();
        }
        match bursts.get(key) {
            Some(at) if *at > now - throttle::WINDOW => false,
            _ => {
                bursts.insert(*key, now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used_from(jti: &str, address: &str) -> Observation {
        Observation {
            seen_in: SeenIn::Introspection,
            client_id: Uuid::nil(),
            subject: None,
            jti: Some(jti.to_owned()),
            token_exp: None,
            address: address.parse().ok(),
            audience: None,
            endpoint: None,
            request: RequestContext::default(),
        }
    }

    #[test]
    fn a_token_used_from_another_network_is_found() {
        let detector = Detector::default();
        let now = time::macros::datetime!(2026-12-06 08:00 UTC);
        let jti = Uuid::new_v4().simple().to_string();
        detector.issued(
            &jti,
            "198.51.100.7".parse().ok(),
            now + time::Duration::minutes(5),
            now,
        );
        assert!(
            detector.moved(&used_from(&jti, "198.51.100.200")).is_none(),
            "same /24"
        );
        let found = detector.moved(&used_from(&jti, "203.0.113.9")).unwrap();
        assert_eq!(found.name, "token_new_network");
        assert_eq!(
            found.detail,
            serde_json::json!({"issued_to": "198.51.100.0/24", "used_from": "203.0.113.0/24"})
        );
        // Another token, and a jti that is not ours, have no origin.
        let other = Uuid::new_v4().simple().to_string();
        assert!(detector.moved(&used_from(&other, "203.0.113.9")).is_none());
        detector.issued("not-a-uuid", "198.51.100.7".parse().ok(), now, now);
        assert!(
            detector
                .moved(&used_from("not-a-uuid", "203.0.113.9"))
                .is_none()
        );
    }

    #[test]
    fn networks_print_as_the_baseline_records_them() {
        for (address, network_text) in [
            ("203.0.113.77", "203.0.113.0/24"),
            ("::ffff:203.0.113.77", "203.0.113.0/24"),
            ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ] {
            assert_eq!(network(address.parse().unwrap()), network_text);
        }
    }
}
