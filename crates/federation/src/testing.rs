//! A real OpenID issuer for tests (feature `testing`): axum on an ephemeral loopback
//! port serving a discovery document and a JWKS endpoint, with RS256, ES256 and Ed25519
//! signing keys, rotation, a switch that takes it down (503), a raw-body override, a
//! `Cache-Control` setting and fetch counters; plus minters of tokens shaped like the
//! platforms' (see the crate docs for the claim shapes).
//!
//! RSA private keys exist only here: three fixed 2048-bit PKCS#8 test keys (ring cannot
//! generate RSA keys), never used outside tests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer as _;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair, RsaPublicKeyComponents};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::issuer::{KeySource, TrustedIssuerConfig};
use crate::jwk::Algorithm;

const RSA_TEST_KEYS: [&[u8]; 3] = [
    include_bytes!("testing/rsa-test-key-0.pk8"),
    include_bytes!("testing/rsa-test-key-1.pk8"),
    include_bytes!("testing/rsa-test-key-2.pk8"),
];

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[derive(Clone)]
enum Private {
    Rsa(Arc<RsaKeyPair>),
    Es256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

/// A signing key of the test issuer.
#[derive(Clone)]
pub struct TestKey {
    kid: String,
    key: Private,
}

impl std::fmt::Debug for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestKey({}, {})", self.kid, self.algorithm())
    }
}

impl TestKey {
    /// RSA test key number `index` (0 to 2), 2048 bits.
    ///
    /// # Panics
    /// On an index out of range.
    #[allow(clippy::expect_used)]
    pub fn rsa(kid: &str, index: usize) -> Self {
        let der = RSA_TEST_KEYS.get(index).expect("RSA test keys 0 to 2");
        let pair = RsaKeyPair::from_pkcs8(der).expect("RSA test key parses");
        Self {
            kid: kid.to_owned(),
            key: Private::Rsa(Arc::new(pair)),
        }
    }

    /// A fresh random P-256 key.
    pub fn es256(kid: &str) -> Self {
        let key = loop {
            if let Ok(k) = p256::ecdsa::SigningKey::from_slice(&rand::random::<[u8; 32]>()) {
                break k;
            }
        };
        Self {
            kid: kid.to_owned(),
            key: Private::Es256(key),
        }
    }

    /// A fresh random Ed25519 key.
    pub fn ed25519(kid: &str) -> Self {
        Self {
            kid: kid.to_owned(),
            key: Private::Ed25519(ed25519_dalek::SigningKey::from_bytes(&rand::random())),
        }
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm it signs with.
    pub fn algorithm(&self) -> Algorithm {
        match self.key {
            Private::Rsa(_) => Algorithm::Rs256,
            Private::Es256(_) => Algorithm::Es256,
            Private::Ed25519(_) => Algorithm::EdDsa,
        }
    }

    /// The public JWK, as the issuer publishes it (`kid`, `use`, `alg`).
    pub fn public_jwk(&self) -> Value {
        let mut jwk = match &self.key {
            Private::Rsa(pair) => {
                let public = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
                json!({"kty": "RSA", "n": b64(&public.n), "e": b64(&public.e)})
            }
            Private::Es256(k) => {
                let point = k.verifying_key().to_sec1_point(false);
                let bytes = point.as_bytes();
                json!({
                    "kty": "EC", "crv": "P-256",
                    "x": b64(bytes.get(1..33).unwrap_or_default()),
                    "y": b64(bytes.get(33..65).unwrap_or_default()),
                })
            }
            Private::Ed25519(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(k.verifying_key().as_bytes())})
            }
        };
        jwk["kid"] = self.kid.clone().into();
        jwk["use"] = "sig".into();
        jwk["alg"] = self.algorithm().as_str().into();
        jwk
    }

    /// Signs `claims` with the usual header (`alg`, `kid`, `typ: JWT`).
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(
            &json!({"alg": self.algorithm().as_str(), "kid": self.kid, "typ": "JWT"}),
            claims,
        )
    }

    /// Signs with this key whatever `header` says (for forged-header tests).
    ///
    /// # Panics
    /// If ring fails to sign (it does not for these keys).
    #[allow(clippy::expect_used)]
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = match &self.key {
            Private::Rsa(pair) => {
                let mut sig = vec![0; pair.public().modulus_len()];
                pair.sign(
                    &RSA_PKCS1_SHA256,
                    &ring::rand::SystemRandom::new(),
                    input.as_bytes(),
                    &mut sig,
                )
                .expect("RSA test signature");
                sig
            }
            Private::Es256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(input.as_bytes());
                sig.to_bytes().to_vec()
            }
            Private::Ed25519(k) => {
                use ed25519_dalek::Signer as _;
                k.sign(input.as_bytes()).to_bytes().to_vec()
            }
        };
        format!("{input}.{}", b64(&signature))
    }
}

