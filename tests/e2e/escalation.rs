//! No privilege escalation (issue #14): each test performs one attack a narrow admin, a
//! requester or a resource server could try, and checks it is refused with a reason,
//! while the legitimate form of the same call still works.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{AdminApi, Answer, Auth, TestApp, TestClient};

crate::both_stores!(
    a_grants_admin_cannot_grant_itself_admin,
    a_clients_admin_cannot_add_credentials_to_an_admin,
    a_users_admin_cannot_set_an_admins_password,
    an_access_admin_cannot_auto_approve_admin_for_itself,
    a_clients_admin_cannot_hand_out_token_exchange,
    a_deny_policy_wins_over_any_overlap,
    exchange_without_an_actor_is_for_the_tokens_own_client_only,
    admin_changes_carry_the_callers_address,
    an_audiences_admin_cannot_touch_the_issuer_audience,
    privilege_through_an_access_policy_counts,
);

const ORDERS: &str = "https://api.example.com/orders";
const REPORTS: &str = "https://api.example.com/orders/reports";
const PASSWORD: &str = "correct horse battery staple";
const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

/// The bootstrap admin (holding `mayfly:admin`): its client and an API caller.
async fn full_admin(app: &TestApp) -> (TestClient, AdminApi<'_>) {
    let created = app.admin().bootstrap(&app.issuer()).await.unwrap();
    let client = TestClient {
        id: created.client.id,
        secret: created.secret.expose().to_owned(),
    };
    let token = token_for(app, &client, "mayfly:admin").await.unwrap();
    (client, AdminApi { app, token })
}

/// A client granted `scopes` on the issuer audience, and an API caller with all of them.
async fn narrow_admin<'a>(app: &'a TestApp, scopes: &[&str]) -> (TestClient, AdminApi<'a>) {
    let client = app.client().await;
    app.grant(&client, &app.issuer(), scopes).await;
    let token = token_for(app, &client, &scopes.join(" ")).await.unwrap();
    (client, AdminApi { app, token })
}

/// A client_credentials token for `scope` on the issuer audience, or the error body.
async fn token_for(app: &TestApp, client: &TestClient, scope: &str) -> Result<String, Value> {
    let response = app
        .token_request(
            Auth::Basic(client),
            &[
                ("grant_type", "client_credentials"),
                ("scope", scope),
                ("resource", &app.issuer()),
            ],
        )
        .await;
    let ok = response.status() == 200;
    let body: Value = response.json().await.unwrap();
    if ok {
        Ok(body["access_token"].as_str().unwrap().to_owned())
    } else {
        Err(body)
    }
}

