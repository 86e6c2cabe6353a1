//! Token use reporting and anomaly response: `POST /v1/usage`, the SDK's reporter, new
//! networks / audiences / endpoints, failure bursts, the `revoke` policy, and the signed
//! webhook.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use axum::http::HeaderMap;
use axum::routing::{get, post};
use hmac::{Hmac, KeyInit, Mac};
use mayfly_sdk::{ClientSecret, TokenSource, VerifiedToken, Verifier};
use mayfly_store::{AuditEvent, AuditQuery, Backend};
use serde_json::{Value, json};
use sha2::Sha256;
use time::Duration;
use tokio::sync::mpsc;

use crate::helpers::{
    AdminApi, AppClock, Auth, TestApp, TestClient, answer, issuer_http, spawn_app_with,
};

const ORDERS: &str = "https://api.example.com/orders";
const BILLING: &str = "https://api.example.com/billing";

crate::both_stores!(
    usage_reports_are_audited_and_searchable,
    usage_reports_are_checked,
    token_used_from_a_new_network_is_an_anomaly,
    revoke_policy_deactivates_the_token_at_once,
    new_audience_and_endpoint_after_learning,
    client_issuing_from_a_new_network,
    a_users_login_from_a_new_network_ends_that_users_sessions_only,
    failure_burst_is_an_anomaly,
    sdk_layer_reports_usage,
    far_future_times_are_refused_not_a_panic,
);

/// A resource server's client, allowed to report use and introspect.
struct ResourceServer {
    client: TestClient,
    token: String,
}

async fn resource_server(app: &TestApp) -> ResourceServer {
    let client = app.client().await;
    app.grant(
        &client,
        &app.issuer(),
        &["mayfly:usage:write", "mayfly:introspect"],
    )
    .await;
    let body = app
        .token_ok(
            Auth::Basic(&client),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "mayfly:usage:write"),
                ("resource", &app.issuer()),
            ],
        )
        .await;
    ResourceServer {
        client,
        token: body["access_token"].as_str().unwrap().to_owned(),
    }
}

struct Issued {
    token: String,
    jti: String,
}

async fn worker_token(app: &TestApp, worker: &TestClient) -> Issued {
    let body = app
        .token_ok(
            Auth::Basic(worker),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "orders:read"),
                ("resource", ORDERS),
            ],
        )
        .await;
    let token = body["access_token"].as_str().unwrap().to_owned();
    let jti = app.claims_of(&token).jti;
    Issued { token, jti }
}

fn use_of(app: &TestApp, worker: &TestClient, issued: &Issued, ip: &str, path: &str) -> Value {
    json!({
        "jti": issued.jti,
        "client_id": worker.id,
        "sub": worker.id,
        "aud": ORDERS,
        "method": "GET",
        "path": path,
        "client_ip": ip,
        "at": app.now().format(&time::format_description::well_known::Rfc3339).unwrap(),
    })
}

async fn report(app: &TestApp, rs: &ResourceServer, events: Value) -> crate::helpers::Answer {
    let response = app
        .http
        .post(format!("{}/v1/usage", app.base))
        .bearer_auth(&rs.token)
        .json(&json!({ "events": events }))
        .send()
        .await
        .unwrap();
    answer(response).await
}

