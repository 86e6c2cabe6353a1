//! The resource-server side: [`Verifier`] decides whether a bearer token may call this
//! audience with the scopes a route needs.
//!
//! Offline mode (the default) verifies the PASETO signature with the issuer's published
//! key set, then `iss`, `aud`, `exp`/`nbf` (with a small leeway) and the scopes, and
//! rejects tokens a revocation in the feed matches — the same [`mayfly_core::revocation::RuleSet`] matching the
//! issuer's introspection uses. Tokens that passed once are kept in a bounded
//! verified-token cache: seen again, they skip the signature check but are still checked
//! for expiry, revocation and scopes.
//!
//! The key set is refetched when its `max-age` has passed (revalidated with its `ETag`),
//! and at once for a token naming an unknown `kid` — but at most once per
//! [`VerifierBuilder::unknown_key_refetch`] interval, so a flood of forged tokens cannot
//! make the resource server hammer the issuer.
//!
//! Introspection mode ([`VerifierMode::Introspection`]) asks the issuer (RFC 7662) on
//! every request instead.
//!
//! Sender constraints are enforced whatever the mode, and fail closed: a token bound to
//! a DPoP key (`cnf.jkt`, RFC 9449) passes only as `Authorization: DPoP …` with a valid
//! proof by that key for this request (method, URL, fresh `iat`, `ath` = the token's
//! hash, a `jti` not seen before — a replay cache in memory offline, the issuer's
//! store in introspection mode); a token restricted to networks (`cidr`) passes only
//! from an address inside them. [`Verifier::verify`] knows neither the request nor the
//! caller, so it refuses such tokens; use [`Verifier::verify_presented`].

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

use mayfly_core::KeyId;
use mayfly_core::token::{self, Claims, VerifyOptions};
use mayfly_core::wire::{Introspection, JwkSet, ServerMetadata};
use time::{Duration, OffsetDateTime};

use crate::Error;
use crate::clock::{Clock, SystemClock};
use crate::discovery;
use crate::feed::{Feed, FeedState};
use crate::keyset::{self, Fetched, Keys};
use crate::retry::{self, RetryPolicy};
use crate::token_source::{ClientSecret, TokenSource};

/// Default clock-skew allowance for `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::seconds(30);
/// Longest leeway: the issuer keeps a token's revocation 60 s past its `exp`, so with
/// more a revoked token would pass again once the feed forgot its rule.
pub const MAX_LEEWAY: Duration = Duration::seconds(60);
/// Default least interval between key-set fetches caused by unknown key ids.
pub const DEFAULT_UNKNOWN_KEY_REFETCH: Duration = Duration::seconds(5);
/// Default capacity of the verified-token cache.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;
/// The scope a feed reader needs on the issuer's own audience.
pub use mayfly_core::scope::REVOCATIONS_READ_SCOPE;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The token itself is invalid (malformed, unknown key, signature, issuer, audience,
    /// time).
    #[error(transparent)]
    Token(#[from] mayfly_core::VerifyError),
    /// Valid, but without a required scope (RFC 6750 §3.1 `insufficient_scope`).
    #[error("missing scope {0}")]
    InsufficientScope(String),
    /// A revocation in the issuer's feed matches it.
    #[error("token revoked")]
    Revoked,
    /// Introspection answered `active: false`.
    #[error("token inactive")]
    Inactive,
    /// The request carried no bearer token.
    #[error("no bearer token")]
    Missing,
    /// The issuer could not be asked (introspection mode).
    #[error("the issuer is unavailable")]
    Unavailable,
    /// A DPoP-bound token without a DPoP proof (e.g. a stolen token sent as Bearer), a
    /// DPoP presentation of a token that is not bound, or (introspection mode) a DPoP
    /// presentation the issuer found inactive.
    #[error("DPoP proof required")]
    DpopRequired,
    /// The DPoP proof is invalid for this token and request.
    #[error("invalid DPoP proof: {0}")]
    InvalidProof(String),
    /// The caller's address is outside the token's networks (or unknown).
    #[error("token used from outside its networks")]
    NetworkNotAllowed,
}

/// How a token reached the resource server: what sender constraints are checked with.
#[derive(Debug, Clone, Copy)]
pub struct Presentation<'a> {
    /// The access token.
    pub token: &'a str,
    /// Whether it came as `Authorization: DPoP …` (else `Bearer`).
    pub dpop_scheme: bool,
    /// The `DPoP` header's proof, if any.
    pub proof: Option<&'a str>,
    /// The request method.
    pub method: &'a str,
    /// The request URL as the client addressed it (`htu`).
    pub url: &'a str,
    /// The caller's address.
    pub client_ip: Option<IpAddr>,
}

impl<'a> Presentation<'a> {
    /// A bare Bearer token with no request context: bound or network-restricted tokens
    /// are refused.
    pub fn bearer(token: &'a str) -> Self {
        Self {
            token,
            dpop_scheme: false,
            proof: None,
            method: "",
            url: "",
            client_ip: None,
        }
    }
}

/// Most proof `jti`s remembered for replay detection. Each is kept for two minutes
/// (a proof's 60 s window plus skew), so this allows about 8,000 DPoP requests a second
/// per verifier; beyond, proofs are refused rather than a replay risked.
const MAX_PROOF_IDS: usize = 1_000_000;

