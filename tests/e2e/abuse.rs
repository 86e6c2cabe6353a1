//! Abuse resistance (issue 15, part B): what an attacker who knows only a client id, a
//! username, or how to open connections can do to everyone else. Each test performs the
//! attack and checks the service still serves the legitimate caller.

use std::net::IpAddr;

use serde_json::json;

use crate::helpers::{Auth, TestApp, TestClient, assert_oauth_error};

const ORDERS: &str = "https://api.example.com/orders";

crate::both_stores!(
    secret_guesses_from_elsewhere_do_not_lock_out_the_owner,
    unauthenticated_burst_never_revokes,
    other_spellings_of_a_client_id_are_refused,
);

const ASK: [(&str, &str); 2] = [
    ("grant_type", "client_credentials"),
    ("scope", "orders:read"),
];

async fn orders_client(app: &TestApp) -> TestClient {
    app.audience(ORDERS, &["orders:read"]).await;
    let client = app.client().await;
    app.grant(&client, ORDERS, &["orders:read"]).await;
    client
}

/// An HTTP client whose connections come from `source` (any 127/8 address is this host's
/// loopback, so tests can play callers on other networks).
fn http_from(source: &str) -> reqwest::Client {
    let source: IpAddr = source.parse().unwrap();
    reqwest::Client::builder()
        .local_address(source)
        .build()
        .unwrap()
}

async fn token_from(
    app: &TestApp,
    http: &reqwest::Client,
    client: &TestClient,
    id: &str,
) -> reqwest::Response {
    http.post(format!("{}/oauth2/token", app.base))
        .basic_auth(id, Some(&client.secret))
        .form(&ASK)
        .send()
        .await
        .unwrap()
}

/// Wrong secrets sent in the victim's name from another network throttle that network
/// only: the owner's correct request from its own network still gets a token.
async fn secret_guesses_from_elsewhere_do_not_lock_out_the_owner(app: TestApp) {
    let client = orders_client(&app).await;
    app.token_ok(Auth::Basic(&client), &ASK).await;
    let attacker = http_from("127.0.9.1");
    let guess = TestClient {
        secret: "mfy_cs_guess".into(),
        ..client.clone()
    };
    for _ in 0..3 * mayfly_server::client_auth::throttle::PER_CLIENT {
        let response = token_from(&app, &attacker, &guess, &client.id.to_string()).await;
        assert!(
            [401, 429].contains(&response.status().as_u16()),
            "{}",
            response.status()
        );
    }
    // The attacker's network is throttled for this client…
    let response = token_from(&app, &attacker, &client, &client.id.to_string()).await;
    assert_eq!(response.status(), 429);
    // …the owner's is not.
    app.token_ok(Auth::Basic(&client), &ASK).await;
}

/// A burst of failures is an anomaly to report, but anyone can cause one: it never
/// revokes the client's tokens, whatever the client's anomaly policy.
async fn unauthenticated_burst_never_revokes(app: TestApp) {
    let api = app.bootstrap_admin().await;
    let client = orders_client(&app).await;
    let patched = api
        .patch(
            &format!("/admin/v1/clients/{}", client.id),
            json!({ "anomaly_policy": "revoke" }),
        )
        .await;
    assert_eq!(patched.ok(200)["anomaly_policy"], "revoke");
    let body = app.token_ok(Auth::Basic(&client), &ASK).await;
    let token = body["access_token"].as_str().unwrap().to_owned();
    let (introspector, _) = app.introspector().await;

    let attacker = http_from("127.0.9.2");
    let guess = TestClient {
        secret: "mfy_cs_guess".into(),
        ..client.clone()
    };
    for _ in 0..2 * mayfly_server::client_auth::throttle::PER_CLIENT {
        token_from(&app, &attacker, &guess, &client.id.to_string()).await;
    }
    // The burst is reported…
    let mut reported = Vec::new();
    for _ in 0..100 {
        reported = app.audit("anomaly").await;
        if !reported.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(reported.len(), 1, "{reported:?}");
    assert_eq!(reported[0].detail["anomaly"], "auth_failure_burst");
    assert_eq!(reported[0].detail["policy"], "revoke");
    assert_eq!(reported[0].detail["action"], "none");
    // …and nothing is revoked.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(app.audit("token.revoked").await.is_empty());
    assert!(app.is_active(&introspector, &token).await);
    app.token_ok(Auth::Basic(&client), &ASK).await;
}

/// A client id has one spelling: the lowercase hyphenated UUID. Any other (uppercase,
/// braces, URN, no hyphens) is refused, so it cannot open a fresh failure counter for
/// the same client either.
async fn other_spellings_of_a_client_id_are_refused(app: TestApp) {
    let client = orders_client(&app).await;
    let http = reqwest::Client::new();
    let id = client.id;
    for spelling in [
        id.hyphenated().to_string().to_uppercase(),
        id.simple().to_string(),
        id.braced().to_string(),
        id.urn().to_string(),
    ] {
        let response = token_from(&app, &http, &client, &spelling).await;
        assert_oauth_error(response, 401, "invalid_client").await;
    }
    app.token_ok(Auth::Basic(&client), &ASK).await;
    // Uppercase guesses count against the same client's counter as lowercase ones.
    let guess = TestClient {
        secret: "mfy_cs_guess".into(),
        ..client.clone()
    };
    let upper = id.to_string().to_uppercase();
    for _ in 0..mayfly_server::client_auth::throttle::PER_CLIENT {
        token_from(&app, &http, &guess, &upper).await;
    }
    assert_eq!(
        app.token_request(Auth::Basic(&guess), &ASK).await.status(),
        401,
        "an uppercase id is not this client: its failures do not count as the client's"
    );
}
