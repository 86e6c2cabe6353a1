//! The issuer's key set as a resource server holds it: fetched from `jwks_uri`, kept for
//! its `Cache-Control: max-age`, revalidated with `If-None-Match` (RFC 9110 §13.1.2).

use std::sync::Arc;

use mayfly_core::wire::JwkSet;
use mayfly_core::{KeyId, PublicKey};
use time::{Duration, OffsetDateTime};

use crate::Error;
use crate::retry::{self, RetryPolicy};

/// Age assumed when the answer carries no usable `max-age`.
const DEFAULT_MAX_AGE: Duration = Duration::seconds(60);

/// Longest `max-age` believed: a key set is revalidated at least daily, and a huge
/// value from a hostile or broken endpoint cannot overflow the clock.
const MAX_MAX_AGE: Duration = Duration::days(1);

/// One fetched key set.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    keys: Vec<PublicKey>,
    /// When it must be revalidated.
    pub(crate) stale_at: OffsetDateTime,
    pub(crate) etag: Option<String>,
}

impl Keys {
    /// The trusted keys of `jwks`: those whose `paserk` parses and matches their `kid`.
    pub(crate) fn from_jwks(jwks: &JwkSet, stale_at: OffsetDateTime, etag: Option<String>) -> Self {
        let keys = jwks
            .keys
            .iter()
            .filter_map(|jwk| {
                PublicKey::from_paserk(&jwk.paserk)
                    .ok()
                    .filter(|k| k.id().as_str() == jwk.kid)
            })
            .collect();
        Self {
            keys,
            stale_at,
            etag,
        }
    }

    pub(crate) fn get(&self, kid: &KeyId) -> Option<&PublicKey> {
        self.keys.iter().find(|k| k.id() == kid)
    }

    pub(crate) fn same_keys(&self, other: &Keys) -> bool {
        self.keys == other.keys
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }
}

/// The outcome of a conditional fetch.
pub(crate) enum Fetched {
    /// 304: the held set is current until `stale_at`.
    NotModified { stale_at: OffsetDateTime },
    /// A new set.
    New(Arc<Keys>),
}

/// Fetches the key set, conditionally on `etag`.
pub(crate) async fn fetch(
    http: &reqwest::Client,
    jwks_uri: &str,
    etag: Option<&str>,
    policy: &RetryPolicy,
    now: OffsetDateTime,
) -> Result<Fetched, Error> {
    let response = retry::send(policy, || {
        let request = http
            .get(jwks_uri)
            .timeout(std::time::Duration::from_secs(10));
        match etag {
            Some(tag) => request.header(reqwest::header::IF_NONE_MATCH, tag),
            None => request,
        }
    })
    .await?;
    let stale_at = now + max_age(response.headers()).unwrap_or(DEFAULT_MAX_AGE);
    if response.status() == reqwest::StatusCode::NOT_MODIFIED && etag.is_some() {
        return Ok(Fetched::NotModified { stale_at });
    }
    if !response.status().is_success() {
        return Err(Error::rejected(response).await);
    }
    let new_etag = response
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let jwks: JwkSet = response
        .json()
        .await
        .map_err(|e| Error::InvalidResponse(format!("key set: {e}")))?;
    Ok(Fetched::New(Arc::new(Keys::from_jwks(
        &jwks, stale_at, new_etag,
    ))))
}

/// `max-age` of a `Cache-Control` header (RFC 9111 §5.2.2.1); `no-cache`/`no-store` is 0.
fn max_age(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::CACHE_CONTROL)?.to_str().ok()?;
    let mut age = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return Some(Duration::ZERO);
        }
        if let Some(n) = lower.strip_prefix("max-age=") {
            age = n.trim_matches('"').parse::<u64>().ok().map(|secs| {
                i64::try_from(secs)
                    .map_or(MAX_MAX_AGE, |secs| Duration::seconds(secs).min(MAX_MAX_AGE))
            });
        }
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{CACHE_CONTROL, HeaderMap, HeaderValue};

    fn check(value: &str, expected: Option<i64>) {
        let mut h = HeaderMap::new();
        h.insert(CACHE_CONTROL, HeaderValue::from_str(value).unwrap());
        assert_eq!(max_age(&h), expected.map(Duration::seconds), "{value}");
    }

    #[test]
    fn reads_max_age() {
        check("public, max-age=288", Some(288));
        check("max-age=5", Some(5));
        check("no-store", Some(0));
        check("public", None);
        check("max-age=x", None);
        check("max-age=-5", None);
        check("max-age=86401", Some(86_400));
        check("max-age=9223372036854775807", Some(86_400));
        check("max-age=99999999999999999999999", None);
    }
}
