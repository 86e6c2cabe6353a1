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

/// Where a token was issued, and until when that matters; keyed by the 16 bytes of its
/// `jti`. No heap allocation per token: [`MAX_TOKENS`] of them take a few megabytes
/// (string keys and values took 30 MB under load).
#[derive(Debug, Clone, Copy)]
struct Origin {
    network: Network,
    /// Expiry, in Unix seconds.
    exp: i64,
}

/// What this process remembers. The store holds the baseline; this only saves trips.
#[derive(Debug, Default)]
pub struct Detector {
    known: Mutex<HashSet<(Uuid, SightingKind, String)>>,
    origins: Mutex<HashMap<[u8; 16], Origin>>,
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
        // Our `jti`s are UUIDs; anything else is not remembered.
        let Ok(key) = Uuid::try_parse(jti) else {
            return;
        };
        let now = now.unix_timestamp();
        let mut origins = self.origins.lock().unwrap_or_else(PoisonError::into_inner);
        if origins.len() >= MAX_TOKENS {
            origins.retain(|_, o| o.exp > now);
            if origins.len() >= MAX_TOKENS {
                origins.clear();
            }
        }
        origins.insert(
            key.into_bytes(),
            Origin {
                network: Network::of(address),
                exp: exp.unix_timestamp(),
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
        let key = Uuid::try_parse(jti).ok()?.into_bytes();
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
