//! Workload identity federation (issue #20): trusted issuers and the federated
//! identities of clients and users, through the HTTP admin API; and external tokens at
//! the token endpoint (client authentication, user token exchange), against a real test
//! issuer (`mayfly_federation::testing::TestIssuer`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mayfly_federation::testing::{
    TestIssuer, TestKey, compact, github_actions_claims, kubernetes_claims,
};
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
    bad_external_tokens_are_refused_with_invalid_client_and_audited,
    unknown_kid_floods_fetch_the_key_set_at_most_once_per_interval,
    issuer_key_rotation_is_picked_up_and_a_warm_cache_outlives_the_issuer,
    external_tokens_are_single_use_across_replicas,
    users_exchange_an_external_token_for_their_own_token,
    external_subject_tokens_are_refused_with_invalid_grant,
    a_federated_client_is_any_client_downstream,
    a_clients_admin_cannot_repoint_an_issuer_admins_sign_in_with,
    a_nul_in_an_external_issuer_or_a_username_is_refused_not_a_500,
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
        self.client_credentials_with_proof(assertion, extra, None)
            .await
    }

    /// As [`Self::client_credentials`], with a DPoP proof when given.
    async fn client_credentials_with_proof(
        &self,
        assertion: &str,
        extra: &[(&str, &str)],
        proof: Option<&str>,
    ) -> reqwest::Response {
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("scope", "orders:read"),
            ("resource", ORDERS),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion),
        ];
        form.extend_from_slice(extra);
        let mut request = self
            .app
            .http
            .post(format!("{}/oauth2/token", self.app.base));
        if let Some(proof) = proof {
            request = request.header("DPoP", proof);
        }
        request.form(&form).send().await.unwrap()
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

    // A signed subject with control and bidi characters (and a NUL, which Postgres would
    // refuse to store) is written escaped, and still found by what the token said.
    let mut hostile = fed.kubernetes();
    hostile["sub"] = json!("system:serviceaccount:pay:worker\u{202e}\u{0}\u{1b}[31m");
    let response = fed
        .client_credentials(&fed.issuer.mint("rsa-1", &hostile), &[])
        .await;
    assert_eq!(response.status(), 200);
    let found = fed
        .api
        .get("/admin/v1/audit-events?external_subject=system%3Aserviceaccount%3Apay%3Aworker%E2%80%AE%00%1B%5B31m")
        .await;
    let found = found.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(found.len(), 1, "{found:?}");
    let stored = found[0]["detail"]["external"]["subject"].as_str().unwrap();
    assert!(!stored.chars().any(char::is_control), "{stored:?}");
    assert_eq!(found[0]["client_id"], worker.to_string().as_str());

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

/// Asserts an `invalid_client` refusal whose audit event (the newest
/// `client.auth_failed`) names `reason`; returns that event's detail.
async fn refused(fed: &Federated<'_>, response: reqwest::Response, reason: &str) -> Value {
    let body = crate::helpers::assert_oauth_error(response, 401, "invalid_client").await;
    let text = body.to_string();
    assert!(!text.contains("kubernetes"), "no claim echoed: {text}");
    // Events of one instant (the test clock stands still) have no reliable order: find
    // the one with this reason.
    let events = fed.app.audit("client.auth_failed").await;
    let detail = events
        .iter()
        .map(|e| e.detail.clone())
        .find(|d| d["reason"].as_str().unwrap_or_default().contains(reason))
        .unwrap_or_else(|| panic!("no client.auth_failed event says {reason:?}"));
    assert_eq!(detail["auth_method"], "federated_jwt", "{detail}");
    detail
}

fn hs256(secret: &[u8], header: &Value, claims: &Value) -> String {
    use hmac::{KeyInit as _, Mac as _};
    let unsigned = compact(header, claims, b"");
    let input = unsigned.trim_end_matches('.');
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    compact(header, claims, &mac.finalize().into_bytes())
}

