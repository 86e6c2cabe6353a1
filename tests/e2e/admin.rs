//! The admin REST API, end to end: every resource's lifecycle, authorization,
//! validation and conflicts, on both stores.

use serde_json::{Value, json};
use time::Duration;

use crate::helpers::{AdminApi, Auth, TestApp, TestClient, answer, assert_oauth_error};

const ORDERS: &str = "https://api.example.com/orders";

crate::both_stores!(
    audiences_and_scopes,
    clients_and_issuance,
    secret_rotation_without_downtime,
    client_public_keys,
    users,
    grants_and_issuance,
    authorization,
    admin_changes_are_audited,
    admins_cannot_lock_themselves_out,
    keys_are_listed,
    labels_on_clients_and_users,
);

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// A client (created over the API) with a grant of `scopes` on ORDERS.
async fn workload(api: &AdminApi<'_>, scopes: &[&str]) -> TestClient {
    let created = api
        .post("/admin/v1/clients", json!({ "name": "worker" }))
        .await;
    let body = created.ok(201);
    let client = TestClient {
        id: id(body).parse().unwrap(),
        secret: body["client_secret"].as_str().unwrap().to_owned(),
    };
    let subject = json!({ "kind": "client", "id": client.id });
    api.post(
        "/admin/v1/grants",
        json!({ "subject": subject, "audience": ORDERS, "scopes": scopes }),
    )
    .await
    .ok(201);
    client
}

