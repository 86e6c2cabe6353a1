//! Workload identity federation (issue #20): trusted issuers and the federated
//! identities of clients and users, through the HTTP admin API; and external tokens at
//! the token endpoint (client authentication, user token exchange), against a real test
//! issuer (`mayfly_federation::testing::TestIssuer`).

use mayfly_federation::testing::{TestIssuer, TestKey, github_actions_claims, kubernetes_claims};
use serde_json::{Value, json};

use crate::helpers::{AdminApi, TestApp};

const GITHUB: &str = "https://token.actions.githubusercontent.com";
const ISSUERS: &str = "/admin/v1/trusted-issuers";

crate::both_stores!(
    trusted_issuers_are_created_listed_changed_and_deleted,
    invalid_issuer_settings_are_refused_naming_the_field,
    federated_identities_of_clients_and_users,
    federation_needs_the_family_scopes,
    hostile_text_in_an_identity_is_refused,
    a_workload_with_no_secret_gets_a_token_with_its_platform_token,
);

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

fn github(audience: &str) -> Value {
    json!({
        "issuer": GITHUB,
        "audience": audience,
        "algorithms": ["RS256"],
        "description": "GitHub Actions",
    })
}

async fn create_issuer(api: &AdminApi<'_>, body: Value) -> String {
    id(api.post(ISSUERS, body).await.ok(201))
}

fn actions(events: &[mayfly_store::AuditEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| e.detail["action"].as_str().map(str::to_owned))
        .collect()
}

async fn trusted_issuers_are_created_listed_changed_and_deleted(app: TestApp) {
    let api = app.bootstrap_admin().await;
    let created = api.post(ISSUERS, github("https://mayfly.example")).await;
    let body = created.ok(201).clone();
    assert_eq!(body["issuer"], GITHUB);
    assert_eq!(body["description"], "GitHub Actions");
    assert_eq!(body["settings"]["key_source"]["type"], "discovery");
    assert_eq!(body["settings"]["algorithms"], json!(["RS256"]));
    let github_id = id(&body);
    // The issuer URL is unique.
    api.post(ISSUERS, github("https://other.example"))
        .await
        .problem(409);
    // A loopback http issuer with an inline key set (tests, air-gapped clusters).
    let local = create_issuer(
        &api,
        json!({
            "issuer": "http://127.0.0.1:8080",
            "audience": "mayfly",
            "key_source": {"type": "jwks_uri", "jwks_uri": "http://127.0.0.1:8080/jwks"},
        }),
    )
    .await;

    // Listed with cursor paging, in id order.
    let first = api.get(&format!("{ISSUERS}?limit=1")).await;
    let first = first.ok(200);
    assert_eq!(first["items"].as_array().unwrap().len(), 1);
    assert_eq!(first["items"][0]["id"], github_id.as_str());
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let second = api.get(&format!("{ISSUERS}?limit=1&cursor={cursor}")).await;
    let second = second.ok(200);
    assert_eq!(second["items"][0]["id"], local.as_str());
    assert!(second.get("next_cursor").is_none(), "{second}");

    let path = format!("{ISSUERS}/{github_id}");
    assert_eq!(api.get(&path).await.ok(200)["issuer"], GITHUB);

    // Description and settings change; the issuer URL does not.
    let changed = api
        .patch(
            &path,
            json!({ "description": "CI", "max_age_seconds": 600, "algorithms": ["RS256", "ES256"] }),
        )
        .await;
    let changed = changed.ok(200);
    assert_eq!(changed["description"], "CI");
    assert_eq!(changed["settings"]["max_age_seconds"], 600);
    assert_eq!(changed["settings"]["algorithms"], json!(["RS256", "ES256"]));
    assert_eq!(changed["settings"]["audience"], "https://mayfly.example");
    let cleared = api.patch(&path, json!({ "max_age_seconds": null })).await;
    assert!(cleared.ok(200)["settings"].get("max_age_seconds").is_none());
    let moved = api
        .patch(&path, json!({ "issuer": "https://evil.example" }))
        .await;
    assert_eq!(moved.problem(422)["errors"][0]["field"], "issuer");
    let bad = api.patch(&path, json!({ "algorithms": ["HS256"] })).await;
    assert_eq!(bad.problem(422)["errors"][0]["field"], "algorithms");
    assert_eq!(api.get(&path).await.ok(200)["description"], "CI");

    api.delete(&path).await.ok(204);
    api.get(&path).await.problem(404);
    api.delete(&path).await.problem(404);

    // Every change is audited, with who did it.
    let events = app.audit("admin.change").await;
    let seen = actions(&events);
    for action in [
        "trusted_issuer.create",
        "trusted_issuer.update",
        "trusted_issuer.delete",
    ] {
        assert!(seen.iter().any(|a| a == action), "{action} in {seen:?}");
    }
}

