//! Just-in-time access: policies, requests, approvals by distinct approvers, denial,
//! expiry, grants that end on time, cancellation revoking live tokens, break-glass.

use std::time::Duration as StdDuration;

use axum::http::HeaderMap;
use axum::routing::post;
use mayfly_store::Backend;
use serde_json::{Value, json};
use time::Duration;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::helpers::{AdminApi, Auth, TestApp, TestClient, spawn_app_with};

crate::both_stores!(
    auto_approval_within_policy_grants_for_the_window,
    two_distinct_approvers_never_the_requester,
    an_approver_denies,
    a_pending_request_expires,
    cancelling_revokes_live_tokens,
    cancelling_access_to_mayfly_itself_revokes_it,
    policies_are_validated_and_audited,
    concurrent_approvals_create_one_grant,
    a_label_policy_covers_labelled_users_only,
);

const DB: &str = "https://db.example/main";
const PASSWORD: &str = "correct horse battery staple";

/// The scene: the issuer audience (bootstrapped), a database audience, a first-party
/// login client, and an admin.
struct Scene<'a> {
    app: &'a TestApp,
    admin: AdminApi<'a>,
    cli: TestClient,
}

impl<'a> Scene<'a> {
    async fn new(app: &'a TestApp) -> Self {
        let admin = app.bootstrap_admin().await;
        app.audience(DB, &["db:read", "db:write"]).await;
        let cli = app.client_for(&["password"]).await;
        Self { app, admin, cli }
    }

    /// A user holding `scopes` on the issuer audience.
    async fn person(&self, name: &str, scopes: &[&str]) -> Uuid {
        let id = self.app.user(name, PASSWORD).await;
        self.app.grant_user(id, &self.app.issuer(), scopes).await;
        id
    }

    /// A fresh token of `name` for `scope` on `audience`.
    async fn login(&self, name: &str, scope: &str, audience: &str) -> reqwest::Response {
        self.app
            .token_request(
                Auth::Basic(&self.cli),
                &[
                    ("grant_type", "password"),
                    ("username", name),
                    ("password", PASSWORD),
                    ("scope", scope),
                    ("resource", audience),
                ],
            )
            .await
    }

    /// An API caller with `name`'s token for `scope` on the issuer audience.
    async fn as_user(&self, name: &str, scope: &str) -> AdminApi<'a> {
        let response = self.login(name, scope, &self.app.issuer()).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        AdminApi {
            app: self.app,
            token: body["access_token"].as_str().unwrap().to_owned(),
        }
    }

    async fn policy(&self, body: Value) -> Value {
        let mut body = body;
        body["audience"] = json!(DB);
        self.admin
            .post("/admin/v1/access-policies", body)
            .await
            .ok(201)
            .clone()
    }
}

fn request(scopes: &[&str], secs: i64) -> Value {
    json!({ "audience": DB, "scopes": scopes, "duration_secs": secs, "reason": "incident 4711" })
}