fn ask(scope: &str) -> [(&'static str, String); 3] {
    [
        ("grant_type", "client_credentials".into()),
        ("scope", scope.into()),
        ("resource", ORDERS.into()),
    ]
}

async fn token_status(app: &TestApp, client: &TestClient, scope: &str) -> u16 {
    let params = ask(scope);
    let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    app.token_request(Auth::Basic(client), &params)
        .await
        .status()
        .as_u16()
}

async fn audiences_and_scopes(app: TestApp) {
    let api = app.bootstrap_admin().await;
    let created = api
        .post(
            "/admin/v1/audiences",
            json!({ "uri": ORDERS, "description": "Orders API", "scopes": ["orders:read"] }),
        )
        .await;
    let audience = created.ok(201).clone();
    assert_eq!(audience["uri"], ORDERS);
    let aid = id(&audience);

    // Validation and conflicts, each with a field-level detail.
    let dup = api
        .post("/admin/v1/audiences", json!({ "uri": ORDERS }))
        .await;
    dup.problem(409);
    let bad = api
        .post("/admin/v1/audiences", json!({ "uri": "not a uri" }))
        .await;
    assert_eq!(bad.problem(422)["errors"][0]["field"], "uri");
    let unknown = api
        .post(
            "/admin/v1/audiences",
            json!({ "uri": "https://x.example", "colour": "red" }),
        )
        .await;
    assert_eq!(unknown.problem(422)["errors"][0]["field"], "colour");
    let missing = api
        .post("/admin/v1/audiences", json!({ "description": "no uri" }))
        .await;
    assert_eq!(missing.problem(422)["errors"][0]["field"], "uri");
    let not_json = app
        .http
        .post(format!("{}/admin/v1/audiences", app.base))
        .bearer_auth(&api.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    answer(not_json).await.problem(400);
    let wrong_type = app
        .http
        .post(format!("{}/admin/v1/audiences", app.base))
        .bearer_auth(&api.token)
        .body("uri=x")
        .send()
        .await
        .unwrap();
    answer(wrong_type).await.problem(415);

    // Paging: the issuer audience (from bootstrap) plus three more.
    for n in 1..=3 {
        api.post(
            "/admin/v1/audiences",
            json!({ "uri": format!("https://api.example.com/{n}") }),
        )
        .await
        .ok(201);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/admin/v1/audiences?limit=2&cursor={c}"),
            None => "/admin/v1/audiences?limit=2".into(),
        };
        let page = api.get(&path).await;
        let body = page.ok(200);
        seen.extend(
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["uri"].as_str().unwrap().to_owned()),
        );
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    api.get("/admin/v1/audiences?limit=0").await.problem(422);
    api.get("/admin/v1/audiences?limit=501").await.problem(422);
    api.get("/admin/v1/audiences?cursor=@@@").await.problem(422);
    api.get("/admin/v1/audiences?sort=uri").await.problem(400);
    api.get("/admin/v1/audiences?limit=500").await.ok(200);

    assert_eq!(
        api.get(&format!("/admin/v1/audiences/{aid}")).await.ok(200)["description"],
        "Orders API"
    );
    let patched = api
        .patch(
            &format!("/admin/v1/audiences/{aid}"),
            json!({ "description": "Orders v2" }),
        )
        .await;
    assert_eq!(patched.ok(200)["description"], "Orders v2");
    api.patch(
        &format!("/admin/v1/audiences/{aid}"),
        json!({ "uri": "https://elsewhere" }),
    )
    .await
    .problem(422);
    api.get("/admin/v1/audiences/not-a-uuid").await.problem(404);
    api.get(&format!("/admin/v1/audiences/{}", uuid::Uuid::now_v7()))
        .await
        .problem(404);

    // Scopes.
    let write = api
        .post(
            "/admin/v1/scopes",
            json!({ "audience_id": aid, "name": "orders:write" }),
        )
        .await;
    let sid = id(write.ok(201));
    api.post(
        "/admin/v1/scopes",
        json!({ "audience_id": aid, "name": "orders:write" }),
    )
    .await
    .problem(409);
    assert_eq!(
        api.post(
            "/admin/v1/scopes",
            json!({ "audience_id": aid, "name": "Orders Write" })
        )
        .await
        .problem(422)["errors"][0]["field"],
        "name"
    );
    api.post(
        "/admin/v1/scopes",
        json!({ "audience_id": uuid::Uuid::now_v7(), "name": "x:y" }),
    )
    .await
    .problem(404);
    let listed = api
        .get(&format!("/admin/v1/scopes?audience_id={aid}"))
        .await;
    let names: Vec<_> = listed.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["orders:read", "orders:write"]);
    assert_eq!(
        api.patch(
            &format!("/admin/v1/scopes/{sid}"),
            json!({ "description": "write" })
        )
        .await
        .ok(200)["description"],
        "write"
    );

    // In use by a grant: neither the scope nor the audience can go.
    let client = workload(&api, &["orders:write"]).await;
    api.delete(&format!("/admin/v1/scopes/{sid}"))
        .await
        .problem(409);
    api.delete(&format!("/admin/v1/audiences/{aid}"))
        .await
        .problem(409);
    api.delete(&format!("/admin/v1/clients/{}", client.id))
        .await
        .ok(204);
    api.delete(&format!("/admin/v1/scopes/{sid}")).await.ok(204);
    api.get(&format!("/admin/v1/scopes/{sid}"))
        .await
        .problem(404);
    api.delete(&format!("/admin/v1/audiences/{aid}"))
        .await
        .ok(204);
    api.get(&format!("/admin/v1/audiences/{aid}"))
        .await
        .problem(404);
    api.delete(&format!("/admin/v1/audiences/{aid}"))
        .await
        .problem(404);
}