async fn invalid_issuer_settings_are_refused_naming_the_field(app: TestApp) {
    let api = app.bootstrap_admin().await;
    let refused = |body: Value, field: &'static str| {
        let api = &api;
        async move {
            let answer = api.post(ISSUERS, body.clone()).await;
            assert_eq!(
                answer.problem(422)["errors"][0]["field"],
                field,
                "{body}: {}",
                answer.body
            );
        }
    };
    let with = |key: &str, value: Value| {
        let mut body = github("https://mayfly.example");
        body[key] = value;
        body
    };
    refused(with("algorithms", json!(["none"])), "algorithms").await;
    refused(with("algorithms", json!(["HS256"])), "algorithms").await;
    refused(with("algorithms", json!(["RS256", "HS512"])), "algorithms").await;
    refused(with("algorithms", json!([])), "algorithms").await;
    refused(with("issuer", json!("http://issuer.example")), "issuer").await;
    refused(
        with("issuer", json!("https://issuer.example/?x=1")),
        "issuer",
    )
    .await;
    refused(with("audience", json!("")), "audience").await;
    refused(with("max_age_seconds", json!(0)), "max_age_seconds").await;
    refused(with("clock_skew_seconds", json!(301)), "clock_skew_seconds").await;
    refused(
        with(
            "key_source",
            json!({"type": "jwks_uri", "jwks_uri": "http://keys.example/jwks"}),
        ),
        "key_source.jwks_uri",
    )
    .await;
    refused(
        with("key_source", json!({"type": "inline", "jwks": {"keys": 1}})),
        "key_source.jwks",
    )
    .await;
    refused(with("colour", json!("red")), "colour").await;
    assert!(
        api.get(ISSUERS).await.ok(200)["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

async fn federated_identities_of_clients_and_users(app: TestApp) {
    let api = app.bootstrap_admin().await;
    let issuer = create_issuer(&api, github("https://mayfly.example")).await;
    let client = app.client().await;
    let alice = app.user("alice", "correct horse battery staple").await;
    let client_ids = format!("/admin/v1/clients/{}/federated-identities", client.id);
    let user_ids = format!("/admin/v1/users/{alice}/federated-identities");

    // An exact subject for the client.
    let sub = "repo:acme/deploy:ref:refs/heads/main";
    let added = api
        .post(&client_ids, json!({ "issuer": GITHUB, "subject": sub }))
        .await;
    let added = added.ok(201).clone();
    assert_eq!(added["subject"], sub);
    assert_eq!(added["issuer"], GITHUB);
    assert_eq!(added["trusted_issuer_id"], issuer.as_str());
    assert_eq!(added["owner_kind"], "client");
    assert_eq!(added["owner_id"], client.id.to_string());
    // The same subject again, for anyone: refused.
    api.post(&user_ids, json!({ "issuer": GITHUB, "subject": sub }))
        .await
        .problem(409);
    // The same subject as an equality condition on /sub: it overlaps.
    api.post(
        &user_ids,
        json!({ "issuer": GITHUB, "conditions": [{"type": "equals", "claim": "/sub", "value": sub}] }),
    )
    .await
    .problem(409);

    // Conditions for the user.
    let repo_main = json!([
        {"type": "equals", "claim": "/repository", "value": "acme/app"},
        {"type": "equals", "claim": "/ref", "value": "refs/heads/main"},
    ]);
    let user_identity = api
        .post(
            &user_ids,
            json!({ "issuer": GITHUB, "conditions": repo_main }),
        )
        .await;
    let user_identity = user_identity.ok(201).clone();
    assert_eq!(user_identity["conditions"], repo_main);
    assert!(user_identity.get("subject").is_none());
    // The same set in another order, and a wider set: certain overlaps.
    let reordered = json!([
        {"type": "equals", "claim": "/ref", "value": "refs/heads/main"},
        {"type": "equals", "claim": "/repository", "value": "acme/app"},
    ]);
    let wider = json!([{"type": "equals", "claim": "/repository", "value": "acme/app"}]);
    for conditions in [reordered, wider] {
        let answer = api
            .post(
                &client_ids,
                json!({ "issuer": GITHUB, "conditions": conditions }),
            )
            .await;
        assert!(
            answer.problem(409)["detail"]
                .as_str()
                .unwrap()
                .contains("overlaps"),
            "{}",
            answer.body
        );
    }
    // Another repository does not overlap.
    let other = api
        .post(
            &client_ids,
            json!({ "issuer": GITHUB, "conditions": [
                {"type": "equals", "claim": "/repository", "value": "acme/other"},
            ]}),
        )
        .await;
    other.ok(201);

    // Invalid rules: the crate's checks, as 422 naming the field.
    for (body, field) in [
        (json!({ "issuer": GITHUB }), "subject"),
        (
            json!({ "issuer": GITHUB, "subject": "x", "conditions": [] }),
            "subject",
        ),
        (json!({ "issuer": GITHUB, "subject": "" }), "subject"),
        (json!({ "issuer": GITHUB, "conditions": [] }), "conditions"),
        (
            json!({ "issuer": GITHUB, "conditions": [{"type": "equals", "claim": "/a", "value": {"x": 1}}] }),
            "conditions",
        ),
        (
            json!({ "issuer": "https://unknown.example", "subject": "x" }),
            "issuer",
        ),
    ] {
        let answer = api.post(&user_ids, body.clone()).await;
        assert_eq!(
            answer.problem(422)["errors"][0]["field"],
            field,
            "{body}: {}",
            answer.body
        );
    }
    let bad_pointer = api
        .post(
            &user_ids,
            json!({ "issuer": GITHUB, "conditions": [{"type": "equals", "claim": "repository", "value": "x"}] }),
        )
        .await;
    bad_pointer.problem(422);
    // Unknown owners.
    api.post(
        &format!(
            "/admin/v1/clients/{}/federated-identities",
            uuid::Uuid::nil()
        ),
        json!({ "issuer": GITHUB, "subject": "y" }),
    )
    .await
    .problem(404);

    // Listed per owner.
    let listed = api.get(&client_ids).await;
    assert_eq!(listed.ok(200).as_array().unwrap().len(), 2);
    let listed = api.get(&user_ids).await;
    assert_eq!(listed.ok(200)[0]["id"], user_identity["id"]);

    // The issuer cannot go while identities use it.
    let issuer_path = format!("{ISSUERS}/{issuer}");
    api.delete(&issuer_path).await.problem(409);

    // An identity is deleted under its own owner only.
    let user_identity_path = format!("{user_ids}/{}", id(&user_identity));
    api.delete(&format!("{client_ids}/{}", id(&user_identity)))
        .await
        .problem(404);
    api.delete(&user_identity_path).await.ok(204);
    api.delete(&user_identity_path).await.problem(404);
    assert!(
        api.get(&user_ids)
            .await
            .ok(200)
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Identities go with their client; then the issuer can go.
    api.delete(&format!("/admin/v1/clients/{}", client.id))
        .await
        .ok(204);
    api.get(&client_ids).await.problem(404);
    api.delete(&issuer_path).await.ok(204);

    let seen = actions(&app.audit("admin.change").await);
    for action in [
        "client.federated_identity.add",
        "user.federated_identity.add",
        "user.federated_identity.delete",
    ] {
        assert!(seen.iter().any(|a| a == action), "{action} in {seen:?}");
    }
}

async fn federation_needs_the_family_scopes(app: TestApp) {
    let full = app.bootstrap_admin().await;
    create_issuer(&full, github("https://mayfly.example")).await;
    let client = app.client().await;
    let alice = app.user("alice", "correct horse battery staple").await;
    let client_ids = format!("/admin/v1/clients/{}/federated-identities", client.id);
    let user_ids = format!("/admin/v1/users/{alice}/federated-identities");

    // A users admin: the identities of users, not trusted issuers nor clients.
    let users = app.admin_with(&["mayfly:admin:users"]).await;
    let answer = users.post(ISSUERS, github("https://a.example")).await;
    assert!(answer.problem(403)["detail"].is_string());
    users.get(ISSUERS).await.problem(403);
    users
        .post(&client_ids, json!({ "issuer": GITHUB, "subject": "c" }))
        .await
        .problem(403);
    users.get(&client_ids).await.problem(403);
    users
        .post(&user_ids, json!({ "issuer": GITHUB, "subject": "u" }))
        .await
        .ok(201);

    // A clients admin: trusted issuers and the identities of clients.
    let clients = app.admin_with(&["mayfly:admin:clients"]).await;
    clients
        .post(&client_ids, json!({ "issuer": GITHUB, "subject": "c" }))
        .await
        .ok(201);
    clients.get(ISSUERS).await.ok(200);
    clients.get(&user_ids).await.problem(403);
    clients
        .post(&user_ids, json!({ "issuer": GITHUB, "subject": "u2" }))
        .await
        .problem(403);

    // Read-only admins read, never write.
    let reader = app.admin_with(&["mayfly:admin:read"]).await;
    reader.get(ISSUERS).await.ok(200);
    reader.get(&user_ids).await.ok(200);
    reader
        .post(ISSUERS, github("https://b.example"))
        .await
        .problem(403);
}

/// A NUL or control character in a subject or a condition (which Postgres would refuse
/// to store) is the admin's mistake: 422 naming the field, never a 500.
async fn hostile_text_in_an_identity_is_refused(app: TestApp) {
    let api = app.bootstrap_admin().await;
    create_issuer(&api, github("https://mayfly.example")).await;
    let client = app.client().await;
    let path = format!("/admin/v1/clients/{}/federated-identities", client.id);
    let nul_subject = api
        .post(
            &path,
            json!({ "issuer": GITHUB, "subject": "repo:acme/api\u{0}" }),
        )
        .await;
    assert!(
        nul_subject.problem(422)["detail"]
            .to_string()
            .contains("subject")
    );
    let nul_value = api
        .post(
            &path,
            json!({ "issuer": GITHUB, "conditions": [
                { "type": "equals", "claim": "/repository", "value": "acme/\u{0}api\u{1b}[31m" }
            ] }),
        )
        .await;
    assert_eq!(nul_value.status, 422, "{}", nul_value.body);
    // Nothing was kept.
    assert_eq!(api.get(&path).await.ok(200).as_array().unwrap().len(), 0);
}

// ---- The token endpoint: external tokens as client credentials --------------------

const ORDERS: &str = "https://api.example.com/orders";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A running Mayfly trusting a test issuer (RS256 key `rsa-1`, ES256 key `ec-1`), and an
/// admin to configure it.
struct Federated<'a> {
    app: &'a TestApp,
    api: AdminApi<'a>,
    issuer: TestIssuer,
}

impl<'a> Federated<'a> {
    /// Trusts a fresh test issuer (discovery; RS256 and ES256) whose tokens must name
    /// Mayfly's issuer as audience; `settings` adds to or overrides the body.
    async fn start(app: &'a TestApp, settings: Value) -> Self {
        let api = app.bootstrap_admin().await;
        let issuer =
            TestIssuer::start(vec![TestKey::rsa("rsa-1", 0), TestKey::es256("ec-1")]).await;
        let mut body = json!({
            "issuer": issuer.issuer(),
            "audience": app.issuer(),
            "algorithms": ["RS256", "ES256"],
        });
        for (k, v) in settings.as_object().unwrap() {
            body[k] = v.clone();
        }
        create_issuer(&api, body).await;
        app.audience(ORDERS, &["orders:read", "orders:write"]).await;
        Self { app, api, issuer }
    }

    /// A client with no stored secret (its only one deleted) granted `orders:read`, that
    /// tokens matching `rule` (`{"subject": …}` or `{"conditions": […]}`) speak for.
    async fn workload(&self, rule: Value) -> uuid::Uuid {
        let client = self.app.client().await;
        let admin = self.app.admin();
        for secret in admin.list_client_secrets(client.id).await.unwrap() {
            admin
                .delete_client_secret(client.id, secret.id)
                .await
                .unwrap();
        }
        self.app.grant(&client, ORDERS, &["orders:read"]).await;
        self.identity("clients", client.id, rule).await;
        client.id
    }

    async fn identity(&self, owner: &str, id: uuid::Uuid, rule: Value) {
        let mut body = rule;
        body["issuer"] = self.issuer.issuer().into();
        self.api
            .post(
                &format!("/admin/v1/{owner}/{id}/federated-identities"),
                body,
            )
            .await
            .ok(201);
    }

    /// Kubernetes-shaped claims for `pay/worker`, issued now, for Mayfly.
    fn kubernetes(&self) -> Value {
        kubernetes_claims(
            self.issuer.issuer(),
            &self.app.issuer(),
            self.app.now(),
            "pay",
            "worker",
            "worker-7d9f",
        )
    }

    /// GitHub-Actions-shaped claims for a push to main of `acme/api`, issued now.
    fn github(&self) -> Value {
        github_actions_claims(
            self.issuer.issuer(),
            &self.app.issuer(),
            self.app.now(),
            "acme/api",
            "refs/heads/main",
        )
    }

    /// A client_credentials request for `orders:read` authenticated with `assertion`.
    async fn client_credentials(
        &self,
        assertion: &str,
        extra: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("scope", "orders:read"),
            ("resource", ORDERS),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion),
        ];
        form.extend_from_slice(extra);
        self.app
            .http
            .post(format!("{}/oauth2/token", self.app.base))
            .form(&form)
            .send()
            .await
            .unwrap()
    }
}

