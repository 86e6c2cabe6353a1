//! The token endpoint, discovery and the key set, end to end.

use mayfly_core::token::peek_key_id;
use mayfly_sdk::VerifyError;
use mayfly_server::service::GrantSpec;
use mayfly_store::Subject;
use serde_json::Value;
use time::Duration;

use crate::helpers::{Auth, TestApp, assert_oauth_error};

const ORDERS: &str = "https://api.example.com/orders";
const BILLING: &str = "https://api.example.com/billing";

crate::both_stores!(
    bootstrap_to_verified_token,
    discovery_documents,
    key_set_caching,
    client_authentication_failures,
    request_validation_failures,
    scope_and_audience_failures,
    grant_windows,
    token_lifetimes,
    secret_rotation,
    denials_are_audited_without_secrets,
    changes_from_other_processes_reach_the_cache,
    failed_authentication_is_throttled,
);

/// The whole walking skeleton: bootstrap an admin, set up an audience, scope, client and
/// grant, obtain tokens with both authentication methods, verify them offline with the
/// published key as a resource server would.
async fn bootstrap_to_verified_token(app: TestApp) {
    let admin = app.admin().bootstrap(&app.issuer()).await.unwrap();
    let admin_client = crate::helpers::TestClient {
        id: admin.client.id,
        secret: admin.secret.expose().to_owned(),
    };
    // The admin is granted exactly one audience, the issuer: no resource needed.
    let admin_token = app
        .token_ok(
            Auth::Basic(&admin_client),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "mayfly:admin"),
            ],
        )
        .await;
    let claims = app
        .verifier(&app.issuer())
        .await
        .verify(
            admin_token["access_token"].as_str().unwrap(),
            &["mayfly:admin"],
            app.now(),
        )
        .unwrap();
    assert_eq!(claims.aud, app.issuer());
    assert!(
        app.admin().bootstrap(&app.issuer()).await.is_err(),
        "bootstrap runs once"
    );

    app.audience(ORDERS, &["orders:read", "orders:write"]).await;
    let client = app.client().await;
    app.grant(&client, ORDERS, &["orders:read", "orders:write"])
        .await;

    let verifier = app.verifier(ORDERS).await;
    assert_eq!(verifier.key_count(), 1);
    for auth in [Auth::Basic(&client), Auth::Post(&client)] {
        let response = app
            .token_request(
                auth,
                &[
                    ("grant_type", "client_credentials"),
                    ("scope", "orders:read"),
                    ("resource", ORDERS),
                ],
            )
            .await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["cache-control"], "no-store");
        assert_eq!(response.headers()["pragma"], "no-cache");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 300);
        assert_eq!(body["scope"], "orders:read");
        let token = body["access_token"].as_str().unwrap();
        assert!(token.starts_with("v4.public."));

        let claims = verifier.verify(token, &["orders:read"], app.now()).unwrap();
        assert_eq!(claims.iss, app.issuer());
        assert_eq!(claims.aud, ORDERS);
        assert_eq!(claims.sub, client.id.to_string());
        assert_eq!(claims.client_id, client.id.to_string());
        assert_eq!(claims.scope, "orders:read");
        assert_eq!((claims.exp - claims.iat).whole_seconds(), 300);
        assert!(claims.nbf <= app.now());
        let jwks = app.jwks().await;
        assert_eq!(
            peek_key_id(token).unwrap().as_str(),
            jwks.keys[0].kid,
            "footer kid names the published key"
        );

        // What a resource server must refuse.
        assert_eq!(
            verifier
                .verify(token, &["orders:write"], app.now())
                .unwrap_err(),
            VerifyError::InsufficientScope("orders:write".into())
        );
        assert_eq!(
            app.verifier(BILLING)
                .await
                .verify(token, &[], app.now())
                .unwrap_err(),
            VerifyError::Token(mayfly_core::VerifyError::WrongAudience)
        );
        assert_eq!(
            verifier
                .verify(token, &[], claims.exp + Duration::seconds(31))
                .unwrap_err(),
            VerifyError::Token(mayfly_core::VerifyError::Expired)
        );
        let foreign =
            mayfly_sdk::OfflineVerifier::new("https://other-issuer.example", ORDERS, &jwks);
        assert_eq!(
            foreign.verify(token, &[], app.now()).unwrap_err(),
            VerifyError::Token(mayfly_core::VerifyError::WrongIssuer)
        );
        let mut tampered = token.to_owned().into_bytes();
        tampered[20] = if tampered[20] == b'A' { b'B' } else { b'A' };
        assert!(
            verifier
                .verify(&String::from_utf8(tampered).unwrap(), &[], app.now())
                .is_err()
        );
    }
    // Both scopes at once; distinct jti per token.
    let both = app
        .token_ok(
            Auth::Basic(&client),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "orders:write orders:read"),
                ("resource", ORDERS),
            ],
        )
        .await;
    assert_eq!(both["scope"], "orders:read orders:write");
    let issued = app.audit("token.issued").await;
    assert_eq!(issued.len(), 4);
    let jtis: std::collections::HashSet<_> = issued.iter().map(|e| e.jti.clone()).collect();
    assert_eq!(jtis.len(), 4);
    assert!(
        issued
            .iter()
            .all(|e| e.source_ip.as_deref() == Some("127.0.0.1") && e.request_id.is_some())
    );
}