/// How tokens are checked.
#[derive(Clone, Default)]
pub enum VerifierMode {
    /// Signature with the published keys, plus the revocation feed when configured.
    #[default]
    Offline,
    /// Ask the issuer's introspection endpoint (RFC 7662) on every request, as a client
    /// holding `mayfly:introspect`.
    Introspection {
        /// The calling client.
        client_id: String,
        /// Its secret.
        client_secret: ClientSecret,
    },
    /// Introspection, the calling client authenticating with `private_key_jwt` (a fresh
    /// assertion per request): the resource server holds no shared secret.
    IntrospectionWithKey {
        /// The calling client.
        client_id: String,
        /// Its Ed25519 key, registered with the issuer.
        key: Box<mayfly_core::jose::JwsKey>,
        /// The key's `kid`, if it should be named.
        kid: Option<String>,
    },
}

impl VerifierMode {
    fn introspects(&self) -> bool {
        !matches!(self, Self::Offline)
    }
}

impl fmt::Debug for VerifierMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Offline => f.write_str("Offline"),
            Self::Introspection { client_id, .. } => f
                .debug_struct("Introspection")
                .field("client_id", client_id)
                .finish_non_exhaustive(),
            Self::IntrospectionWithKey { client_id, .. } => f
                .debug_struct("IntrospectionWithKey")
                .field("client_id", client_id)
                .finish_non_exhaustive(),
        }
    }
}

/// A verified token: its claims and the key that signed it. Handlers receive it as a
/// request extension (and, with the `axum` feature, as an extractor).
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    claims: Arc<Claims>,
    kid: Option<KeyId>,
}

impl VerifiedToken {
    /// The token's claims.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// The signing key (offline mode).
    pub fn kid(&self) -> Option<&KeyId> {
        self.kid.as_ref()
    }
}

/// Configures a [`Verifier`].
pub struct VerifierBuilder {
    issuer: String,
    audience: String,
    leeway: Duration,
    unknown_key_refetch: Duration,
    cache_capacity: usize,
    http: Option<reqwest::Client>,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
    mode: VerifierMode,
    feed: Option<(String, ClientSecret)>,
    key_set: Option<JwkSet>,
    trusted_proxies: Vec<ipnet::IpNet>,
    forwarded_header: mayfly_core::net::ForwardedHeader,
    resource_base: Option<String>,
}

impl fmt::Debug for VerifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifierBuilder")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl VerifierBuilder {
    /// Changes the clock-skew allowance for `exp` and `nbf` (default 30 s), within 0 to
    /// [`MAX_LEEWAY`].
    #[must_use]
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway.clamp(Duration::ZERO, MAX_LEEWAY);
        self
    }

    /// Least interval between key-set fetches caused by unknown key ids (default 5 s).
    #[must_use]
    pub fn unknown_key_refetch(mut self, every: Duration) -> Self {
        self.unknown_key_refetch = every;
        self
    }

    /// Capacity of the verified-token cache (default 10 000; 0 disables it).
    #[must_use]
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// Uses this HTTP client.
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

    /// Changes how transient failures are retried.
    #[must_use]
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Offline or introspection.
    #[must_use]
    pub fn mode(mut self, mode: VerifierMode) -> Self {
        self.mode = mode;
        self
    }

    /// Follows the revocation feed as this client, which must be granted
    /// `mayfly:revocations:read` on the issuer's own audience. Without it, offline
    /// verification cannot see revocations.
    #[must_use]
    pub fn revocation_feed(mut self, client_id: impl Into<String>, secret: ClientSecret) -> Self {
        self.feed = Some((client_id.into(), secret));
        self
    }

    /// Believes the forwarding header (see [`Self::forwarded_header`]) from these
    /// proxies when the tower layer finds the caller's address (see
    /// `mayfly_core::net::source_address`).
    #[must_use]
    pub fn trusted_proxies(mut self, proxies: Vec<ipnet::IpNet>) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// The one header the trusted proxies write (default `X-Forwarded-For`); the other
    /// is ignored. A chain that cannot be read leaves the caller's address unknown, so
    /// network-restricted tokens are refused.
    #[must_use]
    pub fn forwarded_header(mut self, header: mayfly_core::net::ForwardedHeader) -> Self {
        self.forwarded_header = header;
        self
    }

    /// The public origin of this resource server (e.g. `https://api.example.com`), from
    /// which the tower layer builds the URL DPoP proofs must name. Required for DPoP:
    /// the layer never uses the request's `Host` (the client writes it), so without it
    /// DPoP-bound tokens are refused.
    #[must_use]
    pub fn resource_base(mut self, base: impl Into<String>) -> Self {
        self.resource_base = Some(base.into().trim_end_matches('/').to_owned());
        self
    }

    /// Trusts this fixed key set instead of discovering and fetching one (offline use,
    /// benchmarks). No request is made unless a revocation feed is configured.
    #[must_use]
    pub fn key_set(mut self, jwks: JwkSet) -> Self {
        self.key_set = Some(jwks);
        self
    }

    /// Discovers the issuer's endpoints, fetches the key set, loads the revocation
    /// backlog and starts following the feed (in a task that ends with the verifier).
    /// Must run inside a Tokio runtime.
    ///
    /// # Errors
    /// [`Error`] when the metadata, the key set or the revocation backlog cannot be
    /// obtained.
    pub async fn build(self) -> Result<Verifier, Error> {
        let http = match self.http {
            Some(http) => http,
            None => discovery::default_http()?,
        };
        let now = self.clock.now();
        let (metadata, keys) = match self.key_set {
            Some(jwks) => (
                None,
                Keys::from_jwks(
                    &jwks,
                    OffsetDateTime::new_utc(time::Date::MAX, time::Time::MIDNIGHT),
                    None,
                ),
            ),
            None => {
                let metadata = discovery::discover(&http, &self.issuer, &self.retry).await?;
                let keys = match &self.mode {
                    VerifierMode::Offline => {
                        match keyset::fetch(&http, &metadata.jwks_uri, None, &self.retry, now)
                            .await?
                        {
                            Fetched::New(keys) => (*keys).clone(),
                            Fetched::NotModified { .. } => {
                                return Err(Error::InvalidResponse("304 without ETag".into()));
                            }
                        }
                    }
                    VerifierMode::Introspection { .. }
                    | VerifierMode::IntrospectionWithKey { .. } => {
                        Keys::from_jwks(&JwkSet { keys: vec![] }, now, None)
                    }
                };
                (Some(metadata), keys)
            }
        };
        let feed_state = Arc::new(FeedState::default());
        let mut follower = None;
        if let Some((client_id, secret)) = self.feed {
            let reader = TokenSource::builder(self.issuer.clone())
                .client_secret(client_id, secret)
                .audience(self.issuer.clone())
                .scopes([REVOCATIONS_READ_SCOPE])
                .http_client(http.clone())
                .clock(self.clock.clone())
                .retry(self.retry)
                .build()?;
            let feed = Feed {
                http: http.clone(),
                base: self.issuer.trim_end_matches('/').to_owned(),
                reader,
                retry: self.retry,
                state: feed_state.clone(),
                clock: self.clock.clone(),
                silence: crate::feed::STREAM_SILENCE,
            };
            let loaded = feed.load_backlog().await?;
            tracing::debug!(loaded, "revocation backlog loaded");
            follower = Some(tokio::spawn(feed.follow()).abort_handle());
        }
        Ok(Verifier {
            inner: Arc::new(Inner {
                issuer: self.issuer,
                audience: self.audience,
                leeway: self.leeway,
                unknown_key_refetch: self.unknown_key_refetch,
                cache_capacity: self.cache_capacity,
                http,
                clock: self.clock,
                retry: self.retry,
                mode: self.mode,
                metadata,
                keys: RwLock::new(Arc::new(keys)),
                key_fetch: tokio::sync::Mutex::new(None),
                feed: feed_state,
                cache: RwLock::new(HashMap::new()),
                follower,
                proof_ids: Mutex::new(HashMap::new()),
                trusted_proxies: self.trusted_proxies,
                forwarded_header: self.forwarded_header,
                resource_base: self.resource_base,
            }),
        })
    }
}