fn kubernetes_rule() -> Value {
    json!({ "conditions": [
        {"type": "equals", "claim": "/kubernetes.io/namespace", "value": "pay"},
        {"type": "equals", "claim": "/kubernetes.io/serviceaccount/name", "value": "worker"},
    ]})
}

async fn a_workload_with_no_secret_gets_a_token_with_its_platform_token(app: TestApp) {
    let fed = Federated::start(&app, json!({})).await;
    let worker = fed.workload(kubernetes_rule()).await;
    let deploy = fed
        .workload(json!({ "subject": "repo:acme/api:ref:refs/heads/main" }))
        .await;
    let verifier = app.verifier(ORDERS).await;

    // A Kubernetes projected token (RS256) authenticates the worker client.
    let token = fed.issuer.mint("rsa-1", &fed.kubernetes());
    let response = fed.client_credentials(&token, &[]).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap();
    let claims = verifier
        .verify(access, &["orders:read"], app.now())
        .unwrap();
    assert_eq!(claims.sub, worker.to_string());
    assert_eq!(claims.client_id, worker.to_string());
    assert_eq!(claims.aud, ORDERS);
    assert_eq!(claims.scope, "orders:read");

    // A GitHub Actions token (ES256), with the client_id it matches.
    let github = fed.issuer.mint("ec-1", &fed.github());
    let deploy_id = deploy.to_string();
    let response = fed
        .client_credentials(&github, &[("client_id", deploy_id.as_str())])
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let claims = verifier
        .verify(body["access_token"].as_str().unwrap(), &[], app.now())
        .unwrap();
    assert_eq!(claims.client_id, deploy_id);

    // The metadata lists the assertion algorithms.
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
    assert_eq!(
        metadata["token_endpoint_auth_signing_alg_values_supported"],
        json!(["EdDSA", "RS256", "ES256"])
    );
    assert!(
        metadata["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("private_key_jwt"))
    );
}
