//! A trusted issuer's settings: whose tokens are accepted, where its keys come from,
//! and the token policy (algorithms, audience, age, skew), validated once so the
//! verifier never meets a bad setting.

use std::net::IpAddr;
use std::sync::Arc;

use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::Duration;

use crate::error::ConfigError;
use crate::jwk::{Algorithm, KeySet, KeySetLimits};

/// Default [`TrustedIssuerConfig::max_age_seconds`]: 5 minutes after `iat`.
pub const DEFAULT_MAX_AGE: Duration = Duration::minutes(5);
/// Default [`TrustedIssuerConfig::clock_skew_seconds`].
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::seconds(30);
/// Greatest accepted maximum age.
pub const MAX_MAX_AGE: Duration = Duration::hours(24);
/// Greatest accepted clock skew.
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);
/// Greatest accepted maximum lifetime (Kubernetes may extend tokens to a year).
pub const MAX_MAX_LIFETIME: Duration = Duration::days(366);
const MAX_URL_LEN: usize = 2048;
const MAX_AUDIENCE_LEN: usize = 512;

/// Where an issuer's public keys come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KeySource {
    /// OpenID Connect Discovery: `{issuer}/.well-known/openid-configuration`, whose
    /// `issuer` must equal the trusted one, names the `jwks_uri`.
    Discovery,
    /// This key-set URL, for issuers without discovery (or to pin the URL).
    JwksUri {
        /// The JWK Set URL.
        jwks_uri: String,
    },
    /// This JWK Set, for issuers the server cannot reach (an air-gapped cluster's
    /// `kubectl get --raw /openid/v1/jwks`). Rotation then means updating the setting.
    Inline {
        /// The JWK Set document.
        jwks: Value,
    },
}

/// A trusted issuer's settings as an administrator writes them (and a store keeps them);
/// [`TrustedIssuer::new`] validates them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrustedIssuerConfig {
    /// The issuer, compared exactly with the token's `iss`: an `https` URL (`http` only
    /// on a loopback host, for tests), no query or fragment.
    pub issuer: String,
    /// Where its keys come from.
    pub key_source: KeySource,
    /// Accepted `alg` values, a non-empty subset of `RS256`, `ES256`, `EdDSA`.
    pub algorithms: Vec<String>,
    /// The audience tokens must carry in `aud` (what the workload asked its platform
    /// for, e.g. the Mayfly issuer URL).
    pub audience: String,
    /// Oldest accepted `iat`, in seconds (default 300, at most 86 400). Kubernetes
    /// refreshes projected tokens at 80 % of their lifetime: set this to at least that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<i64>,
    /// Clock-skew allowance for `exp`, `nbf` and `iat`, in seconds (default 30, at most
    /// 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_skew_seconds: Option<i64>,
    /// Longest accepted `exp - iat`, in seconds; none by default, because Kubernetes
    /// extends projected tokens to a year for old clients, and `max_age_seconds` already
    /// bounds how long a token is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lifetime_seconds: Option<i64>,
}

impl TrustedIssuerConfig {
    /// Settings with the defaults: discovery, all three algorithms, default age and skew.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            key_source: KeySource::Discovery,
            algorithms: Algorithm::ALL
                .iter()
                .map(|a| a.as_str().to_owned())
                .collect(),
            audience: audience.into(),
            max_age_seconds: None,
            clock_skew_seconds: None,
            max_lifetime_seconds: None,
        }
    }
}

/// Where a validated issuer's keys come from.
#[derive(Debug, Clone)]
pub(crate) enum Keys {
    /// Discovery document URL.
    Discovery(Url),
    /// Key-set URL.
    JwksUri(Url),
    /// Parsed inline key set.
    Inline(Arc<KeySet>),
}

/// A validated trusted issuer: what [`crate::Verifier::verify`] checks tokens against.
#[derive(Debug, Clone)]
pub struct TrustedIssuer {
    config: TrustedIssuerConfig,
    pub(crate) keys: Keys,
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) max_age: Duration,
    pub(crate) clock_skew: Duration,
    pub(crate) max_lifetime: Option<Duration>,
    /// The issuer is on a loopback host: only then may discovery name an `http`
    /// loopback key-set URL (otherwise a remote issuer could aim us at local services).
    pub(crate) loopback: bool,
}