/// Within an `auto` policy the grant exists at once, starting now and ending after the
/// duration: tokens under it carry the scope, their `exp` is clamped to its end, and
/// after it issuance is refused. Longer than the policy allows, or not covered: refused.
async fn auto_approval_within_policy_grants_for_the_window(app: TestApp) {
    let scene = Scene::new(&app).await;
    scene
        .policy(json!({
            "name": "read the database", "scopes": ["db:read"], "subjects": ["users"],
            "max_duration_secs": 900, "decision": "auto",
        }))
        .await;
    scene.person("alice", &["mayfly:access"]).await;
    let alice = scene.as_user("alice", "mayfly:access").await;

    // Not yet granted.
    assert_eq!(scene.login("alice", "db:read", DB).await.status(), 400);

    let too_long = alice
        .post("/v1/access-requests", request(&["db:read"], 901))
        .await;
    let problem = too_long.problem(422);
    assert!(
        problem.to_string().contains("at most 900 seconds"),
        "{problem}"
    );
    let uncovered = alice
        .post("/v1/access-requests", request(&["db:write"], 60))
        .await;
    assert!(
        uncovered.problem(403)["detail"]
            .as_str()
            .unwrap()
            .contains("no access policy"),
        "{}",
        uncovered.body
    );
    assert_eq!(app.audit("access.denied").await.len(), 2);

    let approved = alice
        .post("/v1/access-requests", request(&["db:read"], 120))
        .await
        .ok(201)
        .clone();
    assert_eq!(approved["state"], "approved");
    let end = app.now() + Duration::seconds(120);
    let grant_id = approved["grant_id"].as_str().unwrap().to_owned();
    let grant = app
        .state
        .store
        .grant(grant_id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(grant.not_before, Some(app.now()));
    assert_eq!(grant.expires_at, Some(end));
    assert_eq!(app.audit("access.requested").await.len(), 1);
    assert_eq!(app.audit("access.approved").await.len(), 1);

    // The token carries the scope and never outlives the grant (default TTL: 300 s).
    let response = scene.login("alice", "db:read", DB).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let claims = app.claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(claims.scope, "db:read");
    // Token times are whole seconds: the grant's end, rounded down.
    assert_eq!(
        claims.exp,
        end.replace_nanosecond(0).unwrap(),
        "exp clamped to the grant's end"
    );

    // Own requests list.
    let mine = alice.get("/v1/access-requests").await.ok(200).clone();
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);
    assert_eq!(mine["items"][0]["expires_at"], json!(fmt(end)));

    // Past the window: no more tokens for it.
    app.clock.advance(Duration::seconds(121));
    assert_eq!(scene.login("alice", "db:read", DB).await.status(), 400);
}

fn fmt(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// An `approval` policy with two approvers: one approval is not enough, the requester
/// can never approve, an approver counts once, and the second approval grants.
async fn two_distinct_approvers_never_the_requester(app: TestApp) {
    let scene = Scene::new(&app).await;
    let alice_id = scene
        .person("alice", &["mayfly:access", "mayfly:approve"])
        .await;
    scene
        .policy(json!({
            "name": "write", "scopes": ["db:write", "db:read"], "subjects": [format!("user:{alice_id}")],
            "max_duration_secs": 3600, "decision": "approval", "approvals_required": 2,
        }))
        .await;
    scene.person("bob", &["mayfly:approve"]).await;
    scene.person("carol", &["mayfly:approve"]).await;
    let alice = scene.as_user("alice", "mayfly:access mayfly:approve").await;
    let bob = scene.as_user("bob", "mayfly:approve").await;
    let carol = scene.as_user("carol", "mayfly:approve").await;

    // Bob is not covered by the policy.
    scene.person("mallory", &["mayfly:access"]).await;
    let mallory = scene.as_user("mallory", "mayfly:access").await;
    mallory
        .post("/v1/access-requests", request(&["db:write"], 600))
        .await
        .problem(403);

    let pending = alice
        .post("/v1/access-requests", request(&["db:write"], 600))
        .await
        .ok(201)
        .clone();
    assert_eq!(pending["state"], "pending");
    let id = pending["id"].as_str().unwrap();
    // The approvers' queue.
    let queue = bob
        .get("/admin/v1/access-requests?state=pending")
        .await
        .ok(200)
        .clone();
    assert_eq!(queue["items"][0]["id"], id);
    // Requesting does not make one an approver's peer: not with mayfly:access only.
    mallory
        .post(
            &format!("/admin/v1/access-requests/{id}/approve"),
            json!({}),
        )
        .await
        .problem(403);

    let approve = format!("/admin/v1/access-requests/{id}/approve");
    let own = alice.post(&approve, json!({ "comment": "me" })).await;
    assert!(own.problem(403)["detail"].as_str().unwrap().contains("own"));
    let first = bob
        .post(&approve, json!({ "comment": "looks fine" }))
        .await
        .ok(200)
        .clone();
    assert_eq!(first["state"], "pending", "one approval is not enough");
    assert_eq!(first["approvals"].as_array().unwrap().len(), 1);
    bob.post(&approve, json!({ "comment": "again" }))
        .await
        .problem(409);
    assert_eq!(scene.login("alice", "db:write", DB).await.status(), 400);

    let second = carol
        .post(&approve, json!({ "comment": "ok" }))
        .await
        .ok(200)
        .clone();
    assert_eq!(second["state"], "approved");
    assert!(second["grant_id"].is_string());
    assert_eq!(scene.login("alice", "db:write", DB).await.status(), 200);
    // Decided: no more decisions.
    carol
        .post(
            &format!("/admin/v1/access-requests/{id}/deny"),
            json!({ "comment": "too late" }),
        )
        .await
        .problem(409);
    let approvals = app.audit("access.approval").await;
    assert_eq!(approvals.len(), 2);
    let approved = app.audit("access.approved").await;
    assert_eq!(approved.len(), 1);
    assert_eq!(
        approved[0].actor.as_deref(),
        Some(second["decided_by"].as_str().unwrap())
    );
}

/// An approver denies (with a comment): the request is denied, nothing is granted.
async fn an_approver_denies(app: TestApp) {
    let scene = Scene::new(&app).await;
    scene
        .policy(json!({
            "name": "write", "scopes": ["db:write"], "subjects": ["users"],
            "max_duration_secs": 3600, "decision": "approval", "approvals_required": 1,
        }))
        .await;
    scene.person("alice", &["mayfly:access"]).await;
    scene.person("bob", &["mayfly:approve"]).await;
    let alice = scene.as_user("alice", "mayfly:access").await;
    let bob = scene.as_user("bob", "mayfly:approve").await;
    let pending = alice
        .post("/v1/access-requests", request(&["db:write"], 600))
        .await
        .ok(201)
        .clone();
    let id = pending["id"].as_str().unwrap();
    let deny = format!("/admin/v1/access-requests/{id}/deny");
    bob.post(&deny, json!({})).await.problem(422);
    let denied = bob
        .post(&deny, json!({ "comment": "not during the freeze" }))
        .await
        .ok(200)
        .clone();
    assert_eq!(denied["state"], "denied");
    assert_eq!(denied["decision_comment"], "not during the freeze");
    assert!(denied["grant_id"].is_null());
    bob.post(
        &format!("/admin/v1/access-requests/{id}/approve"),
        json!({}),
    )
    .await
    .problem(409);
    assert_eq!(scene.login("alice", "db:write", DB).await.status(), 400);
    let events = app.audit("access.denied").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].detail["comment"], "not during the freeze");
    // Alice sees it among her own, with its state.
    let mine = alice
        .get("/v1/access-requests?state=denied")
        .await
        .ok(200)
        .clone();
    assert_eq!(mine["items"][0]["id"], id);
    // Nobody else's requests are hers to read or cancel.
    scene.person("eve", &["mayfly:access"]).await;
    let eve = scene.as_user("eve", "mayfly:access").await;
    eve.get(&format!("/v1/access-requests/{id}"))
        .await
        .problem(404);
}

