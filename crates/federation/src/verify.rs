//! Verifying an external identity token against a [`TrustedIssuer`].

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::cache::{CacheSettings, KeyCache};
use crate::clock::{Clock, SystemClock};
use crate::error::VerifyError;
use crate::issuer::TrustedIssuer;
use crate::jwk::Algorithm;
use crate::jws;

/// Longest token accepted, in bytes (Kubernetes and CI tokens are 1–2 KiB).
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
const MAX_SUB_LEN: usize = 1024;
const MAX_JTI_LEN: usize = 256;
const MAX_ISS_LEN: usize = 2048;

/// A token whose signature, issuer, audience and times were checked.
#[derive(Clone, PartialEq)]
pub struct VerifiedToken {
    issuer: String,
    subject: String,
    jti: Option<String>,
    issued_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    replay_until: OffsetDateTime,
    algorithm: Algorithm,
    kid: Option<String>,
    claims: Value,
}

impl fmt::Debug for VerifiedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedToken")
            .field("issuer", &self.issuer)
            .field("subject", &self.subject)
            .field("jti", &self.jti)
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl VerifiedToken {
    /// `iss`: the trusted issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// `sub`: the workload as its platform names it.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// `jti`, when the token has one.
    pub fn jti(&self) -> Option<&str> {
        self.jti.as_deref()
    }

    /// `iat`.
    pub fn issued_at(&self) -> OffsetDateTime {
        self.issued_at
    }

    /// `exp`.
    pub fn expires_at(&self) -> OffsetDateTime {
        self.expires_at
    }

    /// The algorithm it was signed with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The issuer key id it named, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// All claims (a JSON object), for identity conditions and the audit log.
    pub fn claims(&self) -> &Value {
        &self.claims
    }

    /// What makes this token single-use: its `jti`, else (issuer, `sub`, `iat`). The
    /// caller records it (like the store's one-time ids) and refuses a second use.
    pub fn replay_key(&self) -> ReplayKey {
        match &self.jti {
            Some(jti) => ReplayKey::Jti {
                issuer: self.issuer.clone(),
                jti: jti.clone(),
            },
            None => ReplayKey::Issuance {
                issuer: self.issuer.clone(),
                subject: self.subject.clone(),
                issued_at: self.issued_at.unix_timestamp(),
            },
        }
    }

    /// After this instant the token is refused anyway (`exp`, or `iat` plus the maximum
    /// age, plus skew), so its replay key need not be kept longer.
    pub fn replay_until(&self) -> OffsetDateTime {
        self.replay_until
    }
}

/// What a token's single use is recorded under (see [`VerifiedToken::replay_key`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReplayKey {
    /// The token's `jti`, within its issuer.
    Jti {
        /// `iss`.
        issuer: String,
        /// `jti`.
        jti: String,
    },
    /// No `jti` (older Kubernetes, SPIFFE JWT-SVIDs): one use per issuance.
    Issuance {
        /// `iss`.
        issuer: String,
        /// `sub`.
        subject: String,
        /// `iat`, in Unix seconds.
        issued_at: i64,
    },
}

impl ReplayKey {
    /// A fixed-length text form for a one-time-id store: `fed:` and the hex SHA-256 of
    /// the length-prefixed parts, so no two keys collide and none echoes claim text.
    pub fn storage_key(&self) -> String {
        let mut hash = Sha256::new();
        let mut part = |bytes: &[u8]| {
            hash.update((bytes.len() as u64).to_be_bytes());
            hash.update(bytes);
        };
        match self {
            Self::Jti { issuer, jti } => {
                part(b"jti");
                part(issuer.as_bytes());
                part(jti.as_bytes());
            }
            Self::Issuance {
                issuer,
                subject,
                issued_at,
            } => {
                part(b"iat");
                part(issuer.as_bytes());
                part(subject.as_bytes());
                part(&issued_at.to_be_bytes());
            }
        }
        let digest = hash.finalize();
        let mut out = String::with_capacity(4 + 64);
        out.push_str("fed:");
        for b in digest.iter() {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }
}

/// The `iss` claim of a token, unverified: for finding which [`TrustedIssuer`] to
/// verify it against. Never trust it for anything else.
pub fn unverified_issuer(token: &str) -> Option<String> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    // Whatever the header says (even `alg: none`), so the caller can name the issuer
    // when it refuses the token.
    let payload = jws::payload(token)?;
    let claims: Value = serde_json::from_slice(&payload).ok()?;
    claims
        .get("iss")?
        .as_str()
        // A trusted issuer is a URL: one with a control character (a NUL, which
        // Postgres cannot even compare) names none.
        .filter(|s| mayfly_core::UntrustedText::is_clean(s, MAX_ISS_LEN))
        .map(str::to_owned)
}