/// Verifies tokens for one audience of one issuer. Cheap to clone; clones share the key
/// set, the revocation rules and the cache.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: String,
    audience: String,
    leeway: Duration,
    unknown_key_refetch: Duration,
    cache_capacity: usize,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
    mode: VerifierMode,
    metadata: Option<ServerMetadata>,
    keys: RwLock<Arc<Keys>>,
    /// Held while the key set is fetched; the time of the last fetch attempt.
    key_fetch: tokio::sync::Mutex<Option<OffsetDateTime>>,
    feed: Arc<FeedState>,
    cache: RwLock<HashMap<Box<str>, Cached>>,
    follower: Option<tokio::task::AbortHandle>,
    /// DPoP proof ids seen (`jkt` + `jti`) until they expire.
    proof_ids: Mutex<HashMap<String, OffsetDateTime>>,
    trusted_proxies: Vec<ipnet::IpNet>,
    forwarded_header: mayfly_core::net::ForwardedHeader,
    resource_base: Option<String>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = &self.follower {
            task.abort();
        }
    }
}

#[derive(Clone)]
struct Cached {
    claims: Arc<Claims>,
    kid: KeyId,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .field("mode", &self.inner.mode)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Starts configuring a verifier for tokens `issuer` issued for `audience`.
    pub fn builder(issuer: impl Into<String>, audience: impl Into<String>) -> VerifierBuilder {
        VerifierBuilder {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway: DEFAULT_LEEWAY,
            unknown_key_refetch: DEFAULT_UNKNOWN_KEY_REFETCH,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            http: None,
            clock: Arc::new(SystemClock),
            retry: RetryPolicy::default(),
            mode: VerifierMode::Offline,
            feed: None,
            key_set: None,
            trusted_proxies: Vec::new(),
            forwarded_header: Default::default(),
            resource_base: None,
        }
    }

    /// Proxies whose forwarding headers are believed.
    pub fn trusted_proxies(&self) -> &[ipnet::IpNet] {
        &self.inner.trusted_proxies
    }

    /// The forwarding header those proxies write.
    pub fn forwarded_header(&self) -> mayfly_core::net::ForwardedHeader {
        self.inner.forwarded_header
    }

    /// The configured public origin, if any.
    pub fn resource_base(&self) -> Option<&str> {
        self.inner.resource_base.as_deref()
    }