async fn discovery_documents(app: TestApp) {
    let response = app
        .http
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            app.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let meta: Value = response.json().await.unwrap();
    assert_eq!(meta["issuer"], app.issuer());
    assert_eq!(
        meta["token_endpoint"],
        format!("{}/oauth2/token", app.issuer())
    );
    assert_eq!(
        meta["jwks_uri"],
        format!("{}/.well-known/jwks.json", app.issuer())
    );
    assert_eq!(
        meta["introspection_endpoint"],
        format!("{}/oauth2/introspect", app.issuer())
    );
    assert_eq!(
        meta["revocation_endpoint"],
        format!("{}/oauth2/revoke", app.issuer())
    );
    assert_eq!(
        meta["grant_types_supported"],
        serde_json::json!([
            "client_credentials",
            "password",
            "refresh_token",
            "urn:ietf:params:oauth:grant-type:token-exchange"
        ])
    );
    assert_eq!(
        meta["token_endpoint_auth_methods_supported"],
        serde_json::json!([
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt"
        ])
    );

    let jwks: Value = app
        .http
        .get(format!("{}/.well-known/jwks.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(
        (
            key["kty"].as_str(),
            key["crv"].as_str(),
            key["alg"].as_str(),
            key["use"].as_str()
        ),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA"), Some("sig"))
    );
    assert!(key["kid"].as_str().unwrap().starts_with("k4.pid."));
    assert!(key["paserk"].as_str().unwrap().starts_with("k4.public."));
    assert_eq!(
        key["paserk"]
            .as_str()
            .unwrap()
            .trim_start_matches("k4.public."),
        key["x"].as_str().unwrap()
    );

    for (path, status) in [("/healthz", 200), ("/readyz", 200)] {
        assert_eq!(
            app.http
                .get(format!("{}{path}", app.base))
                .send()
                .await
                .unwrap()
                .status(),
            status,
            "{path}"
        );
    }
    let spec: Value = app
        .http
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(spec["paths"]["/oauth2/token"]["post"].is_object());
}

async fn key_set_caching(app: TestApp) {
    let url = format!("{}/.well-known/jwks.json", app.base);
    let first = app.http.get(&url).send().await.unwrap();
    let etag = first.headers()["etag"].clone();
    assert!(
        first.headers()["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("public, max-age=")
    );
    let again = app
        .http
        .get(&url)
        .header("if-none-match", etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag);
    let stale = app
        .http
        .get(&url)
        .header("if-none-match", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 200);
    let weak = app
        .http
        .get(&url)
        .header("if-none-match", format!("W/{}", etag.to_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        weak.status(),
        304,
        "If-None-Match compares weakly (RFC 9110 §13.1.2)"
    );
}

async fn client_authentication_failures(app: TestApp) {
    app.audience(ORDERS, &["orders:read"]).await;
    let client = app.client().await;
    app.grant(&client, ORDERS, &["orders:read"]).await;
    let ok = [
        ("grant_type", "client_credentials"),
        ("scope", "orders:read"),
    ];

    let wrong_secret = crate::helpers::TestClient {
        secret: "mfy_cs_wrong".into(),
        ..client.clone()
    };
    assert_oauth_error(
        app.token_request(Auth::Basic(&wrong_secret), &ok).await,
        401,
        "invalid_client",
    )
    .await;
    assert_oauth_error(
        app.token_request(Auth::Post(&wrong_secret), &ok).await,
        401,
        "invalid_client",
    )
    .await;
    let unknown = crate::helpers::TestClient {
        id: uuid::Uuid::now_v7(),
        ..client.clone()
    };
    assert_oauth_error(
        app.token_request(Auth::Basic(&unknown), &ok).await,
        401,
        "invalid_client",
    )
    .await;
    let response = app
        .http
        .post(format!("{}/oauth2/token", app.base))
        .basic_auth("not-a-uuid", Some(&client.secret))
        .form(&ok)
        .send()
        .await
        .unwrap();
    assert_oauth_error(response, 401, "invalid_client").await;
    assert_oauth_error(
        app.token_request(Auth::None, &ok).await,
        401,
        "invalid_client",
    )
    .await;
    let garbage = app
        .http
        .post(format!("{}/oauth2/token", app.base))
        .header("authorization", "Basic !!!")
        .form(&ok)
        .send()
        .await
        .unwrap();
    assert_oauth_error(garbage, 401, "invalid_client").await;

    // Both methods at once is a malformed request (RFC 6749 §2.3).
    let both = app
        .http
        .post(format!("{}/oauth2/token", app.base))
        .basic_auth(client.id, Some(&client.secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "orders:read"),
            ("client_secret", client.secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_oauth_error(both, 400, "invalid_request").await;

    // Disabling stops issuance at once; enabling restores it.
    app.token_ok(Auth::Basic(&client), &ok).await;
    app.admin()
        .update_client_enabled(client.id, false)
        .await
        .unwrap();
    assert_oauth_error(
        app.token_request(Auth::Basic(&client), &ok).await,
        401,
        "invalid_client",
    )
    .await;
    app.admin()
        .update_client_enabled(client.id, true)
        .await
        .unwrap();
    app.token_ok(Auth::Basic(&client), &ok).await;
}

async fn request_validation_failures(app: TestApp) {
    app.audience(ORDERS, &["orders:read"]).await;
    let client = app.client().await;
    app.grant(&client, ORDERS, &["orders:read"]).await;
    let c = Auth::Basic(&client);

    assert_oauth_error(
        app.token_request(c, &[("scope", "orders:read")]).await,
        400,
        "invalid_request",
    )
    .await;
    assert_oauth_error(
        app.token_request(c, &[("grant_type", "password"), ("scope", "orders:read")])
            .await,
        400,
        "unauthorized_client",
    )
    .await;
    assert_oauth_error(
        app.token_request(
            c,
            &[("grant_type", "urn:nonsense"), ("scope", "orders:read")],
        )
        .await,
        400,
        "unsupported_grant_type",
    )
    .await;
    // Unsupported grant type is reported even before authentication.
    assert_oauth_error(
        app.token_request(Auth::None, &[("grant_type", "authorization_code")])
            .await,
        400,
        "unsupported_grant_type",
    )
    .await;

    let form = "application/x-www-form-urlencoded";
    let cases: &[(&str, &[u8], u16, &str)] = &[
        (
            "application/json",
            br#"{"grant_type":"client_credentials"}"#,
            400,
            "invalid_request",
        ),
        (
            "text/plain",
            b"grant_type=client_credentials&scope=orders:read",
            400,
            "invalid_request",
        ),
        (
            form,
            b"grant_type=client_credentials&grant_type=client_credentials&scope=orders:read",
            400,
            "invalid_request",
        ),
        (
            form,
            b"grant_type=client_credentials&scope=orders:read&scope=orders:read",
            400,
            "invalid_request",
        ),
        (
            form,
            b"\xff\xfe\x00garbage=%%%&&&==",
            400,
            "invalid_request",
        ),
        (
            form,
            b"grant_type=client_credentials&scope=orders:read&resource=a:b&resource=c:d",
            400,
            "invalid_target",
        ),
    ];
    for (content_type, body, status, code) in cases {
        let response = app.token_raw(&client, content_type, body.to_vec()).await;
        assert_oauth_error(response, *status, code).await;
    }
    let mut huge = b"grant_type=client_credentials&scope=orders:read&pad=".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 64 * 1024));
    assert_oauth_error(
        app.token_raw(&client, form, huge).await,
        413,
        "invalid_request",
    )
    .await;
    // Empty values count as omitted (RFC 6749 §3.1), so this one still works.
    let response = app
        .token_raw(
            &client,
            form,
            b"grant_type=client_credentials&scope=orders:read&resource=".to_vec(),
        )
        .await;
    assert_eq!(response.status(), 200);
}

async fn scope_and_audience_failures(app: TestApp) {
    app.audience(ORDERS, &["orders:read", "orders:write"]).await;
    app.audience(BILLING, &["billing:read"]).await;
    let client = app.client().await;
    app.grant(&client, ORDERS, &["orders:read"]).await;
    let c = Auth::Basic(&client);
    let cc = ("grant_type", "client_credentials");

    assert_oauth_error(app.token_request(c, &[cc]).await, 400, "invalid_scope").await;
    assert_oauth_error(
        app.token_request(c, &[cc, ("scope", "orders:write")]).await,
        400,
        "invalid_scope",
    )
    .await;
    assert_oauth_error(
        app.token_request(c, &[cc, ("scope", "orders:read orders:write")])
            .await,
        400,
        "invalid_scope",
    )
    .await;
    assert_oauth_error(
        app.token_request(c, &[cc, ("scope", "orders:delete")])
            .await,
        400,
        "invalid_scope",
    )
    .await;
    assert_oauth_error(
        app.token_request(c, &[cc, ("scope", "not a scope")]).await,
        400,
        "invalid_scope",
    )
    .await;
    assert_oauth_error(
        app.token_request(c, &[cc, ("scope", "billing:read"), ("resource", BILLING)])
            .await,
        400,
        "invalid_scope",
    )
    .await;
    assert_oauth_error(
        app.token_request(
            c,
            &[
                cc,
                ("scope", "orders:read"),
                ("resource", "https://unknown.example"),
            ],
        )
        .await,
        400,
        "invalid_target",
    )
    .await;
    assert_oauth_error(
        app.token_request(
            c,
            &[cc, ("scope", "orders:read"), ("resource", "not a uri")],
        )
        .await,
        400,
        "invalid_target",
    )
    .await;

    // Granted a second audience: the resource parameter becomes necessary.
    app.grant(&client, BILLING, &["billing:read"]).await;
    assert_oauth_error(
        app.token_request(c, &[cc, ("scope", "orders:read")]).await,
        400,
        "invalid_target",
    )
    .await;
    let body = app
        .token_ok(c, &[cc, ("scope", "billing:read"), ("resource", BILLING)])
        .await;
    let claims = app
        .verifier(BILLING)
        .await
        .verify(
            body["access_token"].as_str().unwrap(),
            &["billing:read"],
            app.now(),
        )
        .unwrap();
    assert_eq!(claims.aud, BILLING);

    // A client with no grant at all.
    let stranger = app.client().await;
    assert_oauth_error(
        app.token_request(Auth::Basic(&stranger), &[cc, ("scope", "orders:read")])
            .await,
        400,
        "invalid_scope",
    )
    .await;
}

async fn grant_windows(app: TestApp) {
    app.audience(ORDERS, &["orders:read", "orders:write"]).await;
    let client = app.client().await;
    let t0 = app.now();
    let spec = |scope: &str| GrantSpec::new(Subject::Client(client.id), ORDERS, &[scope]);
    app.grant_spec(GrantSpec {
        expires_at: Some(t0 + Duration::minutes(30)),
        ..spec("orders:read")
    })
    .await;
    app.grant_spec(GrantSpec {
        not_before: Some(t0 + Duration::hours(1)),
        expires_at: Some(t0 + Duration::hours(2)),
        ..spec("orders:write")
    })
    .await;
    let c = Auth::Basic(&client);
    let ask = |scope: &'static str| {
        [
            ("grant_type", "client_credentials"),
            ("scope", scope),
            ("resource", ORDERS),
        ]
    };

    // Within the read grant's window, the token never outlives the grant.
    let read = app.token_ok(c, &ask("orders:read")).await;
    assert_eq!(read["expires_in"], 300);
    app.clock.advance(Duration::minutes(28));
    let read = app.token_ok(c, &ask("orders:read")).await;
    assert_eq!(read["expires_in"], 120, "clamped to the grant's end");
    assert_oauth_error(
        app.token_request(c, &ask("orders:write")).await,
        400,
        "invalid_scope",
    )
    .await;

    app.clock.advance(Duration::minutes(2));
    assert_oauth_error(
        app.token_request(c, &ask("orders:read")).await,
        400,
        "invalid_scope",
    )
    .await;
    app.clock.advance(Duration::minutes(30));
    app.token_ok(c, &ask("orders:write")).await;
    app.clock.advance(Duration::hours(1));
    assert_oauth_error(
        app.token_request(c, &ask("orders:write")).await,
        400,
        "invalid_scope",
    )
    .await;
}

async fn token_lifetimes(app: TestApp) {
    app.audience(ORDERS, &["orders:read", "orders:write"]).await;
    let cc = ("grant_type", "client_credentials");
    let expires_in = |body: Value| body["expires_in"].as_i64().unwrap();

    let short = app.client_with_ttl(Some(Duration::seconds(60)), None).await;
    app.grant(&short, ORDERS, &["orders:read"]).await;
    assert_eq!(
        expires_in(
            app.token_ok(Auth::Basic(&short), &[cc, ("scope", "orders:read")])
                .await
        ),
        60
    );

    let capped = app
        .client_with_ttl(None, Some(Duration::seconds(120)))
        .await;
    app.grant(&capped, ORDERS, &["orders:read"]).await;
    assert_eq!(
        expires_in(
            app.token_ok(Auth::Basic(&capped), &[cc, ("scope", "orders:read")])
                .await
        ),
        120
    );

    // The grant's max TTL and its end both clamp; each scope uses its best grant.
    let client = app.client().await;
    let base = GrantSpec::new(Subject::Client(client.id), ORDERS, &[]);
    app.grant_spec(GrantSpec {
        scopes: vec!["orders:read".into()],
        max_ttl: Some(Duration::seconds(30)),
        ..base.clone()
    })
    .await;
    app.grant_spec(GrantSpec {
        scopes: vec!["orders:read".into()],
        max_ttl: Some(Duration::seconds(45)),
        ..base.clone()
    })
    .await;
    app.grant_spec(GrantSpec {
        scopes: vec!["orders:write".into()],
        expires_at: Some(app.now() + Duration::seconds(100)),
        ..base.clone()
    })
    .await;
    assert_eq!(
        expires_in(
            app.token_ok(Auth::Basic(&client), &[cc, ("scope", "orders:read")])
                .await
        ),
        45
    );
    let write = expires_in(
        app.token_ok(Auth::Basic(&client), &[cc, ("scope", "orders:write")])
            .await,
    );
    assert!((98..=100).contains(&write), "{write}");
    assert_eq!(
        expires_in(
            app.token_ok(
                Auth::Basic(&client),
                &[cc, ("scope", "orders:read orders:write")]
            )
            .await
        ),
        45
    );
}

async fn secret_rotation(app: TestApp) {
    app.audience(ORDERS, &["orders:read"]).await;
    let old = app.client().await;
    app.grant(&old, ORDERS, &["orders:read"]).await;
    let ok = [
        ("grant_type", "client_credentials"),
        ("scope", "orders:read"),
    ];

    let second = app
        .admin()
        .create_client_secret(old.id, Some(app.now() + Duration::seconds(2)))
        .await
        .unwrap();
    let new = crate::helpers::TestClient {
        id: old.id,
        secret: second.secret.expose().to_owned(),
    };
    // During rotation both work.
    app.token_ok(Auth::Basic(&old), &ok).await;
    app.token_ok(Auth::Basic(&new), &ok).await;
    // A third valid secret is refused.
    assert!(
        app.admin()
            .create_client_secret(old.id, None)
            .await
            .is_err()
    );
    assert!(
        app.admin()
            .create_client_secret(old.id, Some(app.now() - Duration::seconds(1)))
            .await
            .is_err()
    );

    // Past its expiry the second secret stops working; the first still works.
    app.clock.advance(Duration::seconds(2));
    assert_oauth_error(
        app.token_request(Auth::Basic(&new), &ok).await,
        401,
        "invalid_client",
    )
    .await;
    app.token_ok(Auth::Basic(&old), &ok).await;
    // With it expired, a new one may be added again.
    app.admin()
        .create_client_secret(old.id, None)
        .await
        .unwrap();
}

async fn denials_are_audited_without_secrets(app: TestApp) {
    app.audience(ORDERS, &["orders:read"]).await;
    let client = app.client().await;
    app.grant(&client, ORDERS, &["orders:read"]).await;
    let wrong = crate::helpers::TestClient {
        secret: "mfy_cs_this-is-a-wrong-secret".into(),
        ..client.clone()
    };
    assert_oauth_error(
        app.token_request(
            Auth::Basic(&wrong),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "orders:read"),
            ],
        )
        .await,
        401,
        "invalid_client",
    )
    .await;
    assert_oauth_error(
        app.token_request(
            Auth::Basic(&client),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "orders:write"),
            ],
        )
        .await,
        400,
        "invalid_scope",
    )
    .await;
    let issued = app
        .token_ok(
            Auth::Post(&client),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "orders:read"),
            ],
        )
        .await;

    let failed = app.audit("client.auth_failed").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0].client_id.as_deref(),
        Some(client.id.to_string().as_str())
    );
    assert_eq!(failed[0].detail["error"], "invalid_client");
    let denied = app.audit("token.denied").await;
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].detail["error"], "invalid_scope");
    assert_eq!(denied[0].scopes.as_deref(), Some("orders:write"));

    let everything = app
        .state
        .store
        .audit_events(&mayfly_store::AuditQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let dump = format!("{everything:?}");
    let token = issued["access_token"].as_str().unwrap();
    for secret in [client.secret.as_str(), wrong.secret.as_str(), token] {
        assert!(
            !dump.contains(secret),
            "a secret or token reached the audit log"
        );
    }
}