/// Asserts a 403 `insufficient_scope` problem naming `scope`, in the detail and in the
/// challenge.
pub fn assert_lacks(answer: &Answer, scope: &str) {
    let body = answer.problem(403);
    let challenge = answer
        .headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        challenge.contains(r#"error="insufficient_scope""#)
            && challenge.contains(&format!(r#"scope="{scope}""#)),
        "challenge: {challenge}, body: {body}"
    );
    assert!(
        body["detail"].as_str().unwrap_or_default().contains(scope),
        "{body}"
    );
}

fn client_subject(id: Uuid) -> Value {
    json!({ "kind": "client", "id": id })
}

/// `mayfly:admin:grants` giving itself `mayfly:admin` on the issuer audience: refused,
/// and no `mayfly:admin` token follows. Grants elsewhere still work, and a full admin
/// may hand out `mayfly:admin`.
async fn a_grants_admin_cannot_grant_itself_admin(app: TestApp) {
    let (_, full) = full_admin(&app).await;
    app.audience(ORDERS, &["orders:read"]).await;
    let (me, grants) = narrow_admin(&app, &["mayfly:admin:grants"]).await;

    let attack = grants
        .post(
            "/admin/v1/grants",
            json!({ "subject": client_subject(me.id), "audience": app.issuer(),
                    "scopes": ["mayfly:admin"], "reason": "mine now" }),
        )
        .await;
    assert_lacks(&attack, "mayfly:admin");
    assert_eq!(
        token_for(&app, &me, "mayfly:admin").await.unwrap_err()["error"],
        "invalid_scope"
    );
    // Not a scope it holds either: mayfly:admin:users.
    let sideways = grants
        .post(
            "/admin/v1/grants",
            json!({ "subject": client_subject(me.id), "audience": app.issuer(),
                    "scopes": ["mayfly:admin:users"], "reason": "mine now" }),
        )
        .await;
    assert_lacks(&sideways, "mayfly:admin:users");
    // Widening an existing grant on the issuer audience (its window) is refused too.
    let other = app.client().await;
    let existing = full
        .post(
            "/admin/v1/grants",
            json!({ "subject": client_subject(other.id), "audience": app.issuer(),
                    "scopes": ["mayfly:admin:keys"], "reason": "keys",
                    "expires_at": "2099-01-01T00:00:00Z" }),
        )
        .await
        .ok(201)
        .clone();
    let path = format!("/admin/v1/grants/{}", existing["id"].as_str().unwrap());
    assert_lacks(
        &grants.patch(&path, json!({ "expires_at": null })).await,
        "mayfly:admin:keys",
    );

    // Its own job: grants on other audiences.
    grants
        .post(
            "/admin/v1/grants",
            json!({ "subject": client_subject(other.id), "audience": ORDERS,
                    "scopes": ["orders:read"], "reason": "work" }),
        )
        .await
        .ok(201);
    // What it holds, it may hand out.
    grants
        .post(
            "/admin/v1/grants",
            json!({ "subject": client_subject(other.id), "audience": app.issuer(),
                    "scopes": ["mayfly:admin:grants"], "reason": "a colleague" }),
        )
        .await
        .ok(201);
    full.post(
        "/admin/v1/grants",
        json!({ "subject": client_subject(other.id), "audience": app.issuer(),
                "scopes": ["mayfly:admin"], "reason": "a second admin" }),
    )
    .await
    .ok(201);
}

/// `mayfly:admin:clients` adding a secret or a public key to the bootstrap admin (or
/// disabling, relabelling it): refused, naming `mayfly:admin`. On an ordinary client the
/// same calls work, and a full admin may rotate the admin's secret.
async fn a_clients_admin_cannot_add_credentials_to_an_admin(app: TestApp) {
    let (root, full) = full_admin(&app).await;
    let (_, clients) = narrow_admin(&app, &["mayfly:admin:clients"]).await;
    let jwk = json!({ "kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" });

    let root_path = format!("/admin/v1/clients/{}", root.id);
    let secret = clients
        .post(&format!("{root_path}/secrets"), json!({}))
        .await;
    assert_lacks(&secret, "mayfly:admin");
    assert!(secret.body.get("client_secret").is_none());
    assert_lacks(
        &clients
            .post(&format!("{root_path}/public-keys"), jwk.clone())
            .await,
        "mayfly:admin",
    );
    for patch in [
        json!({ "enabled": false }),
        json!({ "labels": ["oncall"] }),
        json!({ "allowed_cidrs": [] }),
    ] {
        assert_lacks(&clients.patch(&root_path, patch).await, "mayfly:admin");
    }
    let secrets = full
        .get(&format!("{root_path}/secrets"))
        .await
        .ok(200)
        .clone();
    assert_eq!(secrets.as_array().unwrap().len(), 1, "{secrets}");
    let secret_path = format!("{root_path}/secrets/{}", secrets[0]["id"].as_str().unwrap());
    assert_lacks(&clients.delete(&secret_path).await, "mayfly:admin");

    // A client with one narrower admin scope is privileged as well.
    let (keys_admin, _) = narrow_admin(&app, &["mayfly:admin:keys"]).await;
    assert_lacks(
        &clients
            .post(
                &format!("/admin/v1/clients/{}/secrets", keys_admin.id),
                json!({}),
            )
            .await,
        "mayfly:admin:keys",
    );

    // An ordinary workload: the clients admin's job.
    let worker = app.client().await;
    let worker_path = format!("/admin/v1/clients/{}", worker.id);
    clients
        .post(&format!("{worker_path}/secrets"), json!({}))
        .await
        .ok(201);
    clients
        .post(&format!("{worker_path}/public-keys"), jwk)
        .await
        .ok(201);
    clients
        .patch(&worker_path, json!({ "labels": ["batch"] }))
        .await
        .ok(200);
    // The full admin may.
    full.post(&format!("{root_path}/secrets"), json!({}))
        .await
        .ok(201);
}

/// `mayfly:admin:users` setting the password of a user who holds `mayfly:admin`: refused;
/// the old password still works, the attacker's does not. An ordinary user's password
/// can be reset.
async fn a_users_admin_cannot_set_an_admins_password(app: TestApp) {
    let (_, full) = full_admin(&app).await;
    let cli = app.client_for(&["password"]).await;
    let root = app.user("root", PASSWORD).await;
    app.grant_user(root, &app.issuer(), &["mayfly:admin"]).await;
    let (_, users) = narrow_admin(&app, &["mayfly:admin:users"]).await;

    let attack = users
        .patch(
            &format!("/admin/v1/users/{root}"),
            json!({ "password": "i own you now, root" }),
        )
        .await;
    assert_lacks(&attack, "mayfly:admin");
    let login = |password: &'static str| {
        let app = &app;
        let cli = &cli;
        async move {
            app.login(cli, "root", password, "mayfly:admin")
                .await
                .status()
        }
    };
    assert_eq!(login("i own you now, root").await, 400);
    assert_eq!(login(PASSWORD).await, 200);
    assert_lacks(
        &users
            .patch(
                &format!("/admin/v1/users/{root}"),
                json!({ "enabled": false }),
            )
            .await,
        "mayfly:admin",
    );

    let alice = app.user("alice", PASSWORD).await;
    users
        .patch(
            &format!("/admin/v1/users/{alice}"),
            json!({ "password": "a brand new password" }),
        )
        .await
        .ok(200);
    full.patch(
        &format!("/admin/v1/users/{root}"),
        json!({ "password": "rotated by the full admin" }),
    )
    .await
    .ok(200);
}

/// `mayfly:admin:access` (with `mayfly:access`) writing an `auto` policy that lets
/// itself request `mayfly:admin`: refused, and the request that would follow is not
/// covered. Policies for other audiences work.
async fn an_access_admin_cannot_auto_approve_admin_for_itself(app: TestApp) {
    let (_, full) = full_admin(&app).await;
    app.audience(ORDERS, &["orders:read"]).await;
    let (me, access) = narrow_admin(&app, &["mayfly:admin:access", "mayfly:access"]).await;
    let policy = |audience: String, scope: &str| {
        json!({ "name": "escalate", "audience": audience, "scopes": [scope],
                "subjects": [format!("client:{}", me.id)], "max_duration_secs": 900,
                "decision": "auto" })
    };

    let attack = access
        .post(
            "/admin/v1/access-policies",
            policy(app.issuer(), "mayfly:admin"),
        )
        .await;
    assert_lacks(&attack, "mayfly:admin");
    let request = access
        .post(
            "/v1/access-requests",
            json!({ "audience": app.issuer(), "scopes": ["mayfly:admin"],
                    "duration_secs": 600, "reason": "just checking" }),
        )
        .await;
    request.problem(403);
    assert_eq!(
        token_for(&app, &me, "mayfly:admin").await.unwrap_err()["error"],
        "invalid_scope"
    );
    // Nor by widening a policy it may see: a full admin's deny policy turned auto.
    let deny = full
        .post(
            "/admin/v1/access-policies",
            json!({ "name": "never", "audience": app.issuer(), "scopes": ["mayfly:admin"],
                    "subjects": ["clients"], "max_duration_secs": 900, "decision": "deny" }),
        )
        .await
        .ok(201)
        .clone();
    let path = format!("/admin/v1/access-policies/{}", deny["id"].as_str().unwrap());
    assert_lacks(
        &access.patch(&path, json!({ "decision": "auto" })).await,
        "mayfly:admin",
    );
    assert_lacks(&access.delete(&path).await, "mayfly:admin");

    access
        .post(
            "/admin/v1/access-policies",
            policy(ORDERS.into(), "orders:read"),
        )
        .await
        .ok(201);
}

/// `mayfly:admin:clients` giving a client the token-exchange grant type (by update or at
/// creation): refused, naming `mayfly:admin`; a full admin may.
async fn a_clients_admin_cannot_hand_out_token_exchange(app: TestApp) {
    let (_, full) = full_admin(&app).await;
    let (_, clients) = narrow_admin(&app, &["mayfly:admin:clients"]).await;
    let worker = app.client().await;
    let path = format!("/admin/v1/clients/{}", worker.id);
    let both = json!({ "grant_types": ["client_credentials", EXCHANGE] });

    assert_lacks(&clients.patch(&path, both.clone()).await, "mayfly:admin");
    assert_lacks(
        &clients
            .post(
                "/admin/v1/clients",
                json!({ "name": "exchanger", "grant_types": [EXCHANGE] }),
            )
            .await,
        "mayfly:admin",
    );
    // Other grant types are its job.
    clients
        .patch(
            &path,
            json!({ "grant_types": ["client_credentials", "password"] }),
        )
        .await
        .ok(200);
    full.patch(&path, both).await.ok(200);
}

/// Policy A lets every user have `orders:read` and `orders:write` at once; policy D
/// denies `orders:write` to contractors. A contractor asking for both is denied whole,
/// the reason naming the denied scope; asking for `orders:read` alone is approved, and
/// so is everyone else asking for both.
async fn a_deny_policy_wins_over_any_overlap(app: TestApp) {
    let (_, full) = full_admin(&app).await;
    app.audience(ORDERS, &["orders:read", "orders:write"]).await;
    let cli = app.client_for(&["password"]).await;
    for body in [
        json!({ "name": "A", "scopes": ["orders:read", "orders:write"], "subjects": ["users"],
                "max_duration_secs": 900, "decision": "auto" }),
        json!({ "name": "D", "scopes": ["orders:write"], "subjects": ["label:contractor"],
                "max_duration_secs": 900, "decision": "deny" }),
    ] {
        let mut body = body;
        body["audience"] = json!(ORDERS);
        full.post("/admin/v1/access-policies", body).await.ok(201);
    }
    let carol = app.user("carol", PASSWORD).await;
    app.grant_user(carol, &app.issuer(), &["mayfly:access"])
        .await;
    full.patch(
        &format!("/admin/v1/users/{carol}"),
        json!({ "labels": ["contractor"] }),
    )
    .await
    .ok(200);
    let dave = app.user("dave", PASSWORD).await;
    app.grant_user(dave, &app.issuer(), &["mayfly:access"])
        .await;
    let as_user = |name: &'static str| {
        let app = &app;
        let cli = &cli;
        async move {
            let response = app
                .token_request(
                    Auth::Basic(cli),
                    &[
                        ("grant_type", "password"),
                        ("username", name),
                        ("password", PASSWORD),
                        ("scope", "mayfly:access"),
                        ("resource", &app.issuer()),
                    ],
                )
                .await;
            let body: Value = response.json().await.unwrap();
            AdminApi {
                app,
                token: body["access_token"].as_str().unwrap().to_owned(),
            }
        }
    };
    let ask = |scopes: &[&str]| {
        json!({ "audience": ORDERS, "scopes": scopes, "duration_secs": 600,
                "reason": "INC-1" })
    };

    let carol_api = as_user("carol").await;
    let both = carol_api
        .post("/v1/access-requests", ask(&["orders:read", "orders:write"]))
        .await;
    let detail = both.problem(403)["detail"].as_str().unwrap().to_owned();
    assert!(
        detail.contains("orders:write") && detail.contains("\"D\""),
        "{detail}"
    );
    assert!(
        app.login(&cli, "carol", PASSWORD, "orders:write")
            .await
            .status()
            .is_client_error()
    );
    let read = carol_api
        .post("/v1/access-requests", ask(&["orders:read"]))
        .await;
    assert_eq!(read.ok(201)["state"], "approved");
    let dave_api = as_user("dave").await;
    let dave_both = dave_api
        .post("/v1/access-requests", ask(&["orders:read", "orders:write"]))
        .await;
    assert_eq!(dave_both.ok(201)["state"], "approved");
}