async fn introspect_active(app: &TestApp, rs: &ResourceServer, token: &str) -> bool {
    let body: Value = app
        .http
        .post(format!("{}/oauth2/introspect", app.base))
        .basic_auth(rs.client.id, Some(&rs.client.secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["active"].as_bool().unwrap()
}

async fn orders_worker(app: &TestApp) -> TestClient {
    app.audience(ORDERS, &["orders:read"]).await;
    let worker = app.client().await;
    app.grant(&worker, ORDERS, &["orders:read"]).await;
    worker
}

async fn set_policy(api: &AdminApi<'_>, client: &TestClient, policy: &str) {
    let body = api
        .patch(
            &format!("/admin/v1/clients/{}", client.id),
            json!({ "anomaly_policy": policy }),
        )
        .await;
    assert_eq!(body.ok(200)["anomaly_policy"], policy);
}

/// Anomaly events, newest first; waits up to 5 s for `at_least` of them (detection off
/// the issuance path is asynchronous).
async fn anomalies(app: &TestApp, at_least: usize) -> Vec<AuditEvent> {
    for _ in 0..100 {
        let found = app.audit("anomaly").await;
        if found.len() >= at_least {
            return found;
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    app.audit("anomaly").await
}

async fn usage_reports_are_audited_and_searchable(app: TestApp) {
    let api = app.bootstrap_admin().await;
    let worker = orders_worker(&app).await;
    let rs = resource_server(&app).await;
    let issued = worker_token(&app, &worker).await;
    let answer = report(
        &app,
        &rs,
        json!([use_of(
            &app,
            &worker,
            &issued,
            "127.0.0.1",
            "/orders/7?secret=x"
        )]),
    )
    .await;
    assert_eq!(answer.ok(202)["accepted"], 1);

    let used = app.audit("token.used").await;
    assert_eq!(used.len(), 1);
    let event = &used[0];
    assert_eq!(event.outcome, "success");
    assert_eq!(
        event.actor.as_deref(),
        Some(rs.client.id.to_string().as_str())
    );
    assert_eq!(
        event.client_id.as_deref(),
        Some(worker.id.to_string().as_str())
    );
    assert_eq!(
        event.subject.as_deref(),
        Some(worker.id.to_string().as_str())
    );
    assert_eq!(event.jti.as_deref(), Some(issued.jti.as_str()));
    assert_eq!(event.audience.as_deref(), Some(ORDERS));
    assert_eq!(event.source_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(event.detail["method"], "GET");
    assert_eq!(
        event.detail["path"], "/orders/7",
        "the query string is never kept"
    );
    assert!(event.request_id.is_some());

    // Searchable like any event: by jti, type and network.
    let found = api
        .get(&format!(
            "/admin/v1/audit-events?jti={}&type=token.used&ip=127.0.0.0/8",
            issued.jti
        ))
        .await;
    let items = found.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["type"], "token.used");

    // The usage report, like every audit row, holds no token.
    let all = app
        .state
        .store
        .audit_events(&AuditQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let dump = format!("{all:?}");
    assert!(!dump.contains(&issued.token) && !dump.contains(&rs.token));
}

async fn usage_reports_are_checked(app: TestApp) {
    let api = app.bootstrap_admin().await;
    let worker = orders_worker(&app).await;
    let rs = resource_server(&app).await;
    let issued = worker_token(&app, &worker).await;
    let good = use_of(&app, &worker, &issued, "127.0.0.1", "/orders");

    // Without a token, or without the scope.
    let response = app
        .http
        .post(format!("{}/v1/usage", app.base))
        .json(&json!({ "events": [good] }))
        .send()
        .await
        .unwrap();
    answer(response).await.problem(401);
    let no_scope = ResourceServer {
        client: rs.client.clone(),
        token: app.admin_with(&["mayfly:introspect"]).await.token,
    };
    let refused = report(&app, &no_scope, json!([good])).await;
    assert!(
        refused.problem(403)["detail"]
            .as_str()
            .unwrap()
            .contains("mayfly:usage:write")
    );
    drop(api);

    // Bad input: 422 naming the field, nothing recorded.
    let mut bad_ip = good.clone();
    bad_ip["client_ip"] = json!("not-an-ip");
    let mut bad_path = good.clone();
    bad_path["path"] = json!("orders");
    let mut old = good.clone();
    old["at"] = json!("2001-01-01T00:00:00Z");
    let mut extra = good.clone();
    extra["token"] = json!(issued.token);
    let mut bad_method = good.clone();
    bad_method["method"] = json!("GET /x");
    for (events, field) in [
        (json!([]), "events"),
        (json!([bad_ip]), "client_ip"),
        (json!([bad_path]), "path"),
        (json!([old]), "at"),
        (json!([extra]), "token"),
        (json!([bad_method]), "method"),
    ] {
        let answer = report(&app, &rs, events).await;
        assert_eq!(
            answer.problem(422)["errors"][0]["field"],
            field,
            "{}",
            answer.body
        );
    }
    let too_many: Vec<Value> = (0..1001).map(|_| good.clone()).collect();
    report(&app, &rs, json!(too_many)).await.problem(422);
    assert!(app.audit("token.used").await.is_empty());
}

async fn token_used_from_a_new_network_is_an_anomaly(app: TestApp) {
    app.bootstrap_admin().await;
    let worker = orders_worker(&app).await;
    let rs = resource_server(&app).await;
    let issued = worker_token(&app, &worker).await; // from 127.0.0.1

    // Same network as issued: nothing.
    let answer = report(
        &app,
        &rs,
        json!([use_of(&app, &worker, &issued, "127.0.0.1", "/orders")]),
    )
    .await;
    assert_eq!(answer.ok(202)["anomalies"], json!([]));

    // Elsewhere: an anomaly, recorded with what and where. The policy is alert, so the
    // token stays active.
    let answer = report(
        &app,
        &rs,
        json!([use_of(&app, &worker, &issued, "203.0.113.9", "/orders")]),
    )
    .await;
    assert_eq!(answer.ok(202)["anomalies"], json!(["token_new_network"]));
    let found = anomalies(&app, 1).await;
    assert_eq!(found.len(), 1);
    let event = &found[0];
    assert_eq!(event.outcome, "detected");
    assert_eq!(
        event.client_id.as_deref(),
        Some(worker.id.to_string().as_str())
    );
    assert_eq!(event.jti.as_deref(), Some(issued.jti.as_str()));
    assert_eq!(event.source_ip.as_deref(), Some("203.0.113.9"));
    assert_eq!(event.detail["anomaly"], "token_new_network");
    assert_eq!(event.detail["seen_in"], "usage");
    assert_eq!(event.detail["policy"], "alert");
    assert_eq!(event.detail["action"], "none");
    assert_eq!(
        event.detail["anomalies"][0]["detail"],
        json!({ "issued_to": "127.0.0.0/24", "used_from": "203.0.113.0/24" })
    );
    assert!(introspect_active(&app, &rs, &issued.token).await);
    let metrics = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "mayfly_anomalies_total{anomaly=\"token_new_network\"}",
        "mayfly_token_uses_total",
    ] {
        assert!(metrics.contains(needle), "missing {needle}");
    }
}

async fn revoke_policy_deactivates_the_token_at_once(app: TestApp) {
    let api = app.bootstrap_admin().await;
    let worker = orders_worker(&app).await;
    set_policy(&api, &worker, "revoke").await;
    let rs = resource_server(&app).await;
    let issued = worker_token(&app, &worker).await;
    let other = worker_token(&app, &worker).await;
    assert!(introspect_active(&app, &rs, &issued.token).await);

    let answer = report(
        &app,
        &rs,
        json!([use_of(&app, &worker, &issued, "198.51.100.20", "/orders")]),
    )
    .await;
    assert_eq!(answer.ok(202)["anomalies"], json!(["token_new_network"]));
    // Right after the report answers, the token is inactive here and in the feed.
    assert!(!introspect_active(&app, &rs, &issued.token).await);
    assert!(
        introspect_active(&app, &rs, &other.token).await,
        "only the token concerned"
    );
    let event = &anomalies(&app, 1).await[0];
    assert_eq!(event.detail["policy"], "revoke");
    assert_eq!(event.detail["action"], "revoked_token");
    let revoked = app.audit("token.revoked").await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].actor.as_deref(), Some("mayfly:anomaly"));
}

async fn new_audience_and_endpoint_after_learning(app: TestApp) {
    app.bootstrap_admin().await;
    let worker = orders_worker(&app).await;
    app.audience(BILLING, &["billing:read"]).await;
    let rs = resource_server(&app).await;

    // Learning period: everything it does is baseline.
    let issued = worker_token(&app, &worker).await;
    let answer = report(
        &app,
        &rs,
        json!([use_of(&app, &worker, &issued, "127.0.0.1", "/orders")]),
    )
    .await;
    assert_eq!(answer.ok(202)["anomalies"], json!([]));

    // After it, a new endpoint and a new audience stand out; known ones do not.
    app.clock.advance(Duration::hours(2));
    let rs = resource_server(&app).await;
    let issued = worker_token(&app, &worker).await;
    let known = use_of(&app, &worker, &issued, "127.0.0.1", "/orders");
    let new_endpoint = use_of(&app, &worker, &issued, "127.0.0.1", "/orders/export");
    let mut new_audience = use_of(&app, &worker, &issued, "127.0.0.1", "/orders");
    new_audience["aud"] = json!(BILLING);
    assert_eq!(
        report(&app, &rs, json!([known])).await.ok(202)["anomalies"],
        json!([])
    );
    assert_eq!(
        report(&app, &rs, json!([new_endpoint])).await.ok(202)["anomalies"],
        json!(["new_endpoint"])
    );
    assert_eq!(
        report(&app, &rs, json!([new_audience])).await.ok(202)["anomalies"],
        json!(["new_audience", "new_endpoint"])
    );
    // Seen once, they join the baseline.
    assert_eq!(
        report(&app, &rs, json!([new_endpoint])).await.ok(202)["anomalies"],
        json!([])
    );
}

/// A reqwest client whose connections come from `ip` (any 127/8 address is local).
fn from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// A token request by `client` sent from the loopback address `ip`; the answer's body.
async fn token_request_from(
    app: &TestApp,
    ip: &str,
    client: &TestClient,
    form: &[(&str, &str)],
) -> Value {
    from(ip)
        .post(format!("{}/oauth2/token", app.base))
        .basic_auth(client.id, Some(&client.secret))
        .form(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn client_issuing_from_a_new_network(app: TestApp) {
    let api = app.bootstrap_admin().await;
    let worker = orders_worker(&app).await;
    set_policy(&api, &worker, "revoke").await;
    let rs = resource_server(&app).await;
    app.clock.advance(Duration::hours(2));
    let ask = [
        ("grant_type", "client_credentials"),
        ("scope", "orders:read"),
        ("resource", ORDERS),
    ];
    let token_from = |ip: &'static str| {
        let app = &app;
        let worker = &worker;
        async move {
            let body = token_request_from(app, ip, worker, &ask).await;
            body["access_token"].as_str().unwrap().to_owned()
        }
    };
    // The first network is the baseline; the same network again is known.
    let home = token_from("127.0.0.1").await;
    token_from("127.0.0.2").await;
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    assert!(app.audit("anomaly").await.is_empty());

    // A token requested from another network: an anomaly, and with the revoke policy
    // the client's live tokens (the one just issued included) are revoked.
    let away = token_from("127.0.1.5").await;
    let found = anomalies(&app, 1).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].detail["anomaly"], "new_network");
    assert_eq!(found[0].detail["seen_in"], "issuance");
    assert_eq!(found[0].source_ip.as_deref(), Some("127.0.1.5"));
    assert_eq!(
        found[0].detail["anomalies"][0]["detail"]["value"],
        "127.0.1.0/24"
    );
    for _ in 0..100 {
        if !introspect_active(&app, &rs, &away).await {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    assert!(!introspect_active(&app, &rs, &away).await);
    assert!(!introspect_active(&app, &rs, &home).await);
}

/// A shared login client (password and refresh, `revoke` policy): one user's login from
/// a network the client has not seen puts that user's sessions in doubt, not every
/// user's. Alice's tokens and refresh family end; Bob's refresh still works.
async fn a_users_login_from_a_new_network_ends_that_users_sessions_only(app: TestApp) {
    const PASSWORD: &str = "correct horse battery staple";
    let api = app.bootstrap_admin().await;
    app.audience(ORDERS, &["orders:read"]).await;
    let login = app.client_for(&["password", "refresh_token"]).await;
    set_policy(&api, &login, "revoke").await;
    let rs = resource_server(&app).await;
    for name in ["alice", "bob"] {
        let id = app.user(name, PASSWORD).await;
        app.grant_user(id, ORDERS, &["orders:read"]).await;
    }
    app.clock.advance(Duration::hours(2));
    let log_in = |ip: &'static str, name: &'static str| {
        let app = &app;
        let login = &login;
        async move {
            let form = [
                ("grant_type", "password"),
                ("username", name),
                ("password", PASSWORD),
                ("scope", "orders:read"),
                ("resource", ORDERS),
            ];
            token_request_from(app, ip, login, &form).await
        }
    };
    let bob = log_in("127.0.0.1", "bob").await;
    let alice_home = log_in("127.0.0.1", "alice").await;
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    assert!(app.audit("anomaly").await.is_empty());

    let alice_away = log_in("127.0.1.5", "alice").await;
    let found = anomalies(&app, 1).await;
    assert_eq!(found[0].detail["anomaly"], "new_network");
    assert_eq!(
        found[0].detail["action"], "revoked_subject_tokens",
        "{found:?}"
    );
    let away = alice_away["access_token"].as_str().unwrap();
    for _ in 0..100 {
        if !introspect_active(&app, &rs, away).await {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    assert!(!introspect_active(&app, &rs, away).await);
    let home = alice_home["access_token"].as_str().unwrap();
    assert!(!introspect_active(&app, &rs, home).await);

    let bobs = bob["access_token"].as_str().unwrap();
    assert!(
        introspect_active(&app, &rs, bobs).await,
        "bob's token lives"
    );
    let refresh = [
        ("grant_type", "refresh_token"),
        ("refresh_token", bob["refresh_token"].as_str().unwrap()),
    ];
    let refreshed = token_request_from(&app, "127.0.0.1", &login, &refresh).await;
    assert!(
        refreshed["access_token"].is_string(),
        "bob's login lives: {refreshed}"
    );
}

async fn failure_burst_is_an_anomaly(app: TestApp) {
    app.bootstrap_admin().await;
    let worker = orders_worker(&app).await;
    let wrong = TestClient {
        secret: "mfy_cs_wrong".into(),
        ..worker.clone()
    };
    let ask = [
        ("grant_type", "client_credentials"),
        ("scope", "orders:read"),
    ];
    for _ in 0..12 {
        app.token_request(Auth::Basic(&wrong), &ask).await;
    }
    let found = anomalies(&app, 1).await;
    // One anomaly per burst, not one per failure.
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    let found_again = app.audit("anomaly").await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found_again.len(), 1);
    assert_eq!(found[0].detail["anomaly"], "auth_failure_burst");
    assert_eq!(
        found[0].client_id.as_deref(),
        Some(worker.id.to_string().as_str())
    );
    assert_eq!(found[0].source_ip.as_deref(), Some("127.0.0.1"));
}

async fn sdk_layer_reports_usage(app: TestApp) {
    app.bootstrap_admin().await;
    let worker = orders_worker(&app).await;
    let rs = resource_server(&app).await;
    let issuer_http = issuer_http(&app);
    let clock: Arc<dyn mayfly_sdk::Clock> = Arc::new(AppClock(app.clock.clone()));
    let verifier = Verifier::builder(app.issuer(), ORDERS)
        .http_client(issuer_http.clone())
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let reporting = TokenSource::builder(app.issuer())
        .client_secret(
            rs.client.id.to_string(),
            ClientSecret::new(rs.client.secret.clone()),
        )
        .audience(app.issuer())
        .scopes([mayfly_sdk::USAGE_WRITE_SCOPE])
        .http_client(issuer_http.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    let reporter = mayfly_sdk::UsageReporter::builder(app.issuer(), reporting)
        .http_client(issuer_http)
        .clock(clock)
        .interval(StdDuration::from_secs(3600))
        .start()
        .unwrap();
    async fn show(token: VerifiedToken) -> String {
        token.claims().sub.clone()
    }
    let router = axum::Router::new().route(
        "/orders/{id}",
        get(show).route_layer(
            verifier
                .require(["orders:read"])
                .report_usage(reporter.clone()),
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    let issued = worker_token(&app, &worker).await;
    for path in ["/orders/1", "/orders/2?page=3"] {
        let status = from("127.0.0.3")
            .get(format!("{base}{path}"))
            .bearer_auth(&issued.token)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
    // Refused requests are not reported as use.
    let refused = reqwest::Client::new()
        .get(format!("{base}/orders/3"))
        .bearer_auth("v4.public.garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert!(reporter.flush().await);

    let mut used = app.audit("token.used").await;
    used.reverse();
    let seen: Vec<_> = used
        .iter()
        .map(|e| {
            (
                e.jti.clone().unwrap(),
                e.detail["path"].as_str().unwrap().to_owned(),
                e.source_ip.clone().unwrap(),
                e.actor.clone().unwrap(),
            )
        })
        .collect();
    let rs_id = rs.client.id.to_string();
    assert_eq!(
        seen,
        vec![
            (
                issued.jti.clone(),
                "/orders/1".into(),
                "127.0.0.3".into(),
                rs_id.clone()
            ),
            (
                issued.jti.clone(),
                "/orders/2".into(),
                "127.0.0.3".into(),
                rs_id
            ),
        ]
    );
}

/// The webhook receives every anomaly as JSON, signed with HMAC-SHA256 over
/// "<t>.<body>" under the configured secret, and retries when the receiver fails.
async fn webhook_receives_signed_anomalies(backend: Backend) {
    // The receiver fails its first call: the notice must come again.
    let (tx, mut rx) = mpsc::unbounded_channel::<(HeaderMap, String)>();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let receiver = axum::Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: String| {
            let tx = tx.clone();
            let calls = calls.clone();
            async move {
                let _ = tx.send((headers, body));
                if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                } else {
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("webhook.secret");
    let secret = "whsec-0123456789abcdef0123456789abcdef";
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();

    let app = spawn_app_with(backend, |config| {
        config.webhook_url = Some(hook.clone());
        config.webhook_secret_file = Some(secret_file.clone());
    })
    .await;
    app.bootstrap_admin().await;
    let worker = orders_worker(&app).await;
    let rs = resource_server(&app).await;
    let issued = worker_token(&app, &worker).await;
    report(
        &app,
        &rs,
        json!([use_of(&app, &worker, &issued, "192.0.2.1", "/orders")]),
    )
    .await
    .ok(202);

    let (first_headers, first_body) = tokio::time::timeout(StdDuration::from_secs(10), rx.recv())
        .await
        .expect("the webhook was called")
        .unwrap();
    let (headers, body) = tokio::time::timeout(StdDuration::from_secs(10), rx.recv())
        .await
        .expect("the webhook was retried after a 503")
        .unwrap();
    assert_eq!(first_body, body, "the retry carries the same notice");
    assert_eq!(first_headers["mayfly-event-id"], headers["mayfly-event-id"]);
    let signature = headers["mayfly-signature"].to_str().unwrap();
    let (t, v1) = signature
        .strip_prefix("t=")
        .and_then(|s| s.split_once(",v1="))
        .unwrap();
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(v1, expected, "signature verifies with the shared secret");
    assert!((t.parse::<i64>().unwrap() - app.now().unix_timestamp()).abs() < 5);
    let event: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(event["type"], "anomaly");
    assert_eq!(event["jti"], issued.jti);
    assert_eq!(event["detail"]["anomaly"], "token_new_network");
    assert_eq!(headers["mayfly-event-id"].to_str().unwrap(), event["id"]);
    // A wrong secret does not verify.
    let mut wrong = <Hmac<Sha256> as KeyInit>::new_from_slice(b"another secret").unwrap();
    wrong.update(format!("{t}.{body}").as_bytes());
    assert!(wrong.verify_slice(v1.as_bytes()).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_receives_signed_anomalies_sqlite() {
    webhook_receives_signed_anomalies(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_receives_signed_anomalies_postgres() {
    webhook_receives_signed_anomalies(Backend::Postgres).await;
}

/// A usage report with `exp` at the end of time, for a client whose policy revokes:
/// once a panic (the revocation's keep-until overflowed), now a 422; and the admin
/// layer keeps such a revocation only as long as a token can live.
async fn far_future_times_are_refused_not_a_panic(app: TestApp) {
    let api = app.bootstrap_admin().await;
    let worker = orders_worker(&app).await;
    set_policy(&api, &worker, "revoke").await;
    let rs = resource_server(&app).await;
    let issued = worker_token(&app, &worker).await;
    for exp in [
        "9999-12-31T23:59:59Z",
        "2999-01-01T00:00:00Z",
        "0000-01-01T00:00:00Z",
    ] {
        let mut event = use_of(&app, &worker, &issued, "198.51.100.20", "/orders");
        event["exp"] = json!(exp);
        let answer = report(&app, &rs, json!([event])).await;
        assert_eq!(answer.problem(422)["errors"][0]["field"], "exp", "{exp}");
    }
    for at in ["9999-12-31T23:59:59Z", "0000-01-01T00:00:00Z"] {
        let mut event = use_of(&app, &worker, &issued, "198.51.100.20", "/orders");
        event["at"] = json!(at);
        report(&app, &rs, json!([event])).await.problem(422);
    }
    assert!(introspect_active(&app, &rs, &issued.token).await);

    let end_of_time = time::macros::datetime!(9999-12-31 23:59:59 UTC);
    let record = app
        .admin()
        .create_revocation(mayfly_server::service::RevokeSpec {
            token_exp: Some(end_of_time),
            ..mayfly_server::service::RevokeSpec::now(
                mayfly_core::revocation::RevocationKind::Jti,
                issued.jti.clone(),
                "test",
            )
        })
        .await
        .unwrap();
    assert!(record.expires_at <= app.now() + time::Duration::hours(2));
    // Made through the service, not the admin API (whose responses wait for this): on
    // Postgres the revocation reaches this process's memory by NOTIFY, a moment later.
    app.state.revocations.catch_up().await.unwrap();
    assert!(!introspect_active(&app, &rs, &issued.token).await);
}
