//! The audit log: searchable over the admin API, and issuance fails closed when it
//! cannot be written.

use serde_json::Value;

use crate::helpers::{Auth, TestApp, TestClient};

const ORDERS: &str = "https://api.example.com/orders";

crate::both_stores!(
    search_by_every_filter,
    issuance_fails_closed_without_the_audit_log,
    metrics_are_exposed,
);

fn jti_of(app: &TestApp, token: &str) -> String {
    let keys = app.state.keyring.current();
    let options = mayfly_core::VerifyOptions {
        issuer: &app.state.issuer,
        audience: None,
        leeway: time::Duration::ZERO,
    };
    mayfly_core::token::verify(token, |kid| keys.public_key(kid), &options, app.now())
        .unwrap()
        .jti
}

async fn search_by_every_filter(app: TestApp) {
    let api = app.bootstrap_admin().await;
    app.audience(ORDERS, &["orders:read"]).await;
    let worker = app.client().await;
    app.grant(&worker, ORDERS, &["orders:read"]).await;
    let ask = [
        ("grant_type", "client_credentials"),
        ("scope", "orders:read"),
        ("resource", ORDERS),
    ];
    let mut jtis = Vec::new();
    for _ in 0..3 {
        let body = app.token_ok(Auth::Basic(&worker), &ask).await;
        jtis.push(jti_of(&app, body["access_token"].as_str().unwrap()));
    }
    let wrong = TestClient {
        secret: "mfy_cs_not-the-secret".into(),
        ..worker.clone()
    };
    app.token_request(Auth::Basic(&wrong), &ask).await;
    app.token_request(
        Auth::Basic(&worker),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "orders:write"),
            ("resource", ORDERS),
        ],
    )
    .await;

    let search = |query: String| {
        let api = &api;
        async move {
            let answer = api.get(&format!("/admin/v1/audit-events?{query}")).await;
            answer.ok(200)["items"].as_array().unwrap().clone()
        }
    };
    let wid = worker.id.to_string();
    let issued = search(format!("type=token.issued&client_id={wid}")).await;
    assert_eq!(issued.len(), 3);
    assert!(issued.iter().all(|e| e["type"] == "token.issued"
        && e["client_id"] == wid.as_str()
        && e["outcome"] == "success"));
    let got: Vec<_> = issued
        .iter()
        .map(|e| e["jti"].as_str().unwrap().to_owned())
        .rev()
        .collect();
    assert_eq!(got, jtis, "newest first");
    let event = &issued[0];
    for field in [
        "id",
        "occurred_at",
        "actor",
        "subject",
        "audience",
        "scopes",
        "source_ip",
        "request_id",
    ] {
        assert!(!event[field].is_null(), "{field} recorded: {event}");
    }
    assert_eq!(event["audience"], ORDERS);
    assert_eq!(event["scopes"], "orders:read");

    assert_eq!(search(format!("jti={}", jtis[1])).await.len(), 1);
    assert_eq!(
        search(format!("client_id={wid}&type=client.auth_failed"))
            .await
            .len(),
        1
    );
    let denied = search(format!("client_id={wid}&outcome=denied")).await;
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["detail"]["error"], "invalid_scope");
    assert_eq!(
        search(format!("subject={wid}&type=token.issued"))
            .await
            .len(),
        3
    );
    assert_eq!(
        search(format!(
            "audience={}&type=token.issued",
            "https%3A%2F%2Fapi.example.com%2Forders"
        ))
        .await
        .len(),
        3
    );
    assert_eq!(
        search(format!("ip=127.0.0.0/8&client_id={wid}"))
            .await
            .len(),
        5
    );
    assert_eq!(
        search(format!("ip=127.0.0.1&client_id={wid}")).await.len(),
        5
    );
    assert_eq!(
        search(format!("ip=10.0.0.0/8&client_id={wid}")).await.len(),
        0
    );
    let future = (app.now() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    assert_eq!(search(format!("since={future}")).await.len(), 0);
    assert_eq!(
        search(format!("until={future}&client_id={wid}"))
            .await
            .len(),
        5
    );

    // Paging: no gap, no duplicate.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = api
            .get(&format!(
                "/admin/v1/audit-events?client_id={wid}&limit=2&cursor={cursor}"
            ))
            .await;
        let body = page.ok(200).clone();
        seen.extend(
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_owned()),
        );
        match body["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    let all: Vec<_> = search(format!("client_id={wid}"))
        .await
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, all);

    // Bad input and authorization.
    api.get("/admin/v1/audit-events?ip=not-an-ip")
        .await
        .problem(422);
    api.get("/admin/v1/audit-events?cursor=abc")
        .await
        .problem(422);
    api.get("/admin/v1/audit-events?since=yesterday")
        .await
        .problem(400);
    api.get("/admin/v1/audit-events?colour=red")
        .await
        .problem(400);
    app.admin_with(&["mayfly:admin:clients"])
        .await
        .get("/admin/v1/audit-events")
        .await
        .problem(403);
    app.admin_with(&["mayfly:admin:read"])
        .await
        .get("/admin/v1/audit-events")
        .await
        .ok(200);

    // Nothing secret in the log.
    let everything = serde_json::to_string(&search(String::from("limit=500")).await).unwrap();
    assert!(!everything.contains(&worker.secret) && !everything.contains(&wrong.secret));
}

