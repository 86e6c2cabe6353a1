//! mayfly-sdk's federated `TokenSource` against the real service and a real test issuer
//! (issue #20): what `crates/sdk/examples/federated.rs` does, end to end. A workload
//! with no stored secret gets Mayfly tokens with a Kubernetes-shaped token kept in a
//! file (rotated on disk between refreshes), or with GitHub-Actions-shaped tokens from a
//! local stand-in for the runner's token request endpoint. Time is the service's
//! `ManualClock`, shared with the SDK and the test issuer's tokens.

use std::sync::{Arc, Mutex};

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use mayfly_federation::testing::{TestIssuer, TestKey, github_actions_claims, kubernetes_claims};
use mayfly_sdk::{Error, ExternalToken, JwsKey, RejectionCode, TokenSource};
use serde_json::{Value, json};
use time::Duration;
use uuid::Uuid;

use crate::helpers::{AdminApi, AppClock, TestApp, issuer_http};

const ORDERS: &str = "https://api.example.com/orders";
const REQUEST_TOKEN: &str = "actions-request-token";

crate::both_stores!(
    sdk_reads_a_rotated_token_file_for_every_refresh,
    sdk_asks_github_actions_for_a_token_for_every_refresh,
);

/// Mayfly trusting a fresh test issuer (RS256 `rsa-1`, ES256 `ec-1`) as the README's
/// recipes set it up: tokens for Mayfly's issuer, a 15-minute maximum age.
async fn trust(app: &TestApp) -> (AdminApi<'_>, TestIssuer) {
    let api = app.bootstrap_admin().await;
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1", 0), TestKey::es256("ec-1")]).await;
    api.post(
        "/admin/v1/trusted-issuers",
        json!({
            "issuer": issuer.issuer(),
            "audience": app.issuer(),
            "algorithms": ["RS256", "ES256"],
            "max_age_seconds": 900,
        }),
    )
    .await
    .ok(201);
    app.audience(ORDERS, &["orders:read"]).await;
    (api, issuer)
}

/// A client without any secret, granted `orders:read`, that tokens of `issuer`
/// satisfying `conditions` speak for.
async fn workload(
    app: &TestApp,
    api: &AdminApi<'_>,
    issuer: &TestIssuer,
    conditions: Value,
) -> Uuid {
    // Created with no credential at all (`secret: false`): no secret ever exists.
    let created = api
        .post(
            "/admin/v1/clients",
            json!({ "name": "federated-workload", "secret": false }),
        )
        .await;
    let created = created.ok(201).clone();
    assert!(created.get("client_secret").is_none(), "{created}");
    let id: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    assert!(
        app.admin()
            .list_client_secrets(id)
            .await
            .unwrap()
            .is_empty()
    );
    let client = crate::helpers::TestClient {
        id,
        secret: String::new(),
    };
    app.grant(&client, ORDERS, &["orders:read"]).await;
    api.post(
        &format!("/admin/v1/clients/{}/federated-identities", client.id),
        json!({ "issuer": issuer.issuer(), "conditions": conditions }),
    )
    .await
    .ok(201);
    client.id
}

fn source(app: &TestApp, client_id: Option<Uuid>, external: ExternalToken) -> TokenSource {
    TokenSource::builder(app.issuer())
        .federated(client_id.map(|id| id.to_string()), external)
        .audience(ORDERS)
        .scopes(["orders:read"])
        .http_client(issuer_http(app))
        .clock(Arc::new(AppClock(app.clock.clone())))
        .build()
        .unwrap()
}

fn refused_as(err: &Error, code: &str) -> bool {
    matches!(err, Error::Rejected { error: RejectionCode::OAuth(c), .. } if c.to_string() == code)
}