/// The issuance cache sees changes made by another process (the CLI, another replica)
/// once it polls the revision; no sleeping: the test triggers the poll.
async fn changes_from_other_processes_reach_the_cache(app: TestApp) {
    app.audience(ORDERS, &["orders:read", "orders:write"]).await;
    let client = app.client().await;
    app.grant(&client, ORDERS, &["orders:read"]).await;
    let ask = |scope: &'static str| [("grant_type", "client_credentials"), ("scope", scope)];
    app.token_ok(Auth::Basic(&client), &ask("orders:read"))
        .await;

    let other = mayfly_store::connect(&app.db_url).await.unwrap();
    let cli = mayfly_server::service::Actor::trusted(
        other.as_ref(),
        "cli",
        app.now(),
        Default::default(),
    );
    cli.create_grant(GrantSpec::new(
        Subject::Client(client.id),
        ORDERS,
        &["orders:write"],
    ))
    .await
    .unwrap();
    app.state.directory.refresh().await.unwrap();
    app.token_ok(Auth::Basic(&client), &ask("orders:write"))
        .await;

    cli.update_client_enabled(client.id, false).await.unwrap();
    app.state.directory.refresh().await.unwrap();
    assert_oauth_error(
        app.token_request(Auth::Basic(&client), &ask("orders:read"))
            .await,
        401,
        "invalid_client",
    )
    .await;
}

