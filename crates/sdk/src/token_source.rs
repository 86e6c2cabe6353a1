//! The workload side: [`TokenSource`] obtains access tokens with the client credentials
//! grant (RFC 6749 §4.4), caches them and refreshes them before they expire.
//!
//! - Endpoints come from the issuer's RFC 8414 metadata, fetched once.
//! - A token is reused until about 80 % of its lifetime (less a random 0–5 %, so a fleet
//!   started together does not refresh together), then replaced.
//! - Concurrent callers share one in-flight request (single flight): the refresh runs
//!   under an async mutex, and callers that waited find the fresh token.
//! - Transient failures are retried ([`RetryPolicy`]); a refusal (4xx) never is. While a
//!   refresh fails, the previous token is handed out for as long as it is valid.
//! - Tokens and the client secret never appear in `Debug` output or logs.
//! - The client authenticates with a secret (`client_secret_basic`), with a private
//!   key (`private_key_jwt`, RFC 7523: a fresh one-minute assertion for every request,
//!   so retries never replay a `jti`), or, with no credential of its own, with the
//!   identity token its platform gives it (workload identity federation: a Kubernetes
//!   service-account token file read again for every request, or a GitHub Actions OIDC
//!   token fetched for every request; see [`ExternalToken`]) sent as the RFC 7523
//!   `client_assertion`.
//! - With a DPoP key (RFC 9449), every token request carries a proof, tokens come back
//!   bound to the key, and [`RequestBuilderExt::mayfly_auth`] sends them as
//!   `Authorization: DPoP …` with a proof for each request. Server nonces
//!   (`use_dpop_nonce`, `DPoP-Nonce`) are picked up and used.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration as StdDuration;

use mayfly_core::jose::JwsKey;
use mayfly_core::wire::{ErrorCode, ErrorResponse, ServerMetadata, TokenResponse};
use time::{Duration, OffsetDateTime};

use crate::Error;
use crate::clock::{Clock, SystemClock};
use crate::discovery;
use crate::external::ExternalToken;
use crate::retry::{self, RetryPolicy};

/// A client secret. `Debug` redacts it.
#[derive(Clone)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself; handle with care.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

/// An access token and what is known of it. `Debug` redacts the token.
#[derive(Clone)]
pub struct AccessToken {
    value: Arc<str>,
    scope: Arc<str>,
    expires_at: OffsetDateTime,
    bound: bool,
}

impl AccessToken {
    /// The token, for an `Authorization: Bearer` header.
    pub fn secret(&self) -> &str {
        &self.value
    }

    /// The granted scopes, space-separated.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// When it expires (by the token source's clock and the issuer's `expires_in`).
    pub fn expires_at(&self) -> OffsetDateTime {
        self.expires_at
    }

    /// Whether it is bound to the source's DPoP key (`token_type: DPoP`): it must be
    /// sent as `Authorization: DPoP …` with a proof.
    pub fn is_dpop_bound(&self) -> bool {
        self.bound
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("value", &"<redacted>")
            .field("scope", &self.scope)
            .field("expires_at", &self.expires_at)
            .field("bound", &self.bound)
            .finish()
    }
}

/// Share of a token's lifetime after which it is refreshed (less up to [`REFRESH_JITTER`]).
pub const REFRESH_AT: f64 = 0.8;
/// Largest random share taken off [`REFRESH_AT`].
pub const REFRESH_JITTER: f64 = 0.05;
/// After a failed refresh, how long the still-valid token is served before the next try.
const REFRESH_PAUSE: Duration = Duration::seconds(5);
/// Per-request timeout of token requests.
const REQUEST_TIMEOUT: StdDuration = StdDuration::from_secs(10);
/// Lifetime of a client assertion (RFC 7523): each is used at once, once.
const ASSERTION_LIFETIME: Duration = Duration::seconds(60);
/// `client_assertion_type` of a JWT client assertion.
pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How the client proves who it is.
#[derive(Clone)]
enum Credential {
    Secret {
        client_id: String,
        secret: ClientSecret,
    },
    PrivateKey {
        client_id: String,
        key: Box<JwsKey>,
        kid: Option<String>,
    },
    /// Workload identity federation: the issuer finds the client by the external
    /// token's issuer and claims; `client_id`, when given, must be that client.
    Federated {
        client_id: Option<String>,
        source: ExternalToken,
    },
}

impl Credential {
    fn client_id(&self) -> Option<&str> {
        match self {
            Self::Secret { client_id, .. } | Self::PrivateKey { client_id, .. } => Some(client_id),
            Self::Federated { client_id, .. } => client_id.as_deref(),
        }
    }
}

