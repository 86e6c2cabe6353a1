//! Sender-constrained tokens end to end: private_key_jwt client authentication
//! (RFC 7523), DPoP-bound tokens (RFC 9449) and network restrictions.

use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mayfly_core::dpop::{self, ProofRequest};
use mayfly_core::jose::JwsKey;
use mayfly_server::service::{ClientChanges, GrantSpec};
use mayfly_store::{Backend, Subject};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

use std::sync::Arc;

use axum::Json;
use axum::routing::get;
use mayfly_sdk::{
    ClientSecret, Presentation, RequestBuilderExt, TokenSource, VerifiedToken, Verifier,
    VerifierMode, VerifyError,
};

use crate::helpers::{
    AppClock, Auth, KeyedClient, TestApp, TestClient, assert_oauth_error, issuer_http,
    spawn_app_with,
};

const ORDERS: &str = "https://api.example.com/orders";

crate::both_stores!(
    private_key_jwt_issues_tokens,
    private_key_jwt_refusals_are_invalid_client,
    assertion_replay_is_refused_on_another_replica,
    keyed_client_has_no_secret_and_rotates_keys,
    client_created_without_a_secret_has_no_credential,
    private_key_jwt_at_introspection,
    dpop_binds_tokens_at_the_token_endpoint,
    dpop_bound_tokens_at_introspection,
    dpop_bound_refresh_families,
    cidr_restrictions_at_issuance_and_use,
    sdk_private_key_jwt_and_dpop_together,
    sdk_enforces_networks,
    admin_api_enforces_dpop_and_networks,
);

async fn orders(app: &TestApp) {
    app.audience(ORDERS, &["orders:read", "orders:write"]).await;
}

fn jti() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn scope() -> [(&'static str, &'static str); 2] {
    [
        ("grant_type", "client_credentials"),
        ("scope", "orders:read"),
    ]
}

async fn keyed(app: &TestApp, seed: u8) -> KeyedClient {
    let client = app.keyed_client(seed).await;
    app.grant_spec(GrantSpec::new(
        Subject::Client(client.id),
        ORDERS,
        &["orders:read"],
    ))
    .await;
    client
}