/// Nobody decides in time: the request expires (on read, and in the sweep), audited.
async fn a_pending_request_expires(app: TestApp) {
    let scene = Scene::new(&app).await;
    scene
        .policy(json!({
            "name": "write", "scopes": ["db:write"], "subjects": ["users"],
            "max_duration_secs": 3600, "decision": "approval", "approvals_required": 1,
        }))
        .await;
    scene.person("alice", &["mayfly:access"]).await;
    scene.person("bob", &["mayfly:approve"]).await;
    let alice = scene.as_user("alice", "mayfly:access").await;
    let pending = alice
        .post("/v1/access-requests", request(&["db:write"], 600))
        .await
        .ok(201)
        .clone();
    let id = pending["id"].as_str().unwrap().to_owned();
    let until: time::OffsetDateTime = time::OffsetDateTime::parse(
        pending["pending_until"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(until, app.now() + Duration::hours(1));

    app.clock.advance(Duration::minutes(59));
    let alice = scene.as_user("alice", "mayfly:access").await;
    let still = alice
        .get(&format!("/v1/access-requests/{id}"))
        .await
        .ok(200)
        .clone();
    assert_eq!(still["state"], "pending");
    app.clock.advance(Duration::minutes(1));
    let alice = scene.as_user("alice", "mayfly:access").await;
    let expired = alice
        .get(&format!("/v1/access-requests/{id}"))
        .await
        .ok(200)
        .clone();
    assert_eq!(expired["state"], "expired");
    let events = app.audit("access.expired").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor.as_deref(), Some("system"));
    let bob = scene.as_user("bob", "mayfly:approve").await;
    bob.post(
        &format!("/admin/v1/access-requests/{id}/approve"),
        json!({ "comment": "sorry, late" }),
    )
    .await
    .problem(409);
    alice
        .post(&format!("/v1/access-requests/{id}/cancel"), json!({}))
        .await
        .problem(409);
}

/// An approved request's grant and a token issued under it.
struct Ended<'a> {
    introspector: &'a TestClient,
    token: &'a str,
    grant_id: &'a str,
}