/// A compact JWS from raw parts (for `alg: none`, HMAC and other forgeries).
pub fn compact(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(signature)
    )
}

fn random_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Claims shaped like a Kubernetes projected service-account token (bound token, 1.29+
/// with `jti`; older clusters omit `jti` and the node): one hour of lifetime.
pub fn kubernetes_claims(
    issuer: &str,
    audience: &str,
    iat: OffsetDateTime,
    namespace: &str,
    service_account: &str,
    pod: &str,
) -> Value {
    let iat = iat.unix_timestamp();
    json!({
        "aud": [audience],
        "exp": iat + 3600,
        "iat": iat,
        "nbf": iat,
        "iss": issuer,
        "jti": random_id(),
        "kubernetes.io": {
            "namespace": namespace,
            "node": {"name": "node-1", "uid": random_id()},
            "pod": {"name": pod, "uid": random_id()},
            "serviceaccount": {"name": service_account, "uid": random_id()},
        },
        "sub": format!("system:serviceaccount:{namespace}:{service_account}"),
    })
}

/// Claims shaped like a GitHub Actions OIDC token for a push to `git_ref` of
/// `repository` (`owner/name`): `nbf` 10 minutes before `iat`, `exp` 5 minutes after.
pub fn github_actions_claims(
    issuer: &str,
    audience: &str,
    iat: OffsetDateTime,
    repository: &str,
    git_ref: &str,
) -> Value {
    let iat = iat.unix_timestamp();
    let owner = repository.split('/').next().unwrap_or(repository);
    json!({
        "jti": random_id(),
        "sub": format!("repo:{repository}:ref:{git_ref}"),
        "aud": audience,
        "ref": git_ref,
        "ref_type": "branch",
        "ref_protected": "true",
        "sha": "d6d4d3a2c1b0e9f8a7b6c5d4e3f2a1b0c9d8e7f6",
        "repository": repository,
        "repository_id": "123456789",
        "repository_owner": owner,
        "repository_owner_id": "987654",
        "repository_visibility": "private",
        "run_id": "4242424242",
        "run_number": "42",
        "run_attempt": "1",
        "actor": "octocat",
        "actor_id": "583231",
        "workflow": "deploy",
        "workflow_ref": format!("{repository}/.github/workflows/deploy.yml@{git_ref}"),
        "job_workflow_ref": format!("{repository}/.github/workflows/deploy.yml@{git_ref}"),
        "event_name": "push",
        "head_ref": "",
        "base_ref": "",
        "runner_environment": "github-hosted",
        "iss": issuer,
        "nbf": iat - 600,
        "exp": iat + 300,
        "iat": iat,
    })
}

/// Claims shaped like a SPIFFE JWT-SVID (`sub` the SPIFFE ID, `aud`, `exp`, `iat`, no
/// `jti`), with `iss` as SPIRE sets it when configured with a JWT issuer.
pub fn spiffe_claims(issuer: &str, audience: &str, iat: OffsetDateTime, spiffe_id: &str) -> Value {
    let iat = iat.unix_timestamp();
    json!({
        "sub": spiffe_id,
        "aud": [audience],
        "exp": iat + 300,
        "iat": iat,
        "iss": issuer,
    })
}

#[derive(Default)]
struct Served {
    keys: Vec<TestKey>,
    cache_control: Option<String>,
    down: bool,
    jwks_body: Option<String>,
    discovery_issuer: Option<String>,
}

#[derive(Clone)]
struct Shared {
    url: String,
    served: Arc<Mutex<Served>>,
    jwks_fetches: Arc<AtomicUsize>,
    discovery_fetches: Arc<AtomicUsize>,
}

impl Shared {
    fn served(&self) -> std::sync::MutexGuard<'_, Served> {
        self.served.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The test issuer; stops when dropped.
pub struct TestIssuer {
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for TestIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestIssuer({})", self.shared.url)
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn discovery(State(s): State<Shared>) -> Response {
    s.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    let served = s.served();
    if served.down {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let issuer = served
        .discovery_issuer
        .clone()
        .unwrap_or_else(|| s.url.clone());
    axum::Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{}/openid/v1/jwks", s.url),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
    }))
    .into_response()
}

async fn jwks(State(s): State<Shared>) -> Response {
    s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let served = s.served();
    if served.down {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let body = served.jwks_body.clone().unwrap_or_else(|| {
        json!({"keys": served.keys.iter().map(TestKey::public_jwk).collect::<Vec<_>>()}).to_string()
    });
    let mut response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Some(cc) = served
        .cache_control
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        response.headers_mut().insert(header::CACHE_CONTROL, cc);
    }
    response
}

impl TestIssuer {
    /// Starts an issuer on `127.0.0.1` publishing `keys`.
    ///
    /// # Panics
    /// When no loopback port can be bound.
    #[allow(clippy::expect_used)]
    pub async fn start(keys: Vec<TestKey>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let shared = Shared {
            url: format!("http://{addr}"),
            served: Arc::new(Mutex::new(Served {
                keys,
                ..Served::default()
            })),
            jwks_fetches: Arc::default(),
            discovery_fetches: Arc::default(),
        };
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/openid/v1/jwks", get(jwks))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { shared, task }
    }

    /// The issuer URL (`http://127.0.0.1:port`), as `iss` carries it.
    pub fn issuer(&self) -> &str {
        &self.shared.url
    }

    /// The JWKS URL.
    pub fn jwks_uri(&self) -> String {
        format!("{}/openid/v1/jwks", self.shared.url)
    }

    /// Trusted-issuer settings for it: discovery, all algorithms, this audience.
    pub fn config(&self, audience: &str) -> TrustedIssuerConfig {
        TrustedIssuerConfig::new(self.issuer(), audience)
    }

    /// Settings with the JWKS URL given explicitly.
    pub fn config_with_jwks_uri(&self, audience: &str) -> TrustedIssuerConfig {
        TrustedIssuerConfig {
            key_source: KeySource::JwksUri {
                jwks_uri: self.jwks_uri(),
            },
            ..self.config(audience)
        }
    }

    /// The published JWK Set (for inline settings).
    pub fn jwks(&self) -> Value {
        json!({"keys": self.shared.served().keys.iter().map(TestKey::public_jwk).collect::<Vec<_>>()})
    }

    /// Publishes another key (rotation).
    pub fn add_key(&self, key: TestKey) {
        self.shared.served().keys.push(key);
    }

    /// Stops publishing the key `kid`.
    pub fn remove_key(&self, kid: &str) {
        self.shared.served().keys.retain(|k| k.kid != kid);
    }

    /// The published key `kid`, to sign with.
    pub fn key(&self, kid: &str) -> Option<TestKey> {
        self.shared
            .served()
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .cloned()
    }

    /// Signs `claims` with the published key `kid`.
    ///
    /// # Panics
    /// When no such key is published.
    #[allow(clippy::expect_used)]
    pub fn mint(&self, kid: &str, claims: &Value) -> String {
        self.key(kid).expect("a published test key").sign(claims)
    }

    /// The `Cache-Control` header of JWKS answers (none by default).
    pub fn set_cache_control(&self, value: Option<&str>) {
        self.shared.served().cache_control = value.map(str::to_owned);
    }

    /// Takes the issuer down (both endpoints answer 503) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.shared.served().down = down;
    }

    /// Serves this raw JWKS body instead of the keys (oversized or broken sets).
    pub fn set_jwks_body(&self, body: Option<String>) {
        self.shared.served().jwks_body = body;
    }

    /// Makes discovery name another issuer (a mix-up attempt).
    pub fn set_discovery_issuer(&self, issuer: Option<&str>) {
        self.shared.served().discovery_issuer = issuer.map(str::to_owned);
    }

    /// JWKS requests served so far (including 503s).
    pub fn jwks_fetches(&self) -> usize {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Discovery requests served so far.
    pub fn discovery_fetches(&self) -> usize {
        self.shared.discovery_fetches.load(Ordering::SeqCst)
    }
}
