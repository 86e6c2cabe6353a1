//! Issuers' key sets as the verifier holds them: fetched over HTTPS, cached per issuer
//! for the response's `Cache-Control: max-age` clamped to [`CacheSettings::min_ttl`,
//! `max_ttl`], refetched when stale or when a token names an unknown `kid`.
//!
//! Fetches of one issuer's keys happen at most once per
//! [`CacheSettings::refetch_interval`], whatever the cause, and one at a time: callers
//! that need a fetch wait for the one in flight and use its result, so a flood of
//! tokens with made-up `kid`s costs the issuer at most one request per interval. A
//! failed refetch keeps the held keys in use for up to [`CacheSettings::max_stale`]
//! past their freshness, so an issuer that is briefly down does not stop its workloads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use reqwest::Url;
use reqwest::header::{ACCEPT, CACHE_CONTROL, HeaderMap};
use serde_json::Value;
use time::{Duration, OffsetDateTime};

use crate::clock::Clock;
use crate::error::KeySetError;
use crate::issuer::{Keys, TrustedIssuer, check_url};
use crate::jwk::{KeySet, KeySetLimits};

/// How issuers' key sets are cached and fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// Shortest time a fetched set is fresh, whatever `max-age` says (`no-store`
    /// included): bounds how often a well-behaved issuer is asked. Default 60 s.
    pub min_ttl: Duration,
    /// Longest time a fetched set is fresh, whatever `max-age` says: bounds how long a
    /// removed key is still believed. Default 1 h.
    pub max_ttl: Duration,
    /// Freshness when the response has no usable `max-age`. Default 5 min.
    pub default_ttl: Duration,
    /// Least interval between two fetches of one issuer's keys (unknown `kid`, stale
    /// set or failed fetch alike). Default 15 s.
    pub refetch_interval: Duration,
    /// How long past its freshness a set is still used when refetches fail. Default
    /// 24 h; after that tokens are refused until the issuer answers.
    pub max_stale: Duration,
    /// Bounds on responses and key counts.
    pub limits: KeySetLimits,
    /// Timeout of one HTTP request. Default 10 s.
    pub request_timeout: std::time::Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            min_ttl: Duration::seconds(60),
            max_ttl: Duration::hours(1),
            default_ttl: Duration::minutes(5),
            refetch_interval: Duration::seconds(15),
            max_stale: Duration::hours(24),
            limits: KeySetLimits::default(),
            request_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// A fetched key set and how long it may be used.
struct Held {
    keys: Arc<KeySet>,
    fresh_until: OffsetDateTime,
    usable_until: OffsetDateTime,
}

/// Fetch bookkeeping of one issuer, behind the lock that makes fetches one at a time.
#[derive(Default)]
struct FetchState {
    last_attempt: Option<OffsetDateTime>,
    /// The `jwks_uri` discovery named (discovery issuers only); forgotten when a fetch
    /// from it fails, so the next attempt rediscovers.
    discovered: Option<Url>,
}

#[derive(Default)]
struct IssuerCache {
    held: RwLock<Option<Arc<Held>>>,
    fetch: tokio::sync::Mutex<FetchState>,
}

impl IssuerCache {
    fn held(&self) -> Option<Arc<Held>> {
        self.held.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The key sets of all issuers a verifier has met.
pub(crate) struct KeyCache {
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    settings: CacheSettings,
    issuers: Mutex<HashMap<String, Arc<IssuerCache>>>,
}

impl KeyCache {
    pub(crate) fn new(
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
        settings: CacheSettings,
    ) -> Self {
        Self {
            http,
            clock,
            settings,
            issuers: Mutex::new(HashMap::new()),
        }
    }

    /// Drops what is cached for `issuer` (after its settings changed or it was removed).
    pub(crate) fn forget(&self, issuer: &str) {
        let prefix = format!("{issuer}\n");
        self.issuers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| !k.starts_with(&prefix));
    }

    /// The issuer's key set, current enough to look for `kid` in: fetched when none is
    /// held, refreshed when stale, refetched when `kid` is unknown (each within the
    /// refetch interval).
    pub(crate) async fn keys(
        &self,
        issuer: &TrustedIssuer,
        kid: Option<&str>,
    ) -> Result<Arc<KeySet>, KeySetError> {
        if let Keys::Inline(keys) = &issuer.keys {
            return Ok(keys.clone());
        }
        let entry = self
            .issuers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(issuer.cache_key())
            .or_default()
            .clone();
        let now = self.clock.now();
        match entry.held() {
            Some(h) if now < h.fresh_until && h.keys.knows(kid) => Ok(h.keys.clone()),
            // Stale but usable: refresh unless a refresh is already running.
            Some(h) if now >= h.fresh_until && now < h.usable_until => {
                match entry.fetch.try_lock() {
                    Ok(state) => self.refresh(issuer, &entry, kid, state).await,
                    Err(_) => Ok(h.keys.clone()),
                }
            }
            // None held, too stale, or fresh without `kid`: wait for a fetch.
            _ => {
                let state = entry.fetch.lock().await;
                self.refresh(issuer, &entry, kid, state).await
            }
        }
    }

    async fn refresh(
        &self,
        issuer: &TrustedIssuer,
        entry: &IssuerCache,
        kid: Option<&str>,
        mut state: tokio::sync::MutexGuard<'_, FetchState>,
    ) -> Result<Arc<KeySet>, KeySetError> {
        let now = self.clock.now();
        let held = entry.held();
        // Did the fetch we waited for bring what we need?
        if let Some(h) = &held
            && now < h.fresh_until
            && h.keys.knows(kid)
        {
            return Ok(h.keys.clone());
        }
        let usable = held
            .filter(|h| now < h.usable_until)
            .map(|h| h.keys.clone());
        if state
            .last_attempt
            .is_some_and(|t| now < t + self.settings.refetch_interval)
        {
            return usable.ok_or(KeySetError::RetryLater);
        }
        state.last_attempt = Some(now);
        match self.fetch(issuer, &mut state).await {
            Ok((keys, ttl)) => {
                let keys = Arc::new(keys);
                *entry.held.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(Held {
                    keys: keys.clone(),
                    fresh_until: now + ttl,
                    usable_until: now + ttl + self.settings.max_stale,
                }));
                tracing::debug!(
                    issuer = issuer.issuer(),
                    keys = keys.keys().len(),
                    "issuer keys fetched"
                );
                Ok(keys)
            }
            Err(e) => {
                tracing::warn!(issuer = issuer.issuer(), error = %e, held = usable.is_some(), "issuer key fetch failed");
                usable.ok_or(e)
            }
        }
    }