impl TrustedIssuer {
    /// Validates `config` (inline key sets within the default [`KeySetLimits`]).
    ///
    /// # Errors
    /// [`ConfigError`] naming the first bad setting.
    pub fn new(config: TrustedIssuerConfig) -> Result<Self, ConfigError> {
        let (_, loopback) = check_url(&config.issuer, "issuer", false)?;
        let keys = match &config.key_source {
            KeySource::Discovery => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    config.issuer.trim_end_matches('/')
                );
                Keys::Discovery(check_url(&url, "discovery URL", false)?.0)
            }
            KeySource::JwksUri { jwks_uri } => {
                Keys::JwksUri(check_url(jwks_uri, "jwks_uri", true)?.0)
            }
            KeySource::Inline { jwks } => Keys::Inline(Arc::new(
                KeySet::from_json(jwks, KeySetLimits::default())
                    .map_err(ConfigError::InlineKeys)?,
            )),
        };
        if config.algorithms.is_empty() {
            return Err(ConfigError::NoAlgorithm);
        }
        let mut algorithms = config
            .algorithms
            .iter()
            .map(|a| a.parse::<Algorithm>())
            .collect::<Result<Vec<_>, _>>()?;
        algorithms.sort();
        algorithms.dedup();
        if config.audience.is_empty() {
            return Err(ConfigError::Audience("must not be empty"));
        }
        if config.audience.len() > MAX_AUDIENCE_LEN {
            return Err(ConfigError::Audience("longer than 512 bytes"));
        }
        let seconds = |value: Option<i64>,
                       default: Option<Duration>,
                       what: &'static str,
                       min: i64,
                       max: Duration|
         -> Result<Option<Duration>, ConfigError> {
            match value {
                None => Ok(default),
                Some(s) if (min..=max.whole_seconds()).contains(&s) => {
                    Ok(Some(Duration::seconds(s)))
                }
                Some(_) => Err(ConfigError::Duration {
                    what,
                    min,
                    max: max.whole_seconds(),
                }),
            }
        };
        let max_age = seconds(
            config.max_age_seconds,
            Some(DEFAULT_MAX_AGE),
            "max_age_seconds",
            1,
            MAX_MAX_AGE,
        )?
        .unwrap_or(DEFAULT_MAX_AGE);
        let clock_skew = seconds(
            config.clock_skew_seconds,
            Some(DEFAULT_CLOCK_SKEW),
            "clock_skew_seconds",
            0,
            MAX_CLOCK_SKEW,
        )?
        .unwrap_or(DEFAULT_CLOCK_SKEW);
        let max_lifetime = seconds(
            config.max_lifetime_seconds,
            None,
            "max_lifetime_seconds",
            1,
            MAX_MAX_LIFETIME,
        )?;
        Ok(Self {
            keys,
            algorithms,
            max_age,
            clock_skew,
            max_lifetime,
            loopback,
            config,
        })
    }

    /// The issuer URL, exactly as `iss` must read.
    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// The audience `aud` must contain.
    pub fn audience(&self) -> &str {
        &self.config.audience
    }

    /// The accepted algorithms.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// Oldest accepted `iat`, as an age.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// The clock-skew allowance.
    pub fn clock_skew(&self) -> Duration {
        self.clock_skew
    }

    /// The settings this was built from (what a store keeps).
    pub fn config(&self) -> &TrustedIssuerConfig {
        &self.config
    }

    /// What the key cache is keyed by: the issuer and where its keys come from, so a
    /// changed key source starts a fresh cache.
    pub(crate) fn cache_key(&self) -> String {
        match &self.keys {
            Keys::Discovery(url) | Keys::JwksUri(url) => {
                format!("{}\n{}", self.config.issuer, url)
            }
            Keys::Inline(_) => format!("{}\ninline", self.config.issuer),
        }
    }
}

/// Parses a URL the verifier may fetch (or an issuer it compares with): `https`, or
/// `http` on a loopback host; no user info, no fragment, a query only if `query`.
/// Returns it and whether its host is loopback.
pub(crate) fn check_url(
    text: &str,
    what: &'static str,
    query: bool,
) -> Result<(Url, bool), ConfigError> {
    let bad = |reason| ConfigError::Url { what, reason };
    if text.len() > MAX_URL_LEN {
        return Err(bad("longer than 2048 bytes"));
    }
    let url = Url::parse(text).map_err(|_| bad("not a URL"))?;
    let host = url.host_str().ok_or_else(|| bad("no host"))?;
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err(bad("must be https (http only on a loopback host)")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry user info"));
    }
    if url.fragment().is_some() {
        return Err(bad("must not have a fragment"));
    }
    if !query && url.query().is_some() {
        return Err(bad("must not have a query"));
    }
    Ok((url, loopback))
}