async fn clients_and_issuance(app: TestApp) {
    let api = app.bootstrap_admin().await;
    api.post(
        "/admin/v1/audiences",
        json!({ "uri": ORDERS, "scopes": ["orders:read"] }),
    )
    .await
    .ok(201);
    let client = workload(&api, &["orders:read"]).await;
    let path = format!("/admin/v1/clients/{}", client.id);
    let got = api.get(&path).await;
    let body = got.ok(200);
    assert_eq!(
        (body["name"].as_str(), body["enabled"].as_bool()),
        (Some("worker"), Some(true))
    );
    assert!(
        body.get("client_secret").is_none(),
        "secrets are shown only at creation"
    );
    assert_eq!(token_status(&app, &client, "orders:read").await, 200);

    // Disabling stops issuance at once; enabling restores it.
    assert_eq!(
        api.patch(&path, json!({ "enabled": false })).await.ok(200)["enabled"],
        false
    );
    assert_eq!(token_status(&app, &client, "orders:read").await, 401);
    api.patch(&path, json!({ "enabled": true })).await.ok(200);
    assert_eq!(token_status(&app, &client, "orders:read").await, 200);

    // Lifetimes: set, reflected in tokens, cleared with null.
    api.patch(&path, json!({ "default_ttl_secs": 60 }))
        .await
        .ok(200);
    let params = ask("orders:read");
    let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        app.token_ok(Auth::Basic(&client), &params).await["expires_in"],
        60
    );
    let cleared = api.patch(&path, json!({ "default_ttl_secs": null })).await;
    assert_eq!(cleared.ok(200)["default_ttl_secs"], Value::Null);
    assert_eq!(
        app.token_ok(Auth::Basic(&client), &params).await["expires_in"],
        300
    );

    // Validation.
    assert_eq!(
        api.patch(&path, json!({ "max_ttl_secs": 7200 }))
            .await
            .problem(422)["errors"][0]["field"],
        "max_ttl_secs"
    );
    assert_eq!(
        api.patch(
            &path,
            json!({ "default_ttl_secs": 600, "max_ttl_secs": 60 })
        )
        .await
        .problem(422)["errors"][0]["field"],
        "default_ttl_secs"
    );
    assert_eq!(
        api.patch(&path, json!({ "allowed_cidrs": ["10.0.0.0/33"] }))
            .await
            .problem(422)["errors"][0]["field"],
        "allowed_cidrs"
    );
    assert_eq!(
        api.patch(&path, json!({ "allowed_cidrs": ["10.1.2.3/8", "::1"] }))
            .await
            .ok(200)["allowed_cidrs"],
        json!(["10.0.0.0/8", "::1/128"])
    );
    assert_eq!(
        api.post("/admin/v1/clients", json!({ "name": "" }))
            .await
            .problem(422)["errors"][0]["field"],
        "name"
    );
    api.patch(&path, json!({ "enabled": "yes" }))
        .await
        .problem(422);

    let listed = api.get("/admin/v1/clients").await;
    assert_eq!(
        listed.ok(200)["items"].as_array().unwrap().len(),
        2,
        "the admin and the worker"
    );

    // Deleting stops issuance at once.
    api.delete(&path).await.ok(204);
    assert_eq!(token_status(&app, &client, "orders:read").await, 401);
    api.get(&path).await.problem(404);
    api.patch(&path, json!({ "enabled": true }))
        .await
        .problem(404);
}

async fn secret_rotation_without_downtime(app: TestApp) {
    let api = app.bootstrap_admin().await;
    api.post(
        "/admin/v1/audiences",
        json!({ "uri": ORDERS, "scopes": ["orders:read"] }),
    )
    .await
    .ok(201);
    let old = workload(&api, &["orders:read"]).await;
    let secrets = format!("/admin/v1/clients/{}/secrets", old.id);
    let listed = api.get(&secrets).await;
    let old_secret_id = id(&listed.ok(200)[0]);
    assert!(
        listed.body[0].get("client_secret").is_none() && listed.body[0].get("digest").is_none()
    );

    // Rotation: the workload keeps getting tokens at every step.
    assert_eq!(token_status(&app, &old, "orders:read").await, 200);
    let added = api.post(&secrets, json!({})).await;
    let new = TestClient {
        id: old.id,
        secret: added.ok(201)["client_secret"].as_str().unwrap().to_owned(),
    };
    assert!(new.secret.starts_with("mfy_cs_"));
    assert_eq!(token_status(&app, &old, "orders:read").await, 200);
    assert_eq!(token_status(&app, &new, "orders:read").await, 200);
    api.post(&secrets, json!({})).await.problem(409);
    api.delete(&format!("{secrets}/{old_secret_id}"))
        .await
        .ok(204);
    assert_eq!(token_status(&app, &new, "orders:read").await, 200);
    assert_eq!(
        token_status(&app, &old, "orders:read").await,
        401,
        "deleted secret stops at once"
    );
    api.delete(&format!("{secrets}/{old_secret_id}"))
        .await
        .problem(404);

    // A secret with an expiry stops working when it passes.
    let expiring = api
        .post(&secrets, json!({ "expires_at": "2999-01-01T00:00:00Z" }))
        .await;
    expiring.ok(201);
    let soon = (app.now() + Duration::seconds(30))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    api.post(&secrets, json!({ "expires_at": soon }))
        .await
        .problem(409);
    let past = (app.now() - Duration::seconds(30))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let exp_id = id(expiring.ok(201));
    api.delete(&format!("{secrets}/{exp_id}")).await.ok(204);
    assert_eq!(
        api.post(&secrets, json!({ "expires_at": past }))
            .await
            .problem(422)["errors"][0]["field"],
        "expires_at"
    );
    let short = api.post(&secrets, json!({ "expires_at": soon })).await;
    let short = TestClient {
        id: old.id,
        secret: short.ok(201)["client_secret"].as_str().unwrap().to_owned(),
    };
    assert_eq!(token_status(&app, &short, "orders:read").await, 200);
    app.clock.advance(Duration::seconds(31));
    assert_eq!(token_status(&app, &short, "orders:read").await, 401);
    assert_eq!(token_status(&app, &new, "orders:read").await, 200);
}