    /// The audience this verifier accepts.
    pub fn audience(&self) -> &str {
        &self.inner.audience
    }

    /// Number of revocation rules held.
    pub fn revocation_count(&self) -> usize {
        self.inner
            .feed
            .rules
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// How long ago the revocation feed was last heard from (backlog, connection, an
    /// event or a keep-alive); `None` without a feed. A resource server that must not
    /// accept revoked tokens refuses requests (fails closed) once this passes its bound.
    pub fn revocation_feed_silence(&self) -> Option<Duration> {
        self.inner.follower.as_ref()?;
        Some(self.inner.feed.heard_at().map_or(Duration::MAX, |heard| {
            (self.inner.clock.now() - heard).max(Duration::ZERO)
        }))
    }

    /// The URL a DPoP proof for a request to `path` must name (`htu`, RFC 9449 §4.3:
    /// without query and fragment): the configured `resource_base` and the path; empty
    /// without a `resource_base`, so no proof matches.
    pub fn resource_url(&self, path: &str) -> String {
        let path = path.split(['?', '#']).next().unwrap_or_default();
        match self.resource_base() {
            Some(base) => format!("{base}{path}"),
            None => {
                tracing::debug!("no resource_base configured: DPoP proofs cannot be checked");
                String::new()
            }
        }
    }

    /// Number of keys trusted now.
    pub fn key_count(&self) -> usize {
        self.keys().len()
    }

    /// Verifies `token` and checks it carries every scope in `required`. In offline mode
    /// this may refetch the key set (stale, or an unknown `kid`, rate-limited); in
    /// introspection mode it asks the issuer.
    ///
    /// # Errors
    /// [`VerifyError`] naming the first failed check.
    pub async fn verify(
        &self,
        token: &str,
        required: &[&str],
    ) -> Result<VerifiedToken, VerifyError> {
        self.verify_presented(&Presentation::bearer(token), required)
            .await
    }

    /// Verifies a token as it was presented with a request, including its sender
    /// constraints: the DPoP proof for a bound token, the caller's address for a
    /// network-restricted one.
    ///
    /// # Errors
    /// [`VerifyError`] naming the first failed check.
    pub async fn verify_presented(
        &self,
        presented: &Presentation<'_>,
        required: &[&str],
    ) -> Result<VerifiedToken, VerifyError> {
        let token = presented.token;
        if self.inner.mode.introspects() {
            // The issuer checks the proof (and spends its jti on every replica) and the
            // address; the scheme is ours to check.
            let verified = match self.introspect(presented, required).await {
                // A DPoP presentation, or a bound token presented without its proof: the
                // challenge is DPoP's (the issuer does not say which check failed).
                Err(VerifyError::Inactive)
                    if presented.dpop_scheme || token::peek_is_bound(token) =>
                {
                    return Err(VerifyError::DpopRequired);
                }
                other => other?,
            };
            if presented.dpop_scheme != verified.claims.cnf.is_some() {
                return Err(VerifyError::DpopRequired);
            }
            // The issuer calls a bound token active without a proof (RFC 9449 §6.2):
            // only one it checked, because we forwarded it, lets the token pass.
            if verified.claims.cnf.is_some() && presented.proof.is_none() {
                return Err(VerifyError::DpopRequired);
            }
            return Ok(verified);
        }
        let now = self.inner.clock.now();
        if now >= self.keys().stale_at {
            self.refresh_keys(None).await;
        }
        let verified = match self.verify_signed(token, required) {
            Err(VerifyError::Token(mayfly_core::VerifyError::UnknownKey)) => {
                let kid = token::peek_key_id(token)?;
                if self.refresh_keys(Some(&kid)).await {
                    self.verify_signed(token, required)
                } else {
                    Err(mayfly_core::VerifyError::UnknownKey.into())
                }
            }
            other => other,
        }?;
        self.check_constraints(&verified.claims, presented)?;
        Ok(verified)
    }

    /// Checks a verified token's sender constraints against its presentation.
    fn check_constraints(
        &self,
        claims: &Claims,
        presented: &Presentation<'_>,
    ) -> Result<(), VerifyError> {
        if !claims.cidr.is_empty() {
            let nets = mayfly_core::net::parse_networks(&claims.cidr)
                .map_err(|_| VerifyError::NetworkNotAllowed)?;
            if !presented
                .client_ip
                .is_some_and(|ip| mayfly_core::net::allows(&nets, ip))
            {
                return Err(VerifyError::NetworkNotAllowed);
            }
        }
        let Some(cnf) = &claims.cnf else {
            return if presented.dpop_scheme {
                Err(VerifyError::DpopRequired)
            } else {
                Ok(())
            };
        };
        let (true, Some(proof)) = (presented.dpop_scheme, presented.proof) else {
            return Err(VerifyError::DpopRequired);
        };
        let now = self.inner.clock.now();
        let verified = mayfly_core::dpop::verify(
            proof,
            &mayfly_core::dpop::Expect {
                htm: presented.method,
                htu: presented.url,
                access_token: Some(presented.token),
                jkt: Some(&cnf.jkt),
                max_age: mayfly_core::dpop::RESOURCE_MAX_AGE,
                now,
            },
        )
        .map_err(|e| VerifyError::InvalidProof(e.to_string()))?;
        let mut seen = self
            .inner
            .proof_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_PROOF_IDS {
            seen.retain(|_, until| now < *until);
            if seen.len() >= MAX_PROOF_IDS {
                // Full of live ids: refuse rather than forget one (a replay window).
                return Err(VerifyError::InvalidProof("replay cache full".into()));
            }
        }
        let id = format!("{}:{}", verified.jkt, verified.jti);
        if seen.get(&id).is_some_and(|until| now < *until) {
            return Err(VerifyError::InvalidProof("DPoP proof jti replayed".into()));
        }
        seen.insert(id, verified.expires_at);
        Ok(())
    }

    /// Verifies `token` with the keys held now, without any I/O. Like
    /// [`Verifier::verify`], it refuses DPoP-bound and network-restricted tokens.
    ///
    /// # Errors
    /// [`VerifyError`] naming the first failed check; an unknown `kid` is
    /// `Token(UnknownKey)` (the async [`Verifier::verify`] refetches the key set then).
    pub fn verify_offline(
        &self,
        token: &str,
        required: &[&str],
    ) -> Result<VerifiedToken, VerifyError> {
        let verified = self.verify_signed(token, required)?;
        self.check_constraints(&verified.claims, &Presentation::bearer(token))?;
        Ok(verified)
    }

    fn verify_signed(&self, token: &str, required: &[&str]) -> Result<VerifiedToken, VerifyError> {
        let inner = &*self.inner;
        let now = inner.clock.now();
        let cached = inner
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned()
            // Only while its key is held: a verification that read the keys before a
            // refresh dropped one may remember its token after the refresh cleared the
            // cache.
            .filter(|hit| self.keys().get(&hit.kid).is_some());
        let (claims, kid) = match cached {
            Some(hit) => {
                // Signature, issuer and audience were checked when it was cached; time
                // moves on, so expiry is checked again.
                if now >= hit.claims.exp.saturating_add(inner.leeway) {
                    return Err(mayfly_core::VerifyError::Expired.into());
                }
                if now.saturating_add(inner.leeway) < hit.claims.nbf {
                    return Err(mayfly_core::VerifyError::NotYetValid.into());
                }
                (hit.claims, hit.kid)
            }
            None => {
                let keys = self.keys();
                // A key revoked on the feed is dropped at once, before the held key set
                // would next be refetched.
                let revoked_keys = inner.feed.rules.read().unwrap_or_else(|e| e.into_inner());
                let mut signer = None;
                let options = VerifyOptions {
                    issuer: &inner.issuer,
                    audience: Some(&inner.audience),
                    leeway: inner.leeway,
                };
                let claims = token::verify(
                    token,
                    |kid| {
                        signer = Some(kid.clone());
                        keys.get(kid)
                            .filter(|_| !revoked_keys.revokes_key(kid.as_str()))
                    },
                    &options,
                    now,
                );
                drop(revoked_keys);
                let claims = claims.map_err(|e| match e {
                    // The key is known, and revoked.
                    mayfly_core::VerifyError::UnknownKey
                        if signer.as_ref().is_some_and(|kid| keys.get(kid).is_some()) =>
                    {
                        VerifyError::Revoked
                    }
                    other => other.into(),
                })?;
                let kid = signer.ok_or(mayfly_core::VerifyError::Malformed)?;
                let claims = Arc::new(claims);
                self.remember(token, &claims, &kid, now);
                (claims, kid)
            }
        };
        if inner
            .feed
            .rules
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .revokes(&claims, kid.as_str())
        {
            return Err(VerifyError::Revoked);
        }
        check_scopes(&claims, required)?;
        Ok(VerifiedToken {
            claims,
            kid: Some(kid),
        })
    }

    fn keys(&self) -> Arc<Keys> {
        self.inner
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn remember(&self, token: &str, claims: &Arc<Claims>, kid: &KeyId, now: OffsetDateTime) {
        let capacity = self.inner.cache_capacity;
        if capacity == 0 {
            return;
        }
        let mut cache = self.inner.cache.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= capacity {
            let leeway = self.inner.leeway;
            cache.retain(|_, c| now < c.claims.exp.saturating_add(leeway));
            if cache.len() >= capacity {
                // Still full of live tokens: start over rather than track recency on the
                // hot path; the next sight of each costs one signature check.
                cache.clear();
            }
        }
        cache.insert(
            token.into(),
            Cached {
                claims: claims.clone(),
                kid: kid.clone(),
            },
        );
    }

    /// Refetches the key set: when stale (`wanted` = None), or for an unknown `wanted`
    /// kid. Returns whether `wanted` is known afterwards. Fetches at most once per
    /// `unknown_key_refetch` interval; concurrent callers wait for one fetch.
    async fn refresh_keys(&self, wanted: Option<&KeyId>) -> bool {
        let inner = &*self.inner;
        let Some(metadata) = &inner.metadata else {
            return wanted.is_some_and(|kid| self.keys().get(kid).is_some());
        };
        let mut last_attempt = match wanted {
            Some(_) => inner.key_fetch.lock().await,
            // Stale but usable: if a refresh is already running, go on with what we hold.
            None => match inner.key_fetch.try_lock() {
                Ok(guard) => guard,
                Err(_) => return true,
            },
        };
        let now = inner.clock.now();
        let held = self.keys();
        // Someone else refetched while we waited?
        match wanted {
            Some(kid) if held.get(kid).is_some() => return true,
            None if now < held.stale_at => return true,
            _ => {}
        }
        if last_attempt.is_some_and(|t| now < t + inner.unknown_key_refetch) {
            return false;
        }
        *last_attempt = Some(now);
        match keyset::fetch(
            &inner.http,
            &metadata.jwks_uri,
            held.etag.as_deref(),
            &inner.retry,
            now,
        )
        .await
        {
            Ok(Fetched::NotModified { stale_at }) => {
                let mut keys = (*held).clone();
                keys.stale_at = stale_at;
                *inner.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
            }
            Ok(Fetched::New(keys)) => {
                if !keys.same_keys(&held) {
                    // A key may have left the set: cached verdicts must be re-earned.
                    inner
                        .cache
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .clear();
                    tracing::info!(keys = keys.len(), "key set changed");
                }
                *inner.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
            }
            Err(e) => {
                tracing::warn!(error = %e, "key set refetch failed; keeping the held keys");
            }
        }
        wanted.is_some_and(|kid| self.keys().get(kid).is_some())
    }

    async fn introspect(
        &self,
        presented: &Presentation<'_>,
        required: &[&str],
    ) -> Result<VerifiedToken, VerifyError> {
        let token = presented.token;
        let inner = &*self.inner;
        let Some(metadata) = &inner.metadata else {
            return Err(VerifyError::Unavailable);
        };
        let source_ip = presented.client_ip.map(|ip| ip.to_string());
        let mut form = vec![("token", token), ("token_type_hint", "access_token")];
        if let Some(ip) = &source_ip {
            form.push(("source_ip", ip));
        }
        if let (true, Some(proof)) = (presented.dpop_scheme, presented.proof) {
            form.extend([
                ("dpop", proof),
                ("htm", presented.method),
                ("htu", presented.url),
            ]);
        }
        let response = retry::send(&inner.retry, || {
            let request = inner
                .http
                .post(&metadata.introspection_endpoint)
                .timeout(std::time::Duration::from_secs(10));
            match &inner.mode {
                VerifierMode::Introspection {
                    client_id,
                    client_secret,
                } => request
                    .basic_auth(client_id, Some(client_secret.expose()))
                    .form(&form),
                VerifierMode::IntrospectionWithKey {
                    client_id,
                    key,
                    kid,
                } => {
                    let assertion = crate::token_source::client_assertion(
                        key,
                        kid.as_deref(),
                        client_id,
                        &metadata.introspection_endpoint,
                        inner.clock.now(),
                    );
                    let mut form = form.clone();
                    form.push(("client_assertion_type", crate::token_source::JWT_BEARER));
                    form.push(("client_assertion", &assertion));
                    request.form(&form)
                }
                VerifierMode::Offline => request.form(&form),
            }
        })
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "introspection failed");
            VerifyError::Unavailable
        })?;
        if !response.status().is_success() {
            tracing::warn!(status = response.status().as_u16(), "introspection refused");
            return Err(VerifyError::Unavailable);
        }
        let answer: Introspection = response
            .json()
            .await
            .map_err(|_| VerifyError::Unavailable)?;
        let claims = claims_of(answer)?;
        if claims.iss != inner.issuer {
            return Err(mayfly_core::VerifyError::WrongIssuer.into());
        }
        if claims.aud != inner.audience {
            return Err(mayfly_core::VerifyError::WrongAudience.into());
        }
        check_scopes(&claims, required)?;
        Ok(VerifiedToken {
            claims: Arc::new(claims),
            kid: None,
        })
    }
}