/// A fresh one-minute client assertion (RFC 7523 §2.2) for `aud`.
pub(crate) fn client_assertion(
    key: &JwsKey,
    kid: Option<&str>,
    client_id: &str,
    aud: &str,
    now: OffsetDateTime,
) -> String {
    let mut header = serde_json::Map::new();
    header.insert("typ".into(), "JWT".into());
    if let Some(kid) = kid {
        header.insert("kid".into(), kid.into());
    }
    let claims = serde_json::json!({
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "iat": now.unix_timestamp(),
        "exp": (now + ASSERTION_LIFETIME).unix_timestamp(),
        "jti": random_id(),
    });
    key.sign(header, &claims)
}

fn random_id() -> String {
    let bytes: [u8; 16] = rand::random();
    mayfly_core::jose::b64(&bytes)
}

/// Configures a [`TokenSource`].
#[derive(Clone)]
pub struct TokenSourceBuilder {
    issuer: String,
    credential: Option<Credential>,
    dpop: Option<JwsKey>,
    audience: Option<String>,
    scopes: Vec<String>,
    http: Option<reqwest::Client>,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
}

impl fmt::Debug for TokenSourceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSourceBuilder")
            .field("issuer", &self.issuer)
            .field(
                "client_id",
                &self.credential.as_ref().and_then(Credential::client_id),
            )
            .field("audience", &self.audience)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl TokenSourceBuilder {
    /// Authenticates with a client secret (`client_secret_basic`).
    #[must_use]
    pub fn client_secret(mut self, client_id: impl Into<String>, secret: ClientSecret) -> Self {
        self.credential = Some(Credential::Secret {
            client_id: client_id.into(),
            secret,
        });
        self
    }

    /// Authenticates with `private_key_jwt` (RFC 7523 §2.2): each token request carries
    /// a fresh assertion signed with `key` (an Ed25519 key registered for the client),
    /// naming `kid` if given. No secret is involved.
    #[must_use]
    pub fn private_key_jwt(
        mut self,
        client_id: impl Into<String>,
        key: JwsKey,
        kid: Option<String>,
    ) -> Self {
        self.credential = Some(Credential::PrivateKey {
            client_id: client_id.into(),
            key: Box::new(key),
            kid,
        });
        self
    }

    /// Authenticates with the workload's external identity token (workload identity
    /// federation): each token request gets the current token from `source` (a file
    /// read again, or GitHub Actions asked again) and sends it as the RFC 7523
    /// `client_assertion` (`client_assertion_type` jwt-bearer) with the client
    /// credentials grant. No secret or key is stored anywhere: the issuer trusts the
    /// token's issuer and finds the client by a federated identity matching its claims.
    /// With `client_id`, the request names the client too and the issuer refuses it
    /// unless that is the one matched.
    #[must_use]
    pub fn federated(mut self, client_id: Option<String>, source: ExternalToken) -> Self {
        self.credential = Some(Credential::Federated { client_id, source });
        self
    }

    /// Binds tokens to `key` with DPoP (RFC 9449; Ed25519 or P-256): token requests
    /// carry a proof, and [`RequestBuilderExt::mayfly_auth`] signs one per request.
    #[must_use]
    pub fn dpop_key(mut self, key: JwsKey) -> Self {
        self.dpop = Some(key);
        self
    }

    /// The audience (RFC 8707 `resource`) tokens are for. Optional when the client is
    /// granted exactly one audience.
    #[must_use]
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// The scopes to ask for (at least one).
    #[must_use]
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Uses this HTTP client (proxies, custom roots, DNS overrides…).
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

    /// Builds the source. No request is made until the first token is asked for.
    ///
    /// # Errors
    /// [`Error::Config`] when credentials or scopes are missing, or the HTTP client
    /// cannot be built.
    pub fn build(self) -> Result<TokenSource, Error> {
        let Some(credential) = self.credential else {
            return Err(Error::Config("client credentials are required".into()));
        };
        if matches!(&credential, Credential::PrivateKey { key, .. } if key.alg() != "EdDSA") {
            return Err(Error::Config("private_key_jwt needs an Ed25519 key".into()));
        }
        if self.scopes.is_empty() || self.scopes.iter().any(|s| s.is_empty() || s.contains(' ')) {
            return Err(Error::Config("at least one scope, without spaces".into()));
        }
        let http = match self.http {
            Some(http) => http,
            None => discovery::default_http()?,
        };
        Ok(TokenSource {
            inner: Arc::new(Inner {
                issuer: self.issuer,
                credential,
                dpop: self.dpop,
                nonce: RwLock::new(None),
                audience: self.audience,
                scope: self.scopes.join(" "),
                http,
                clock: self.clock,
                retry: self.retry,
                current: RwLock::new(None),
                flight: tokio::sync::Mutex::new(None),
            }),
        })
    }
}