async fn client_public_keys(app: TestApp) {
    let api = app.bootstrap_admin().await;
    let created = api
        .post("/admin/v1/clients", json!({ "name": "signer" }))
        .await;
    let keys = format!("/admin/v1/clients/{}/public-keys", id(created.ok(201)));
    // RFC 8037 A.2's public key; its RFC 7638 thumbprint is given in A.3.
    let jwk = json!({ "kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" });
    let added = api.post(&keys, jwk.clone()).await;
    let body = added.ok(201).clone();
    assert_eq!(body["kid"], "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    assert_eq!(body["jwk"]["x"], jwk["x"]);
    api.post(&keys, jwk.clone()).await.problem(409);
    let x = |seed: u8| {
        mayfly_core::SigningKey::from_seed(&[seed; 32])
            .public()
            .jwk_x()
    };
    let weak = api
        .post(
            &keys,
            json!({ "kty": "OKP", "crv": "Ed25519", "x": "A".repeat(43) }),
        )
        .await;
    assert_eq!(
        weak.problem(422)["errors"][0]["field"],
        "x",
        "small-order keys are refused"
    );
    let named = api
        .post(
            &keys,
            json!({ "kty": "OKP", "crv": "Ed25519", "x": x(2), "kid": "second" }),
        )
        .await;
    assert_eq!(named.ok(201)["kid"], "second");
    api.post(
        &keys,
        json!({ "kty": "OKP", "crv": "Ed25519", "x": x(3), "kid": "third" }),
    )
    .await
    .problem(409);
    assert_eq!(
        api.post(&keys, json!({ "kty": "RSA", "crv": "Ed25519", "x": "AA" }))
            .await
            .problem(422)["errors"][0]["field"],
        "crv"
    );
    assert_eq!(
        api.post(
            &keys,
            json!({ "kty": "OKP", "crv": "Ed25519", "x": "short" })
        )
        .await
        .problem(422)["errors"][0]["field"],
        "x"
    );
    assert_eq!(api.get(&keys).await.ok(200).as_array().unwrap().len(), 2);
    api.delete(&format!("{keys}/{}", id(&body))).await.ok(204);
    assert_eq!(api.get(&keys).await.ok(200).as_array().unwrap().len(), 1);
    api.get(&format!(
        "/admin/v1/clients/{}/public-keys",
        uuid::Uuid::now_v7()
    ))
    .await
    .problem(404);
}

async fn users(app: TestApp) {
    let api = app.bootstrap_admin().await;
    let created = api
        .post(
            "/admin/v1/users",
            json!({ "username": "alice", "password": "correct horse battery staple" }),
        )
        .await;
    let alice = created.ok(201).clone();
    assert_eq!(
        (alice["username"].as_str(), alice["enabled"].as_bool()),
        (Some("alice"), Some(true))
    );
    assert!(alice.get("password").is_none() && alice.get("password_hash").is_none());
    let stored = app
        .state
        .store
        .user(id(&alice).parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        stored.password_hash.starts_with("$argon2id$"),
        "hashed with argon2id"
    );

    api.post(
        "/admin/v1/users",
        json!({ "username": "alice", "password": "another long password" }),
    )
    .await
    .problem(409);
    assert_eq!(
        api.post(
            "/admin/v1/users",
            json!({ "username": "bob", "password": "short" })
        )
        .await
        .problem(422)["errors"][0]["field"],
        "password"
    );
    assert_eq!(
        api.post(
            "/admin/v1/users",
            json!({ "username": "bad name", "password": "long enough password" })
        )
        .await
        .problem(422)["errors"][0]["field"],
        "username"
    );

    let path = format!("/admin/v1/users/{}", id(&alice));
    assert_eq!(
        api.patch(&path, json!({ "enabled": false })).await.ok(200)["enabled"],
        false
    );
    api.patch(&path, json!({ "password": "a brand new passphrase" }))
        .await
        .ok(200);
    let rehashed = app
        .state
        .store
        .user(id(&alice).parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_ne!(rehashed.password_hash, stored.password_hash);
    assert_eq!(
        api.get("/admin/v1/users").await.ok(200)["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    api.delete(&path).await.ok(204);
    api.get(&path).await.problem(404);
}

async fn grants_and_issuance(app: TestApp) {
    let api = app.bootstrap_admin().await;
    api.post(
        "/admin/v1/audiences",
        json!({ "uri": ORDERS, "scopes": ["orders:read", "orders:write"] }),
    )
    .await
    .ok(201);
    let created = api
        .post("/admin/v1/clients", json!({ "name": "worker" }))
        .await;
    let body = created.ok(201);
    let client = TestClient {
        id: id(body).parse().unwrap(),
        secret: body["client_secret"].as_str().unwrap().to_owned(),
    };
    let subject = json!({ "kind": "client", "id": client.id });
    assert_eq!(token_status(&app, &client, "orders:read").await, 400);

    let grant = api
        .post("/admin/v1/grants", json!({ "subject": subject, "audience": ORDERS, "scopes": ["orders:read"], "reason": "export", "max_ttl_secs": 120 }))
        .await;
    let grant = grant.ok(201).clone();
    assert_eq!(
        grant["created_by"],
        app.state
            .store
            .list_clients(mayfly_store::Page {
                after: None,
                limit: 1
            })
            .await
            .unwrap()[0]
            .id
            .to_string()
    );
    let path = format!("/admin/v1/grants/{}", id(&grant));
    let params = ask("orders:read");
    let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        app.token_ok(Auth::Basic(&client), &params).await["expires_in"],
        120
    );

    // Validation: references that do not exist are field errors.
    let bad = |body: Value| api.post("/admin/v1/grants", body);
    assert_eq!(
        bad(json!({ "subject": subject, "audience": ORDERS, "scopes": ["orders:delete"] }))
            .await
            .problem(422)["errors"][0]["field"],
        "scopes"
    );
    assert_eq!(bad(json!({ "subject": subject, "audience": "https://nowhere.example", "scopes": ["orders:read"] })).await.problem(422)["errors"][0]["field"], "audience");
    let nobody = json!({ "kind": "user", "id": uuid::Uuid::now_v7() });
    assert_eq!(
        bad(json!({ "subject": nobody, "audience": ORDERS, "scopes": ["orders:read"] }))
            .await
            .problem(422)["errors"][0]["field"],
        "subject"
    );
    assert_eq!(
        bad(json!({ "subject": subject, "audience": ORDERS, "scopes": [] }))
            .await
            .problem(422)["errors"][0]["field"],
        "scopes"
    );
    let window = json!({ "subject": subject, "audience": ORDERS, "scopes": ["orders:read"], "not_before": "2030-01-01T00:00:00Z", "expires_at": "2029-01-01T00:00:00Z" });
    assert_eq!(
        bad(window).await.problem(422)["errors"][0]["field"],
        "expires_at"
    );
    bad(json!({ "subject": { "kind": "robot", "id": client.id }, "audience": ORDERS, "scopes": ["orders:read"] })).await.problem(422);

    // Listing and filters.
    let user = api
        .post(
            "/admin/v1/users",
            json!({ "username": "alice", "password": "correct horse battery staple" }),
        )
        .await;
    let user_subject = json!({ "kind": "user", "id": id(user.ok(201)) });
    api.post(
        "/admin/v1/grants",
        json!({ "subject": user_subject, "audience": ORDERS, "scopes": ["orders:write"] }),
    )
    .await
    .ok(201);
    let mine = api
        .get(&format!(
            "/admin/v1/grants?subject_kind=client&subject_id={}",
            client.id
        ))
        .await;
    assert_eq!(mine.ok(200)["items"].as_array().unwrap().len(), 1);
    let all_orders = api
        .get(&format!(
            "/admin/v1/grants?audience_id={}",
            grant["audience_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(all_orders.ok(200)["items"].as_array().unwrap().len(), 2);
    api.get(&format!("/admin/v1/grants?subject_id={}", client.id))
        .await
        .problem(422);

    // Ending the grant stops issuance at once; reopening restores it; deleting stops it.
    let now = app
        .now()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let ended = api.patch(&path, json!({ "expires_at": now })).await;
    ended.ok(200);
    assert_eq!(token_status(&app, &client, "orders:read").await, 400);
    let reopened = api
        .patch(&path, json!({ "expires_at": null, "reason": "reopened" }))
        .await;
    assert_eq!(reopened.ok(200)["reason"], "reopened");
    assert_eq!(token_status(&app, &client, "orders:read").await, 200);
    api.delete(&path).await.ok(204);
    assert_eq!(token_status(&app, &client, "orders:read").await, 400);
    api.get(&path).await.problem(404);
}

async fn authorization(app: TestApp) {
    let api = app.bootstrap_admin().await;
    let url = format!("{}/admin/v1/clients", app.base);

    let none = answer(app.http.get(&url).send().await.unwrap()).await;
    none.problem(401);
    assert!(
        none.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let garbage = answer(
        app.http
            .get(&url)
            .bearer_auth("v4.public.garbage")
            .send()
            .await
            .unwrap(),
    )
    .await;
    garbage.problem(401);
    assert!(
        garbage.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    let basic = answer(
        app.http
            .get(&url)
            .basic_auth("a", Some("b"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    basic.problem(401);

    // A valid token for another audience is not an admin token.
    api.post(
        "/admin/v1/audiences",
        json!({ "uri": ORDERS, "scopes": ["orders:read"] }),
    )
    .await
    .ok(201);
    let worker = workload(&api, &["orders:read"]).await;
    let params = ask("orders:read");
    let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let foreign_aud = app.token_ok(Auth::Basic(&worker), &params).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    answer(
        app.http
            .get(&url)
            .bearer_auth(&foreign_aud)
            .send()
            .await
            .unwrap(),
    )
    .await
    .problem(401);

    // A token signed by another issuer's key, with the right claims, is refused.
    let other_key = mayfly_core::SigningKey::from_seed(&[42; 32]);
    let now = app.now();
    let forged = mayfly_core::token::mint(
        &other_key,
        &mayfly_core::Claims {
            iss: app.issuer(),
            sub: "x".into(),
            aud: app.issuer(),
            iat: now,
            nbf: now,
            exp: now + Duration::minutes(5),
            jti: "forged".into(),
            scope: "mayfly:admin".into(),
            client_id: "x".into(),
            gid: vec![],
            cnf: None,
            cidr: vec![],
            act: None,
            fam: None,
            orig: Vec::new(),
        },
    )
    .unwrap();
    answer(
        app.http
            .get(&url)
            .bearer_auth(&forged)
            .send()
            .await
            .unwrap(),
    )
    .await
    .problem(401);

    // Finer scopes: read-only reads everything and changes nothing.
    let reader = app.admin_with(&["mayfly:admin:read"]).await;
    reader.get("/admin/v1/clients").await.ok(200);
    reader.get("/admin/v1/grants").await.ok(200);
    let denied = reader
        .post("/admin/v1/clients", json!({ "name": "nope" }))
        .await;
    denied.problem(403);
    assert!(
        denied.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
    // A clients admin manages clients, not grants.
    let clients_admin = app.admin_with(&["mayfly:admin:clients"]).await;
    clients_admin
        .post("/admin/v1/clients", json!({ "name": "ok" }))
        .await
        .ok(201);
    clients_admin.get("/admin/v1/clients").await.ok(200);
    clients_admin.get("/admin/v1/grants").await.problem(403);
    let subject = json!({ "kind": "client", "id": worker.id });
    clients_admin
        .post(
            "/admin/v1/grants",
            json!({ "subject": subject, "audience": ORDERS, "scopes": ["orders:read"] }),
        )
        .await
        .problem(403);

    // Expiry: the same token is refused once it has expired.
    api.get("/admin/v1/clients").await.ok(200);
    app.clock.advance(Duration::seconds(306));
    let expired = api.get("/admin/v1/clients").await;
    let detail = expired.problem(401)["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("expired"), "says it expired: {detail}");

    // Unknown routes answer a problem too; the token endpoint keeps OAuth errors.
    answer(
        app.http
            .get(format!("{}/admin/v1/nothing", app.base))
            .send()
            .await
            .unwrap(),
    )
    .await
    .problem(404);
    assert_oauth_error(
        app.token_request(Auth::None, &[("grant_type", "client_credentials")])
            .await,
        401,
        "invalid_client",
    )
    .await;
}

async fn admins_cannot_lock_themselves_out(app: TestApp) {
    let api = app.bootstrap_admin().await;
    let me = app
        .state
        .store
        .list_clients(mayfly_store::Page {
            after: None,
            limit: 1,
        })
        .await
        .unwrap()[0]
        .id;
    api.patch(
        &format!("/admin/v1/clients/{me}"),
        json!({ "enabled": false }),
    )
    .await
    .problem(409);
    api.delete(&format!("/admin/v1/clients/{me}"))
        .await
        .problem(409);
    api.get("/admin/v1/clients").await.ok(200);
    // A narrower admin cannot (the client holds mayfly:admin, it does not); another
    // full admin can.
    app.admin_with(&["mayfly:admin:clients"])
        .await
        .patch(
            &format!("/admin/v1/clients/{me}"),
            json!({ "enabled": false }),
        )
        .await
        .problem(403);
    let other = app.admin_with(&["mayfly:admin"]).await;
    other
        .patch(
            &format!("/admin/v1/clients/{me}"),
            json!({ "enabled": false }),
        )
        .await
        .ok(200);
    api.get("/admin/v1/clients").await.problem(401);
}

async fn admin_changes_are_audited(app: TestApp) {
    let api = app.bootstrap_admin().await;
    let created = api
        .post("/admin/v1/clients", json!({ "name": "audited" }))
        .await;
    let body = created.ok(201).clone();
    let cid = id(&body);
    api.patch(
        &format!("/admin/v1/clients/{cid}"),
        json!({ "name": "renamed" }),
    )
    .await
    .ok(200);
    let events = app.audit("admin.change").await;
    let update = events
        .iter()
        .find(|e| e.detail["action"] == "client.update")
        .expect("update audited");
    assert_eq!(update.detail["before"]["name"], "audited");
    assert_eq!(update.detail["after"]["name"], "renamed");
    assert_eq!(update.subject.as_deref(), Some(cid.as_str()));
    let admin_id = app
        .state
        .store
        .list_clients(mayfly_store::Page {
            after: None,
            limit: 1,
        })
        .await
        .unwrap()[0]
        .id
        .to_string();
    assert_eq!(
        update.actor.as_deref(),
        Some(admin_id.as_str()),
        "the admin's client id is the actor"
    );
    let dump = format!("{events:?}");
    assert!(
        !dump.contains(body["client_secret"].as_str().unwrap()),
        "no secret in the audit log"
    );
}

async fn keys_are_listed(app: TestApp) {
    let api = app.bootstrap_admin().await;
    let keys = api.get("/admin/v1/keys").await;
    let list = keys.ok(200).as_array().unwrap().clone();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["state"], "active");
    assert_eq!(list[0]["id"], app.jwks().await.keys[0].kid);
    assert!(list[0].get("private_key_enc").is_none());
}

/// Labels on clients and users: validated (1–64 of a-z 0-9 . _ -, at most 32),
/// deduplicated, returned, and audited in the before/after states.
async fn labels_on_clients_and_users(app: TestApp) {
    let api = app.bootstrap_admin().await;

    let client = api
        .post(
            "/admin/v1/clients",
            json!({ "name": "labelled", "labels": ["batch", "oncall", "batch"] }),
        )
        .await
        .ok(201)
        .clone();
    assert_eq!(client["labels"], json!(["batch", "oncall"]));
    let cpath = format!("/admin/v1/clients/{}", id(&client));
    assert_eq!(
        api.get(&cpath).await.ok(200)["labels"],
        json!(["batch", "oncall"])
    );
    let too_many: Vec<String> = (0..33).map(|i| format!("l{i}")).collect();
    for bad in [
        json!(["On-Call"]),
        json!([""]),
        json!(["a b"]),
        json!(["x".repeat(65)]),
        json!(too_many),
    ] {
        assert_eq!(
            api.patch(&cpath, json!({ "labels": bad }))
                .await
                .problem(422)["errors"][0]["field"],
            "labels",
            "{bad}"
        );
    }
    assert_eq!(
        api.post(
            "/admin/v1/clients",
            json!({ "name": "bad", "labels": ["UPPER"] })
        )
        .await
        .problem(422)["errors"][0]["field"],
        "labels"
    );
    assert_eq!(
        api.patch(&cpath, json!({ "labels": ["db.read_only-2"] }))
            .await
            .ok(200)["labels"],
        json!(["db.read_only-2"])
    );

    let user = api
        .post(
            "/admin/v1/users",
            json!({ "username": "alice", "password": "correct horse battery staple" }),
        )
        .await
        .ok(201)
        .clone();
    assert_eq!(user["labels"], json!([]));
    let upath = format!("/admin/v1/users/{}", id(&user));
    assert_eq!(
        api.patch(&upath, json!({ "labels": ["bad label"] }))
            .await
            .problem(422)["errors"][0]["field"],
        "labels"
    );
    assert_eq!(
        api.post(
            "/admin/v1/users",
            json!({ "username": "bob", "password": "correct horse battery staple", "labels": ["Nope"] })
        )
        .await
        .problem(422)["errors"][0]["field"],
        "labels"
    );
    assert_eq!(
        api.patch(&upath, json!({ "labels": ["oncall", "sre"] }))
            .await
            .ok(200)["labels"],
        json!(["oncall", "sre"])
    );
    assert_eq!(
        api.get(&upath).await.ok(200)["labels"],
        json!(["oncall", "sre"])
    );
    let bob = api
        .post(
            "/admin/v1/users",
            json!({ "username": "bob", "password": "correct horse battery staple", "labels": ["dba"] }),
        )
        .await
        .ok(201)
        .clone();
    assert_eq!(bob["labels"], json!(["dba"]));

    let events = app.audit("admin.change").await;
    let relabel = events
        .iter()
        .find(|e| e.detail["action"] == "user.update")
        .expect("user update audited");
    assert_eq!(relabel.detail["before"]["labels"], json!([]));
    assert_eq!(relabel.detail["after"]["labels"], json!(["oncall", "sre"]));
    let client_update = events
        .iter()
        .find(|e| e.detail["action"] == "client.update")
        .expect("client update audited");
    assert_eq!(
        client_update.detail["before"]["labels"],
        json!(["batch", "oncall"])
    );
    assert_eq!(
        client_update.detail["after"]["labels"],
        json!(["db.read_only-2"])
    );
}