async fn sdk_reads_a_rotated_token_file_for_every_refresh(app: TestApp) {
    let (api, issuer) = trust(&app).await;
    let worker = workload(
        &app,
        &api,
        &issuer,
        json!([
            {"type": "equals", "claim": "/kubernetes.io/namespace", "value": "pay"},
            {"type": "equals", "claim": "/kubernetes.io/serviceaccount/name", "value": "worker"},
        ]),
    )
    .await;
    let projected = |namespace: &str| {
        issuer.mint(
            "rsa-1",
            &kubernetes_claims(
                issuer.issuer(),
                &app.issuer(),
                app.now(),
                namespace,
                "worker",
                "worker-7d9f",
            ),
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, projected("pay") + "\n").unwrap();
    let source = source(&app, None, ExternalToken::file(&file));
    let verifier = app.verifier(ORDERS).await;

    let first = source.token().await.unwrap();
    let claims = verifier
        .verify(first.secret(), &["orders:read"], app.now())
        .unwrap();
    assert_eq!(claims.client_id, worker.to_string());
    assert_eq!(claims.sub, worker.to_string());
    let issued = app.audit("token.issued").await;
    let external = &issued.first().unwrap().detail["external"];
    assert_eq!(external["issuer"], issuer.issuer(), "{external}");
    assert_eq!(external["subject"], "system:serviceaccount:pay:worker");

    // The kubelet rotates the file; the refresh at ~80 % of the token's life reads the
    // new one (the old one is spent: had it been sent again, the refresh would have
    // failed and the old Mayfly token been served).
    app.clock.advance(Duration::seconds(250));
    std::fs::write(&file, projected("pay")).unwrap();
    let second = source.token().await.unwrap();
    assert_ne!(second.secret(), first.secret());
    let claims = verifier
        .verify(second.secret(), &["orders:read"], app.now())
        .unwrap();
    assert_eq!(claims.client_id, worker.to_string());

    // The file still holds that spent token: a forced refresh is refused as a replay.
    source.invalidate();
    let err = source.token().await.unwrap_err();
    assert!(refused_as(&err, "invalid_client"), "{err:?}");

    // Naming the client it matches works; naming another is refused.
    std::fs::write(&file, projected("pay")).unwrap();
    let named = self::source(&app, Some(worker), ExternalToken::file(&file));
    named.token().await.unwrap();
    std::fs::write(&file, projected("pay")).unwrap();
    let other = self::source(&app, Some(Uuid::new_v4()), ExternalToken::file(&file));
    assert!(refused_as(
        &other.token().await.unwrap_err(),
        "invalid_client"
    ));

    // A token of another service account matches no client.
    std::fs::write(&file, projected("billing")).unwrap();
    source.invalidate();
    assert!(refused_as(
        &source.token().await.unwrap_err(),
        "invalid_client"
    ));

    // The file gone: a clear error naming it, no request.
    std::fs::remove_file(&file).unwrap();
    let err = source.token().await.unwrap_err();
    assert!(
        matches!(&err, Error::ExternalToken(m) if m.contains(&file.display().to_string())),
        "{err:?}"
    );

    // With a DPoP key the federated token is bound to it, as for any client.
    std::fs::write(&file, projected("pay")).unwrap();
    let bound = TokenSource::builder(app.issuer())
        .federated(None, ExternalToken::file(&file))
        .dpop_key(JwsKey::ed25519_from_seed(&[9; 32]))
        .audience(ORDERS)
        .scopes(["orders:read"])
        .http_client(issuer_http(&app))
        .clock(Arc::new(AppClock(app.clock.clone())))
        .build()
        .unwrap();
    let token = bound.token().await.unwrap();
    assert!(token.is_dpop_bound());
    assert!(app.claims_of(token.secret()).cnf.is_some());
}

/// A stand-in for GitHub's token request endpoint: with the right bearer token it mints
/// a GitHub-Actions-shaped token for `repository` with the `audience` asked for.
#[derive(Clone)]
struct Runner {
    issuer: Arc<TestIssuer>,
    clock: Arc<mayfly_server::clock::ManualClock>,
    repository: Arc<Mutex<String>>,
    audiences: Arc<Mutex<Vec<String>>>,
}

async fn request_token(
    State(runner): State<Runner>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let bearer = format!("Bearer {REQUEST_TOKEN}");
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(bearer.as_str()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let query = query.unwrap_or_default();
    let Some(audience) = url_param(&query, "audience") else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    runner.audiences.lock().unwrap().push(audience.clone());
    let repository = runner.repository.lock().unwrap().clone();
    let now = mayfly_server::clock::Clock::now(runner.clock.as_ref());
    let claims = github_actions_claims(
        runner.issuer.issuer(),
        &audience,
        now,
        &repository,
        "refs/heads/main",
    );
    axum::Json(json!({ "count": 1, "value": runner.issuer.mint("ec-1", &claims) })).into_response()
}

/// A query parameter, percent- and plus-decoded.
fn url_param(query: &str, name: &str) -> Option<String> {
    let url = reqwest::Url::parse(&format!("http://x/?{query}")).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn sdk_asks_github_actions_for_a_token_for_every_refresh(app: TestApp) {
    let (api, issuer) = trust(&app).await;
    let issuer = Arc::new(issuer);
    let deploy = workload(
        &app,
        &api,
        &issuer,
        json!([
            {"type": "equals", "claim": "/repository", "value": "acme/api"},
            {"type": "equals", "claim": "/ref", "value": "refs/heads/main"},
        ]),
    )
    .await;
    let runner = Runner {
        issuer: issuer.clone(),
        clock: app.clock.clone(),
        repository: Arc::new(Mutex::new("acme/api".into())),
        audiences: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    // As on a runner: the URL already has a query string.
    let request_url = format!(
        "http://{}/token?api-version=2.0",
        listener.local_addr().unwrap()
    );
    let router = axum::Router::new()
        .route("/token", axum::routing::get(request_token))
        .with_state(runner.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let github = |audience: &str| {
        ExternalToken::github_actions_with(&request_url, REQUEST_TOKEN, audience).unwrap()
    };
    let source = source(&app, Some(deploy), github(&app.issuer()));
    let verifier = app.verifier(ORDERS).await;
    let first = source.token().await.unwrap();
    let claims = verifier
        .verify(first.secret(), &["orders:read"], app.now())
        .unwrap();
    assert_eq!(claims.client_id, deploy.to_string());
    let issued = app.audit("token.issued").await;
    let matched = &issued.first().unwrap().detail["external"]["matched"];
    assert_eq!(matched["/repository"], "acme/api", "{matched}");

    // Every refresh asks for a fresh GitHub token (each is single-use by its jti).
    app.clock.advance(Duration::seconds(250));
    let second = source.token().await.unwrap();
    assert_ne!(second.secret(), first.secret());
    source.invalidate();
    source.token().await.unwrap();
    assert_eq!(*runner.audiences.lock().unwrap(), vec![app.issuer(); 3]);

    // A token asked for another audience, or for another repository, is refused.
    let elsewhere = self::source(&app, None, github("https://elsewhere.example"));
    assert!(refused_as(
        &elsewhere.token().await.unwrap_err(),
        "invalid_client"
    ));
    *runner.repository.lock().unwrap() = "acme/other".into();
    source.invalidate();
    assert!(refused_as(
        &source.token().await.unwrap_err(),
        "invalid_client"
    ));

    // The wrong request token: GitHub refuses, and the source says so clearly.
    let wrong = ExternalToken::github_actions_with(&request_url, "stolen", &app.issuer()).unwrap();
    let err = self::source(&app, None, wrong).token().await.unwrap_err();
    assert!(
        matches!(&err, Error::ExternalToken(m) if m.contains("401")),
        "{err:?}"
    );
}