/// A resource server R (token exchange allowed, no grants, named in no `may_act`)
/// receives alice's token for ORDERS and tries to trade it for a REPORTS token in her
/// name without an actor token: refused. The client alice's token was issued to may
/// still down-scope it.
async fn exchange_without_an_actor_is_for_the_tokens_own_client_only(app: TestApp) {
    app.audience(ORDERS, &["orders:read"]).await;
    app.audience(REPORTS, &["orders:read"]).await;
    let alice = app.user("alice", PASSWORD).await;
    app.grant_user(alice, ORDERS, &["orders:read"]).await;
    app.grant_user(alice, REPORTS, &["orders:read"]).await;
    let cli = app.client_for(&["password", EXCHANGE]).await;
    let rs = app.client_for(&["client_credentials", EXCHANGE]).await;
    let login = app
        .token_request(
            Auth::Basic(&cli),
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", PASSWORD),
                ("scope", "orders:read"),
                ("resource", ORDERS),
            ],
        )
        .await;
    assert_eq!(login.status(), 200);
    let token = login.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let exchange = |caller: &TestClient| {
        let caller = caller.clone();
        let app = &app;
        let token = token.clone();
        async move {
            app.token_request(
                Auth::Basic(&caller),
                &[
                    ("grant_type", EXCHANGE),
                    ("subject_token", &token),
                    ("subject_token_type", ACCESS_TOKEN),
                    ("resource", REPORTS),
                ],
            )
            .await
        }
    };

    let body = crate::helpers::assert_oauth_error(exchange(&rs).await, 400, "invalid_grant").await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("actor_token"),
        "{body}"
    );
    let own = exchange(&cli).await;
    assert_eq!(own.status(), 200);
    let claims = app.claims_of(
        own.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(claims.sub, alice.to_string());
    assert_eq!(claims.aud, REPORTS);
    assert!(claims.act.is_none());
}