fn check_scopes(claims: &Claims, required: &[&str]) -> Result<(), VerifyError> {
    match required.iter().find(|s| !claims.has_scope(s)) {
        Some(missing) => Err(VerifyError::InsufficientScope((*missing).to_owned())),
        None => Ok(()),
    }
}

/// Claims from an introspection answer (RFC 7662 §2.2).
fn claims_of(answer: Introspection) -> Result<Claims, VerifyError> {
    if !answer.active {
        return Err(VerifyError::Inactive);
    }
    let time = |t: Option<i64>| {
        t.and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
            .ok_or(VerifyError::Unavailable)
    };
    Ok(Claims {
        iss: answer.iss.unwrap_or_default(),
        sub: answer.sub.unwrap_or_default(),
        aud: answer.aud.unwrap_or_default(),
        iat: time(answer.iat)?,
        nbf: time(answer.nbf)?,
        exp: time(answer.exp)?,
        jti: answer.jti.unwrap_or_default(),
        scope: answer.scope.unwrap_or_default(),
        client_id: answer.client_id.unwrap_or_default(),
        gid: Vec::new(),
        cnf: answer.cnf,
        cidr: answer.cidr.unwrap_or_default(),
        act: answer.act,
        fam: None,
        orig: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Json;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use mayfly_core::SigningKey;
    use mayfly_core::revocation::{RevocationKind, Rule};
    use mayfly_core::wire::Jwk;
    use time::macros::datetime;

    use super::*;
    use crate::ManualClock;

    const T0: OffsetDateTime = datetime!(2026-11-28 12:00:00 UTC);
    const AUD: &str = "https://api.example/orders";

    #[derive(Clone)]
    struct Issuer {
        base: String,
        keys: Arc<RwLock<Vec<SigningKey>>>,
        fetches: Arc<AtomicUsize>,
        not_modified: Arc<AtomicUsize>,
    }

    impl Issuer {
        fn etag(&self) -> String {
            let keys = self.keys.read().unwrap();
            format!(
                "\"{}\"",
                keys.iter()
                    .map(|k| &k.id().as_str()[8..14])
                    .collect::<String>()
            )
        }
    }

    async fn metadata(State(s): State<Issuer>) -> Json<serde_json::Value> {
        let b = &s.base;
        Json(serde_json::json!({
            "issuer": b, "token_endpoint": format!("{b}/t"),
            "jwks_uri": format!("{b}/jwks"), "introspection_endpoint": format!("{b}/i"),
            "introspection_endpoint_auth_methods_supported": [],
            "revocation_endpoint": format!("{b}/r"), "revocation_endpoint_auth_methods_supported": [],
            "grant_types_supported": [], "token_endpoint_auth_methods_supported": [],
            "response_types_supported": [],
        }))
    }

    async fn jwks(State(s): State<Issuer>, headers: HeaderMap) -> Response {
        s.fetches.fetch_add(1, Ordering::SeqCst);
        let etag = s.etag();
        let cache = [
            (header::CACHE_CONTROL, "public, max-age=60".to_owned()),
            (header::ETAG, etag.clone()),
        ];
        if headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            == Some(etag.as_str())
        {
            s.not_modified.fetch_add(1, Ordering::SeqCst);
            return (StatusCode::NOT_MODIFIED, cache).into_response();
        }
        let keys = s
            .keys
            .read()
            .unwrap()
            .iter()
            .map(|k| Jwk::from_public(k.public()))
            .collect();
        (cache, Json(JwkSet { keys })).into_response()
    }

    async fn issuer(keys: Vec<SigningKey>) -> Issuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let state = Issuer {
            base: format!("http://{}", listener.local_addr().unwrap()),
            keys: Arc::new(RwLock::new(keys)),
            fetches: Arc::new(AtomicUsize::new(0)),
            not_modified: Arc::new(AtomicUsize::new(0)),
        };
        let app = axum::Router::new()
            .route("/.well-known/oauth-authorization-server", get(metadata))
            .route("/jwks", get(jwks))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        state
    }

    fn mint(key: &SigningKey, iss: &str, jti: &str, now: OffsetDateTime) -> String {
        token::mint(
            key,
            &Claims {
                iss: iss.into(),
                sub: "client-1".into(),
                aud: AUD.into(),
                iat: now,
                nbf: now,
                exp: now + Duration::seconds(300),
                jti: jti.into(),
                scope: "orders:read".into(),
                client_id: "client-1".into(),
                gid: vec![],
                cnf: None,
                cidr: vec![],
                act: None,
                fam: None,
                orig: Vec::new(),
            },
        )
        .unwrap()
    }

    async fn verifier(issuer: &Issuer, clock: Arc<ManualClock>) -> Verifier {
        Verifier::builder(issuer.base.clone(), AUD)
            .clock(clock)
            .leeway(Duration::seconds(5))
            .build()
            .await
            .unwrap()
    }

    fn unknown_key() -> mayfly_core::VerifyError {
        mayfly_core::VerifyError::UnknownKey
    }

    #[tokio::test]
    async fn a_flood_of_unknown_kids_refetches_at_most_once_per_interval() {
        let k0 = SigningKey::from_seed(&[1; 32]);
        let issuer = issuer(vec![k0.clone()]).await;
        let clock = Arc::new(ManualClock::new(T0));
        let v = verifier(&issuer, clock.clone()).await;
        assert_eq!(issuer.fetches.load(Ordering::SeqCst), 1);
        for i in 0..50u8 {
            let bogus = mint(
                &SigningKey::from_seed(&[100 + i; 32]),
                &issuer.base,
                "x",
                T0,
            );
            assert_eq!(
                v.verify(&bogus, &[]).await.unwrap_err(),
                unknown_key().into()
            );
        }
        assert_eq!(
            issuer.fetches.load(Ordering::SeqCst),
            2,
            "one refetch for 50 unknown kids"
        );
        // A real new key, published meanwhile, is found once the interval has passed.
        let k1 = SigningKey::from_seed(&[2; 32]);
        issuer.keys.write().unwrap().push(k1.clone());
        let t1 = mint(&k1, &issuer.base, "t1", T0);
        assert_eq!(v.verify(&t1, &[]).await.unwrap_err(), unknown_key().into());
        clock.advance(Duration::seconds(5));
        v.verify(&t1, &["orders:read"]).await.unwrap();
        assert_eq!(issuer.fetches.load(Ordering::SeqCst), 3);
        assert_eq!(v.key_count(), 2);
    }

    #[tokio::test]
    async fn a_stale_key_set_is_revalidated_with_its_etag() {
        let k0 = SigningKey::from_seed(&[1; 32]);
        let issuer = issuer(vec![k0.clone()]).await;
        let clock = Arc::new(ManualClock::new(T0));
        let v = verifier(&issuer, clock.clone()).await;
        let t = mint(&k0, &issuer.base, "a", T0);
        v.verify(&t, &[]).await.unwrap();
        clock.advance(Duration::seconds(59));
        v.verify(&t, &[]).await.unwrap();
        assert_eq!(
            issuer.fetches.load(Ordering::SeqCst),
            1,
            "fresh for max-age"
        );
        clock.advance(Duration::seconds(1));
        v.verify(&t, &[]).await.unwrap();
        assert_eq!(issuer.fetches.load(Ordering::SeqCst), 2);
        assert_eq!(
            issuer.not_modified.load(Ordering::SeqCst),
            1,
            "answered 304"
        );
        v.verify(&t, &[]).await.unwrap();
        assert_eq!(issuer.fetches.load(Ordering::SeqCst), 2, "fresh again");
    }

    #[tokio::test]
    async fn cached_tokens_are_still_checked_for_time_revocation_and_scope() {
        let key = SigningKey::from_seed(&[1; 32]);
        let jwks = JwkSet {
            keys: vec![Jwk::from_public(key.public())],
        };
        let clock = Arc::new(ManualClock::new(T0));
        let v = Verifier::builder("https://sts.example", AUD)
            .key_set(jwks)
            .clock(clock.clone())
            .leeway(Duration::seconds(5))
            .build()
            .await
            .unwrap();
        let t = mint(&key, "https://sts.example", "jti-1", T0);
        let first = v.verify_offline(&t, &["orders:read"]).unwrap();
        assert_eq!(first.claims().jti, "jti-1");
        assert_eq!(first.kid(), Some(key.id()));
        assert_eq!(v.inner.cache.read().unwrap().len(), 1);
        // Cached, still scope-checked.
        assert_eq!(
            v.verify_offline(&t, &["orders:write"]).unwrap_err(),
            VerifyError::InsufficientScope("orders:write".into())
        );
        // Cached, still revocation-checked.
        let other = mint(&key, "https://sts.example", "jti-2", T0);
        v.verify_offline(&other, &[]).unwrap();
        v.inner.feed.rules.write().unwrap().insert(Rule {
            kind: RevocationKind::Jti,
            value: "jti-2".into(),
            issued_before: T0,
        });
        assert_eq!(
            v.verify_offline(&other, &[]).unwrap_err(),
            VerifyError::Revoked
        );
        // Cached, still expiry-checked.
        clock.advance(Duration::seconds(304));
        v.verify_offline(&t, &[]).unwrap();
        clock.advance(Duration::seconds(1));
        assert_eq!(
            v.verify_offline(&t, &[]).unwrap_err(),
            mayfly_core::VerifyError::Expired.into()
        );
        // Another issuer's token is refused (and not cached).
        let foreign = mint(&key, "https://evil.example", "jti-3", clock.now());
        assert_eq!(
            v.verify_offline(&foreign, &[]).unwrap_err(),
            mayfly_core::VerifyError::WrongIssuer.into()
        );
    }

    #[tokio::test]
    async fn a_cached_token_ends_with_its_key() {
        let key = SigningKey::from_seed(&[1; 32]);
        let v = Verifier::builder("https://sts.example", AUD)
            .key_set(JwkSet {
                keys: vec![Jwk::from_public(key.public())],
            })
            .clock(Arc::new(ManualClock::new(T0)))
            .build()
            .await
            .unwrap();
        let t = mint(&key, "https://sts.example", "jti-1", T0);
        v.verify_offline(&t, &[]).unwrap();
        // The key leaves the set while the token stays cached: what a verification
        // racing a refresh (keys read before, remembered after the clear) leaves behind.
        let other = SigningKey::from_seed(&[2; 32]);
        let without = JwkSet {
            keys: vec![Jwk::from_public(other.public())],
        };
        *v.inner.keys.write().unwrap() = Arc::new(Keys::from_jwks(&without, T0, None));
        assert_eq!(v.inner.cache.read().unwrap().len(), 1);
        assert_eq!(v.verify_offline(&t, &[]).unwrap_err(), unknown_key().into());
    }

    #[tokio::test]
    async fn the_leeway_never_outlasts_a_revocation() {
        let key = SigningKey::from_seed(&[1; 32]);
        let clock = Arc::new(ManualClock::new(T0));
        let v = Verifier::builder("https://sts.example", AUD)
            .key_set(JwkSet {
                keys: vec![Jwk::from_public(key.public())],
            })
            .clock(clock.clone())
            .leeway(Duration::minutes(10))
            .build()
            .await
            .unwrap();
        let t = mint(&key, "https://sts.example", "jti-1", T0);
        clock.advance(Duration::seconds(300 + 59));
        v.verify_offline(&t, &[]).unwrap();
        clock.advance(Duration::seconds(1));
        assert_eq!(
            v.verify_offline(&t, &[]).unwrap_err(),
            mayfly_core::VerifyError::Expired.into()
        );
    }

    #[tokio::test]
    async fn the_cache_is_bounded() {
        let key = SigningKey::from_seed(&[1; 32]);
        let v = Verifier::builder("https://sts.example", AUD)
            .key_set(JwkSet {
                keys: vec![Jwk::from_public(key.public())],
            })
            .clock(Arc::new(ManualClock::new(T0)))
            .cache_capacity(10)
            .build()
            .await
            .unwrap();
        for i in 0..25 {
            v.verify_offline(
                &mint(&key, "https://sts.example", &format!("j{i}"), T0),
                &[],
            )
            .unwrap();
            assert!(v.inner.cache.read().unwrap().len() <= 10);
        }
    }
}
