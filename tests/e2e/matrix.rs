//! The authorization matrix: every operation of the API description under `/admin/`
//! and `/v1/`, called by every kind of caller, against the expected cell in the
//! committed table `tests/e2e/authorization_matrix.txt` (allow / 401 / 403).
//!
//! Every GET is also sent as HEAD, which must get the same cell.
//!
//! "allow" means the token check let the request through: anything but 401 and 403
//! (a dummy id or an empty body then gets 404 or 422). The test fails on any mismatch,
//! on an operation without a row (so a new route cannot ship unclassified) and on a row
//! for an operation that no longer exists.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use time::Duration;
use uuid::Uuid;

use crate::helpers::{Auth, TestApp, TestClient};

crate::both_stores!(every_operation_by_every_caller);

const TABLE: &str = include_str!("authorization_matrix.txt");
const OTHER: &str = "https://api.example.com/orders";
const PASSWORD: &str = "correct horse battery staple";

/// The callers, in the table's column order: a column name and the token (none for
/// the first).
async fn callers(app: &TestApp) -> Vec<(String, Option<String>)> {
    app.admin().bootstrap(&app.issuer()).await.unwrap();
    app.audience(OTHER, &["orders:read"]).await;
    let token = |client: TestClient, scope: String, resource: String| async move {
        let body = app
            .token_ok(
                Auth::Basic(&client),
                &[
                    ("grant_type", "client_credentials"),
                    ("scope", &scope),
                    ("resource", &resource),
                ],
            )
            .await;
        body["access_token"].as_str().unwrap().to_owned()
    };
    // First, so that moving the clock past its end leaves the others valid.
    let old = app.client().await;
    app.grant(&old, &app.issuer(), &["mayfly:admin"]).await;
    let expired = token(old, "mayfly:admin".into(), app.issuer()).await;
    app.clock.advance(Duration::seconds(400));

    let mut out: Vec<(String, Option<String>)> = vec![("none".into(), None)];
    let scopes: Vec<&str> = mayfly_server::service::ADMIN_SCOPES
        .iter()
        .chain(mayfly_server::service::SERVICE_SCOPES)
        .copied()
        .collect();
    for scope in scopes {
        let client = app.client().await;
        app.grant(&client, &app.issuer(), &[scope]).await;
        out.push((
            scope.to_owned(),
            Some(token(client, scope.into(), app.issuer()).await),
        ));
    }
    // A person with a requester's scope.
    let alice = app.user("alice", PASSWORD).await;
    app.grant_user(alice, &app.issuer(), &["mayfly:access"])
        .await;
    let cli = app.client_for(&["password"]).await;
    let login = app
        .token_ok(
            Auth::Basic(&cli),
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", PASSWORD),
                ("scope", "mayfly:access"),
            ],
        )
        .await;
    out.push((
        "user".into(),
        Some(login["access_token"].as_str().unwrap().to_owned()),
    ));
    // A valid token, but for another audience.
    let workload = app.client().await;
    app.grant(&workload, OTHER, &["orders:read"]).await;
    out.push((
        "other-audience".into(),
        Some(token(workload, "orders:read".into(), OTHER.into()).await),
    ));
    out.push(("expired".into(), Some(expired)));
    out
}

/// The operations the API description lists under `/admin/` and `/v1/`, as
/// `METHOD /path`.
async fn operations(app: &TestApp) -> Vec<String> {
    let spec: Value = app
        .http
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut out = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        if !(path.starts_with("/admin/") || path.starts_with("/v1/")) {
            continue;
        }
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                out.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    out
}

/// The committed table: its column names, and per operation the expected cells.
fn expected() -> (Vec<String>, BTreeMap<String, Vec<String>>) {
    let mut lines = TABLE
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split_whitespace()
        .skip(2)
        .map(str::to_owned)
        .collect();
    let mut rows = BTreeMap::new();
    for line in lines {
        let mut words = line.split_whitespace();
        let op = format!("{} {}", words.next().unwrap(), words.next().unwrap());
        let cells: Vec<String> = words.map(str::to_owned).collect();
        assert_eq!(cells.len(), header.len(), "row {op}: wrong number of cells");
        assert!(rows.insert(op.clone(), cells).is_none(), "row {op} twice");
    }
    (header, rows)
}

