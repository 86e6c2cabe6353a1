//! The test kit: `spawn_app(backend)` and typed helpers around the running service.

use std::net::SocketAddr;
use std::sync::Arc;

use mayfly_core::wire::JwkSet;
use mayfly_sdk::OfflineVerifier;
use mayfly_server::app::{App, Settings};
use mayfly_server::clock::{Clock, ManualClock, SystemClock};
use mayfly_server::config::Config;
use mayfly_server::keys::rotation::Rotator;
use mayfly_server::runtime::AppState;
use mayfly_server::service::{Actor, ClientSpec, GrantSpec};
use mayfly_store::testing::TestDb;
use mayfly_store::{AuditEvent, AuditQuery, Backend, Subject};
use serde_json::Value;
use time::{Duration, OffsetDateTime};
use tokio::sync::oneshot;
use uuid::Uuid;

/// A running Mayfly with its own database.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`; also the issuer.
    pub base: String,
    /// Shared state of the running service (store, keyring…).
    pub state: AppState,
    /// An HTTP client.
    pub http: reqwest::Client,
    /// The database URL, for a second process's view of the same data.
    pub db_url: String,
    /// The service's clock: starts at the real time, moves only when a test says so.
    pub clock: Arc<ManualClock>,
    shutdown: Option<oneshot::Sender<()>>,
    /// The master key file.
    pub key_file: std::path::PathBuf,
    /// The background tasks the service runs (as `mayfly serve` does; see `App::build`).
    pub tasks: Vec<&'static str>,
    /// The test drives key rotation with [`TestApp::rotation_tick`]; the schedule is off.
    manual_key_rotation: bool,
    _db: Option<TestDb>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Credentials of a client created for a test.
#[derive(Debug, Clone)]
pub struct TestClient {
    pub id: Uuid,
    pub secret: String,
}