impl Ended<'_> {
    /// `requester` cancels request `id`: it is cancelled, the token is revoked at once
    /// and the grant is gone.
    async fn cancel(&self, app: &TestApp, requester: &AdminApi<'_>, id: &str, body: Value) {
        let cancelled = requester
            .post(&format!("/v1/access-requests/{id}/cancel"), body)
            .await
            .ok(200)
            .clone();
        assert_eq!(cancelled["state"], "cancelled");
        assert!(
            !app.is_active(self.introspector, self.token).await,
            "the live token is revoked"
        );
        assert!(
            app.state
                .store
                .grant(self.grant_id.parse().unwrap())
                .await
                .unwrap()
                .is_none(),
            "the grant ended"
        );
    }
}

/// Cancelling an approved request ends its grant and revokes the tokens issued under
/// it at once (introspection says inactive); a pending one is simply cancelled.
async fn cancelling_revokes_live_tokens(app: TestApp) {
    let scene = Scene::new(&app).await;
    scene
        .policy(json!({
            "name": "read", "scopes": ["db:read"], "subjects": ["users"],
            "max_duration_secs": 900, "decision": "auto",
        }))
        .await;
    scene
        .policy(json!({
            "name": "write", "scopes": ["db:write"], "subjects": ["users"],
            "max_duration_secs": 900, "decision": "approval", "approvals_required": 1,
        }))
        .await;
    scene.person("alice", &["mayfly:access"]).await;
    let alice = scene.as_user("alice", "mayfly:access").await;
    let (introspector, _) = app.introspector().await;

    let approved = alice
        .post("/v1/access-requests", request(&["db:read"], 900))
        .await
        .ok(201)
        .clone();
    let id = approved["id"].as_str().unwrap();
    let body: Value = scene
        .login("alice", "db:read", DB)
        .await
        .json()
        .await
        .unwrap();
    let token = body["access_token"].as_str().unwrap();
    assert!(app.is_active(&introspector, token).await);

    let ended = Ended {
        introspector: &introspector,
        token,
        grant_id: approved["grant_id"].as_str().unwrap(),
    };
    ended
        .cancel(&app, &alice, id, json!({ "comment": "done early" }))
        .await;
    assert_eq!(scene.login("alice", "db:read", DB).await.status(), 400);
    alice
        .post(&format!("/v1/access-requests/{id}/cancel"), json!({}))
        .await
        .problem(409);
    assert_eq!(app.audit("access.cancelled").await.len(), 1);

    let pending = alice
        .post("/v1/access-requests", request(&["db:write"], 60))
        .await
        .ok(201)
        .clone();
    let id = pending["id"].as_str().unwrap();
    let cancelled = alice
        .post(&format!("/v1/access-requests/{id}/cancel"), json!({}))
        .await
        .ok(200)
        .clone();
    assert_eq!(cancelled["state"], "cancelled");
}

/// The requester ends access to the issuer audience it does not otherwise hold
/// (`mayfly:admin:keys` for an on-call user): the grant ends and its token is revoked,
/// though the requester's own token could never have handed that scope out. Ending
/// access lifts nobody.
async fn cancelling_access_to_mayfly_itself_revokes_it(app: TestApp) {
    let scene = Scene::new(&app).await;
    scene
        .admin
        .post(
            "/admin/v1/access-policies",
            json!({
                "name": "on-call keys", "audience": app.issuer(), "scopes": ["mayfly:admin:keys"],
                "subjects": ["users"], "max_duration_secs": 900, "decision": "approval",
                "approvals_required": 1,
            }),
        )
        .await
        .ok(201);
    scene.person("alice", &["mayfly:access"]).await;
    let alice = scene.as_user("alice", "mayfly:access").await;
    let (introspector, _) = app.introspector().await;

    let pending = alice
        .post(
            "/v1/access-requests",
            json!({ "audience": app.issuer(), "scopes": ["mayfly:admin:keys"],
                    "duration_secs": 900, "reason": "incident 4711" }),
        )
        .await
        .ok(201)
        .clone();
    let id = pending["id"].as_str().unwrap();
    let approved = scene
        .admin
        .post(
            &format!("/admin/v1/access-requests/{id}/approve"),
            json!({ "comment": "go" }),
        )
        .await
        .ok(200)
        .clone();
    assert_eq!(approved["state"], "approved");
    let response = scene
        .login("alice", "mayfly:admin:keys", &app.issuer())
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();
    assert!(app.is_active(&introspector, token).await);

    let ended = Ended {
        introspector: &introspector,
        token,
        grant_id: approved["grant_id"].as_str().unwrap(),
    };
    ended.cancel(&app, &alice, id, json!({})).await;
    assert_eq!(
        scene
            .login("alice", "mayfly:admin:keys", &app.issuer())
            .await
            .status(),
        400
    );
    assert_eq!(app.audit("access.cancelled").await.len(), 1);
}