/// Obtains, caches and refreshes access tokens for one audience and set of scopes.
/// Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct TokenSource {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: String,
    credential: Credential,
    dpop: Option<JwsKey>,
    /// The issuer's latest DPoP nonce.
    nonce: RwLock<Option<String>>,
    audience: Option<String>,
    scope: String,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
    current: RwLock<Option<Cached>>,
    /// Held while a token is being fetched; remembers the metadata.
    flight: tokio::sync::Mutex<Option<ServerMetadata>>,
}

#[derive(Clone)]
struct Cached {
    token: AccessToken,
    refresh_at: OffsetDateTime,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("issuer", &self.inner.issuer)
            .field("client_id", &self.inner.credential.client_id())
            .field("audience", &self.inner.audience)
            .field("scope", &self.inner.scope)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// Starts configuring a source for the issuer at `issuer` (its URL, which is also the
    /// `iss` of its tokens).
    pub fn builder(issuer: impl Into<String>) -> TokenSourceBuilder {
        TokenSourceBuilder {
            issuer: issuer.into(),
            credential: None,
            dpop: None,
            audience: None,
            scopes: Vec::new(),
            http: None,
            clock: Arc::new(SystemClock),
            retry: RetryPolicy::default(),
        }
    }

    /// A valid token: the cached one until its refresh time, else a new one.
    ///
    /// # Errors
    /// [`Error`] when no valid token is cached and none could be obtained: the issuer
    /// refused ([`Error::Rejected`], e.g. `invalid_client`, `invalid_scope`) or could not
    /// be reached after retries.
    pub async fn token(&self) -> Result<AccessToken, Error> {
        if let Some(token) = self.fresh(self.inner.clock.now()) {
            return Ok(token);
        }
        let mut metadata = self.inner.flight.lock().await;
        // Whoever held the lock before us may have refreshed it already.
        let now = self.inner.clock.now();
        if let Some(token) = self.fresh(now) {
            return Ok(token);
        }
        match self.fetch(&mut metadata, now).await {
            Ok(cached) => {
                let token = cached.token.clone();
                *self.write() = Some(cached);
                Ok(token)
            }
            Err(e) => {
                let previous = self.read().filter(|c| now < c.token.expires_at);
                match previous {
                    Some(c) => {
                        tracing::warn!(error = %e, "token refresh failed; the current token is still valid");
                        // Serve it without asking again for a while, so callers do not
                        // queue behind one failing refresh after another.
                        let remaining: Duration = c.token.expires_at - now;
                        let pause = Ord::min(remaining / 2_i32, REFRESH_PAUSE);
                        *self.write() = Some(Cached {
                            token: c.token.clone(),
                            refresh_at: now + pause,
                        });
                        Ok(c.token)
                    }
                    None => Err(e),
                }
            }
        }
    }

    /// Forgets the cached token, so the next [`TokenSource::token`] asks for a new one
    /// (e.g. after a resource server answered 401 because it was revoked).
    pub fn invalidate(&self) {
        *self.write() = None;
    }

