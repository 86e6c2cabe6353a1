//! mayfly-sdk against the real service: a workload with a `TokenSource` calls an orders
//! resource server protected by the SDK's layer (GET /orders needs `orders:read`, POST
//! `orders:write`), in-process on port 0. Time is the service's `ManualClock`, shared
//! with the SDK through its `Clock` trait.

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use axum::Json;
use axum::http::StatusCode;
use axum::routing::{get, post};
use mayfly_core::{Claims, SigningKey};
use mayfly_sdk::{
    ClientSecret, RequestBuilderExt, TokenSource, VerifiedToken, Verifier, VerifierMode,
};
use serde_json::{Value, json};
use time::Duration;

use crate::helpers::{AdminApi, AppClock, TestApp, TestClient, issuer_http};

const ORDERS: &str = "https://api.example.com/orders";
const BILLING: &str = "https://api.example.com/billing";

crate::both_stores!(
    sdk_guards_routes_by_scope_audience_time_and_signature,
    sdk_resource_server_refuses_a_revoked_token_within_a_second,
    sdk_emergency_rotation_refuses_the_old_key_and_serves_the_new,
    sdk_introspection_mode_asks_the_issuer,
    sdk_refuses_what_was_exchanged_from_a_revoked_token,
);
crate::both_stores!(manual_rotation; sdk_key_rotation_refuses_no_valid_request);

struct Setup<'a> {
    api: AdminApi<'a>,
    worker: TestClient,
    verifier: Verifier,
    orders: String,
}

async fn setup(app: &TestApp) -> Setup<'_> {
    let api = app.bootstrap_admin().await;
    app.audience(ORDERS, &["orders:read", "orders:write"]).await;
    app.audience(BILLING, &["billing:read"]).await;
    let worker = app.client().await;
    app.grant(&worker, ORDERS, &["orders:read", "orders:write"])
        .await;
    app.grant(&worker, BILLING, &["billing:read"]).await;
    let reader = app.client().await;
    app.grant(&reader, &app.issuer(), &["mayfly:revocations:read"])
        .await;
    let verifier = Verifier::builder(app.issuer(), ORDERS)
        .http_client(issuer_http(app))
        .clock(Arc::new(AppClock(app.clock.clone())))
        .revocation_feed(reader.id.to_string(), ClientSecret::new(reader.secret))
        .build()
        .await
        .unwrap();
    let orders = orders_server(&verifier).await;
    Setup {
        api,
        worker,
        verifier,
        orders,
    }
}