async fn bad_external_tokens_are_refused_with_invalid_client_and_audited(app: TestApp) {
    let fed = Federated::start(&app, json!({})).await;
    let worker = fed.workload(kubernetes_rule()).await;
    let now = app.now().unix_timestamp();
    let mint = |claims: &Value| fed.issuer.mint("rsa-1", claims);
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = fed.kubernetes();
        change(&mut claims);
        claims
    };

    // An issuer nobody trusts (its own keys, its own URL).
    let stranger = TestIssuer::start(vec![TestKey::rsa("rsa-1", 1)]).await;
    let claims = kubernetes_claims(
        stranger.issuer(),
        &app.issuer(),
        app.now(),
        "pay",
        "worker",
        "p",
    );
    let response = fed
        .client_credentials(&stranger.mint("rsa-1", &claims), &[])
        .await;
    refused(&fed, response, "not a trusted issuer").await;
    // The trusted issuer's URL, signed by another key with the same kid.
    let forged = TestKey::rsa("rsa-1", 2).sign(&fed.kubernetes());
    refused(
        &fed,
        fed.client_credentials(&forged, &[]).await,
        "signature",
    )
    .await;
    // Wrong audience, expired, older than the maximum age (5 minutes by default).
    let other_aud = mint(&with(&|c| c["aud"] = json!(["https://other.example"])));
    refused(
        &fed,
        fed.client_credentials(&other_aud, &[]).await,
        "audience",
    )
    .await;
    let expired = mint(&with(&|c| {
        c["iat"] = json!(now - 7200);
        c["nbf"] = json!(now - 7200);
        c["exp"] = json!(now - 3600);
    }));
    refused(&fed, fed.client_credentials(&expired, &[]).await, "expired").await;
    let old = mint(&with(&|c| {
        c["iat"] = json!(now - 600);
        c["nbf"] = json!(now - 600);
    }));
    refused(&fed, fed.client_credentials(&old, &[]).await, "maximum age").await;
    // Raised for Kubernetes (tokens refreshed at 80 % of >= 10 minutes), it passes.
    let issuer_id = fed.api.get(ISSUERS).await.ok(200)["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    fed.api
        .patch(
            &format!("{ISSUERS}/{issuer_id}"),
            json!({ "max_age_seconds": 3600 }),
        )
        .await
        .ok(200);
    let old = mint(&with(&|c| {
        c["iat"] = json!(now - 600);
        c["nbf"] = json!(now - 600);
    }));
    assert_eq!(fed.client_credentials(&old, &[]).await.status(), 200);
    // `alg: none`, and HS256 keyed with the issuer's public key.
    let none = compact(
        &json!({"alg": "none", "kid": "rsa-1"}),
        &fed.kubernetes(),
        b"",
    );
    refused(&fed, fed.client_credentials(&none, &[]).await, "algorithm").await;
    let public = fed.issuer.jwks()["keys"][0].to_string();
    let hmac = hs256(
        public.as_bytes(),
        &json!({"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}),
        &fed.kubernetes(),
    );
    refused(&fed, fed.client_credentials(&hmac, &[]).await, "algorithm").await;
    // A key the issuer does not publish.
    let unknown = TestKey::rsa("rsa-unknown", 1).sign(&fed.kubernetes());
    refused(
        &fed,
        fed.client_credentials(&unknown, &[]).await,
        "does not publish",
    )
    .await;
    // Verified, but no identity matches: the audit event names who it was.
    let other_ns = kubernetes_claims(
        fed.issuer.issuer(),
        &app.issuer(),
        app.now(),
        "dev",
        "worker",
        "p",
    );
    let detail = refused(
        &fed,
        fed.client_credentials(&mint(&other_ns), &[]).await,
        "no federated identity",
    )
    .await;
    assert_eq!(
        detail["external"]["subject"],
        "system:serviceaccount:dev:worker"
    );
    assert_eq!(detail["external"]["issuer"], fed.issuer.issuer());
    // A client_id that is not the matched client.
    let stranger_client = app.client().await.id.to_string();
    let response = fed
        .client_credentials(&mint(&fed.kubernetes()), &[("client_id", &stranger_client)])
        .await;
    refused(&fed, response, "client_id").await;
    // Two clients whose identities both match: refused as ambiguous.
    fed.workload(json!({ "conditions": [
        {"type": "equals", "claim": "/repository", "value": "acme/api"},
    ]}))
    .await;
    fed.workload(json!({ "conditions": [
        {"type": "equals", "claim": "/ref", "value": "refs/heads/main"},
    ]}))
    .await;
    let github = fed.issuer.mint("ec-1", &fed.github());
    refused(
        &fed,
        fed.client_credentials(&github, &[]).await,
        "ambiguous",
    )
    .await;
    // A disabled client: as for any client.
    fed.api
        .patch(
            &format!("/admin/v1/clients/{worker}"),
            json!({ "enabled": false }),
        )
        .await
        .ok(200);
    let detail = refused(
        &fed,
        fed.client_credentials(&mint(&fed.kubernetes()), &[]).await,
        "client disabled",
    )
    .await;
    assert_eq!(
        detail["external"]["subject"],
        "system:serviceaccount:pay:worker"
    );

    // Hostile bytes: 400 or 401, never a 500.
    let trusted = URL_SAFE_NO_PAD.encode(format!(r#"{{"iss":"{}"}}"#, fed.issuer.issuer()));
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"\u0000\n"}"#);
    let huge = format!("{header}.{}.AAAA", "A".repeat(15_000));
    for hostile in [
        format!("{header}.{trusted}."),
        format!("{header}.{trusted}.%%%"),
        format!("e30.{trusted}.AAAA"),
        format!("{trusted}.{trusted}.{trusted}"),
        format!("{header}.{trusted}.AAAA.AAAA"),
        huge,
    ] {
        let response = fed.client_credentials(&hostile, &[]).await;
        let status = response.status().as_u16();
        assert!(matches!(status, 400 | 401), "{status} for {hostile:.80}");
    }
    let response = app
        .http
        .post(format!("{}/oauth2/token", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&client_assertion_type={JWT_BEARER}&client_assertion=%FF%00{header}.{trusted}.%C0"
        ))
        .send()
        .await
        .unwrap();
    assert!(matches!(response.status().as_u16(), 400 | 401));
    // Of all these external tokens, only the one accepted under the raised maximum age
    // got a token.
    let issued = app.audit("token.issued").await;
    let federated = issued.iter().filter(|e| e.detail.get("external").is_some());
    assert_eq!(federated.count(), 1);
}

async fn unknown_kid_floods_fetch_the_key_set_at_most_once_per_interval(app: TestApp) {
    let fed = Federated::start(&app, json!({})).await;
    fed.workload(kubernetes_rule()).await;
    let good = fed.issuer.mint("rsa-1", &fed.kubernetes());
    assert_eq!(fed.client_credentials(&good, &[]).await.status(), 200);
    let warm = fed.issuer.jwks_fetches();
    assert_eq!(warm, 1);
    let flood = |n: usize| {
        let fed = &fed;
        async move {
            for i in 0..n {
                let key = TestKey::es256(&format!("made-up-{i}"));
                let response = fed
                    .client_credentials(&key.sign(&fed.kubernetes()), &[])
                    .await;
                assert_eq!(response.status(), 401);
            }
        }
    };
    // Within one refetch interval (15 s), twelve made-up kids cost one fetch at most.
    flood(12).await;
    assert!(
        fed.issuer.jwks_fetches() <= warm + 1,
        "{}",
        fed.issuer.jwks_fetches()
    );
    // The next interval allows one more.
    app.clock.advance(time::Duration::seconds(16));
    flood(12).await;
    assert!(
        fed.issuer.jwks_fetches() <= warm + 2,
        "{}",
        fed.issuer.jwks_fetches()
    );
    // The known key kept working throughout.
    let good = fed.issuer.mint("rsa-1", &fed.kubernetes());
    assert_eq!(fed.client_credentials(&good, &[]).await.status(), 200);
}

async fn issuer_key_rotation_is_picked_up_and_a_warm_cache_outlives_the_issuer(app: TestApp) {
    let fed = Federated::start(&app, json!({})).await;
    fed.workload(kubernetes_rule()).await;
    let ok = |kid: &'static str| {
        let fed = &fed;
        async move {
            let token = fed.issuer.mint(kid, &fed.kubernetes());
            fed.client_credentials(&token, &[]).await.status().as_u16()
        }
    };
    // A second trusted issuer, down before anything of it is cached (set up now: the
    // admin's token does not outlive the clock moves below).
    let cold = TestIssuer::start(vec![TestKey::es256("ec-cold")]).await;
    create_issuer(
        &fed.api,
        json!({ "issuer": cold.issuer(), "audience": app.issuer(), "algorithms": ["ES256"] }),
    )
    .await;
    let client = app.client().await;
    fed.app.grant(&client, ORDERS, &["orders:read"]).await;
    fed.api
        .post(
            &format!("/admin/v1/clients/{}/federated-identities", client.id),
            json!({ "issuer": cold.issuer(), "subject": "system:serviceaccount:pay:worker" }),
        )
        .await
        .ok(201);
    cold.set_down(true);

    assert_eq!(ok("rsa-1").await, 200);
    // The issuer rotates: a token under the new key is accepted without a restart (one
    // refetch, once the refetch interval since the last fetch passed).
    fed.issuer.add_key(TestKey::rsa("rsa-2", 1));
    app.clock.advance(time::Duration::seconds(16));
    assert_eq!(ok("rsa-2").await, 200);
    // The old key stops being published: once the cached set is stale (no
    // Cache-Control: 5 minutes) and refetched, its tokens are refused.
    let retired = fed.issuer.key("rsa-1").unwrap();
    fed.issuer.remove_key("rsa-1");
    app.clock.advance(time::Duration::minutes(6));
    assert_eq!(ok("rsa-2").await, 200);
    let response = fed
        .client_credentials(&retired.sign(&fed.kubernetes()), &[])
        .await;
    refused(&fed, response, "does not publish").await;

    // The issuer goes down: the warm cache keeps serving, stale or not.
    fed.issuer.set_down(true);
    assert_eq!(ok("rsa-2").await, 200);
    app.clock.advance(time::Duration::minutes(10));
    assert_eq!(ok("rsa-2").await, 200);

    // An issuer down with nothing cached: 503, so the workload retries.
    let claims = kubernetes_claims(
        cold.issuer(),
        &app.issuer(),
        app.now(),
        "pay",
        "worker",
        "p",
    );
    let response = fed
        .client_credentials(&cold.mint("ec-cold", &claims), &[])
        .await;
    crate::helpers::assert_oauth_error(response, 503, "temporarily_unavailable").await;
}

async fn external_tokens_are_single_use_across_replicas(app: TestApp) {
    let fed = Federated::start(&app, json!({})).await;
    fed.workload(kubernetes_rule()).await;
    let token = fed.issuer.mint("rsa-1", &fed.kubernetes());
    assert_eq!(fed.client_credentials(&token, &[]).await.status(), 200);
    refused(
        &fed,
        fed.client_credentials(&token, &[]).await,
        "replayed (jti",
    )
    .await;
    // Another replica on the same database refuses it too.
    let replica = app.replica().await;
    let response = replica
        .http
        .post(format!("{}/oauth2/token", replica.base))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "orders:read"),
            ("resource", ORDERS),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    crate::helpers::assert_oauth_error(response, 401, "invalid_client").await;

    // Without a jti (Kubernetes before 1.29): once per (issuer, sub, iat).
    let mut claims = fed.kubernetes();
    claims.as_object_mut().unwrap().remove("jti");
    let first = fed.issuer.mint("rsa-1", &claims);
    assert_eq!(fed.client_credentials(&first, &[]).await.status(), 200);
    // Even signed again (another signature, same issuance): refused.
    let again = fed.issuer.mint("ec-1", &claims);
    refused(
        &fed,
        fed.client_credentials(&again, &[]).await,
        "replayed (issuer, sub and iat",
    )
    .await;
    // The next token the platform issues (a later iat) is fine.
    app.clock.advance(time::Duration::seconds(1));
    let mut next = fed.kubernetes();
    next.as_object_mut().unwrap().remove("jti");
    let next = fed.issuer.mint("rsa-1", &next);
    assert_eq!(fed.client_credentials(&next, &[]).await.status(), 200);
}

// ---- The token endpoint: external tokens exchanged for a user's token (RFC 8693) ---

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";

/// OIDC ID token claims for `sub`, issued now, for Mayfly (5 minutes, with a jti).
fn id_token_claims(fed: &Federated<'_>, sub: &str) -> Value {
    let iat = fed.app.now().unix_timestamp();
    json!({
        "iss": fed.issuer.issuer(),
        "sub": sub,
        "aud": fed.app.issuer(),
        "iat": iat,
        "exp": iat + 300,
        "jti": uuid::Uuid::new_v4().to_string(),
        "email": "alice@example.com",
        "email_verified": true,
    })
}

impl Federated<'_> {
    /// A user `alice` granted `orders:read`, linked to the external subject `alice-oidc`,
    /// and a first-party client that may exchange tokens.
    async fn alice(&self) -> (uuid::Uuid, crate::helpers::TestClient) {
        let alice = self.app.user("alice", "correct horse battery staple").await;
        self.app.grant_user(alice, ORDERS, &["orders:read"]).await;
        self.identity("users", alice, json!({ "subject": "alice-oidc" }))
            .await;
        let client = self.app.client_for(&[TOKEN_EXCHANGE]).await;
        (alice, client)
    }

    /// A token exchange by `client` of `subject_token` of `kind`, for `scope` on ORDERS.
    async fn exchange(
        &self,
        client: &crate::helpers::TestClient,
        subject_token: &str,
        kind: &str,
        extra: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut form = vec![
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", subject_token),
            ("subject_token_type", kind),
            ("scope", "orders:read"),
            ("resource", ORDERS),
        ];
        form.extend_from_slice(extra);
        self.app
            .token_request(crate::helpers::Auth::Basic(client), &form)
            .await
    }
}