/// Makes the audit table refuse inserts (or accept them again), from outside the app.
async fn block_audit(app: &TestApp, blocked: bool) {
    match app.state.store.backend() {
        mayfly_store::Backend::Postgres => {
            use sqlx::Connection as _;
            let mut conn = sqlx::PgConnection::connect(&app.db_url).await.unwrap();
            let sql = if blocked {
                "ALTER TABLE audit_events ADD CONSTRAINT audit_blocked CHECK (false) NOT VALID"
            } else {
                "ALTER TABLE audit_events DROP CONSTRAINT audit_blocked"
            };
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
        mayfly_store::Backend::Sqlite => {
            use sqlx::Connection as _;
            let mut conn = sqlx::SqliteConnection::connect(&app.db_url).await.unwrap();
            let sql = if blocked {
                "CREATE TRIGGER audit_blocked BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'blocked'); END"
            } else {
                "DROP TRIGGER audit_blocked"
            };
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
    }
}

async fn issuance_fails_closed_without_the_audit_log(app: TestApp) {
    app.audience(ORDERS, &["orders:read"]).await;
    let worker = app.client().await;
    app.grant(&worker, ORDERS, &["orders:read"]).await;
    let ask = [
        ("grant_type", "client_credentials"),
        ("scope", "orders:read"),
        ("resource", ORDERS),
    ];
    let mut issued = Vec::new();

    let run = |n: usize| {
        let app = &app;
        let worker = worker.clone();
        async move {
            let requests = (0..n).map(|_| app.token_request(Auth::Basic(&worker), &ask));
            futures_util::future::join_all(requests).await
        }
    };
    for response in run(10).await {
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        issued.push(body["access_token"].as_str().unwrap().to_owned());
    }

    block_audit(&app, true).await;
    for response in run(10).await {
        assert_eq!(response.status(), 503, "no token without its audit event");
        assert_eq!(response.headers()["retry-after"], "1");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "temporarily_unavailable");
        assert!(body.get("access_token").is_none());
    }
    block_audit(&app, false).await;
    for response in run(10).await {
        assert_eq!(response.status(), 200, "recovers once the log is writable");
        let body: Value = response.json().await.unwrap();
        issued.push(body["access_token"].as_str().unwrap().to_owned());
    }

    // Every token that left has its event.
    let events = app.audit("token.issued").await;
    for token in &issued {
        let jti = jti_of(&app, token);
        assert!(
            events
                .iter()
                .any(|e| e.jti.as_deref() == Some(jti.as_str())),
            "token {jti} has no audit event"
        );
    }
    assert_eq!(events.len(), issued.len());
}

async fn metrics_are_exposed(app: TestApp) {
    app.audience(ORDERS, &["orders:read"]).await;
    let worker = app.client().await;
    app.grant(&worker, ORDERS, &["orders:read"]).await;
    app.token_ok(
        Auth::Basic(&worker),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "orders:read"),
        ],
    )
    .await;
    app.token_request(
        Auth::Basic(&worker),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "orders:write"),
        ],
    )
    .await;
    let response = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    for needle in [
        "mayfly_tokens_issued_total",
        "mayfly_tokens_denied_total{reason=\"invalid_scope\"}",
        "mayfly_http_request_duration_seconds_bucket{route=\"/oauth2/token\"",
        "mayfly_http_requests_total{route=\"/oauth2/token\",status=\"2xx\"}",
        "mayfly_audit_batch_size_bucket",
        "mayfly_audit_commit_seconds_bucket",
        "mayfly_signing_key_age_seconds",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
    assert!(!text.contains(&worker.secret));
}