/// Approvers racing on a request that needs one approval: it is approved once, with
/// exactly one grant; the losers' grants do not survive.
async fn concurrent_approvals_create_one_grant(app: TestApp) {
    let scene = Scene::new(&app).await;
    scene
        .policy(json!({
            "name": "write", "scopes": ["db:write"], "subjects": ["users"],
            "max_duration_secs": 900, "decision": "approval", "approvals_required": 1,
        }))
        .await;
    let alice_id = scene.person("alice", &["mayfly:access"]).await;
    let alice = scene.as_user("alice", "mayfly:access").await;
    let mut approvers = Vec::new();
    for name in ["bob", "carol", "dave", "erin"] {
        scene.person(name, &["mayfly:approve"]).await;
        approvers.push(scene.as_user(name, "mayfly:approve").await);
    }
    let pending = alice
        .post("/v1/access-requests", request(&["db:write"], 600))
        .await
        .ok(201)
        .clone();
    let path = format!(
        "/admin/v1/access-requests/{}/approve",
        pending["id"].as_str().unwrap()
    );
    let answers = futures_util::future::join_all(
        approvers
            .iter()
            .map(|a| a.post(&path, json!({ "comment": "race" }))),
    )
    .await;
    for answer in &answers {
        assert!(
            answer.status == 200 || answer.status == 409,
            "{} {}",
            answer.status,
            answer.body
        );
    }
    let grants = app
        .state
        .store
        .subject_grants(mayfly_store::Subject::User(alice_id))
        .await
        .unwrap();
    let on_db: Vec<_> = grants.iter().filter(|g| g.audience_uri == DB).collect();
    assert_eq!(on_db.len(), 1, "exactly one grant");
    let now = alice
        .get(&format!(
            "/v1/access-requests/{}",
            pending["id"].as_str().unwrap()
        ))
        .await
        .ok(200)
        .clone();
    assert_eq!(now["state"], "approved");
    assert_eq!(now["grant_id"], json!(on_db[0].grant.id));
    assert_eq!(app.audit("access.approved").await.len(), 1);
}