/// The orders resource server, built from the SDK's layer.
async fn orders_server(verifier: &Verifier) -> String {
    async fn list(token: VerifiedToken) -> Json<Value> {
        Json(json!({ "caller": token.claims().sub, "orders": [] }))
    }
    async fn create(token: VerifiedToken) -> (StatusCode, Json<Value>) {
        (
            StatusCode::CREATED,
            Json(json!({ "created_by": token.claims().client_id })),
        )
    }
    let app = axum::Router::new()
        .route(
            "/orders",
            get(list).route_layer(verifier.require(["orders:read"])),
        )
        .route(
            "/orders",
            post(create).route_layer(verifier.require(["orders:write"])),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/orders", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

fn source(app: &TestApp, client: &TestClient, audience: &str, scopes: &[&str]) -> TokenSource {
    TokenSource::builder(app.issuer())
        .client_secret(
            client.id.to_string(),
            ClientSecret::new(client.secret.clone()),
        )
        .audience(audience)
        .scopes(scopes.iter().copied())
        .http_client(issuer_http(app))
        .clock(Arc::new(AppClock(app.clock.clone())))
        .build()
        .unwrap()
}

/// Status and `WWW-Authenticate` of a call with a raw token (or none).
async fn call(method: reqwest::Method, url: &str, token: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (response.status().as_u16(), challenge)
}

async fn get_with(source: &TokenSource, url: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(url)
        .mayfly_auth(source)
        .await
        .unwrap()
        .send()
        .await
        .unwrap()
}

const INVALID: &str = r#"Bearer error="invalid_token""#;

async fn sdk_guards_routes_by_scope_audience_time_and_signature(app: TestApp) {
    let s = setup(&app).await;
    let url = &s.orders;

    // The right scope gets through, and the handler sees the claims.
    let reader = source(&app, &s.worker, ORDERS, &["orders:read"]);
    let response = get_with(&reader, url).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["caller"], s.worker.id.to_string());
    let writer = source(&app, &s.worker, ORDERS, &["orders:write"]);
    let response = reqwest::Client::new()
        .post(url.as_str())
        .mayfly_auth(&writer)
        .await
        .unwrap()
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    // The wrong scope: 403 insufficient_scope, naming what is needed (RFC 6750 §3.1).
    let token = reader.token().await.unwrap();
    assert_eq!(
        call(reqwest::Method::POST, url, Some(token.secret())).await,
        (
            403,
            r#"Bearer error="insufficient_scope", scope="orders:write""#.to_owned()
        )
    );

    // No token: 401 with a bare challenge (RFC 6750 §3.1: no error code).
    assert_eq!(
        call(reqwest::Method::GET, url, None).await,
        (401, "Bearer".to_owned())
    );

    // The wrong audience.
    let billing = source(&app, &s.worker, BILLING, &["billing:read"]);
    let other = billing.token().await.unwrap();
    assert_eq!(
        call(reqwest::Method::GET, url, Some(other.secret())).await,
        (401, INVALID.to_owned())
    );

    // Tampered: one character of the payload changed.
    let mut bytes = token.secret().as_bytes().to_vec();
    let i = "v4.public.".len() + 20;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    assert_eq!(
        call(reqwest::Method::GET, url, Some(&tampered)).await,
        (401, INVALID.to_owned())
    );

    // Another issuer's token (its own key, its own iss) for our audience and scope.
    let now = app.now();
    let forged = mayfly_core::token::mint(
        &SigningKey::from_seed(&[42; 32]),
        &Claims {
            iss: "http://evil.test".into(),
            sub: s.worker.id.to_string(),
            aud: ORDERS.into(),
            iat: now,
            nbf: now,
            exp: now + Duration::minutes(5),
            jti: "forged".into(),
            scope: "orders:read".into(),
            client_id: s.worker.id.to_string(),
            gid: vec![],
            cnf: None,
            cidr: vec![],
            act: None,
            fam: None,
            orig: Vec::new(),
        },
    )
    .unwrap();
    assert_eq!(
        call(reqwest::Method::GET, url, Some(&forged)).await,
        (401, INVALID.to_owned())
    );

    // Expired: the token was cached as verified; time passes beyond exp + leeway.
    assert_eq!(
        call(reqwest::Method::GET, url, Some(token.secret()))
            .await
            .0,
        200
    );
    app.clock.advance(Duration::seconds(300 + 31));
    assert_eq!(
        call(reqwest::Method::GET, url, Some(token.secret())).await,
        (401, INVALID.to_owned())
    );
    // The workload's source refreshes by itself and gets through again.
    assert_eq!(get_with(&reader, url).await.status(), 200);
    assert!(s.verifier.key_count() >= 1);
}

async fn sdk_resource_server_refuses_a_revoked_token_within_a_second(app: TestApp) {
    let s = setup(&app).await;
    let reader = source(&app, &s.worker, ORDERS, &["orders:read"]);
    assert_eq!(get_with(&reader, &s.orders).await.status(), 200);
    let token = reader.token().await.unwrap();
    let keys = app.state.keyring.current();
    let jti = mayfly_core::token::verify(
        token.secret(),
        |kid| keys.public_key(kid),
        &mayfly_core::VerifyOptions {
            issuer: &app.issuer(),
            audience: Some(ORDERS),
            leeway: Duration::ZERO,
        },
        app.now(),
    )
    .unwrap()
    .jti;

    s.api
        .post(
            "/admin/v1/revocations",
            json!({ "kind": "jti", "value": jti, "reason": "leaked" }),
        )
        .await
        .ok(201);
    let revoked_at = Instant::now();
    loop {
        let (status, challenge) = call(reqwest::Method::GET, &s.orders, Some(token.secret())).await;
        if status == 401 {
            assert_eq!(challenge, INVALID);
            break;
        }
        assert_eq!(status, 200);
        assert!(
            revoked_at.elapsed() < StdDuration::from_secs(1),
            "still accepted a second after its revocation"
        );
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
    assert!(revoked_at.elapsed() < StdDuration::from_secs(1));
    assert!(s.verifier.revocation_count() >= 1);

    // The workload drops the revoked token and gets a new one, which works.
    reader.invalidate();
    assert_eq!(get_with(&reader, &s.orders).await.status(), 200);
}

async fn sdk_key_rotation_refuses_no_valid_request(app: TestApp) {
    let s = setup(&app).await;
    let reader = source(&app, &s.worker, ORDERS, &["orders:read"]);
    let ok = |response: reqwest::Response| assert_eq!(response.status(), 200);
    ok(get_with(&reader, &s.orders).await);
    let k0 = kid(&reader.token().await.unwrap());

    // A normal rotation: the successor is published now, signs an hour later.
    let pending = s
        .api
        .post("/admin/v1/keys/rotate", json!({ "emergency": false }))
        .await;
    assert_eq!(pending.ok(200)["outcome"], "pending");
    ok(get_with(&reader, &s.orders).await);

    // Just before the switch the workload refreshes (old key); just after, the old key's
    // token still works and new tokens (new key) work too.
    app.clock.advance(Duration::minutes(59));
    assert!(app.rotation_tick().await.is_empty());
    ok(get_with(&reader, &s.orders).await);
    let before = reader.token().await.unwrap();
    assert_eq!(kid(&before), k0);
    app.clock.advance(Duration::minutes(1));
    assert!(!app.rotation_tick().await.is_empty());
    ok(get_with(&reader, &s.orders).await);
    let fresh = source(&app, &s.worker, ORDERS, &["orders:read"]);
    let after = fresh.token().await.unwrap();
    assert_ne!(kid(&after), k0, "the successor signs now");
    for _ in 0..3 {
        ok(get_with(&fresh, &s.orders).await);
        ok(get_with(&reader, &s.orders).await);
    }
    // Once the old token's refresh time comes, the workload moves to the new key.
    app.clock.advance(Duration::minutes(4));
    ok(get_with(&reader, &s.orders).await);
    assert_ne!(kid(&reader.token().await.unwrap()), k0);
}

fn kid(token: &mayfly_sdk::AccessToken) -> String {
    mayfly_core::token::peek_key_id(token.secret())
        .unwrap()
        .to_string()
}

async fn sdk_emergency_rotation_refuses_the_old_key_and_serves_the_new(app: TestApp) {
    let s = setup(&app).await;
    let reader = source(&app, &s.worker, ORDERS, &["orders:read"]);
    assert_eq!(get_with(&reader, &s.orders).await.status(), 200);
    let old = reader.token().await.unwrap();
    let leaked = app.state.keyring.current();

    // The key leaked: its successor signs at once and the feed revokes the old key.
    let rotated = s
        .api
        .post("/admin/v1/keys/rotate", json!({ "emergency": true }))
        .await;
    assert_eq!(rotated.ok(200)["outcome"], "activated");
    let revoked_at = Instant::now();
    while call(reqwest::Method::GET, &s.orders, Some(old.secret()))
        .await
        .0
        != 401
    {
        assert!(
            revoked_at.elapsed() < StdDuration::from_secs(1),
            "old key still accepted"
        );
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
    // Whoever holds the leaked key forges a token issued after the revocation: the SDK
    // still caches the old key set, but the key's rule matches whatever the iat.
    app.clock.advance(Duration::seconds(10));
    let now = app.now();
    let forged = mayfly_core::token::mint(
        &leaked.active,
        &mayfly_core::Claims {
            iat: now,
            nbf: now,
            exp: now + Duration::minutes(5),
            jti: "forged".into(),
            ..app.claims_of_unchecked(old.secret())
        },
    )
    .unwrap();
    let (status, challenge) = call(reqwest::Method::GET, &s.orders, Some(&forged)).await;
    assert_eq!((status, challenge.as_str()), (401, INVALID));
    // A token of the new key works at once: the unknown kid triggers one refetch.
    reader.invalidate();
    let new = reader.token().await.unwrap();
    assert_ne!(kid(&new), kid(&old));
    assert_eq!(get_with(&reader, &s.orders).await.status(), 200);
}

async fn sdk_introspection_mode_asks_the_issuer(app: TestApp) {
    let s = setup(&app).await;
    let introspector = app.client().await;
    app.grant(&introspector, &app.issuer(), &["mayfly:introspect"])
        .await;
    let verifier = Verifier::builder(app.issuer(), ORDERS)
        .http_client(issuer_http(&app))
        .mode(VerifierMode::Introspection {
            client_id: introspector.id.to_string(),
            client_secret: ClientSecret::new(introspector.secret.clone()),
        })
        .build()
        .await
        .unwrap();
    let orders = orders_server(&verifier).await;
    let reader = source(&app, &s.worker, ORDERS, &["orders:read"]);
    let response = get_with(&reader, &orders).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["caller"], s.worker.id.to_string());
    let token = reader.token().await.unwrap();
    assert_eq!(
        call(reqwest::Method::POST, &orders, Some(token.secret()))
            .await
            .0,
        403
    );
    let billing = source(&app, &s.worker, BILLING, &["billing:read"]);
    assert_eq!(
        call(
            reqwest::Method::GET,
            &orders,
            Some(billing.token().await.unwrap().secret())
        )
        .await,
        (401, INVALID.to_owned())
    );
    // Revoked: refused on the very next request, no feed involved.
    s.api
        .post(
            "/admin/v1/revocations",
            json!({ "kind": "subject", "value": s.worker.id }),
        )
        .await
        .ok(201);
    assert_eq!(
        call(reqwest::Method::GET, &orders, Some(token.secret())).await,
        (401, INVALID.to_owned())
    );
}

/// Token exchange seen by an offline SDK verifier: a service exchanges a workload's
/// token for a narrower one; revoking the original (by jti) makes the SDK refuse the
/// exchanged token too, within a second, from the feed alone.
async fn sdk_refuses_what_was_exchanged_from_a_revoked_token(app: TestApp) {
    let s = setup(&app).await;
    // The workload itself trades its token down (exchange is not impersonation).
    app.admin()
        .update_client(
            s.worker.id,
            mayfly_server::service::ClientChanges {
                grant_types: Some(vec![
                    "client_credentials".into(),
                    "urn:ietf:params:oauth:grant-type:token-exchange".into(),
                ]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let service = s.worker.clone();
    let original = app
        .token_ok(
            crate::helpers::Auth::Basic(&s.worker),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "orders:read orders:write"),
                ("resource", ORDERS),
            ],
        )
        .await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let exchanged = app
        .token_ok(
            crate::helpers::Auth::Basic(&service),
            &[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("subject_token", &original),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                ),
                ("scope", "orders:read"),
            ],
        )
        .await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let claims = app.claims_of(&exchanged);
    assert_eq!(
        claims.sub,
        s.worker.id.to_string(),
        "the workload's token still"
    );
    assert_eq!(claims.client_id, service.id.to_string());
    assert_eq!(
        call(reqwest::Method::GET, &s.orders, Some(&exchanged))
            .await
            .0,
        200
    );
    assert_eq!(
        call(reqwest::Method::POST, &s.orders, Some(&exchanged))
            .await
            .0,
        403,
        "down-scoped: no orders:write"
    );

    let jti = app.claims_of(&original).jti;
    s.api
        .post(
            "/admin/v1/revocations",
            json!({ "kind": "jti", "value": jti }),
        )
        .await
        .ok(201);
    let revoked_at = Instant::now();
    loop {
        let (status, challenge) = call(reqwest::Method::GET, &s.orders, Some(&exchanged)).await;
        if status == 401 {
            assert_eq!(challenge, INVALID);
            break;
        }
        assert_eq!(status, 200);
        assert!(
            revoked_at.elapsed() < StdDuration::from_secs(1),
            "the exchanged token still accepted a second after the original's revocation"
        );
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
}