/// An admin change through the API is audited with where the call came from (as every
/// other event is): the source address, user agent and request id.
async fn admin_changes_carry_the_callers_address(app: TestApp) {
    let (_, full) = full_admin(&app).await;
    let response = app
        .http
        .post(format!("{}/admin/v1/clients", app.base))
        .bearer_auth(&full.token)
        .header("user-agent", "escalation-test/1")
        .json(&json!({ "name": "audited" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let events = app.audit("admin.change").await;
    let created = events
        .iter()
        .find(|e| e.detail["action"] == "client.create" && e.detail["after"]["name"] == "audited")
        .expect("the change is audited");
    assert_eq!(created.source_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(created.user_agent.as_deref(), Some("escalation-test/1"));
    // A revocation through the admin API too.
    full.post(
        "/admin/v1/revocations",
        json!({ "kind": "client", "value": Uuid::now_v7().to_string(), "reason": "test" }),
    )
    .await
    .ok(201);
    full.post("/admin/v1/keys/rotate", json!({ "emergency": true }))
        .await
        .ok(200);
    let key_changes = app.audit("key.change").await;
    assert!(!key_changes.is_empty());
    assert!(
        key_changes
            .iter()
            .all(|e| e.source_ip.as_deref() == Some("127.0.0.1")),
        "{key_changes:?}"
    );
    let revoked = app.audit("token.revoked").await;
    assert_eq!(
        revoked.first().and_then(|e| e.source_ip.as_deref()),
        Some("127.0.0.1"),
        "{revoked:?}"
    );
    // The refusal of a narrow admin's attempt is no change: nothing is recorded for it.
    let before = app.audit("admin.change").await.len();
    let (_, grants) = narrow_admin(&app, &["mayfly:admin:grants"]).await;
    let after_setup = app.audit("admin.change").await.len();
    assert!(after_setup > before);
    assert_lacks(
        &grants
            .post(
                "/admin/v1/grants",
                json!({ "subject": { "kind": "client", "id": Uuid::nil() }, "audience": app.issuer(),
                        "scopes": ["mayfly:admin"], "reason": "no" }),
            )
            .await,
        "mayfly:admin",
    );
    assert_eq!(app.audit("admin.change").await.len(), after_setup);
}

/// `mayfly:admin:audiences` adding, changing or deleting scopes of the issuer audience,
/// or the audience itself: refused. Other audiences are its job.
async fn an_audiences_admin_cannot_touch_the_issuer_audience(app: TestApp) {
    let (_, _full) = full_admin(&app).await;
    app.audience(ORDERS, &["orders:read"]).await;
    let (_, audiences) = narrow_admin(&app, &["mayfly:admin:audiences"]).await;
    let issuer = app
        .state
        .store
        .audience_by_uri(&app.issuer())
        .await
        .unwrap()
        .unwrap();
    let orders = app
        .state
        .store
        .audience_by_uri(ORDERS)
        .await
        .unwrap()
        .unwrap();
    assert_lacks(
        &audiences
            .post(
                "/admin/v1/scopes",
                json!({ "audience_id": issuer.id, "name": "mayfly:superpower" }),
            )
            .await,
        "mayfly:superpower",
    );
    let scopes = app.state.store.scopes_of(issuer.id).await.unwrap();
    let admin_scope = scopes.iter().find(|s| s.name == "mayfly:admin").unwrap();
    let path = format!("/admin/v1/scopes/{}", admin_scope.id);
    assert_lacks(&audiences.delete(&path).await, "mayfly:admin");
    assert_lacks(
        &audiences
            .patch(&path, json!({ "description": "mine" }))
            .await,
        "mayfly:admin",
    );
    assert_lacks(
        &audiences
            .patch(
                &format!("/admin/v1/audiences/{}", issuer.id),
                json!({ "description": "mine" }),
            )
            .await,
        "mayfly:admin",
    );
    audiences
        .post(
            "/admin/v1/scopes",
            json!({ "audience_id": orders.id, "name": "orders:write" }),
        )
        .await
        .ok(201);
}

/// A subject that holds a `mayfly:*` scope only through an access policy (by label) is
/// privileged too; and a narrow admin cannot make a subject privileged by labelling it.
async fn privilege_through_an_access_policy_counts(app: TestApp) {
    let (_, full) = full_admin(&app).await;
    full.post(
        "/admin/v1/access-policies",
        json!({ "name": "on call", "audience": app.issuer(), "scopes": ["mayfly:admin:keys"],
                "subjects": ["label:oncall"], "max_duration_secs": 3600,
                "decision": "approval", "approvals_required": 1 }),
    )
    .await
    .ok(201);
    let (_, users) = narrow_admin(&app, &["mayfly:admin:users"]).await;
    let (_, clients) = narrow_admin(&app, &["mayfly:admin:clients"]).await;
    let oncall = app.user("oncall", PASSWORD).await;
    full.patch(
        &format!("/admin/v1/users/{oncall}"),
        json!({ "labels": ["oncall"] }),
    )
    .await
    .ok(200);

    assert_lacks(
        &users
            .patch(
                &format!("/admin/v1/users/{oncall}"),
                json!({ "password": "a password i know" }),
            )
            .await,
        "mayfly:admin:keys",
    );
    // Labelling someone into the policy, or creating them with the label: refused.
    let bob = app.user("bob", PASSWORD).await;
    assert_lacks(
        &users
            .patch(
                &format!("/admin/v1/users/{bob}"),
                json!({ "labels": ["oncall"] }),
            )
            .await,
        "mayfly:admin:keys",
    );
    assert_lacks(
        &users
            .post(
                "/admin/v1/users",
                json!({ "username": "mallory", "password": "a password i know",
                        "labels": ["oncall"] }),
            )
            .await,
        "mayfly:admin:keys",
    );
    let worker = app.client().await;
    assert_lacks(
        &clients
            .patch(
                &format!("/admin/v1/clients/{}", worker.id),
                json!({ "labels": ["oncall"] }),
            )
            .await,
        "mayfly:admin:keys",
    );
    // Other labels, other users: its job.
    users
        .patch(
            &format!("/admin/v1/users/{bob}"),
            json!({ "labels": ["night-shift"], "password": "bob's new password" }),
        )
        .await
        .ok(200);
}