/// What one call got: allow, 401 or 403, and the scope a 403 named in
/// `WWW-Authenticate` (RFC 6750 §3: the scope the request needs).
async fn cell(app: &TestApp, op: &str, token: Option<&str>) -> (String, Option<String>) {
    let (method, path) = op.split_once(' ').unwrap();
    // Every path parameter a fresh id: nothing exists under it.
    let mut url = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        url.push('/');
        if part.starts_with('{') {
            url.push_str(&Uuid::now_v7().to_string());
        } else {
            url.push_str(part);
        }
    }
    let mut request = app
        .http
        .request(method.parse().unwrap(), format!("{}{url}", app.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if matches!(method, "POST" | "PATCH" | "PUT") {
        request = request.json(&json!({}));
    }
    // Headers only: the revocation stream never ends.
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let named = response
        .headers()
        .get("www-authenticate")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.split("scope=\"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .map(str::to_owned);
    match status {
        401 => (status.to_string(), None),
        403 => (status.to_string(), named),
        500..=599 => panic!("{op}: {status}"),
        _ => ("allow".into(), None),
    }
}

async fn every_operation_by_every_caller(app: TestApp) {
    let callers = callers(&app).await;
    let operations = operations(&app).await;
    let (header, rows) = expected();
    let names: Vec<&String> = callers.iter().map(|(n, _)| n).collect();
    assert_eq!(
        header.iter().collect::<Vec<_>>(),
        names,
        "the table's columns are the callers"
    );

    let mut actual = String::new();
    let mut failures = Vec::new();
    for op in &operations {
        let (got, named): (Vec<String>, Vec<Option<String>>) = futures_util::future::join_all(
            callers
                .iter()
                .map(|(_, token)| cell(&app, op, token.as_deref())),
        )
        .await
        .into_iter()
        .unzip();
        // A 403 names a scope that would have let the call through: one whose column
        // in this row is "allow" (a refused approver is told `mayfly:approve`, not a
        // family scope that does not apply).
        for ((name, cell), named) in header.iter().zip(&got).zip(&named) {
            if cell != "403" {
                continue;
            }
            let allows = |scope: &str| {
                header
                    .iter()
                    .zip(&got)
                    .any(|(column, cell)| column == scope && cell == "allow")
            };
            match named {
                Some(scope) if allows(scope) => {}
                _ => failures.push(format!(
                    "{op} by {name}: the 403 names {named:?}, not a scope that allows it"
                )),
            }
        }
        // axum answers HEAD with the GET handler: the same cell, never a 500.
        if let Some(path) = op.strip_prefix("GET ") {
            let head = format!("HEAD {path}");
            let heads = futures_util::future::join_all(
                callers
                    .iter()
                    .map(|(_, token)| cell(&app, &head, token.as_deref())),
            )
            .await;
            for ((name, (cell, _)), want) in header.iter().zip(heads).zip(&got) {
                if &cell != want {
                    failures.push(format!("{head} by {name}: {cell}, but GET gets {want}"));
                }
            }
        }
        actual.push_str(&format!("{op:<52} {}\n", got.join(" ")));
        match rows.get(op) {
            None => failures.push(format!("{op}: no row in the table")),
            Some(want) => {
                for ((name, want), got) in header.iter().zip(want).zip(&got) {
                    if want != got {
                        failures.push(format!("{op} by {name}: expected {want}, got {got}"));
                    }
                }
            }
        }
    }
    for op in rows.keys() {
        if !operations.contains(op) {
            failures.push(format!("{op}: row for an operation that does not exist"));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n\nactual table:\n{actual}",
        failures.join("\n")
    );
}