async fn users_exchange_an_external_token_for_their_own_token(app: TestApp) {
    let fed = Federated::start(&app, json!({})).await;
    let (alice, client) = fed.alice().await;
    let verifier = app.verifier(ORDERS).await;

    for (kind, kid) in [(JWT_TYPE, "rsa-1"), (ID_TOKEN_TYPE, "ec-1")] {
        let claims = id_token_claims(&fed, "alice-oidc");
        let external_exp = claims["exp"].as_i64().unwrap();
        let subject_token = fed.issuer.mint(kid, &claims);
        let response = fed.exchange(&client, &subject_token, kind, &[]).await;
        assert_eq!(response.status(), 200, "{kind}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body["issued_token_type"],
            "urn:ietf:params:oauth:token-type:access_token"
        );
        assert!(body.get("refresh_token").is_none(), "{body}");
        let claims = verifier
            .verify(
                body["access_token"].as_str().unwrap(),
                &["orders:read"],
                app.now(),
            )
            .unwrap();
        assert_eq!(claims.sub, alice.to_string());
        assert_eq!(claims.client_id, client.id.to_string());
        assert!(
            claims.exp.unix_timestamp() <= external_exp,
            "outlives the external token"
        );
    }

    // The audit event names the external identity and the claims that matched.
    let issued = app.audit("token.issued").await;
    let event = issued
        .iter()
        .find(|e| e.subject.as_deref() == Some(alice.to_string().as_str()))
        .unwrap();
    assert_eq!(event.detail["external"]["issuer"], fed.issuer.issuer());
    assert_eq!(event.detail["external"]["subject"], "alice-oidc");
    assert_eq!(
        event.detail["external"]["matched"],
        json!({ "/sub": "alice-oidc" })
    );
    assert_eq!(event.detail["grant_type"], TOKEN_EXCHANGE);

    // Searchable through the admin API by external issuer and subject.
    let issuer = fed.issuer.issuer().replace(':', "%3A").replace('/', "%2F");
    let search = |query: String| {
        let fed = &fed;
        async move {
            let page = fed
                .api
                .get(&format!("/admin/v1/audit-events?{query}"))
                .await;
            page.ok(200)["items"].as_array().unwrap().clone()
        }
    };
    let found = search(format!(
        "external_issuer={issuer}&external_subject=alice-oidc&type=token.issued"
    ))
    .await;
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found
            .iter()
            .all(|e| e["subject"] == alice.to_string().as_str())
    );
    assert_eq!(search("external_subject=alice-oidc".into()).await.len(), 2);
    assert!(search("external_subject=bob-oidc".into()).await.is_empty());
    assert!(
        search("external_issuer=https%3A%2F%2Fother.example".into())
            .await
            .is_empty()
    );
    assert!(
        search("external_subject=alice-oidc&type=token.denied".into())
            .await
            .is_empty()
    );
}