    /// Fetches the key set (discovering its URL first if needed) and its freshness.
    async fn fetch(
        &self,
        issuer: &TrustedIssuer,
        state: &mut FetchState,
    ) -> Result<(KeySet, Duration), KeySetError> {
        let url = match (&issuer.keys, &state.discovered) {
            (Keys::JwksUri(url), _) | (Keys::Discovery(_), Some(url)) => url.clone(),
            (Keys::Discovery(doc), None) => {
                let url = self.discover(issuer, doc).await?;
                state.discovered = Some(url.clone());
                url
            }
            // Never fetched: `keys` returns inline sets directly.
            (Keys::Inline(_), _) => return Err(KeySetError::NoUsableKey),
        };
        let result = self.get(&url).await.and_then(|(body, headers)| {
            let keys = KeySet::from_slice(&body, self.settings.limits)?;
            let ttl = max_age(&headers)
                .unwrap_or(self.settings.default_ttl)
                .clamp(self.settings.min_ttl, self.settings.max_ttl);
            Ok((keys, ttl))
        });
        if result.is_err() {
            state.discovered = None;
        }
        result
    }

    /// Reads the discovery document and returns its `jwks_uri` (OpenID Connect
    /// Discovery 1.0 §4: its `issuer` must be exactly the one asked about).
    async fn discover(&self, issuer: &TrustedIssuer, doc: &Url) -> Result<Url, KeySetError> {
        let (body, _) = self.get(doc).await?;
        let doc: Value =
            serde_json::from_slice(&body).map_err(|_| KeySetError::Discovery("not JSON"))?;
        if doc.get("issuer").and_then(Value::as_str) != Some(issuer.issuer()) {
            return Err(KeySetError::Discovery("issuer does not match"));
        }
        let jwks_uri = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or(KeySetError::Discovery("no jwks_uri"))?;
        let (url, loopback) = check_url(jwks_uri, "jwks_uri", true)
            .map_err(|_| KeySetError::Discovery("jwks_uri is not an https URL"))?;
        if loopback && !issuer.loopback {
            return Err(KeySetError::Discovery("jwks_uri on a loopback host"));
        }
        Ok(url)
    }

    /// GETs `url` without following redirects (so the URL rules cannot be sidestepped),
    /// reading at most `limits.max_bytes` of a 2xx body.
    async fn get(&self, url: &Url) -> Result<(Vec<u8>, HeaderMap), KeySetError> {
        let max = self.settings.limits.max_bytes;
        let mut response = self
            .http
            .get(url.clone())
            .header(ACCEPT, "application/json")
            .timeout(self.settings.request_timeout)
            .send()
            .await
            .map_err(|e| KeySetError::Transport(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(KeySetError::Status(response.status().as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|len| len > max as u64)
        {
            return Err(KeySetError::TooLarge { max });
        }
        let headers = response.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| KeySetError::Transport(e.without_url().to_string()))?
        {
            if body.len() + chunk.len() > max {
                return Err(KeySetError::TooLarge { max });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, headers))
    }
}

/// `max-age` of a `Cache-Control` header (RFC 9111 §5.2.2.1); `no-cache` and
/// `no-store` read as 0 (then clamped up to the least freshness).
fn max_age(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(CACHE_CONTROL)?.to_str().ok()?;
    let mut age = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return Some(Duration::ZERO);
        }
        if let Some(n) = lower.strip_prefix("max-age=") {
            age = n
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(|s| Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX)));
        }
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn reads_max_age() {
        for (value, expected) in [
            ("public, max-age=288", Some(288)),
            ("max-age=5", Some(5)),
            ("max-age=99999999999999999999", None),
            ("max-age=9999999999999", Some(9_999_999_999_999)),
            ("no-store", Some(0)),
            ("public", None),
            ("max-age=-1", None),
            ("max-age=x", None),
        ] {
            let mut h = HeaderMap::new();
            h.insert(CACHE_CONTROL, HeaderValue::from_static(value));
            assert_eq!(max_age(&h), expected.map(Duration::seconds), "{value}");
        }
    }
}