/// Guessing secrets is throttled per client id and per source address (429 with
/// Retry-After), and audited; the window moves on with time.
async fn failed_authentication_is_throttled(app: TestApp) {
    app.audience(ORDERS, &["orders:read"]).await;
    let client = app.client().await;
    app.grant(&client, ORDERS, &["orders:read"]).await;
    let ok = [
        ("grant_type", "client_credentials"),
        ("scope", "orders:read"),
    ];
    let guess = crate::helpers::TestClient {
        secret: "mfy_cs_guess".into(),
        ..client.clone()
    };
    for _ in 0..mayfly_server::client_auth::throttle::PER_CLIENT {
        assert_oauth_error(
            app.token_request(Auth::Basic(&guess), &ok).await,
            401,
            "invalid_client",
        )
        .await;
    }
    let throttled = app.token_request(Auth::Basic(&client), &ok).await;
    assert_eq!(throttled.status(), 429, "even the right secret waits");
    let wait: i64 = throttled.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=61).contains(&wait), "{wait}");
    assert_oauth_error(throttled, 429, "temporarily_unavailable").await;
    let other = app.client().await;
    app.grant(&other, ORDERS, &["orders:read"]).await;
    app.token_ok(Auth::Basic(&other), &ok).await;
    let denied = app.audit("token.denied").await;
    assert!(denied.iter().any(|e| {
        e.detail["reason"]
            .as_str()
            .is_some_and(|r| r.contains("too many"))
    }));

    app.clock.advance(Duration::seconds(61));
    app.token_ok(Auth::Basic(&client), &ok).await;

    // Many client ids from one address trip the per-address limit.
    for i in 0..mayfly_server::client_auth::throttle::PER_ADDRESS {
        let stranger = crate::helpers::TestClient {
            id: uuid::Uuid::now_v7(),
            secret: format!("mfy_cs_{i}"),
        };
        let response = app.token_request(Auth::Basic(&stranger), &ok).await;
        assert_eq!(response.status(), 401);
    }
    assert_eq!(
        app.token_request(Auth::Basic(&other), &ok).await.status(),
        429
    );
}