/// Configures a [`Verifier`].
pub struct VerifierBuilder {
    http: Option<reqwest::Client>,
    clock: Arc<dyn Clock>,
    cache: CacheSettings,
}

impl fmt::Debug for VerifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifierBuilder")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl VerifierBuilder {
    /// Uses this HTTP client for discovery and key sets. It should not follow redirects
    /// (the default client does not), so the `https` rule holds for every hop.
    #[must_use]
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Uses this clock (tests).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Changes how key sets are cached and fetched.
    #[must_use]
    pub fn cache(mut self, settings: CacheSettings) -> Self {
        self.cache = settings;
        self
    }

    /// Builds the verifier.
    ///
    /// # Errors
    /// When the default HTTP client cannot be built (no TLS roots).
    pub fn build(self) -> Result<Verifier, reqwest::Error> {
        let http = match self.http {
            Some(http) => http,
            None => default_http(self.cache.request_timeout)?,
        };
        Ok(Verifier {
            inner: Arc::new(Inner {
                keys: KeyCache::new(http, self.clock.clone(), self.cache),
                clock: self.clock,
            }),
        })
    }
}

/// The HTTP client used when none is given: rustls with ring, short timeouts, no
/// redirects.
fn default_http(timeout: std::time::Duration) -> Result<reqwest::Client, reqwest::Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

struct Inner {
    keys: KeyCache,
    clock: Arc<dyn Clock>,
}

/// Verifies external identity tokens; holds every trusted issuer's key set it has
/// fetched. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

impl Verifier {
    /// A builder with the system clock, the default HTTP client and default caching.
    pub fn builder() -> VerifierBuilder {
        VerifierBuilder {
            http: None,
            clock: Arc::new(SystemClock),
            cache: CacheSettings::default(),
        }
    }

    /// Drops the cached keys of `issuer` (its settings changed, or it is no longer
    /// trusted).
    pub fn forget(&self, issuer: &str) {
        self.inner.keys.forget(issuer);
    }