/// Builds a compact JWS by hand: any header, any signature.
fn raw_jws(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

async fn private_key_jwt_issues_tokens(app: TestApp) {
    orders(&app).await;
    let client = keyed(&app, 1).await;
    let now = app.now();
    // A one-minute assertion for the token endpoint.
    let a = client.sign(&client.claims(&app.token_endpoint(), now, &jti()));
    let response = app.assertion_request(&a, &scope()).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let claims = app
        .verifier(ORDERS)
        .await
        .verify(
            body["access_token"].as_str().unwrap(),
            &["orders:read"],
            now,
        )
        .unwrap();
    assert_eq!(claims.client_id, client.id.to_string());

    // The one-hour lifetime client libraries default to; `aud` as an array naming the
    // issuer; `client_id` sent along.
    let mut long = client.claims(&app.issuer(), now, &jti());
    long["exp"] = json!((now + Duration::hours(1)).unix_timestamp());
    long["aud"] = json!(["https://elsewhere.example", app.issuer()]);
    let a = client.sign(&long);
    let id = client.id.to_string();
    let mut params = scope().to_vec();
    params.push(("client_id", &id));
    let response = app.assertion_request(&a, &params).await;
    assert_eq!(response.status(), 200);

    // The audit log names the method, never the assertion.
    let issued = app.audit("token.issued").await;
    assert!(
        issued
            .iter()
            .all(|e| e.detail["auth_method"] == "private_key_jwt")
    );
    let everything = format!("{issued:?}");
    assert!(!everything.contains(&a[..40]));
}

async fn private_key_jwt_refusals_are_invalid_client(app: TestApp) {
    orders(&app).await;
    let client = keyed(&app, 2).await;
    let now = app.now();
    let aud = app.token_endpoint();
    let good = |changes: &dyn Fn(&mut Value)| {
        let mut c = client.claims(&aud, now, &jti());
        changes(&mut c);
        c
    };
    let other_key = KeyedClient {
        id: client.id,
        key: JwsKey::ed25519_from_seed(&[99; 32]),
        kid: client.kid.clone(),
    };
    let public_bytes = {
        let jwk = client.key.public().to_json();
        URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap()
    };
    let hs256 = {
        use hmac::{KeyInit as _, Mac as _};
        let header = json!({"alg": "HS256", "typ": "JWT"});
        let claims = good(&|_| {});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&public_bytes).unwrap();
        mac.update(input.as_bytes());
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    };
    let replayed = client.sign(&good(&|_| {}));
    assert_eq!(
        app.assertion_request(&replayed, &scope()).await.status(),
        200
    );

    let cases: Vec<(&str, String)> = vec![
        ("wrong key", other_key.sign(&good(&|_| {}))),
        (
            "expired",
            client.sign(&good(&|c| {
                c["iat"] = json!((now - Duration::minutes(4)).unix_timestamp());
                c["exp"] = json!((now - Duration::minutes(2)).unix_timestamp());
            })),
        ),
        (
            "stale iat",
            client.sign(&good(&|c| {
                c["iat"] = json!((now - Duration::minutes(10)).unix_timestamp());
            })),
        ),
        (
            "future iat",
            client.sign(&good(&|c| {
                c["iat"] = json!((now + Duration::minutes(5)).unix_timestamp());
                c["exp"] = json!((now + Duration::minutes(6)).unix_timestamp());
            })),
        ),
        (
            "lifetime over an hour",
            client.sign(&good(&|c| {
                c["exp"] = json!((now + Duration::minutes(61)).unix_timestamp());
            })),
        ),
        (
            "wrong aud",
            client.sign(&good(&|c| c["aud"] = json!("https://other.example/token"))),
        ),
        (
            "iss is not sub",
            client.sign(&good(&|c| c["iss"] = json!("someone-else"))),
        ),
        ("replayed jti", replayed.clone()),
        (
            "missing jti",
            client.sign(&good(&|c| {
                c.as_object_mut().unwrap().remove("jti");
            })),
        ),
        (
            "alg none",
            raw_jws(&json!({"alg": "none", "typ": "JWT"}), &good(&|_| {}), b""),
        ),
        ("HS256 with the public key's bytes", hs256),
        (
            "RS256",
            raw_jws(
                &json!({"alg": "RS256", "typ": "JWT"}),
                &good(&|_| {}),
                &[7; 256],
            ),
        ),
        ("garbage", "not.a.jwt".into()),
    ];
    for (i, (what, assertion)) in cases.into_iter().enumerate() {
        if i == 8 {
            // Past the failed-authentication throttle's minute (10 per client id).
            app.clock.advance(Duration::seconds(61));
        }
        let response = app.assertion_request(&assertion, &scope()).await;
        let body = assert_oauth_error(response, 401, "invalid_client").await;
        assert!(body["error_description"].is_string(), "{what}");
    }
    // The audit log keeps each reason.
    let failures = app.audit("client.auth_failed").await;
    let reasons: Vec<String> = failures
        .iter()
        .map(|e| e.detail["reason"].as_str().unwrap_or_default().to_owned())
        .collect();
    for expected in [
        "replayed",
        "algorithm",
        "registered key",
        "aud",
        "jti missing",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(expected)),
            "{expected}: {reasons:?}"
        );
    }
    // Mixing methods is a malformed request; a wrong assertion type too.
    let response = app
        .http
        .post(format!("{}/oauth2/token", app.base))
        .basic_auth(client.id, Some("x"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "orders:read"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", replayed.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_oauth_error(response, 400, "invalid_request").await;
    let response = app
        .http
        .post(format!("{}/oauth2/token", app.base))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "orders:read"),
            ("client_assertion_type", "urn:example:saml"),
            ("client_assertion", replayed.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_oauth_error(response, 400, "invalid_request").await;
}

async fn assertion_replay_is_refused_on_another_replica(app: TestApp) {
    orders(&app).await;
    let client = keyed(&app, 3).await;
    let replica = app.replica().await;
    let a = client.sign(&client.claims(&app.token_endpoint(), app.now(), &jti()));
    assert_eq!(app.assertion_request(&a, &scope()).await.status(), 200);
    assert_oauth_error(
        replica.assertion_request(&a, &scope()).await,
        401,
        "invalid_client",
    )
    .await;
    // A fresh jti works on the replica.
    let b = client.sign(&client.claims(&app.token_endpoint(), app.now(), &jti()));
    assert_eq!(replica.assertion_request(&b, &scope()).await.status(), 200);
}

async fn client_created_without_a_secret_has_no_credential(app: TestApp) {
    orders(&app).await;
    let api = app.bootstrap_admin().await;
    let created = api
        .post(
            "/admin/v1/clients",
            json!({"name": "bare", "secret": false}),
        )
        .await;
    let body = created.ok(201).clone();
    assert!(body.get("client_secret").is_none(), "{body}");
    let id: uuid::Uuid = body["id"].as_str().unwrap().parse().unwrap();
    assert!(
        app.admin()
            .list_client_secrets(id)
            .await
            .unwrap()
            .is_empty()
    );
    let client = |secret: &str| TestClient {
        id,
        secret: secret.into(),
    };
    app.grant(&client(""), ORDERS, &["orders:read"]).await;
    for secret in ["", "mfy_cs_guess"] {
        assert_oauth_error(
            app.token_request(Auth::Basic(&client(secret)), &scope())
                .await,
            401,
            "invalid_client",
        )
        .await;
    }
    // A secret added later works as for any client.
    let added = api
        .post(&format!("/admin/v1/clients/{id}/secrets"), json!({}))
        .await;
    let secret = added.ok(201)["client_secret"].as_str().unwrap().to_owned();
    let answer = app
        .token_request(Auth::Basic(&client(&secret)), &scope())
        .await;
    assert_eq!(answer.status(), 200);

    // A keyed client gets no secret: asking for one is a mistake, named.
    let key = JwsKey::ed25519_from_seed(&[5; 32]);
    let refused = api
        .post(
            "/admin/v1/clients",
            json!({"name": "keyed", "public_keys": [key.public().to_json()], "secret": true}),
        )
        .await;
    assert!(
        refused.problem(422)["detail"]
            .as_str()
            .unwrap()
            .contains("secret")
    );
    api.post("/admin/v1/clients", json!({"name": "bad", "secret": "no"}))
        .await
        .problem(422);
}

async fn keyed_client_has_no_secret_and_rotates_keys(app: TestApp) {
    orders(&app).await;
    let api = app.bootstrap_admin().await;
    let old = JwsKey::ed25519_from_seed(&[4; 32]);
    let created = api
        .post(
            "/admin/v1/clients",
            json!({"name": "keyed", "public_keys": [old.public().to_json()]}),
        )
        .await;
    let body = created.ok(201).clone();
    assert!(body.get("client_secret").is_none(), "{body}");
    assert_eq!(body["public_keys"].as_array().unwrap().len(), 1);
    let id: uuid::Uuid = body["id"].as_str().unwrap().parse().unwrap();
    assert!(
        app.admin()
            .list_client_secrets(id)
            .await
            .unwrap()
            .is_empty()
    );
    app.grant(
        &TestClient {
            id,
            secret: String::new(),
        },
        ORDERS,
        &["orders:read"],
    )
    .await;
    // No secret works, not even an empty one.
    for secret in ["", "mfy_cs_guess"] {
        let c = TestClient {
            id,
            secret: secret.into(),
        };
        assert_oauth_error(
            app.token_request(Auth::Basic(&c), &scope()).await,
            401,
            "invalid_client",
        )
        .await;
    }
    let as_client = |key: JwsKey, kid: &str| KeyedClient {
        id,
        key,
        kid: kid.to_owned(),
    };
    let old_kid = body["public_keys"][0]["kid"].as_str().unwrap().to_owned();
    let old_client = as_client(old.clone(), &old_kid);
    let sign = |c: &KeyedClient| c.sign(&c.claims(&app.token_endpoint(), app.now(), &jti()));
    assert_eq!(
        app.assertion_request(&sign(&old_client), &scope())
            .await
            .status(),
        200
    );
    // Rotation: add the new key, both work, remove the old one, only the new works.
    let new = JwsKey::ed25519_from_seed(&[5; 32]);
    let mut jwk = new.public().to_json();
    jwk["kid"] = json!("second");
    let added = api
        .post(&format!("/admin/v1/clients/{id}/public-keys"), jwk)
        .await;
    let old_key_id = app.admin().list_client_public_keys(id).await.unwrap()[0].id;
    added.ok(201);
    let new_client = as_client(new, "second");
    for c in [&old_client, &new_client] {
        assert_eq!(
            app.assertion_request(&sign(c), &scope()).await.status(),
            200
        );
    }
    api.delete(&format!("/admin/v1/clients/{id}/public-keys/{old_key_id}"))
        .await
        .ok(204);
    assert_oauth_error(
        app.assertion_request(&sign(&old_client), &scope()).await,
        401,
        "invalid_client",
    )
    .await;
    assert_eq!(
        app.assertion_request(&sign(&new_client), &scope())
            .await
            .status(),
        200
    );
    // The metadata advertises the method and its algorithm.
    let metadata: Value = app
        .http
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            app.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let methods = metadata["token_endpoint_auth_methods_supported"].to_string();
    assert!(methods.contains("private_key_jwt"), "{metadata}");
    assert_eq!(
        metadata["token_endpoint_auth_signing_alg_values_supported"],
        json!(["EdDSA", "RS256", "ES256"]),
        "EdDSA for registered client keys; RS256, ES256 for external JWTs (federation)"
    );
    assert_eq!(
        metadata["dpop_signing_alg_values_supported"],
        json!(["EdDSA", "ES256"])
    );
}

async fn private_key_jwt_at_introspection(app: TestApp) {
    app.admin().bootstrap(&app.issuer()).await.unwrap();
    orders(&app).await;
    let rs = app.keyed_client(6).await;
    app.grant_spec(GrantSpec::new(
        Subject::Client(rs.id),
        &app.issuer(),
        &["mayfly:introspect"],
    ))
    .await;
    let worker = app.client().await;
    app.grant(&worker, ORDERS, &["orders:read"]).await;
    let token = app.token_ok(Auth::Basic(&worker), &scope()).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = format!("{}/oauth2/introspect", app.base);
    let assertion = rs.sign(&rs.claims(&url.replace(&app.base, &app.issuer()), app.now(), &jti()));
    let answer: Value = app
        .http
        .post(&url)
        .form(&[
            ("token", token.as_str()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &assertion),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["active"], true, "{answer}");
    // A keyed client revokes its own token, authenticating with an assertion.
    let keyed_worker = keyed(&app, 7).await;
    let a = keyed_worker.sign(&keyed_worker.claims(&app.token_endpoint(), app.now(), &jti()));
    let own: Value = app
        .assertion_request(&a, &scope())
        .await
        .json()
        .await
        .unwrap();
    let own = own["access_token"].as_str().unwrap().to_owned();
    let revoke_aud = format!("{}/oauth2/revoke", app.issuer());
    let a = keyed_worker.sign(&keyed_worker.claims(&revoke_aud, app.now(), &jti()));
    let response = app
        .http
        .post(format!("{}/oauth2/revoke", app.base))
        .form(&[
            ("token", own.as_str()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &a),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        app.state.revocations.revokes(
            &app.verifier(ORDERS)
                .await
                .verify(&own, &[], app.now())
                .unwrap(),
            mayfly_core::token::peek_key_id(&own).unwrap().as_str()
        ),
        "revoked through private_key_jwt"
    );
    // Replayed at introspection too.
    let response = app
        .http
        .post(&url)
        .form(&[
            ("token", token.as_str()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &assertion),
        ])
        .send()
        .await
        .unwrap();
    assert_oauth_error(response, 401, "invalid_client").await;
}

// ---- DPoP ----

fn proof(key: &JwsKey, htm: &str, htu: &str, now: OffsetDateTime, token: Option<&str>) -> String {
    dpop::sign(
        key,
        &ProofRequest {
            htm,
            htu,
            access_token: token,
            nonce: None,
            jti: &jti(),
            now,
        },
    )
}

async fn dpop_token(app: &TestApp, client: &TestClient, proof: &str) -> reqwest::Response {
    app.http
        .post(format!("{}/oauth2/token", app.base))
        .basic_auth(client.id, Some(&client.secret))
        .header("DPoP", proof)
        .form(&scope())
        .send()
        .await
        .unwrap()
}

async fn dpop_binds_tokens_at_the_token_endpoint(app: TestApp) {
    orders(&app).await;
    let client = app.client().await;
    app.grant(&client, ORDERS, &["orders:read"]).await;
    let now = app.now();
    let endpoint = app.token_endpoint();
    for key in [
        JwsKey::ed25519_from_seed(&[10; 32]),
        JwsKey::p256_from_bytes(&[11; 32]).unwrap(),
    ] {
        let response = dpop_token(&app, &client, &proof(&key, "POST", &endpoint, now, None)).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["token_type"], "DPoP");
        let claims = app
            .verifier(ORDERS)
            .await
            .verify(body["access_token"].as_str().unwrap(), &[], now)
            .unwrap();
        assert_eq!(
            claims.cnf.unwrap().jkt,
            key.public().thumbprint(),
            "bound to the proof key"
        );
    }
    let key = JwsKey::ed25519_from_seed(&[12; 32]);
    // Refused proofs: wrong method, wrong URL, stale, replayed, garbage, two headers.
    let replayed = proof(&key, "POST", &endpoint, now, None);
    assert_eq!(dpop_token(&app, &client, &replayed).await.status(), 200);
    for bad in [
        proof(&key, "GET", &endpoint, now, None),
        proof(&key, "POST", "http://mayfly.test/oauth2/other", now, None),
        proof(&key, "POST", &endpoint, now - Duration::minutes(10), None),
        proof(&key, "POST", &endpoint, now + Duration::minutes(10), None),
        replayed,
        "garbage".into(),
    ] {
        assert_oauth_error(
            dpop_token(&app, &client, &bad).await,
            400,
            "invalid_dpop_proof",
        )
        .await;
    }
    let response = app
        .http
        .post(format!("{}/oauth2/token", app.base))
        .basic_auth(client.id, Some(&client.secret))
        .header("DPoP", proof(&key, "POST", &endpoint, now, None))
        .header("DPoP", proof(&key, "POST", &endpoint, now, None))
        .form(&scope())
        .send()
        .await
        .unwrap();
    assert_oauth_error(response, 400, "invalid_dpop_proof").await;

    // A client that must use DPoP gets nothing without a proof.
    app.admin()
        .update_client(
            client.id,
            ClientChanges {
                require_dpop: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_oauth_error(
        app.token_request(Auth::Basic(&client), &scope()).await,
        400,
        "invalid_dpop_proof",
    )
    .await;
    let response = dpop_token(&app, &client, &proof(&key, "POST", &endpoint, now, None)).await;
    assert_eq!(response.status(), 200);
}

/// Introspects `token` as a resource server that received it with `proof`.
async fn introspect_bound(
    app: &TestApp,
    rs: &TestClient,
    token: &str,
    extra: &[(&str, &str)],
) -> Value {
    let mut form = vec![("token", token)];
    form.extend_from_slice(extra);
    let response = app
        .http
        .post(format!("{}/oauth2/introspect", app.base))
        .basic_auth(rs.id, Some(&rs.secret))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn introspector(app: &TestApp) -> TestClient {
    app.admin().bootstrap(&app.issuer()).await.unwrap();
    let rs = app.client().await;
    app.grant(&rs, &app.issuer(), &["mayfly:introspect"]).await;
    rs
}

async fn dpop_bound_tokens_at_introspection(app: TestApp) {
    let rs = introspector(&app).await;
    orders(&app).await;
    let client = app.client().await;
    app.grant(&client, ORDERS, &["orders:read"]).await;
    let key = JwsKey::ed25519_from_seed(&[20; 32]);
    let now = app.now();
    let body: Value = dpop_token(
        &app,
        &client,
        &proof(&key, "POST", &app.token_endpoint(), now, None),
    )
    .await
    .json()
    .await
    .unwrap();
    let token = body["access_token"].as_str().unwrap();
    let url = "https://api.example.com/orders/list";
    let good = proof(&key, "GET", url, now, Some(token));
    let answer = introspect_bound(
        &app,
        &rs,
        token,
        &[("dpop", &good), ("htm", "GET"), ("htu", url)],
    )
    .await;
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["token_type"], "DPoP");
    assert_eq!(answer["cnf"]["jkt"], key.public().thumbprint());

    let other = JwsKey::ed25519_from_seed(&[21; 32]);
    let stale = proof(&key, "GET", url, now - Duration::minutes(10), Some(token));
    let no_ath = proof(&key, "GET", url, now, None);
    let wrong_ath = proof(&key, "GET", url, now, Some("v4.public.other"));
    let by_other = proof(&other, "GET", url, now, Some(token));
    // No proof forwarded: active, with the key the resource server must check the
    // proof against itself (RFC 9449 §6.2, §7).
    let answer = introspect_bound(&app, &rs, token, &[]).await;
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["token_type"], "DPoP");
    assert_eq!(answer["cnf"]["jkt"], key.public().thumbprint());
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("a proof without htm and htu", vec![("dpop", &good)]),
        (
            "another key",
            vec![("dpop", &by_other), ("htm", "GET"), ("htu", url)],
        ),
        (
            "wrong method",
            vec![("dpop", &good), ("htm", "POST"), ("htu", url)],
        ),
        (
            "wrong URL",
            vec![
                ("dpop", &good),
                ("htm", "GET"),
                ("htu", "https://api.example.com/admin"),
            ],
        ),
        (
            "stale",
            vec![("dpop", &stale), ("htm", "GET"), ("htu", url)],
        ),
        (
            "no ath",
            vec![("dpop", &no_ath), ("htm", "GET"), ("htu", url)],
        ),
        (
            "wrong ath",
            vec![("dpop", &wrong_ath), ("htm", "GET"), ("htu", url)],
        ),
        (
            "replayed proof",
            vec![("dpop", &good), ("htm", "GET"), ("htu", url)],
        ),
    ];
    for (what, extra) in cases {
        let answer = introspect_bound(&app, &rs, token, &extra).await;
        assert_eq!(answer, json!({"active": false}), "{what}");
    }
}

/// RFC 9449 §5: a login made with a DPoP proof is bound for its whole life; every
/// refresh needs a proof by the same key, and returns a token bound to it.
async fn dpop_bound_refresh_families(app: TestApp) {
    orders(&app).await;
    let alice = app.user("alice", "correct horse battery staple").await;
    app.grant_user(alice, ORDERS, &["orders:read"]).await;
    let cli = app.client_for(&["password", "refresh_token"]).await;
    let key = JwsKey::ed25519_from_seed(&[30; 32]);
    let other = JwsKey::ed25519_from_seed(&[31; 32]);
    let endpoint = app.token_endpoint();
    let post = |form: Vec<(&'static str, String)>, dpop: Option<String>| {
        let app = &app;
        let cli = &cli;
        async move {
            let mut request = app
                .http
                .post(format!("{}/oauth2/token", app.base))
                .basic_auth(cli.id, Some(&cli.secret))
                .form(&form);
            if let Some(proof) = dpop {
                request = request.header("DPoP", proof);
            }
            request.send().await.unwrap()
        }
    };
    let refresh = |rt: &str| {
        vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", rt.to_owned()),
        ]
    };
    let login = post(
        vec![
            ("grant_type", "password".into()),
            ("username", "alice".into()),
            ("password", "correct horse battery staple".into()),
            ("scope", "orders:read".into()),
        ],
        Some(proof(&key, "POST", &endpoint, app.now(), None)),
    )
    .await;
    assert_eq!(login.status(), 200);
    let login: Value = login.json().await.unwrap();
    assert_eq!(login["token_type"], "DPoP");
    let rt = login["refresh_token"].as_str().unwrap().to_owned();

    // Without a proof: refused, not downgraded to Bearer.
    assert_oauth_error(post(refresh(&rt), None).await, 400, "invalid_dpop_proof").await;
    // With another key's proof: refused, not re-bound to the thief's key.
    assert_oauth_error(
        post(
            refresh(&rt),
            Some(proof(&other, "POST", &endpoint, app.now(), None)),
        )
        .await,
        400,
        "invalid_grant",
    )
    .await;
    // With the login's key: a token bound to it, and a successor that stays bound.
    let next = post(
        refresh(&rt),
        Some(proof(&key, "POST", &endpoint, app.now(), None)),
    )
    .await;
    assert_eq!(next.status(), 200);
    let next: Value = next.json().await.unwrap();
    assert_eq!(next["token_type"], "DPoP");
    let claims = app.claims_of(next["access_token"].as_str().unwrap());
    assert_eq!(claims.cnf.unwrap().jkt, key.public().thumbprint());
    let rt2 = next["refresh_token"].as_str().unwrap();
    assert_oauth_error(post(refresh(rt2), None).await, 400, "invalid_dpop_proof").await;

    // A require_dpop client never refreshes into an unbound token, even for a login
    // made before it had to.
    let plain = post(
        vec![
            ("grant_type", "password".into()),
            ("username", "alice".into()),
            ("password", "correct horse battery staple".into()),
            ("scope", "orders:read".into()),
        ],
        None,
    )
    .await;
    let plain: Value = plain.json().await.unwrap();
    assert_eq!(plain["token_type"], "Bearer");
    app.admin()
        .update_client(
            cli.id,
            ClientChanges {
                require_dpop: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let plain_rt = plain["refresh_token"].as_str().unwrap();
    assert_oauth_error(
        post(refresh(plain_rt), None).await,
        400,
        "invalid_dpop_proof",
    )
    .await;
}

// ---- networks ----

/// An HTTP client whose connections come from `ip` (a loopback alias).
fn http_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn token_from(
    app: &TestApp,
    http: &reqwest::Client,
    client: &TestClient,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = http
        .post(format!("{}/oauth2/token", app.base))
        .basic_auth(client.id, Some(&client.secret))
        .form(&scope());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

async fn cidr_restrictions_at_issuance_and_use(app: TestApp) {
    let rs = introspector(&app).await;
    orders(&app).await;
    let client = app.client().await;
    app.admin()
        .update_client(
            client.id,
            ClientChanges {
                allowed_cidrs: Some(vec!["127.0.0.0/29".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    app.grant_spec(GrantSpec {
        allowed_cidrs: vec!["127.0.0.2/31".into(), "10.0.0.0/8".into()],
        ..GrantSpec::new(Subject::Client(client.id), ORDERS, &["orders:read"])
    })
    .await;
    // The network change revoked the client's tokens issued until 2 s from now (margin).
    app.clock.advance(Duration::seconds(3));
    // Inside the client's network but outside the grant's: refused and audited.
    let response = token_from(&app, &http_from("127.0.0.1"), &client, &[]).await;
    assert_oauth_error(response, 400, "unauthorized_client").await;
    // Outside the client's network.
    let response = token_from(&app, &http_from("127.0.0.9"), &client, &[]).await;
    assert_oauth_error(response, 400, "unauthorized_client").await;
    let denied = app.audit("token.denied").await;
    assert_eq!(
        denied
            .iter()
            .filter(|e| e.detail["error"] == "unauthorized_client")
            .count(),
        2
    );
    assert!(
        denied
            .iter()
            .any(|e| e.source_ip.as_deref() == Some("127.0.0.9"))
    );
    // Inside both: the token carries the intersection.
    let response = token_from(&app, &http_from("127.0.0.3"), &client, &[]).await;
    assert_eq!(response.status(), 200);
    let token = response.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let claims = app
        .verifier(ORDERS)
        .await
        .verify(&token, &[], app.now())
        .unwrap();
    assert_eq!(claims.cidr, vec!["127.0.0.2/31".to_owned()]);
    // Use: introspection needs the caller's address, and it must be inside.
    for (source, active) in [
        (None, false),
        (Some("127.0.0.2"), true),
        (Some("127.0.0.4"), false),
        (Some("not-an-ip"), false),
    ] {
        let extra: Vec<(&str, &str)> = source.map(|s| vec![("source_ip", s)]).unwrap_or_default();
        let answer = introspect_bound(&app, &rs, &token, &extra).await;
        assert_eq!(answer["active"], active, "{source:?}: {answer}");
        if active {
            assert_eq!(answer["cidr"], json!(["127.0.0.2/31"]));
        }
    }
    // A spoofed X-Forwarded-For from an untrusted peer is ignored.
    let response = token_from(
        &app,
        &http_from("127.0.0.9"),
        &client,
        &[
            ("x-forwarded-for", "127.0.0.3"),
            ("forwarded", "for=127.0.0.3"),
        ],
    )
    .await;
    assert_oauth_error(response, 400, "unauthorized_client").await;
    // Changing the client's networks revokes its live tokens.
    app.admin()
        .update_client(
            client.id,
            ClientChanges {
                allowed_cidrs: Some(vec!["127.0.0.2/32".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // The service layer was called directly (not over HTTP, whose middleware settles
    // revocations before answering): let this process catch up, as it would.
    app.state.revocations.catch_up().await.unwrap();
    let answer = introspect_bound(&app, &rs, &token, &[("source_ip", "127.0.0.2")]).await;
    assert_eq!(answer["active"], false, "{answer}");
}

/// Behind a trusted proxy (127.0.0.1 here), the forwarded address decides; from any
/// other peer the headers are ignored.
async fn trusted_proxy_headers(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.trusted_proxies = vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
    })
    .await;
    orders(&app).await;
    let client = app.client().await;
    app.admin()
        .update_client(
            client.id,
            ClientChanges {
                allowed_cidrs: Some(vec!["198.51.100.0/24".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    app.grant(&client, ORDERS, &["orders:read"]).await;
    let proxy = http_from("127.0.0.1");
    for (headers, ok) in [
        (vec![], false),
        (vec![("x-forwarded-for", "198.51.100.7")], true),
        // The rightmost untrusted hop counts; a spoofed leftmost entry does not.
        (
            vec![("x-forwarded-for", "203.0.113.1, 198.51.100.7, 10.1.2.3")],
            true,
        ),
        (
            vec![("x-forwarded-for", "198.51.100.7, 203.0.113.1")],
            false,
        ),
        // Only the configured header (X-Forwarded-For by default) is read: a client's
        // own `Forwarded` passed through the proxy changes nothing.
        (vec![("forwarded", "for=198.51.100.8;proto=https")], false),
        (
            vec![
                ("forwarded", "for=203.0.113.1"),
                ("x-forwarded-for", "198.51.100.7"),
            ],
            true,
        ),
    ] {
        let response = token_from(&app, &proxy, &client, &headers).await;
        assert_eq!(response.status() == 200, ok, "{headers:?}");
    }
    // The same headers from an untrusted peer are ignored.
    let response = token_from(
        &app,
        &http_from("127.0.0.5"),
        &client,
        &[("x-forwarded-for", "198.51.100.7")],
    )
    .await;
    assert_oauth_error(response, 400, "unauthorized_client").await;
    let issued = app.audit("token.issued").await;
    assert!(issued.iter().all(|e| {
        e.source_ip
            .as_deref()
            .is_some_and(|ip| ip.starts_with("198.51.100."))
    }));
}

/// With nonces required, a proof without one gets `use_dpop_nonce` and the nonce to use.
async fn dpop_nonces(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.dpop_nonce = true).await;
    orders(&app).await;
    let client = app.client().await;
    app.grant(&client, ORDERS, &["orders:read"]).await;
    let key = JwsKey::ed25519_from_seed(&[30; 32]);
    let now = app.now();
    let response = dpop_token(
        &app,
        &client,
        &proof(&key, "POST", &app.token_endpoint(), now, None),
    )
    .await;
    let nonce = response.headers()["dpop-nonce"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_oauth_error(response, 400, "use_dpop_nonce").await;
    let with_nonce = |nonce: &str, now: OffsetDateTime| {
        dpop::sign(
            &key,
            &ProofRequest {
                htm: "POST",
                htu: &app.token_endpoint(),
                access_token: None,
                nonce: Some(nonce),
                jti: &jti(),
                now,
            },
        )
    };
    assert_oauth_error(
        dpop_token(&app, &client, &with_nonce("forged", now)).await,
        400,
        "use_dpop_nonce",
    )
    .await;
    let response = dpop_token(&app, &client, &with_nonce(&nonce, now)).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("dpop-nonce"));
    // The SDK picks the nonce up from the use_dpop_nonce answer and retries.
    let source = TokenSource::builder(app.issuer())
        .client_secret(
            client.id.to_string(),
            ClientSecret::new(client.secret.clone()),
        )
        .scopes(["orders:read"])
        .dpop_key(JwsKey::ed25519_from_seed(&[31; 32]))
        .http_client(issuer_http(&app))
        .clock(Arc::new(AppClock(app.clock.clone())))
        .build()
        .unwrap();
    assert!(source.token().await.unwrap().is_dpop_bound());
    // Another replica (same master key) accepts this replica's nonce.
    let replica = app.replica().await;
    let response = dpop_token(&replica, &client, &with_nonce(&nonce, now)).await;
    assert_eq!(response.status(), 200);
    // An old nonce is refused once two windows have passed.
    app.clock.advance(Duration::minutes(11));
    let later = app.now();
    assert_oauth_error(
        dpop_token(&app, &client, &with_nonce(&nonce, later)).await,
        400,
        "use_dpop_nonce",
    )
    .await;
}

mod configured {
    use mayfly_store::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn trusted_proxy_headers_sqlite() {
        super::trusted_proxy_headers(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn trusted_proxy_headers_postgres() {
        super::trusted_proxy_headers(Backend::Postgres).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dpop_nonces_sqlite() {
        super::dpop_nonces(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dpop_nonces_postgres() {
        super::dpop_nonces(Backend::Postgres).await;
    }
}

// ---- the SDK ----

/// A listener for a resource server, and its origin (`http://127.0.0.1:PORT`): the
/// verifier's `resource_base`.
async fn rs_listener() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    (listener, origin)
}

/// A resource server built from the SDK's layer on `listener`, serving with the peer
/// address; returns its `/orders` URL.
async fn orders_server(verifier: &Verifier, listener: tokio::net::TcpListener) -> String {
    async fn list(token: VerifiedToken) -> Json<Value> {
        Json(json!({ "caller": token.claims().sub }))
    }
    let app = axum::Router::new().route(
        "/orders",
        get(list)
            .post(list)
            .route_layer(verifier.require(["orders:read"])),
    );
    let base = format!("http://{}/orders", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    base
}

/// Status and `WWW-Authenticate` of a raw call.
async fn raw_call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut request = http.request(method, url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (response.status().as_u16(), challenge)
}

async fn sdk_private_key_jwt_and_dpop_together(app: TestApp) {
    let rs = introspector(&app).await;
    orders(&app).await;
    let client = keyed(&app, 40).await;
    let dpop_key = JwsKey::p256_from_bytes(&[41; 32]).unwrap();
    let source = TokenSource::builder(app.issuer())
        .private_key_jwt(
            client.id.to_string(),
            client.key.clone(),
            Some(client.kid.clone()),
        )
        .dpop_key(dpop_key.clone())
        .audience(ORDERS)
        .scopes(["orders:read"])
        .http_client(issuer_http(&app))
        .clock(Arc::new(AppClock(app.clock.clone())))
        .build()
        .unwrap();
    let token = source.token().await.unwrap();
    assert!(token.is_dpop_bound());
    // A second request signs a fresh assertion (its jti would be a replay otherwise).
    source.invalidate();
    let token = source.token().await.unwrap();
    let (listeners, origins): (Vec<_>, Vec<_>) = [
        rs_listener().await,
        rs_listener().await,
        rs_listener().await,
    ]
    .into_iter()
    .unzip();
    let offline = Verifier::builder(app.issuer(), ORDERS)
        .key_set(app.jwks().await)
        .clock(Arc::new(AppClock(app.clock.clone())))
        .resource_base(&origins[0])
        .build()
        .await
        .unwrap();
    let online = Verifier::builder(app.issuer(), ORDERS)
        .resource_base(&origins[1])
        .http_client(issuer_http(&app))
        .clock(Arc::new(AppClock(app.clock.clone())))
        .mode(VerifierMode::Introspection {
            client_id: rs.id.to_string(),
            client_secret: ClientSecret::new(rs.secret.clone()),
        })
        .build()
        .await
        .unwrap();
    // A resource server without any secret: introspection with private_key_jwt.
    let rs_keyed = app.keyed_client(43).await;
    app.grant_spec(GrantSpec::new(
        Subject::Client(rs_keyed.id),
        &app.issuer(),
        &["mayfly:introspect"],
    ))
    .await;
    let online_keyed = Verifier::builder(app.issuer(), ORDERS)
        .resource_base(&origins[2])
        .http_client(issuer_http(&app))
        .clock(Arc::new(AppClock(app.clock.clone())))
        .mode(VerifierMode::IntrospectionWithKey {
            client_id: rs_keyed.id.to_string(),
            key: Box::new(rs_keyed.key.clone()),
            kid: Some(rs_keyed.kid.clone()),
        })
        .build()
        .await
        .unwrap();
    let now = app.now();
    let t = token.secret();
    let dpop_auth = format!("DPoP {t}");
    let bearer_auth = format!("Bearer {t}");
    for (verifier, listener) in [&offline, &online, &online_keyed]
        .into_iter()
        .zip(listeners)
    {
        let url = orders_server(verifier, listener).await;
        let http = reqwest::Client::new();
        // The SDK's own request: DPoP scheme, a proof per request.
        for _ in 0..2 {
            let response = http
                .get(&url)
                .mayfly_auth(&source)
                .await
                .unwrap()
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
        }
        let post = http
            .post(&url)
            .mayfly_auth(&source)
            .await
            .unwrap()
            .send()
            .await
            .unwrap();
        assert_eq!(post.status(), 200);
        // A stolen bound token replayed as a Bearer token, or without a proof.
        let (status, challenge) = raw_call(
            &http,
            reqwest::Method::GET,
            &url,
            &[("authorization", &bearer_auth)],
        )
        .await;
        assert_eq!(status, 401);
        assert!(
            challenge.starts_with("DPoP error=\"invalid_token\""),
            "{challenge}"
        );
        let (status, _) = raw_call(
            &http,
            reqwest::Method::GET,
            &url,
            &[("authorization", &dpop_auth)],
        )
        .await;
        assert_eq!(status, 401);
        // Proofs that do not fit.
        let other = JwsKey::ed25519_from_seed(&[42; 32]);
        let good = proof(&dpop_key, "GET", &url, now, Some(t));
        let refused = [
            proof(&other, "GET", &url, now, Some(t)),
            proof(&dpop_key, "POST", &url, now, Some(t)),
            proof(
                &dpop_key,
                "GET",
                "http://127.0.0.1:1/elsewhere",
                now,
                Some(t),
            ),
            proof(&dpop_key, "GET", &url, now - Duration::minutes(10), Some(t)),
            proof(&dpop_key, "GET", &url, now, Some("v4.public.another-token")),
            proof(&dpop_key, "GET", &url, now, None),
        ];
        assert_eq!(
            raw_call(
                &http,
                reqwest::Method::GET,
                &url,
                &[("authorization", &dpop_auth), ("dpop", &good)]
            )
            .await
            .0,
            200
        );
        // A proof made for another server, presented with that server's Host: the URL
        // comes from configuration, never from the Host the client wrote.
        let elsewhere = proof(&dpop_key, "GET", "http://evil.example/orders", now, Some(t));
        let (status, _) = raw_call(
            &http,
            reqwest::Method::GET,
            &url,
            &[
                ("authorization", &dpop_auth),
                ("dpop", &elsewhere),
                ("host", "evil.example"),
            ],
        )
        .await;
        assert_eq!(status, 401);
        for bad in refused.iter().chain([&good]) {
            let (status, challenge) = raw_call(
                &http,
                reqwest::Method::GET,
                &url,
                &[("authorization", &dpop_auth), ("dpop", bad)],
            )
            .await;
            assert_eq!(status, 401, "{challenge}");
            assert!(challenge.starts_with("DPoP "), "{challenge}");
        }
    }
    // Without a resource_base there is no URL to check a proof against: refused.
    let unconfigured = Verifier::builder(app.issuer(), ORDERS)
        .key_set(app.jwks().await)
        .clock(Arc::new(AppClock(app.clock.clone())))
        .build()
        .await
        .unwrap();
    let url = orders_server(&unconfigured, rs_listener().await.0).await;
    let good = proof(&dpop_key, "GET", &url, now, Some(t));
    let (status, _) = raw_call(
        &reqwest::Client::new(),
        reqwest::Method::GET,
        &url,
        &[("authorization", &dpop_auth), ("dpop", &good)],
    )
    .await;
    assert_eq!(status, 401);
    // The verifier API directly: a bound token needs its presentation.
    assert_eq!(
        offline.verify(t, &[]).await.unwrap_err(),
        VerifyError::DpopRequired
    );
    let url = "https://api.example.com/orders";
    let p = proof(&dpop_key, "GET", url, now, Some(t));
    let presented = Presentation {
        token: t,
        dpop_scheme: true,
        proof: Some(&p),
        method: "GET",
        url,
        client_ip: None,
    };
    assert!(
        offline
            .verify_presented(&presented, &["orders:read"])
            .await
            .is_ok()
    );
    assert!(matches!(
        offline.verify_presented(&presented, &["orders:read"]).await,
        Err(VerifyError::InvalidProof(_))
    ));
}

async fn sdk_enforces_networks(app: TestApp) {
    orders(&app).await;
    let client = app.client().await;
    app.grant_spec(GrantSpec {
        allowed_cidrs: vec!["127.0.0.2/31".into()],
        ..GrantSpec::new(Subject::Client(client.id), ORDERS, &["orders:read"])
    })
    .await;
    let response = token_from(&app, &http_from("127.0.0.2"), &client, &[]).await;
    let token = response.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let verifier = Verifier::builder(app.issuer(), ORDERS)
        .key_set(app.jwks().await)
        .clock(Arc::new(AppClock(app.clock.clone())))
        .trusted_proxies(vec!["127.0.0.1/32".parse().unwrap()])
        .build()
        .await
        .unwrap();
    let url = orders_server(&verifier, rs_listener().await.0).await;
    let auth = format!("Bearer {token}");
    for (from, headers, ok) in [
        ("127.0.0.2", vec![], true),
        ("127.0.0.3", vec![], true),
        ("127.0.0.4", vec![], false),
        // A spoofed forwarding header from an untrusted peer is ignored.
        ("127.0.0.4", vec![("x-forwarded-for", "127.0.0.2")], false),
        // From the trusted proxy, the forwarded address counts.
        ("127.0.0.1", vec![("x-forwarded-for", "127.0.0.3")], true),
        ("127.0.0.1", vec![("x-forwarded-for", "127.0.0.9")], false),
    ] {
        let mut headers = headers;
        headers.push(("authorization", &auth));
        let (status, _) = raw_call(&http_from(from), reqwest::Method::GET, &url, &headers).await;
        assert_eq!(status == 200, ok, "{from} {headers:?}");
    }
    assert_eq!(
        verifier.verify(&token, &[]).await.unwrap_err(),
        VerifyError::NetworkNotAllowed
    );
}

/// The admin API (the issuer as its own resource server) enforces both constraints.
async fn admin_api_enforces_dpop_and_networks(app: TestApp) {
    app.admin().bootstrap(&app.issuer()).await.unwrap();
    let admin = app.client().await;
    app.grant_spec(GrantSpec {
        allowed_cidrs: vec!["127.0.0.2/32".into()],
        ..GrantSpec::new(
            Subject::Client(admin.id),
            &app.issuer(),
            &["mayfly:admin:read"],
        )
    })
    .await;
    let key = JwsKey::ed25519_from_seed(&[50; 32]);
    let now = app.now();
    let response = app
        .http
        .post(format!("{}/oauth2/token", app.base))
        .basic_auth(admin.id, Some(&admin.secret))
        .header(
            "DPoP",
            proof(&key, "POST", &app.token_endpoint(), now, None),
        )
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "mayfly:admin:read"),
        ])
        .send()
        .await
        .unwrap();
    assert_oauth_error(response, 400, "unauthorized_client").await;
    let from = http_from("127.0.0.2");
    let body: Value = from
        .post(format!("{}/oauth2/token", app.base))
        .basic_auth(admin.id, Some(&admin.secret))
        .header(
            "DPoP",
            proof(&key, "POST", &app.token_endpoint(), now, None),
        )
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "mayfly:admin:read"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["token_type"], "DPoP", "{body}");
    let token = body["access_token"].as_str().unwrap();
    let path = "/admin/v1/clients";
    let htu = format!("{}{path}", app.issuer());
    let url = format!("{}{path}", app.base);
    let call = |http: reqwest::Client, scheme: &'static str, proof: Option<String>| {
        let url = url.clone();
        let auth = format!("{scheme} {token}");
        async move {
            let mut request = http.get(&url).header("authorization", auth);
            if let Some(p) = proof {
                request = request.header("DPoP", p);
            }
            let response = request.send().await.unwrap();
            let challenge = response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            (response.status().as_u16(), challenge)
        }
    };
    let good = proof(&key, "GET", &htu, now, Some(token));
    assert_eq!(call(from.clone(), "DPoP", Some(good.clone())).await.0, 200);
    // Replayed proof, stolen token as Bearer, proof by another key, wrong network.
    let (status, challenge) = call(from.clone(), "DPoP", Some(good.clone())).await;
    assert_eq!(status, 401);
    assert!(challenge.contains("invalid_dpop_proof"), "{challenge}");
    let (status, challenge) = call(from.clone(), "Bearer", None).await;
    assert_eq!(status, 401);
    assert!(challenge.starts_with("DPoP "), "{challenge}");
    let other = JwsKey::ed25519_from_seed(&[51; 32]);
    assert_eq!(
        call(
            from.clone(),
            "DPoP",
            Some(proof(&other, "GET", &htu, now, Some(token)))
        )
        .await
        .0,
        401
    );
    assert_eq!(
        call(
            http_from("127.0.0.1"),
            "DPoP",
            Some(proof(&key, "GET", &htu, now, Some(token)))
        )
        .await
        .0,
        401
    );
    assert_eq!(
        call(
            from,
            "DPoP",
            Some(proof(&key, "GET", &htu, now, Some(token)))
        )
        .await
        .0,
        200
    );
}