async fn external_subject_tokens_are_refused_with_invalid_grant(app: TestApp) {
    let fed = Federated::start(&app, json!({})).await;
    let (alice, client) = fed.alice().await;
    fed.workload(kubernetes_rule()).await;
    let mint = |sub: &str| fed.issuer.mint("rsa-1", &id_token_claims(&fed, sub));
    let refused = |response: reqwest::Response, code: &'static str, reason: &'static str| {
        let fed = &fed;
        async move {
            let body = crate::helpers::assert_oauth_error(response, 400, code).await;
            if code == "invalid_grant" {
                let denied = fed.app.audit("token.denied").await;
                assert!(
                    denied.iter().any(|e| e.detail["reason"]
                        .as_str()
                        .unwrap_or_default()
                        .contains(reason)),
                    "no token.denied event says {reason:?}"
                );
            }
            body
        }
    };

    // A scope the user is not granted: refused, and the external token is not spent.
    let token = mint("alice-oidc");
    let wide = app
        .token_request(
            crate::helpers::Auth::Basic(&client),
            &[
                ("grant_type", TOKEN_EXCHANGE),
                ("subject_token", token.as_str()),
                ("subject_token_type", JWT_TYPE),
                ("scope", "orders:write"),
                ("resource", ORDERS),
            ],
        )
        .await;
    crate::helpers::assert_oauth_error(wide, 400, "invalid_scope").await;
    assert_eq!(
        fed.exchange(&client, &token, JWT_TYPE, &[]).await.status(),
        200
    );
    // Used once: a second exchange is refused.
    let again = fed.exchange(&client, &token, JWT_TYPE, &[]).await;
    refused(again, "invalid_grant", "replayed").await;

    // No user speaks for this subject; a client's identity does not make a user.
    refused(
        fed.exchange(&client, &mint("mallory"), JWT_TYPE, &[]).await,
        "invalid_grant",
        "no federated identity",
    )
    .await;
    let workload_token = fed.issuer.mint("rsa-1", &fed.kubernetes());
    refused(
        fed.exchange(&client, &workload_token, JWT_TYPE, &[]).await,
        "invalid_grant",
        "no federated identity",
    )
    .await;
    // Expired, signed with no issuer key, alg none, not a JWT at all.
    let mut expired = id_token_claims(&fed, "alice-oidc");
    expired["iat"] = json!(app.now().unix_timestamp() - 7200);
    expired["exp"] = json!(app.now().unix_timestamp() - 3600);
    refused(
        fed.exchange(&client, &fed.issuer.mint("rsa-1", &expired), JWT_TYPE, &[])
            .await,
        "invalid_grant",
        "expired",
    )
    .await;
    let forged = TestKey::rsa("rsa-1", 2).sign(&id_token_claims(&fed, "alice-oidc"));
    refused(
        fed.exchange(&client, &forged, JWT_TYPE, &[]).await,
        "invalid_grant",
        "signature",
    )
    .await;
    let none = compact(
        &json!({"alg": "none"}),
        &id_token_claims(&fed, "alice-oidc"),
        b"",
    );
    refused(
        fed.exchange(&client, &none, ID_TOKEN_TYPE, &[]).await,
        "invalid_grant",
        "algorithm",
    )
    .await;
    refused(
        fed.exchange(&client, "not.a.jwt\u{0}", JWT_TYPE, &[]).await,
        "invalid_grant",
        "malformed",
    )
    .await;
    // A subject token type Mayfly does not exchange; an actor token with an external one.
    refused(
        fed.exchange(
            &client,
            &mint("alice-oidc"),
            "urn:ietf:params:oauth:token-type:saml2",
            &[],
        )
        .await,
        "invalid_request",
        "",
    )
    .await;
    let admin_token = fed.api.token.clone();
    refused(
        fed.exchange(
            &client,
            &mint("alice-oidc"),
            JWT_TYPE,
            &[
                ("actor_token", admin_token.as_str()),
                (
                    "actor_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                ),
            ],
        )
        .await,
        "invalid_request",
        "",
    )
    .await;
    // A client without the token-exchange grant type.
    let plain = app.client().await;
    let response = fed
        .exchange(&plain, &mint("alice-oidc"), JWT_TYPE, &[])
        .await;
    crate::helpers::assert_oauth_error(response, 400, "unauthorized_client").await;

    // A disabled user gets nothing; the event still names who it was.
    app.admin()
        .update_user(
            alice,
            mayfly_server::service::UserChanges {
                enabled: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    refused(
        fed.exchange(&client, &mint("alice-oidc"), JWT_TYPE, &[])
            .await,
        "invalid_grant",
        "user disabled",
    )
    .await;
    let denied = app.audit("token.denied").await;
    let event = denied
        .iter()
        .find(|e| e.detail["reason"] == "user disabled")
        .unwrap();
    assert_eq!(event.detail["external"]["subject"], "alice-oidc");
}

/// Authentication with an external JWT is one path: introspection and revocation take
/// it too, and what follows is as for any client (DPoP binding, `require_dpop`,
/// networks).
async fn a_federated_client_is_any_client_downstream(app: TestApp) {
    use mayfly_core::dpop::{self, ProofRequest};
    use mayfly_core::jose::JwsKey;

    let fed = Federated::start(&app, json!({})).await;
    let worker = fed.workload(kubernetes_rule()).await;
    // The worker is also a resource server: it may introspect.
    app.grant_spec(mayfly_server::service::GrantSpec::new(
        mayfly_store::Subject::Client(worker),
        &app.issuer(),
        &["mayfly:introspect"],
    ))
    .await;

    // A DPoP proof binds the token, as for any client.
    let key = JwsKey::ed25519_from_seed(&[42; 32]);
    let proof = dpop::sign(
        &key,
        &ProofRequest {
            htm: "POST",
            htu: &app.token_endpoint(),
            access_token: None,
            nonce: None,
            jti: &uuid::Uuid::new_v4().to_string(),
            now: app.now(),
        },
    );
    let token = fed.issuer.mint("rsa-1", &fed.kubernetes());
    let response = fed
        .client_credentials_with_proof(&token, &[], Some(&proof))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "DPoP");
    let access = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        app.claims_of(&access).cnf.unwrap().jkt,
        key.public().thumbprint()
    );

    // Introspection, authenticated with another platform token.
    let assertion = fed.issuer.mint("rsa-1", &fed.kubernetes());
    let answer: Value = app
        .http
        .post(format!("{}/oauth2/introspect", app.base))
        .form(&[
            ("token", access.as_str()),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["client_id"], worker.to_string());
    // The same platform token again: spent.
    let replayed = app
        .http
        .post(format!("{}/oauth2/introspect", app.base))
        .form(&[
            ("token", access.as_str()),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion.as_str()),
        ])
        .send()
        .await
        .unwrap();
    crate::helpers::assert_oauth_error(replayed, 401, "invalid_client").await;

    // A client that must use DPoP must, whatever its credentials.
    fed.api
        .patch(
            &format!("/admin/v1/clients/{worker}"),
            json!({ "require_dpop": true }),
        )
        .await
        .ok(200);
    let token = fed.issuer.mint("rsa-1", &fed.kubernetes());
    let response = fed.client_credentials(&token, &[]).await;
    crate::helpers::assert_oauth_error(response, 400, "invalid_dpop_proof").await;
    // Networks: a client limited to another network is refused from here.
    fed.api
        .patch(
            &format!("/admin/v1/clients/{worker}"),
            json!({ "require_dpop": false, "allowed_cidrs": ["192.0.2.0/24"] }),
        )
        .await
        .ok(200);
    let token = fed.issuer.mint("rsa-1", &fed.kubernetes());
    let response = fed.client_credentials(&token, &[]).await;
    crate::helpers::assert_oauth_error(response, 400, "unauthorized_client").await;
}

/// With DPoP nonces required, the first proof of a client has no nonce and is answered
/// `use_dpop_nonce`. That answer must not spend the external token: the client retries
/// with the same token (a projected token file is rewritten only every few minutes).
async fn a_nonce_challenge_does_not_spend_the_external_token(backend: mayfly_store::Backend) {
    use mayfly_core::dpop::{self, ProofRequest};
    use mayfly_core::jose::JwsKey;

    let app = crate::helpers::spawn_app_with(backend, |c| c.dpop_nonce = true).await;
    let fed = Federated::start(&app, json!({})).await;
    fed.workload(kubernetes_rule()).await;
    let key = JwsKey::ed25519_from_seed(&[43; 32]);
    let proof = |nonce: Option<&str>| {
        dpop::sign(
            &key,
            &ProofRequest {
                htm: "POST",
                htu: &app.token_endpoint(),
                access_token: None,
                nonce,
                jti: &uuid::Uuid::new_v4().to_string(),
                now: app.now(),
            },
        )
    };
    let token = fed.issuer.mint("rsa-1", &fed.kubernetes());
    let challenged = fed
        .client_credentials_with_proof(&token, &[], Some(&proof(None)))
        .await;
    assert_eq!(challenged.status(), 400);
    let nonce = challenged.headers()["dpop-nonce"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = challenged.json().await.unwrap();
    assert_eq!(body["error"], "use_dpop_nonce");
    // The same external token, now with the nonce: accepted, and bound.
    let accepted = fed
        .client_credentials_with_proof(&token, &[], Some(&proof(Some(&nonce))))
        .await;
    assert_eq!(accepted.status(), 200);
    let body: Value = accepted.json().await.unwrap();
    assert_eq!(body["token_type"], "DPoP");
    // Spent now: a third use is a replay.
    let replayed = fed
        .client_credentials_with_proof(&token, &[], Some(&proof(Some(&nonce))))
        .await;
    assert_eq!(replayed.status(), 401);
}

mod configured {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_nonce_challenge_does_not_spend_the_external_token_sqlite() {
        super::a_nonce_challenge_does_not_spend_the_external_token(mayfly_store::Backend::Sqlite)
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_nonce_challenge_does_not_spend_the_external_token_postgres() {
        super::a_nonce_challenge_does_not_spend_the_external_token(mayfly_store::Backend::Postgres)
            .await;
    }
}

/// An issuer's keys speak for every owner of an identity on it. A clients admin
/// repointing them to a key it holds would sign in as each of those clients and users;
/// so it changes an issuer's settings only when it may change every such owner (the
/// privileged-subject rule; the users family for a user). The description stays its to
/// edit, and an issuer of ordinary workloads its to manage.
async fn a_clients_admin_cannot_repoint_an_issuer_admins_sign_in_with(app: TestApp) {
    let fed = Federated::start(&app, json!({})).await;
    let listed = fed.api.get(ISSUERS).await.ok(200).clone();
    let path = format!("{ISSUERS}/{}", id(&listed["items"][0]));
    fed.workload(kubernetes_rule()).await;
    let clients = app.admin_with(&["mayfly:admin:clients"]).await;
    clients
        .patch(&path, json!({ "max_age_seconds": 600 }))
        .await
        .ok(200);

    // A keys admin signs in with its CI token (the real issuer's key: it works).
    let keys_admin = app.client().await;
    app.grant(&keys_admin, &app.issuer(), &["mayfly:admin:keys"])
        .await;
    fed.identity(
        "clients",
        keys_admin.id,
        json!({ "subject": "repo:acme/api:ref:refs/heads/main" }),
    )
    .await;
    let keys_admin_id = keys_admin.id.to_string();
    let sign_in = |assertion: String| {
        let form = [
            ("grant_type", "client_credentials".to_owned()),
            ("scope", "mayfly:admin:keys".to_owned()),
            ("resource", app.issuer()),
            ("client_assertion_type", JWT_BEARER.to_owned()),
            ("client_assertion", assertion),
            ("client_id", keys_admin_id.clone()),
        ];
        app.http
            .post(format!("{}/oauth2/token", app.base))
            .form(&form)
            .send()
    };
    let genuine = sign_in(fed.issuer.mint("ec-1", &fed.github()))
        .await
        .unwrap();
    assert_eq!(genuine.status(), 200);

    // The attack: trust the attacker's key, then sign as that issuer.
    let evil = TestKey::es256("evil");
    let repoint = json!({
        "key_source": { "type": "inline", "jwks": { "keys": [evil.public_jwk()] } },
        "algorithms": ["ES256"],
    });
    crate::escalation::assert_lacks(
        &clients.patch(&path, repoint.clone()).await,
        "mayfly:admin:keys",
    );
    for change in [
        json!({ "audience": "https://attacker.example" }),
        json!({ "max_age_seconds": null }),
    ] {
        crate::escalation::assert_lacks(&clients.patch(&path, change).await, "mayfly:admin:keys");
    }
    let forged = sign_in(evil.sign(&fed.github())).await.unwrap();
    crate::helpers::assert_oauth_error(forged, 401, "invalid_client").await;
    let settings = fed.api.get(&path).await.ok(200)["settings"].clone();
    assert_eq!(settings["max_age_seconds"], 600, "{settings}");
    assert_ne!(settings["key_source"]["type"], "inline", "{settings}");
    // The description is not what the issuer's tokens prove.
    clients
        .patch(&path, json!({ "description": "CI" }))
        .await
        .ok(200);

    // A user signing in through the issuer: its settings are the users family's too.
    let alice = app.user("alice", "correct horse battery staple").await;
    fed.identity("users", alice, json!({ "subject": "alice@example.com" }))
        .await;
    let keys_clients = app
        .admin_with(&["mayfly:admin:clients", "mayfly:admin:keys"])
        .await;
    crate::escalation::assert_lacks(
        &keys_clients
            .patch(&path, json!({ "max_age_seconds": 300 }))
            .await,
        "mayfly:admin:users",
    );
    // A full admin may.
    fed.api.patch(&path, repoint).await.ok(200);
}

/// Hostile bytes in what is looked up: an external token whose `iss` holds a NUL
/// (which Postgres cannot even compare) names no trusted issuer, so 401
/// `invalid_client` at every endpoint that authenticates clients, unauthenticated and
/// never a 500; a NUL in a username is an unknown user (`invalid_grant`), and in an
/// admin's audit search a request error (422) where the store cannot compare it.
async fn a_nul_in_an_external_issuer_or_a_username_is_refused_not_a_500(app: TestApp) {
    let admin = app.bootstrap_admin().await;
    // An admin's search for one finds nothing (SQLite) or is told why (Postgres).
    let search = admin.get("/admin/v1/audit-events?subject=a%00b").await;
    match search.status {
        200 => assert_eq!(search.body["items"], json!([])),
        _ => assert_eq!(search.problem(422)["errors"][0]["field"], "request"),
    }
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD
        .encode(json!({ "iss": "https://x\u{0}", "sub": "a", "aud": app.issuer() }).to_string());
    let assertion = format!("{header}.{claims}.AAAA");
    for path in ["/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"] {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion.as_str()),
            ("token", "x"),
        ];
        let response = app
            .http
            .post(format!("{}{path}", app.base))
            .form(&form)
            .send()
            .await
            .unwrap();
        crate::helpers::assert_oauth_error(response, 401, "invalid_client").await;
    }

    let cli = app.client_for(&["password"]).await;
    let response = app
        .token_request(
            crate::helpers::Auth::Basic(&cli),
            &[
                ("grant_type", "password"),
                ("username", "ali\u{0}ce"),
                ("password", "correct horse battery staple"),
                ("scope", "orders:read"),
                ("resource", ORDERS),
            ],
        )
        .await;
    crate::helpers::assert_oauth_error(response, 400, "invalid_grant").await;
}