    fn read(&self) -> Option<Cached> {
        self.inner
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Option<Cached>> {
        self.inner
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn fresh(&self, now: OffsetDateTime) -> Option<AccessToken> {
        self.read().filter(|c| now < c.refresh_at).map(|c| c.token)
    }

    async fn fetch(
        &self,
        metadata: &mut Option<ServerMetadata>,
        now: OffsetDateTime,
    ) -> Result<Cached, Error> {
        let inner = &self.inner;
        let endpoint = match metadata {
            Some(m) => m.token_endpoint.clone(),
            None => {
                let m = discovery::discover(&inner.http, &inner.issuer, &inner.retry).await?;
                let endpoint = m.token_endpoint.clone();
                *metadata = Some(m);
                endpoint
            }
        };
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("scope", inner.scope.as_str()),
        ];
        if let Some(audience) = &inner.audience {
            form.push(("resource", audience));
        }
        // One retry when the issuer asks for a DPoP nonce (RFC 9449 §8).
        let mut response = self.token_request(&endpoint, &form).await?;
        if response.status() == reqwest::StatusCode::BAD_REQUEST && self.took_nonce(&response) {
            let body = response.bytes().await.map_err(Error::Transport)?;
            match serde_json::from_slice::<ErrorResponse>(&body) {
                Ok(e) if e.error == ErrorCode::UseDpopNonce => {
                    response = self.token_request(&endpoint, &form).await?;
                }
                Ok(e) => {
                    return Err(Error::Rejected {
                        status: 400,
                        error: crate::error::RejectionCode::OAuth(e.error),
                        description: e.error_description,
                    });
                }
                Err(_) => {
                    return Err(Error::Rejected {
                        status: 400,
                        error: crate::error::RejectionCode::Other,
                        description: None,
                    });
                }
            }
        }
        self.took_nonce(&response);
        if !response.status().is_success() {
            return Err(Error::rejected(response).await);
        }
        let body: TokenResponse = response
            .json()
            .await
            .map_err(|e| Error::InvalidResponse(format!("token response: {e}")))?;
        let bound = body.token_type.eq_ignore_ascii_case("dpop");
        if !(body.token_type.eq_ignore_ascii_case("bearer") || bound && inner.dpop.is_some()) {
            return Err(Error::InvalidResponse(format!(
                "token_type {:?}",
                body.token_type
            )));
        }
        let lifetime = Duration::seconds(i64::try_from(body.expires_in).unwrap_or(i64::MAX / 2));
        let fraction = REFRESH_AT - rand::random_range(0.0..REFRESH_JITTER);
        // `now` was taken before the request: the token is, if anything, younger.
        Ok(Cached {
            refresh_at: now + lifetime * fraction,
            token: AccessToken {
                value: body.access_token.into(),
                scope: body.scope.into(),
                expires_at: now + lifetime,
                bound,
            },
        })
    }

    /// Sends one token request (with retries), signing a fresh assertion and DPoP proof
    /// for every attempt. A federated workload's external token is got once per call
    /// (the file read, GitHub asked), before the attempts.
    async fn token_request(
        &self,
        endpoint: &str,
        form: &[(&str, &str)],
    ) -> Result<reqwest::Response, Error> {
        let inner = &self.inner;
        let external = match &inner.credential {
            Credential::Federated { source, .. } => {
                Some(source.fetch(&inner.http, &inner.retry).await?)
            }
            Credential::Secret { .. } | Credential::PrivateKey { .. } => None,
        };
        retry::send(&inner.retry, || {
            let now = inner.clock.now();
            let mut request = inner.http.post(endpoint).timeout(REQUEST_TIMEOUT);
            let mut form = form.to_vec();
            let assertion;
            match &inner.credential {
                Credential::Secret { client_id, secret } => {
                    request = request.basic_auth(client_id, Some(secret.expose()));
                }
                Credential::PrivateKey {
                    client_id,
                    key,
                    kid,
                } => {
                    assertion = client_assertion(key, kid.as_deref(), client_id, endpoint, now);
                    form.push(("client_assertion_type", JWT_BEARER));
                    form.push(("client_assertion", &assertion));
                }
                Credential::Federated { client_id, .. } => {
                    form.push(("client_assertion_type", JWT_BEARER));
                    form.push(("client_assertion", external.as_deref().unwrap_or_default()));
                    if let Some(client_id) = client_id {
                        form.push(("client_id", client_id));
                    }
                }
            }
            if let Some(proof) = self.proof("POST", endpoint, None) {
                request = request.header("DPoP", proof);
            }
            request.form(&form)
        })
        .await
    }

    /// Remembers the issuer's `DPoP-Nonce`; whether the response carried a new one.
    fn took_nonce(&self, response: &reqwest::Response) -> bool {
        let Some(nonce) = response
            .headers()
            .get("dpop-nonce")
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let mut held = self.inner.nonce.write().unwrap_or_else(|e| e.into_inner());
        let new = held.as_deref() != Some(nonce);
        *held = Some(nonce.to_owned());
        new
    }

    /// A DPoP proof for a request (`access_token` for resource requests), when this
    /// source holds a DPoP key.
    pub fn proof(&self, method: &str, url: &str, access_token: Option<&str>) -> Option<String> {
        let key = self.inner.dpop.as_ref()?;
        let nonce = self
            .inner
            .nonce
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Some(mayfly_core::dpop::sign(
            key,
            &mayfly_core::dpop::ProofRequest {
                htm: method,
                htu: url,
                access_token,
                // The issuer's nonce is for the issuer only.
                nonce: if access_token.is_none() {
                    nonce.as_deref()
                } else {
                    None
                },
                jti: &random_id(),
                now: self.inner.clock.now(),
            },
        ))
    }
}

/// Attaches a [`TokenSource`]'s token to a request.
pub trait RequestBuilderExt: Sized {
    /// Adds `Authorization: Bearer <token>` (marked sensitive) from `source`; for a
    /// DPoP-bound token, `Authorization: DPoP <token>` and a `DPoP` proof for this
    /// request's method and URL.
    ///
    /// # Errors
    /// [`Error`] when no token can be obtained.
    fn mayfly_auth(
        self,
        source: &TokenSource,
    ) -> impl Future<Output = Result<reqwest::RequestBuilder, Error>> + Send;
}

impl RequestBuilderExt for reqwest::RequestBuilder {
    fn mayfly_auth(
        self,
        source: &TokenSource,
    ) -> impl Future<Output = Result<reqwest::RequestBuilder, Error>> + Send {
        let source = source.clone();
        async move {
            let token = source.token().await?;
            if !token.is_dpop_bound() {
                return Ok(self.bearer_auth(token.secret()));
            }
            let (method, url) = self
                .try_clone()
                .and_then(|b| b.build().ok())
                .map(|r| (r.method().to_string(), r.url().to_string()))
                .ok_or_else(|| Error::Config("a DPoP request must be cloneable".into()))?;
            let proof = source
                .proof(&method, &url, Some(token.secret()))
                .ok_or_else(|| Error::Config("no DPoP key".into()))?;
            let mut value =
                reqwest::header::HeaderValue::from_str(&format!("DPoP {}", token.secret()))
                    .map_err(|_| Error::InvalidResponse("unusable token".into()))?;
            value.set_sensitive(true);
            Ok(self
                .header(reqwest::header::AUTHORIZATION, value)
                .header("DPoP", proof))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Json;
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};
    use time::macros::datetime;

    use super::*;
    use crate::ManualClock;
    use crate::external::MAX_EXTERNAL_TOKEN;

    const T0: OffsetDateTime = datetime!(2026-11-28 12:00:00 UTC);

    #[derive(Clone)]
    struct Issuer {
        base: String,
        requests: Arc<AtomicUsize>,
        /// Statuses of the first token answers; then 200.
        script: Arc<Vec<u16>>,
    }

    async fn metadata(State(s): State<Issuer>) -> Json<serde_json::Value> {
        let b = &s.base;
        Json(serde_json::json!({
            "issuer": b, "token_endpoint": format!("{b}/oauth2/token"),
            "jwks_uri": format!("{b}/jwks"), "introspection_endpoint": format!("{b}/i"),
            "introspection_endpoint_auth_methods_supported": [],
            "revocation_endpoint": format!("{b}/r"), "revocation_endpoint_auth_methods_supported": [],
            "grant_types_supported": [], "token_endpoint_auth_methods_supported": [],
            "response_types_supported": [],
        }))
    }

    async fn token(State(s): State<Issuer>) -> Response {
        let n = s.requests.fetch_add(1, Ordering::SeqCst);
        // Slow enough that concurrent callers overlap.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        match s.script.get(n).copied() {
            Some(503) => {
                (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "0")], "").into_response()
            }
            Some(400) => (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({ "error": "invalid_scope" })),
            )
                .into_response(),
            Some(200) | None => Json(serde_json::json!({
                "access_token": format!("v4.public.token-{n}"), "token_type": "Bearer",
                "expires_in": 100, "scope": "orders:read",
            }))
            .into_response(),
            Some(status) => StatusCode::from_u16(status)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
                .into_response(),
        }
    }

    async fn issuer(script: Vec<u16>) -> Issuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let state = Issuer {
            base: format!("http://{}", listener.local_addr().unwrap()),
            requests: Arc::new(AtomicUsize::new(0)),
            script: Arc::new(script),
        };
        let app = axum::Router::new()
            .route("/.well-known/oauth-authorization-server", get(metadata))
            .route("/oauth2/token", post(token))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        state
    }

    fn source(issuer: &Issuer, clock: Arc<ManualClock>) -> TokenSource {
        TokenSource::builder(issuer.base.clone())
            .client_secret("c", ClientSecret::new("mfy_cs_secret"))
            .audience("https://api.example/orders")
            .scopes(["orders:read"])
            .clock(clock)
            .retry(RetryPolicy {
                max_attempts: 3,
                base_delay: StdDuration::from_millis(1),
                max_delay: StdDuration::from_millis(10),
            })
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn refreshes_at_about_eighty_percent_of_the_lifetime() {
        let issuer = issuer(vec![]).await;
        let clock = Arc::new(ManualClock::new(T0));
        let source = source(&issuer, clock.clone());
        let first = source.token().await.unwrap();
        assert_eq!(first.expires_at(), T0 + Duration::seconds(100));
        // Before 75 % (80 % less the largest jitter): the cached token, no request.
        clock.set(T0 + Duration::seconds(74));
        assert_eq!(source.token().await.unwrap().secret(), first.secret());
        assert_eq!(issuer.requests.load(Ordering::SeqCst), 1);
        // At 80 %: a new one.
        clock.set(T0 + Duration::seconds(80));
        let second = source.token().await.unwrap();
        assert_ne!(second.secret(), first.secret());
        assert_eq!(issuer.requests.load(Ordering::SeqCst), 2);
        assert_eq!(second.expires_at(), T0 + Duration::seconds(180));
        // Invalidation forces a new request.
        source.invalidate();
        source.token().await.unwrap();
        assert_eq!(issuer.requests.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_request() {
        let issuer = issuer(vec![]).await;
        let source = source(&issuer, Arc::new(ManualClock::new(T0)));
        let callers: Vec<_> = (0..32)
            .map(|_| {
                let s = source.clone();
                tokio::spawn(async move { s.token().await.unwrap().secret().to_owned() })
            })
            .collect();
        let mut tokens = std::collections::BTreeSet::new();
        for c in callers {
            tokens.insert(c.await.unwrap());
        }
        assert_eq!(tokens.len(), 1);
        assert_eq!(issuer.requests.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn retries_server_errors_but_never_refusals() {
        let issuer_503 = issuer(vec![503, 500]).await;
        let source_503 = source(&issuer_503, Arc::new(ManualClock::new(T0)));
        source_503.token().await.unwrap();
        assert_eq!(issuer_503.requests.load(Ordering::SeqCst), 3);

        let refusing = issuer(vec![400, 400]).await;
        let err = source(&refusing, Arc::new(ManualClock::new(T0)))
            .token()
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Rejected {
                    status: 400,
                    error: crate::RejectionCode::OAuth(mayfly_core::wire::ErrorCode::InvalidScope),
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(refusing.requests.load(Ordering::SeqCst), 1);

        let down = issuer(vec![503, 503, 503, 503]).await;
        let err = source(&down, Arc::new(ManualClock::new(T0)))
            .token()
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Unavailable { status: 503, .. }),
            "{err:?}"
        );
        assert_eq!(down.requests.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_failed_refresh_serves_the_valid_token_and_pauses() {
        let mut script = vec![200];
        script.extend([503; 12]);
        let issuer = issuer(script).await;
        let clock = Arc::new(ManualClock::new(T0));
        let source = source(&issuer, clock.clone());
        let first = source.token().await.unwrap();
        clock.set(T0 + Duration::seconds(81));
        assert_eq!(source.token().await.unwrap().secret(), first.secret());
        assert_eq!(
            issuer.requests.load(Ordering::SeqCst),
            4,
            "one refresh, 3 attempts"
        );
        assert_eq!(source.token().await.unwrap().secret(), first.secret());
        assert_eq!(issuer.requests.load(Ordering::SeqCst), 4, "paused");
        clock.set(T0 + Duration::seconds(86));
        assert_eq!(source.token().await.unwrap().secret(), first.secret());
        assert_eq!(issuer.requests.load(Ordering::SeqCst), 7, "tried again");
        clock.set(T0 + Duration::seconds(100));
        assert!(matches!(
            source.token().await,
            Err(Error::Unavailable { .. })
        ));
    }

    /// A token endpoint that keeps every form it is sent (and the `Authorization`
    /// header), beside a fake of GitHub Actions' token request endpoint that hands out
    /// `gh-jwt-N` to a caller with the right bearer token.
    #[derive(Clone, Default)]
    struct Recorder {
        base: Arc<RwLock<String>>,
        forms: Arc<std::sync::Mutex<Vec<Sent>>>,
        /// The `DPoP` header of each token request.
        proofs: Arc<std::sync::Mutex<Vec<Option<String>>>>,
        /// How many token requests to come are answered 503.
        unavailable: Arc<AtomicUsize>,
        github_queries: Arc<std::sync::Mutex<Vec<String>>>,
    }

    /// A token request's form and its `Authorization` header.
    type Sent = (HashMap<String, String>, Option<String>);

    impl Recorder {
        fn forms(&self) -> Vec<Sent> {
            self.forms.lock().unwrap().clone()
        }
        fn assertions(&self) -> Vec<String> {
            self.forms()
                .into_iter()
                .map(|(f, _)| f.get("client_assertion").cloned().unwrap_or_default())
                .collect()
        }
    }

    const GITHUB_BEARER: &str = "gh-request-token-hush";

    async fn recorder() -> Recorder {
        async fn meta(State(r): State<Recorder>) -> Json<serde_json::Value> {
            let b = r.base.read().unwrap().clone();
            Json(serde_json::json!({
                "issuer": b, "token_endpoint": format!("{b}/oauth2/token"),
                "jwks_uri": format!("{b}/jwks"), "introspection_endpoint": format!("{b}/i"),
                "introspection_endpoint_auth_methods_supported": [],
                "revocation_endpoint": format!("{b}/r"), "revocation_endpoint_auth_methods_supported": [],
                "grant_types_supported": [], "token_endpoint_auth_methods_supported": [],
                "response_types_supported": [],
            }))
        }
        async fn token(
            State(r): State<Recorder>,
            headers: axum::http::HeaderMap,
            axum::Form(form): axum::Form<HashMap<String, String>>,
        ) -> Response {
            let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
            r.proofs.lock().unwrap().push(header("dpop"));
            let mut forms = r.forms.lock().unwrap();
            forms.push((form, header("authorization")));
            let down = r
                .unavailable
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if down {
                return (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "0")], "")
                    .into_response();
            }
            let bound = header("dpop").is_some();
            Json(serde_json::json!({
                "access_token": format!("v4.public.token-{}", forms.len()),
                "token_type": if bound { "DPoP" } else { "Bearer" },
                "expires_in": 100, "scope": "orders:read",
            }))
            .into_response()
        }
        async fn github(
            State(r): State<Recorder>,
            headers: axum::http::HeaderMap,
            axum::extract::RawQuery(query): axum::extract::RawQuery,
        ) -> Response {
            let bearer = format!("Bearer {GITHUB_BEARER}");
            if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(bearer.as_str()) {
                return StatusCode::UNAUTHORIZED.into_response();
            }
            let mut queries = r.github_queries.lock().unwrap();
            queries.push(query.unwrap_or_default());
            Json(serde_json::json!({ "count": 1, "value": format!("gh-jwt-{}", queries.len()) }))
                .into_response()
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let state = Recorder::default();
        *state.base.write().unwrap() = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .route("/.well-known/oauth-authorization-server", get(meta))
            .route("/oauth2/token", post(token))
            .route("/github/token", get(github))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        state
    }

    fn federated(
        recorder: &Recorder,
        client_id: Option<&str>,
        source: ExternalToken,
        clock: Arc<ManualClock>,
    ) -> TokenSource {
        TokenSource::builder(recorder.base.read().unwrap().clone())
            .federated(client_id.map(str::to_owned), source)
            .scopes(["orders:read"])
            .clock(clock)
            .retry(RetryPolicy {
                max_attempts: 2,
                base_delay: StdDuration::from_millis(1),
                max_delay: StdDuration::from_millis(10),
            })
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn a_token_file_is_read_again_for_every_request() {
        let recorder = recorder().await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "eyJ.first.jwt\n").unwrap();
        let clock = Arc::new(ManualClock::new(T0));
        let source = federated(&recorder, None, ExternalToken::file(&file), clock.clone());
        source.token().await.unwrap();
        let (form, auth) = recorder.forms().remove(0);
        assert_eq!(form["grant_type"], "client_credentials");
        assert_eq!(form["client_assertion_type"], JWT_BEARER);
        assert_eq!(form["client_assertion"], "eyJ.first.jwt", "trimmed");
        assert_eq!(form["scope"], "orders:read");
        assert!(!form.contains_key("client_id"), "{form:?}");
        assert_eq!(auth, None, "no secret anywhere");

        // Kubernetes rotates the file; the next refresh sends the new token.
        std::fs::write(&file, "eyJ.second.jwt").unwrap();
        clock.set(T0 + Duration::seconds(81));
        source.token().await.unwrap();
        // And a forced refresh reads it again too.
        std::fs::write(&file, "  eyJ.third.jwt  ").unwrap();
        source.invalidate();
        source.token().await.unwrap();
        assert_eq!(
            recorder.assertions(),
            ["eyJ.first.jwt", "eyJ.second.jwt", "eyJ.third.jwt"]
        );

        // A configured client id is sent along.
        let named = federated(
            &recorder,
            Some("0193-client"),
            ExternalToken::file(&file),
            Arc::new(ManualClock::new(T0)),
        );
        named.token().await.unwrap();
        assert_eq!(recorder.forms()[3].0["client_id"], "0193-client");
    }

    #[tokio::test]
    async fn a_federated_request_is_retried_and_bound_like_any_other() {
        let recorder = recorder().await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "eyJ.only.jwt").unwrap();
        recorder.unavailable.store(2, Ordering::SeqCst);
        let source = TokenSource::builder(recorder.base.read().unwrap().clone())
            .federated(None, ExternalToken::file(&file))
            .dpop_key(JwsKey::ed25519_from_seed(&[5; 32]))
            .scopes(["orders:read"])
            .clock(Arc::new(ManualClock::new(T0)))
            .retry(RetryPolicy {
                max_attempts: 3,
                base_delay: StdDuration::from_millis(1),
                max_delay: StdDuration::from_millis(10),
            })
            .build()
            .unwrap();
        let token = source.token().await.unwrap();
        assert!(token.is_dpop_bound());
        // Three attempts of one request: the file read once, a fresh proof each time.
        assert_eq!(recorder.assertions(), ["eyJ.only.jwt"; 3]);
        let proofs: Vec<String> = recorder
            .proofs
            .lock()
            .unwrap()
            .iter()
            .map(|p| p.clone().unwrap())
            .collect();
        assert_eq!(proofs.len(), 3);
        assert!(
            proofs[0] != proofs[1] && proofs[1] != proofs[2],
            "fresh proofs"
        );
    }

    #[tokio::test]
    async fn a_missing_empty_or_unusable_token_file_is_a_clear_error() {
        let recorder = recorder().await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        let clock = Arc::new(ManualClock::new(T0));
        let source = federated(&recorder, None, ExternalToken::file(&file), clock.clone());
        let refused = |content: Option<&[u8]>| {
            let (file, source) = (file.clone(), source.clone());
            match content {
                Some(bytes) => std::fs::write(&file, bytes).unwrap(),
                None => drop(std::fs::remove_file(&file)),
            }
            async move {
                let err = source.token().await.unwrap_err();
                assert!(matches!(err, Error::ExternalToken(_)), "{err:?}");
                let text = err.to_string();
                assert!(text.contains(&file.display().to_string()), "{text}");
                text
            }
        };
        assert!(refused(None).await.contains("cannot open"));
        assert!(refused(Some(b" \n\t")).await.contains("empty"));
        assert!(refused(Some(&[0xff, 0xfe])).await.contains("UTF-8"));
        let text = refused(Some(b"eyJ.hush\nsecond-line")).await;
        assert!(
            text.contains("one line") && !text.contains("hush"),
            "{text}"
        );
        let huge = vec![b'a'; MAX_EXTERNAL_TOKEN + 1];
        assert!(refused(Some(&huge)).await.contains("64 KiB"));
        // A directory is unreadable as a token, not a panic.
        let err = federated(
            &recorder,
            None,
            ExternalToken::file(dir.path()),
            clock.clone(),
        )
        .token()
        .await
        .unwrap_err();
        assert!(matches!(err, Error::ExternalToken(_)), "{err:?}");
        assert!(recorder.forms().is_empty(), "nothing was sent");

        // A valid token keeps being served while the file is briefly missing.
        std::fs::write(&file, "eyJ.good.jwt").unwrap();
        let first = source.token().await.unwrap();
        std::fs::remove_file(&file).unwrap();
        clock.set(T0 + Duration::seconds(81));
        assert_eq!(source.token().await.unwrap().secret(), first.secret());
        clock.set(T0 + Duration::seconds(100));
        assert!(matches!(source.token().await, Err(Error::ExternalToken(_))));
    }

    #[tokio::test]
    async fn github_actions_tokens_are_asked_for_with_the_bearer_and_audience() {
        let recorder = recorder().await;
        let base = recorder.base.read().unwrap().clone();
        let request_url = format!("{base}/github/token?api-version=2.0");
        let audience = "https://mayfly.example/a b?x=1&y=2";
        let gh = ExternalToken::github_actions_with(&request_url, GITHUB_BEARER, audience).unwrap();
        let shown = format!("{gh:?}");
        assert!(!shown.contains("hush"), "{shown}");
        let clock = Arc::new(ManualClock::new(T0));
        let source = federated(&recorder, Some("c"), gh, clock.clone());
        source.token().await.unwrap();
        clock.set(T0 + Duration::seconds(81));
        source.token().await.unwrap();
        // A fresh GitHub token for each request, sent as the assertion.
        assert_eq!(recorder.assertions(), ["gh-jwt-1", "gh-jwt-2"]);
        let forms = recorder.forms();
        assert_eq!(forms[0].0["client_assertion_type"], JWT_BEARER);
        assert_eq!(forms[0].0["client_id"], "c");
        assert_eq!(forms[0].1, None, "the request token goes to GitHub only");
        let queries = recorder.github_queries.lock().unwrap().clone();
        assert_eq!(
            queries[0],
            "api-version=2.0&audience=https%3A%2F%2Fmayfly.example%2Fa+b%3Fx%3D1%26y%3D2"
        );

        // The wrong request token: GitHub refuses, and so does the source, clearly.
        let wrong = ExternalToken::github_actions_with(&request_url, "not-it", audience).unwrap();
        let err = federated(&recorder, None, wrong, Arc::new(ManualClock::new(T0)))
            .token()
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::ExternalToken(t) if t.contains("401") && !t.contains("not-it")),
            "{err:?}"
        );
        // Unreachable: a clear error too, after the retries.
        let closed = format!("http://127.0.0.1:{}/token?x=1", free_port());
        let down = ExternalToken::github_actions_with(&closed, GITHUB_BEARER, audience).unwrap();
        let err = federated(&recorder, None, down, Arc::new(ManualClock::new(T0)))
            .token()
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::ExternalToken(t) if t.contains("GitHub")),
            "{err:?}"
        );
        assert_eq!(recorder.forms().len(), 2, "nothing sent without a token");

        // Configuration mistakes are named before any request.
        for (url, token, audience) in [
            ("not a url", GITHUB_BEARER, "a"),
            ("ftp://example.com/x", GITHUB_BEARER, "a"),
            (request_url.as_str(), " ", "a"),
            (request_url.as_str(), GITHUB_BEARER, ""),
        ] {
            let err = ExternalToken::github_actions_with(url, token, audience).unwrap_err();
            assert!(
                matches!(err, Error::Config(_)),
                "{url} {token:?} {audience:?}: {err:?}"
            );
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn debug_never_shows_secrets() {
        let token = AccessToken {
            value: "v4.public.secret-token".into(),
            scope: "orders:read".into(),
            expires_at: T0,
            bound: false,
        };
        let secret = ClientSecret::new("mfy_cs_hush");
        let shown = format!("{token:?} {secret:?}");
        assert!(
            !shown.contains("secret-token") && !shown.contains("hush"),
            "{shown}"
        );
    }
}