/// How a token request authenticates.
#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
    Basic(&'a TestClient),
    Post(&'a TestClient),
    None,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Like [`spawn_app`], with configuration changes (e.g. key lifecycle periods). Every
/// background task of `mayfly serve` runs.
pub async fn spawn_app_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> TestApp {
    spawn(backend, configure, false).await
}

/// Like [`spawn_app`], but the scheduled key rotation does not run: the test drives it
/// with [`TestApp::rotation_tick`] as it steps the clock, and must not race the schedule.
pub async fn spawn_app_manual_rotation(backend: Backend) -> TestApp {
    spawn(backend, |_| {}, true).await
}

async fn spawn(
    backend: Backend,
    configure: impl FnOnce(&mut Config),
    manual_key_rotation: bool,
) -> TestApp {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("mayfly.key");
    write_key(&key_file);
    let mut app = serve(db.url.clone(), key_file, configure, manual_key_rotation).await;
    app._db = Some(db);
    app._dir = Some(dir);
    app
}

/// Like [`spawn_app_with`], but the service reaches its fresh database through the URL
/// `route` makes of it (e.g. through a proxy the test controls).
pub async fn spawn_app_via(
    backend: Backend,
    route: impl FnOnce(&str) -> String,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("mayfly.key");
    write_key(&key_file);
    let mut app = serve(route(&db.url), key_file, configure, false).await;
    app._db = Some(db);
    app._dir = Some(dir);
    app
}

/// Writes a master key file, owner-only (the service refuses one others can read).
fn write_key(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, format!("{}\n", "7f".repeat(32))).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Boots a service on `db_url` with the master key in `key_file`, through the
/// composition root `mayfly serve` uses ([`App::build`]).
async fn serve(
    db_url: String,
    key_file: std::path::PathBuf,
    configure: impl FnOnce(&mut Config),
    manual_key_rotation: bool,
) -> TestApp {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Production's settings (no flags, no environment), but for where this one runs.
    let mut config = Config::defaults().unwrap();
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.issuer = Some("http://mayfly.test".into());
    config.database_url = db_url.clone();
    config.master_key_file = Some(key_file.clone());
    configure(&mut config);
    // Both stores keep microseconds: start on one, so stored times compare equal.
    let start = SystemClock.now();
    let start = start
        .replace_nanosecond(start.nanosecond() / 1000 * 1000)
        .unwrap_or(start);
    let clock = Arc::new(ManualClock::new(start));
    let settings = Settings {
        config,
        manual_key_rotation,
    };
    let app = App::build(settings, clock.clone()).await.unwrap();
    let addr = app.local_addr().unwrap();
    let state = app.state.clone();
    let tasks = app.tasks.names();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(app.run(async {
        let _ = rx.await;
    }));
    TestApp {
        base: format!("http://{addr}"),
        state,
        http: reqwest::Client::new(),
        db_url,
        clock,
        shutdown: Some(tx),
        key_file,
        tasks,
        manual_key_rotation,
        _db: None,
        _dir: None,
    }
}

impl TestApp {
    /// Another replica on the same database and master key (same issuer).
    pub async fn replica(&self) -> TestApp {
        serve(
            self.db_url.clone(),
            self.key_file.clone(),
            |_| {},
            self.manual_key_rotation,
        )
        .await
    }

    /// Starts a graceful shutdown of the service, as SIGTERM does.
    pub fn shut_down(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// The issuer URL (shared by replicas).
    pub fn issuer(&self) -> String {
        self.state.issuer.clone()
    }
}

impl TestApp {
    /// The admin service layer, acting as `test`.
    pub fn admin(&self) -> Actor<'_> {
        Actor::trusted(
            self.state.store.as_ref(),
            "test",
            self.now(),
            Default::default(),
        )
    }

    /// The service's current time.
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Creates an audience with scopes.
    pub async fn audience(&self, uri: &str, scopes: &[&str]) {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        self.admin()
            .create_audience(uri, "", &scopes)
            .await
            .unwrap();
    }

    /// Creates a client.
    pub async fn client(&self) -> TestClient {
        self.client_with_ttl(None, None).await
    }

    pub async fn client_with_ttl(
        &self,
        ttl: Option<Duration>,
        max_ttl: Option<Duration>,
    ) -> TestClient {
        let created = self
            .admin()
            .create_client(ClientSpec {
                default_ttl: ttl,
                max_ttl,
                ..ClientSpec::named("test-client")
            })
            .await
            .unwrap();
        TestClient {
            id: created.client.id,
            secret: created.secret.expose().to_owned(),
        }
    }

    /// Grants `client` scopes on `audience` with no window.
    pub async fn grant(&self, client: &TestClient, audience: &str, scopes: &[&str]) {
        self.grant_spec(GrantSpec::new(Subject::Client(client.id), audience, scopes))
            .await;
    }

    pub async fn grant_spec(&self, spec: GrantSpec) {
        self.admin().create_grant(spec).await.unwrap();
    }

    /// POSTs a form to the token endpoint.
    pub async fn token_request(
        &self,
        auth: Auth<'_>,
        params: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut form: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut request = self.http.post(format!("{}/oauth2/token", self.base));
        match auth {
            Auth::Basic(c) => request = request.basic_auth(c.id, Some(&c.secret)),
            Auth::Post(c) => {
                form.push(("client_id".into(), c.id.to_string()));
                form.push(("client_secret".into(), c.secret.clone()));
            }
            Auth::None => {}
        }
        request.form(&form).send().await.unwrap()
    }

    /// POSTs a raw body to the token endpoint.
    pub async fn token_raw(
        &self,
        client: &TestClient,
        content_type: &str,
        body: Vec<u8>,
    ) -> reqwest::Response {
        self.http
            .post(format!("{}/oauth2/token", self.base))
            .basic_auth(client.id, Some(&client.secret))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Gets a token, asserting success; returns the response JSON.
    pub async fn token_ok(&self, auth: Auth<'_>, params: &[(&str, &str)]) -> Value {
        let response = self.token_request(auth, params).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The published key set.
    pub async fn jwks(&self) -> JwkSet {
        self.http
            .get(format!("{}/.well-known/jwks.json", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A resource server's verifier for `audience`, from the published key set.
    pub async fn verifier(&self, audience: &str) -> OfflineVerifier {
        OfflineVerifier::new(&self.issuer(), audience, &self.jwks().await)
    }

    /// Key rotation as this service performs it, acting as `actor`.
    pub fn rotator(&self, actor: &str) -> Rotator<'_> {
        Rotator::new(
            self.state.store.as_ref(),
            &self.state.keyring,
            self.state.config.key_policy(),
            actor,
        )
    }

    /// One round of the background rotation task at the service's current time;
    /// returns the changes it made.
    pub async fn rotation_tick(&self) -> Vec<mayfly_store::KeyChange> {
        self.rotator("scheduler").tick(self.now()).await.unwrap()
    }

    /// Audit events of one type, newest first.
    pub async fn audit(&self, event_type: &str) -> Vec<AuditEvent> {
        self.state
            .store
            .audit_events(&AuditQuery {
                event_type: Some(event_type.into()),
                client_id: None,
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
    }
}

/// A client that authenticates with private_key_jwt: its id and its Ed25519 key.
pub struct KeyedClient {
    pub id: Uuid,
    pub key: mayfly_core::jose::JwsKey,
    pub kid: String,
}

impl KeyedClient {
    /// An assertion (RFC 7523) with these claims, signed with the client's key.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = serde_json::Map::new();
        header.insert("typ".into(), "JWT".into());
        header.insert("kid".into(), self.kid.clone().into());
        self.key.sign(header, claims)
    }

    /// The claims of a good assertion for `aud` at `now`, with `jti`.
    pub fn claims(&self, aud: &str, now: OffsetDateTime, jti: &str) -> Value {
        serde_json::json!({
            "iss": self.id.to_string(),
            "sub": self.id.to_string(),
            "aud": aud,
            "iat": now.unix_timestamp(),
            "exp": (now + Duration::seconds(60)).unix_timestamp(),
            "jti": jti,
        })
    }
}

impl TestApp {
    /// Creates a client with one Ed25519 key (from `seed`) and no secret.
    pub async fn keyed_client(&self, seed: u8) -> KeyedClient {
        let key = mayfly_core::jose::JwsKey::ed25519_from_seed(&[seed; 32]);
        let mayfly_core::jose::PublicJwk::Ed25519(public) = key.public() else {
            unreachable!()
        };
        let (client, keys) = self
            .admin()
            .create_keyed_client(
                ClientSpec::named("keyed-client"),
                &[(None, public.to_bytes())],
            )
            .await
            .unwrap();
        KeyedClient {
            id: client.id,
            key,
            kid: keys[0].kid.clone(),
        }
    }

    /// The token endpoint URL as the issuer names it (a client assertion's `aud`).
    pub fn token_endpoint(&self) -> String {
        format!("{}/oauth2/token", self.issuer())
    }

    /// POSTs a token request authenticated with a client assertion.
    pub async fn assertion_request(
        &self,
        assertion: &str,
        params: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut form: Vec<(&str, &str)> = params.to_vec();
        form.push((
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ));
        form.push(("client_assertion", assertion));
        self.http
            .post(format!("{}/oauth2/token", self.base))
            .form(&form)
            .send()
            .await
            .unwrap()
    }
}

/// Asserts an RFC 6749 §5.2 error response and returns its body.
pub async fn assert_oauth_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    let got = response.status().as_u16();
    let headers = response.headers().clone();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(
        (got, body["error"].as_str()),
        (status, Some(code)),
        "body: {body}"
    );
    assert_eq!(
        headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    assert_eq!(
        headers.get("pragma").and_then(|v| v.to_str().ok()),
        Some("no-cache")
    );
    if status == 401 {
        assert!(
            headers.get("www-authenticate").is_some(),
            "401 without WWW-Authenticate"
        );
    }
    body
}

/// An admin API caller.
pub struct AdminApi<'a> {
    pub app: &'a TestApp,
    pub token: String,
}

impl TestApp {
    /// Bootstraps the first admin and returns an API caller with a `mayfly:admin` token.
    pub async fn bootstrap_admin(&self) -> AdminApi<'_> {
        let created = self.admin().bootstrap(&self.issuer()).await.unwrap();
        let admin = TestClient {
            id: created.client.id,
            secret: created.secret.expose().to_owned(),
        };
        let body = self
            .token_ok(
                Auth::Basic(&admin),
                &[
                    ("grant_type", "client_credentials"),
                    ("scope", "mayfly:admin"),
                ],
            )
            .await;
        AdminApi {
            app: self,
            token: body["access_token"].as_str().unwrap().to_owned(),
        }
    }

    /// An API caller holding a token with exactly `scopes` on the issuer audience.
    pub async fn admin_with(&self, scopes: &[&str]) -> AdminApi<'_> {
        let client = self.client().await;
        self.grant(&client, &self.issuer(), scopes).await;
        let scope = scopes.join(" ");
        let body = self
            .token_ok(
                Auth::Basic(&client),
                &[
                    ("grant_type", "client_credentials"),
                    ("scope", &scope),
                    ("resource", &self.issuer()),
                ],
            )
            .await;
        AdminApi {
            app: self,
            token: body["access_token"].as_str().unwrap().to_owned(),
        }
    }
}

/// A response's status and JSON body (problem or resource).
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Answer {
    /// Asserts an RFC 7807 problem with this status; returns the body.
    pub fn problem(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(
            self.headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json")
        );
        assert_eq!(self.body["status"], status);
        assert!(self.body["title"].is_string());
        &self.body
    }

    /// Asserts success with this status; returns the body.
    pub fn ok(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "body: {}", self.body);
        &self.body
    }
}

impl AdminApi<'_> {
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Answer {
        let mut request = self
            .app
            .http
            .request(method, format!("{}{path}", self.app.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        answer(request.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Answer {
        self.send(reqwest::Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(reqwest::Method::DELETE, path, None).await
    }
}

pub async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Answer {
        status,
        body,
        headers,
    }
}

/// People, first-party clients and the checks resource servers make (password,
/// refresh and exchange tests).
impl TestApp {
    /// Creates an enabled user; returns their id.
    pub async fn user(&self, username: &str, password: &str) -> Uuid {
        let hash = self
            .state
            .passwords
            .hash(zeroize_string(password))
            .await
            .unwrap();
        self.admin()
            .create_user(username, hash, true, &[])
            .await
            .unwrap()
            .id
    }

    /// Grants a user scopes on an audience.
    pub async fn grant_user(&self, user: Uuid, audience: &str, scopes: &[&str]) -> Uuid {
        self.admin()
            .create_grant(GrantSpec::new(Subject::User(user), audience, scopes))
            .await
            .unwrap()
            .id
    }

    /// Creates a client that may use these grant types.
    pub async fn client_for(&self, grant_types: &[&str]) -> TestClient {
        let created = self
            .admin()
            .create_client(ClientSpec {
                grant_types: grant_types.iter().map(|g| (*g).to_owned()).collect(),
                ..ClientSpec::named("first-party")
            })
            .await
            .unwrap();
        TestClient {
            id: created.client.id,
            secret: created.secret.expose().to_owned(),
        }
    }

    /// `grant_type=password` with client_secret_basic.
    pub async fn login(
        &self,
        client: &TestClient,
        username: &str,
        password: &str,
        scope: &str,
    ) -> reqwest::Response {
        self.token_request(
            Auth::Basic(client),
            &[
                ("grant_type", "password"),
                ("username", username),
                ("password", password),
                ("scope", scope),
            ],
        )
        .await
    }

    /// `grant_type=refresh_token`, with extra parameters.
    pub async fn refresh(
        &self,
        client: &TestClient,
        refresh_token: &str,
        extra: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut params = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ];
        params.extend_from_slice(extra);
        self.token_request(Auth::Basic(client), &params).await
    }

    /// A client allowed to introspect and read the revocation feed (bootstraps the
    /// issuer audience on first use); with a feed-reading token.
    pub async fn introspector(&self) -> (TestClient, String) {
        if self
            .state
            .store
            .audience_by_uri(&self.issuer())
            .await
            .unwrap()
            .is_none()
        {
            self.admin().bootstrap(&self.issuer()).await.unwrap();
        }
        let rs = self.client().await;
        self.grant(
            &rs,
            &self.issuer(),
            &["mayfly:introspect", "mayfly:revocations:read"],
        )
        .await;
        let body = self
            .token_ok(
                Auth::Basic(&rs),
                &[
                    ("grant_type", "client_credentials"),
                    ("scope", "mayfly:revocations:read"),
                    ("resource", &self.issuer()),
                ],
            )
            .await;
        (rs, body["access_token"].as_str().unwrap().to_owned())
    }

    /// The introspection answer for `token`.
    pub async fn introspect(&self, caller: &TestClient, token: &str) -> Value {
        let response = self
            .http
            .post(format!("{}/oauth2/introspect", self.base))
            .basic_auth(caller.id, Some(&caller.secret))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Whether introspection calls `token` active.
    pub async fn is_active(&self, caller: &TestClient, token: &str) -> bool {
        self.introspect(caller, token).await["active"] == true
    }

    /// A token's claims (signature checked, no revocation check).
    pub fn claims_of(&self, token: &str) -> mayfly_core::Claims {
        let keys = self.state.keyring.current();
        let options = mayfly_core::VerifyOptions {
            issuer: &self.state.issuer,
            audience: None,
            leeway: Duration::ZERO,
        };
        mayfly_core::token::verify(token, |kid| keys.public_key(kid), &options, self.now()).unwrap()
    }

    /// A token's claims, read without checking its signature or time (for forging).
    pub fn claims_of_unchecked(&self, token: &str) -> mayfly_core::Claims {
        let body = token.strip_prefix("v4.public.").unwrap();
        let body = body.split('.').next().unwrap();
        let raw = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, body)
            .unwrap();
        // PASETO v4.public: the message, then a 64-byte signature.
        serde_json::from_slice(&raw[..raw.len() - 64]).unwrap()
    }

    /// What an offline verifier following the feed decides: whether the revocations
    /// published at `GET /v1/revocations` revoke `token` (the SDK's `RuleSet` check).
    pub async fn feed_revokes(&self, reader: &str, token: &str) -> bool {
        let page: mayfly_core::wire::RevocationPage = self
            .http
            .get(format!("{}/v1/revocations?after=0", self.base))
            .bearer_auth(reader)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut rules = mayfly_core::revocation::RuleSet::default();
        for entry in &page.items {
            rules.insert(entry.rule());
        }
        let kid = mayfly_core::token::peek_key_id(token).unwrap();
        rules.revokes(&self.claims_of(token), kid.as_str())
    }
}

fn zeroize_string(text: &str) -> zeroize::Zeroizing<String> {
    zeroize::Zeroizing::new(text.to_owned())
}

/// The service's clock, as the SDK sees it.
pub struct AppClock(pub Arc<ManualClock>);

impl mayfly_sdk::Clock for AppClock {
    fn now(&self) -> OffsetDateTime {
        self.0.now()
    }
}

/// An HTTP client that reaches the issuer's URLs (`http://mayfly.test/…`, as the metadata
/// names them) at the test service's port.
pub fn issuer_http(app: &TestApp) -> reqwest::Client {
    let addr: SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let host = app.issuer().trim_start_matches("http://").to_owned();
    reqwest::Client::builder()
        .resolve(&host, addr)
        .build()
        .unwrap()
}