/// Policies: CRUD with validation; every change is an `admin.change` event.
async fn policies_are_validated_and_audited(app: TestApp) {
    let scene = Scene::new(&app).await;
    let admin = &scene.admin;
    for (body, field) in [
        (
            json!({ "name": "x", "audience": DB, "scopes": ["db:nope"], "subjects": ["users"], "max_duration_secs": 60, "decision": "auto" }),
            "scopes",
        ),
        (
            json!({ "name": "x", "audience": "https://nowhere.example", "scopes": ["db:read"], "subjects": ["users"], "max_duration_secs": 60, "decision": "auto" }),
            "audience",
        ),
        (
            json!({ "name": "x", "audience": DB, "scopes": ["db:read"], "subjects": ["user:not-a-uuid"], "max_duration_secs": 60, "decision": "auto" }),
            "subjects",
        ),
        (
            json!({ "name": "x", "audience": DB, "scopes": ["db:read"], "subjects": ["label:On Call"], "max_duration_secs": 60, "decision": "auto" }),
            "subjects",
        ),
        (
            json!({ "name": "x", "audience": DB, "scopes": ["db:read"], "subjects": ["users"], "max_duration_secs": 0, "decision": "auto" }),
            "max_duration_secs",
        ),
        (
            json!({ "name": "x", "audience": DB, "scopes": ["db:read"], "subjects": ["users"], "max_duration_secs": 60, "decision": "approval" }),
            "approvals_required",
        ),
        (
            json!({ "name": "x", "audience": DB, "scopes": ["db:read"], "subjects": ["users"], "max_duration_secs": 60, "decision": "auto", "break_glass": true }),
            "break_glass",
        ),
    ] {
        let answer = admin.post("/admin/v1/access-policies", body).await;
        let problem = answer.problem(422);
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    let created = scene
        .policy(json!({
            "name": "read", "scopes": ["db:read"], "subjects": ["clients"],
            "max_duration_secs": 60, "decision": "deny",
        }))
        .await;
    let id = created["id"].as_str().unwrap();
    let path = format!("/admin/v1/access-policies/{id}");
    let changed = admin
        .patch(
            &path,
            json!({ "decision": "auto", "max_duration_secs": 120 }),
        )
        .await
        .ok(200)
        .clone();
    assert_eq!(changed["decision"], "auto");
    assert_eq!(changed["max_duration_secs"], 120);
    assert_eq!(
        admin.get("/admin/v1/access-policies").await.ok(200)["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    admin.delete(&path).await.ok(204);
    admin.get(&path).await.problem(404);
    let actions: Vec<String> = app
        .audit("admin.change")
        .await
        .iter()
        .map(|e| e.detail["action"].as_str().unwrap_or_default().to_owned())
        .filter(|a| a.starts_with("access_policy."))
        .collect();
    assert_eq!(actions.len(), 3, "{actions:?}");

    // A client asks for itself, with its own token; a `deny` policy refuses it.
    scene
        .policy(json!({
            "name": "no clients", "scopes": ["db:read"], "subjects": ["clients"],
            "max_duration_secs": 60, "decision": "deny",
        }))
        .await;
    let workload = app.admin_with(&["mayfly:access"]).await;
    let refused = workload
        .post("/v1/access-requests", request(&["db:read"], 60))
        .await;
    assert!(
        refused.problem(403)["detail"]
            .as_str()
            .unwrap()
            .contains("denies"),
        "{}",
        refused.body
    );
    // Without mayfly:access, not even that.
    let other = app.admin_with(&["mayfly:introspect"]).await;
    other
        .post("/v1/access-requests", request(&["db:read"], 60))
        .await
        .problem(403);
}

/// Break-glass: a policy that allows it lets the requester approve at once, which is
/// always an `anomaly` event and a webhook notice, and marks the request for review.
async fn break_glass_raises_an_anomaly(backend: Backend) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
    let receiver = axum::Router::new().route(
        "/hook",
        post(move |_headers: HeaderMap, body: String| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(serde_json::from_str(&body).unwrap_or(Value::Null));
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("webhook.secret");
    std::fs::write(&secret_file, "whsec-0123456789abcdef0123456789abcdef\n").unwrap();
    let app = spawn_app_with(backend, |config| {
        config.webhook_url = Some(hook.clone());
        config.webhook_secret_file = Some(secret_file.clone());
    })
    .await;
    let scene = Scene::new(&app).await;
    scene
        .policy(json!({
            "name": "on-call", "scopes": ["db:write"], "subjects": ["users"],
            "max_duration_secs": 1800, "decision": "approval", "approvals_required": 2,
            "break_glass": true,
        }))
        .await;
    scene
        .policy(json!({
            "name": "read", "scopes": ["db:read"], "subjects": ["users"],
            "max_duration_secs": 1800, "decision": "approval", "approvals_required": 1,
        }))
        .await;
    scene.person("alice", &["mayfly:access"]).await;
    let alice = scene.as_user("alice", "mayfly:access").await;

    // Not where the policy does not allow it.
    let mut body = request(&["db:read"], 600);
    body["break_glass"] = json!(true);
    alice.post("/v1/access-requests", body).await.problem(403);

    let mut body = request(&["db:write"], 600);
    body["break_glass"] = json!(true);
    let approved = alice
        .post("/v1/access-requests", body)
        .await
        .ok(201)
        .clone();
    assert_eq!(approved["state"], "approved");
    assert_eq!(approved["needs_review"], true);
    assert_eq!(scene.login("alice", "db:write", DB).await.status(), 200);

    let anomalies = app.audit("anomaly").await;
    assert_eq!(anomalies.len(), 1);
    assert_eq!(anomalies[0].detail["anomaly"], "break_glass");
    assert_eq!(anomalies[0].detail["request_id"], approved["id"]);
    // The review queue.
    let review = scene
        .admin
        .get("/admin/v1/access-requests?needs_review=true")
        .await
        .ok(200)
        .clone();
    assert_eq!(review["items"][0]["id"], approved["id"]);
    // Reviewed afterwards, by someone else, with a comment: the mark goes.
    let path = format!(
        "/admin/v1/access-requests/{}/review",
        approved["id"].as_str().unwrap()
    );
    scene.person("bob", &["mayfly:approve"]).await;
    let bob = scene.as_user("bob", "mayfly:approve").await;
    bob.post(&path, json!({})).await.problem(422);
    let reviewed = bob
        .post(&path, json!({ "comment": "justified: INC-4711" }))
        .await
        .ok(200)
        .clone();
    assert_eq!(reviewed["needs_review"], false);
    bob.post(&path, json!({ "comment": "again" }))
        .await
        .problem(409);
    assert_eq!(app.audit("access.reviewed").await.len(), 1);

    // The webhook hears of every step: the denied attempt, the request, its approval,
    // and the anomaly.
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let event = tokio::time::timeout(StdDuration::from_secs(10), rx.recv())
            .await
            .expect("the webhook was called")
            .unwrap();
        seen.push(event);
    }
    let types: Vec<&str> = seen.iter().map(|e| e["type"].as_str().unwrap()).collect();
    for expected in [
        "access.denied",
        "access.requested",
        "access.approved",
        "anomaly",
    ] {
        assert!(types.contains(&expected), "{types:?}");
    }
    let anomaly = seen.iter().find(|e| e["type"] == "anomaly").unwrap();
    assert_eq!(anomaly["detail"]["anomaly"], "break_glass");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_raises_an_anomaly_sqlite() {
    break_glass_raises_an_anomaly(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_raises_an_anomaly_postgres() {
    break_glass_raises_an_anomaly(Backend::Postgres).await;
}

/// A policy for `label:oncall` covers a user once an admin labels them `oncall`
/// (PATCH /admin/v1/users/{id}), read at request time: the unlabelled user is refused,
/// and so is the labelled one again once the label is taken away.
async fn a_label_policy_covers_labelled_users_only(app: TestApp) {
    let scene = Scene::new(&app).await;
    let policy = scene
        .policy(json!({
            "name": "on call reads", "scopes": ["db:read"], "subjects": ["label:oncall"],
            "max_duration_secs": 900, "decision": "auto",
        }))
        .await;
    assert_eq!(policy["subjects"], json!(["label:oncall"]));
    let alice_id = scene.person("alice", &["mayfly:access"]).await;
    scene.person("bob", &["mayfly:access"]).await;
    let alice_path = format!("/admin/v1/users/{alice_id}");
    let labelled = scene
        .admin
        .patch(&alice_path, json!({ "labels": ["oncall"] }))
        .await
        .ok(200)
        .clone();
    assert_eq!(labelled["labels"], json!(["oncall"]));

    let bob = scene.as_user("bob", "mayfly:access").await;
    let refused = bob
        .post("/v1/access-requests", request(&["db:read"], 120))
        .await;
    assert!(
        refused.problem(403)["detail"]
            .as_str()
            .unwrap()
            .contains("no access policy"),
        "{}",
        refused.body
    );

    let alice = scene.as_user("alice", "mayfly:access").await;
    let approved = alice
        .post("/v1/access-requests", request(&["db:read"], 120))
        .await
        .ok(201)
        .clone();
    assert_eq!(approved["state"], "approved");
    assert_eq!(scene.login("alice", "db:read", DB).await.status(), 200);

    // Taking the label away takes the policy away for the next request.
    scene
        .admin
        .patch(&alice_path, json!({ "labels": [] }))
        .await
        .ok(200);
    alice
        .post("/v1/access-requests", request(&["db:read"], 60))
        .await
        .problem(403);
}