    /// Verifies `token` as issued by `issuer`: size, algorithm (the issuer's allowed
    /// set, and the key's type), signature with one of the issuer's keys, `iss` exact,
    /// `aud` containing the issuer's audience, `exp`, `nbf` and `iat` with the issuer's
    /// skew, `iat` no older than the maximum age, and `sub` present. May fetch the
    /// issuer's keys (see the `cache` module docs). Replay is the caller's to enforce
    /// with [`VerifiedToken::replay_key`].
    ///
    /// # Errors
    /// [`VerifyError`] naming the first failed check.
    pub async fn verify(
        &self,
        issuer: &TrustedIssuer,
        token: &str,
    ) -> Result<VerifiedToken, VerifyError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(VerifyError::TooLarge { max: MAX_TOKEN_LEN });
        }
        let jws = jws::parse(token)?;
        if !issuer.algorithms.contains(&jws.alg) {
            return Err(VerifyError::AlgorithmNotAllowed);
        }
        let kid = jws.kid.as_deref();
        let keys = self
            .inner
            .keys
            .keys(issuer, kid)
            .await
            .map_err(VerifyError::KeysUnavailable)?;
        let mut outcome = Err(VerifyError::UnknownKey);
        for key in keys.candidates(kid) {
            match jws.verify(key) {
                Ok(()) => {
                    outcome = Ok(());
                    break;
                }
                // A type mismatch is reported only if no key of the right type exists.
                Err(VerifyError::KeyAlgorithmMismatch) => {
                    if outcome == Err(VerifyError::UnknownKey) && kid.is_some() {
                        outcome = Err(VerifyError::KeyAlgorithmMismatch);
                    }
                }
                Err(e) => outcome = Err(e),
            }
        }
        outcome?;
        let claims: Map<String, Value> = serde_json::from_slice(&jws.payload)
            .map_err(|_| VerifyError::InvalidClaims("payload is not a JSON object"))?;
        self.check_claims(issuer, jws.alg, jws.kid.clone(), claims)
    }

    fn check_claims(
        &self,
        issuer: &TrustedIssuer,
        algorithm: Algorithm,
        kid: Option<String>,
        claims: Map<String, Value>,
    ) -> Result<VerifiedToken, VerifyError> {
        if claims.get("iss").and_then(Value::as_str) != Some(issuer.issuer()) {
            return Err(VerifyError::WrongIssuer);
        }
        let audience = issuer.audience();
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => a == audience,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience)),
            _ => false,
        };
        if !aud_ok {
            return Err(VerifyError::WrongAudience);
        }
        let now = self.inner.clock.now();
        let skew = issuer.clock_skew;
        let exp = numeric_date(&claims, "exp")?.ok_or(VerifyError::InvalidClaims("exp missing"))?;
        let iat = numeric_date(&claims, "iat")?.ok_or(VerifyError::InvalidClaims("iat missing"))?;
        if exp <= now.saturating_sub(skew) {
            return Err(VerifyError::Expired);
        }
        if let Some(nbf) = numeric_date(&claims, "nbf")?
            && nbf > now.saturating_add(skew)
        {
            return Err(VerifyError::NotYetValid);
        }
        if iat > now.saturating_add(skew) {
            return Err(VerifyError::IssuedInFuture);
        }
        if iat.saturating_add(issuer.max_age) < now.saturating_sub(skew) {
            return Err(VerifyError::TooOld);
        }
        if exp <= iat {
            return Err(VerifyError::InvalidClaims("exp not after iat"));
        }
        if issuer
            .max_lifetime
            .is_some_and(|max| exp > iat.saturating_add(max))
        {
            return Err(VerifyError::LifetimeTooLong);
        }
        let subject = match claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_SUB_LEN => s.clone(),
            _ => return Err(VerifyError::InvalidClaims("sub missing or too long")),
        };
        let jti = match claims.get("jti") {
            None | Some(Value::Null) => None,
            Some(Value::String(j)) if !j.is_empty() && j.len() <= MAX_JTI_LEN => Some(j.clone()),
            Some(_) => {
                return Err(VerifyError::InvalidClaims(
                    "jti empty, too long or not a string",
                ));
            }
        };
        let replay_until = exp
            .min(iat.saturating_add(issuer.max_age))
            .saturating_add(skew);
        Ok(VerifiedToken {
            issuer: issuer.issuer().to_owned(),
            subject,
            jti,
            issued_at: iat,
            expires_at: exp,
            replay_until,
            algorithm,
            kid,
            claims: Value::Object(claims),
        })
    }
}

/// A NumericDate claim (RFC 7519 §2): seconds, fractions dropped.
fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<OffsetDateTime>, VerifyError> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let seconds = value
        .as_i64()
        .or_else(|| {
            value
                .as_f64()
                .filter(|f| f.is_finite() && f.abs() < 1e15)
                .map(|f| f.floor() as i64)
        })
        .ok_or(VerifyError::InvalidClaims("a time claim is not a number"))?;
    OffsetDateTime::from_unix_timestamp(seconds)
        .map(Some)
        .map_err(|_| VerifyError::InvalidClaims("a time claim is out of range"))
}
