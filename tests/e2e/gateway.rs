//! `mayfly gateway` against the real service: the verdict endpoints a proxy asks
//! (nginx/Traefik `/auth`, Envoy ext_authz `/envoy/…`), in-process on port 0, with the
//! service's `ManualClock` shared through the SDK's `Clock`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use mayfly_core::jose::JwsKey;
use mayfly_sdk::{ClientSecret, TokenSource};
use mayfly_server::gateway::{Gateway, GatewayOptions, cli::serve};
use serde_json::json;
use time::Duration;

use crate::helpers::{AdminApi, AppClock, Auth, TestApp, TestClient, issuer_http};

const ORDERS: &str = "https://api.example.com/orders";

crate::both_stores!(
    gateway_answers_auth_request_with_identity_headers_or_rfc6750_refusals,
    gateway_refuses_a_revoked_token_within_a_second,
    gateway_answers_envoy_ext_authz_as_envoy_asks,
    gateway_refuses_dpop_bound_tokens_without_their_proof,
    gateway_fails_closed_without_keys_and_with_a_silent_feed,
    gateway_reload_swaps_the_table_and_keeps_it_on_a_bad_file,
    gateway_reports_usage_with_the_original_path_and_client_address,
);

const ROUTES: &str = r#"
audience = "https://api.example.com/orders"
resource_base = "https://api.example.com"

[[route]]
method = ["GET", "HEAD"]
path = "/orders/**"
scopes = ["orders:read"]

[[route]]
method = "POST"
path = "/orders"
scopes = ["orders:write"]

[[route]]
method = "DELETE"
path = "/orders/*"
scopes = ["orders:read"]
dpop = "required"
"#;

struct Setup<'a> {
    api: AdminApi<'a>,
    worker: TestClient,
    reader: TestClient,
    gateway: Gateway,
    base: String,
    routes: PathBuf,
    _dir: tempfile::TempDir,
}

async fn setup(app: &TestApp) -> Setup<'_> {
    setup_with(app, Duration::seconds(30)).await
}

async fn setup_with(app: &TestApp, max_feed_silence: Duration) -> Setup<'_> {
    let api = app.bootstrap_admin().await;
    app.audience(ORDERS, &["orders:read", "orders:write"]).await;
    let worker = app.client().await;
    app.grant(&worker, ORDERS, &["orders:read"]).await;
    let reader = app.client().await;
    app.grant(&reader, &app.issuer(), &["mayfly:revocations:read"])
        .await;
    let (gateway, base, routes, dir) = start(
        app,
        &reader,
        vec!["127.0.0.0/8".parse().unwrap()],
        Some(app.issuer()),
        max_feed_silence,
    )
    .await;
    Setup {
        api,
        worker,
        reader,
        gateway,
        base,
        routes,
        _dir: dir,
    }
}

/// A gateway on port 0 following `issuer` (none: an address where nothing listens).
async fn start(
    app: &TestApp,
    reader: &TestClient,
    proxies: Vec<ipnet::IpNet>,
    issuer: Option<String>,
    max_feed_silence: Duration,
) -> (Gateway, String, PathBuf, tempfile::TempDir) {
    start_reporting(app, reader, proxies, issuer, max_feed_silence, false).await
}

async fn start_reporting(
    app: &TestApp,
    reader: &TestClient,
    proxies: Vec<ipnet::IpNet>,
    issuer: Option<String>,
    max_feed_silence: Duration,
    report_usage: bool,
) -> (Gateway, String, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.toml");
    std::fs::write(&routes, ROUTES).unwrap();
    let gateway = Gateway::start(GatewayOptions {
        issuer: issuer.unwrap_or_else(|| "http://127.0.0.1:9".into()),
        routes_file: routes.clone(),
        proxies,
        forwarded_header: Default::default(),
        client_id: reader.id.to_string(),
        client_secret: ClientSecret::new(reader.secret.clone()),
        report_usage,
        max_feed_silence,
        leeway: mayfly_sdk::DEFAULT_LEEWAY,
        http: Some(issuer_http(app)),
        clock: Some(Arc::new(AppClock(app.clock.clone()))),
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(listener, gateway.clone(), std::future::pending()));
    (gateway, base, routes, dir)
}

async fn wait_ready(s: &Setup<'_>) {
    let deadline = Instant::now() + StdDuration::from_secs(10);
    while s.gateway.ready().is_err() {
        assert!(Instant::now() < deadline, "gateway never ready");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

async fn token(app: &TestApp, client: &TestClient, scope: &str) -> String {
    app.token_ok(
        Auth::Basic(client),
        &[
            ("grant_type", "client_credentials"),
            ("scope", scope),
            ("resource", ORDERS),
        ],
    )
    .await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// What nginx's `auth_request` sends (see the README's nginx config).
async fn ask(
    s: &Setup<'_>,
    method: &str,
    uri: &str,
    authorization: Option<String>,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .get(format!("{}/auth", s.base))
        .header("x-original-method", method)
        .header("x-original-uri", uri)
        .header("x-forwarded-for", "203.0.113.7");
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

async fn gateway_answers_auth_request_with_identity_headers_or_rfc6750_refusals(app: TestApp) {
    // A feed bound past the token's lifetime, so expiry is what refuses it below.
    let s = setup_with(&app, Duration::hours(1)).await;
    wait_ready(&s).await;
    let read = token(&app, &s.worker, "orders:read").await;
    let bearer = Some(format!("Bearer {read}"));

    let ok = ask(
        &s,
        "GET",
        "/orders/7?x=1",
        bearer.clone(),
        &[("x-mayfly-subject", "admin")],
    )
    .await;
    assert_eq!(ok.status(), 200);
    assert_eq!(header(&ok, "x-mayfly-subject"), s.worker.id.to_string());
    assert_eq!(header(&ok, "x-mayfly-client"), s.worker.id.to_string());
    assert_eq!(header(&ok, "x-mayfly-scope"), "orders:read");
    assert_eq!(header(&ok, "x-mayfly-audience"), ORDERS);
    assert!(!header(&ok, "x-mayfly-token-id").is_empty());
    // Traefik's ForwardAuth names, at its own endpoint.
    let traefik = |method: &str, uri: &str, spoof: Option<(&str, &str)>| {
        let mut request = reqwest::Client::new()
            .get(format!("{}/traefik", s.base))
            .header("x-forwarded-method", method)
            .header("x-forwarded-uri", uri)
            .header("authorization", format!("Bearer {read}"));
        if let Some((m, u)) = spoof {
            request = request
                .header("x-original-method", m)
                .header("x-original-uri", u);
        }
        request.send()
    };
    assert_eq!(traefik("GET", "/orders", None).await.unwrap().status(), 200);
    // Each endpoint reads only its proxy's names: a client's X-Original-* passed through
    // by Traefik (or X-Forwarded-* by nginx) describes nothing.
    let spoofed = traefik("POST", "/orders", Some(("GET", "/orders")))
        .await
        .unwrap();
    assert_eq!(spoofed.status(), 403);
    let spoofed = ask(
        &s,
        "POST",
        "/orders",
        bearer.clone(),
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/orders"),
        ],
    )
    .await;
    assert_eq!(spoofed.status(), 403);
    // A repeated original header is refused.
    let twice = ask(
        &s,
        "POST",
        "/orders",
        bearer.clone(),
        &[("x-original-method", "GET")],
    )
    .await;
    assert_eq!(twice.status(), 400);
    // A method override (Rails/Rack, Laravel, ASP.NET) makes the upstream run another
    // method than the one the route was chosen for: refused, whatever the token.
    for name in [
        "x-http-method-override",
        "X-HTTP-Method",
        "x-method-override",
    ] {
        let overridden = ask(&s, "GET", "/orders/7", bearer.clone(), &[(name, "DELETE")]).await;
        assert_eq!(overridden.status(), 400, "{name}");
    }

    // Wrong scope: 403 insufficient_scope naming what the route needs.
    let post = ask(&s, "POST", "/orders", bearer.clone(), &[]).await;
    assert_eq!(post.status(), 403);
    assert_eq!(
        header(&post, "www-authenticate"),
        "Bearer error=\"insufficient_scope\", scope=\"orders:write\""
    );
    // No token, a tampered one, an expired one: 401.
    let none = ask(&s, "GET", "/orders", None, &[]).await;
    assert_eq!(none.status(), 401);
    assert_eq!(header(&none, "www-authenticate"), "Bearer");
    let mut tampered = read.clone().into_bytes();
    let at = tampered.len() - 5;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let bad = ask(
        &s,
        "GET",
        "/orders",
        Some(format!("Bearer {tampered}")),
        &[],
    )
    .await;
    assert_eq!(bad.status(), 401);
    assert_eq!(
        header(&bad, "www-authenticate"),
        "Bearer error=\"invalid_token\""
    );
    // Default deny: no route, or a path the upstream could read as another.
    for (method, uri) in [
        ("PUT", "/orders/7"),
        ("GET", "/admin"),
        ("GET", "/orders/../admin"),
        ("GET", "/orders%2f..%2fadmin"),
    ] {
        assert_eq!(
            ask(&s, method, uri, bearer.clone(), &[]).await.status(),
            403,
            "{uri}"
        );
    }
    // A proxy that forgets the original request gets no verdict.
    let blind = reqwest::Client::new()
        .get(format!("{}/auth", s.base))
        .header("authorization", format!("Bearer {read}"))
        .send()
        .await
        .unwrap();
    assert_eq!(blind.status(), 400);

    app.clock.advance(Duration::minutes(20));
    let expired = ask(&s, "GET", "/orders", bearer, &[]).await;
    assert_eq!(expired.status(), 401);
}

async fn gateway_refuses_a_revoked_token_within_a_second(app: TestApp) {
    let s = setup(&app).await;
    wait_ready(&s).await;
    let read = token(&app, &s.worker, "orders:read").await;
    let bearer = Some(format!("Bearer {read}"));
    let ok = ask(&s, "GET", "/orders", bearer.clone(), &[]).await;
    assert_eq!(ok.status(), 200);
    let jti = header(&ok, "x-mayfly-token-id");
    s.api
        .post(
            "/admin/v1/revocations",
            json!({ "kind": "jti", "value": jti, "reason": "leaked" }),
        )
        .await
        .ok(201);
    let revoked_at = Instant::now();
    loop {
        let status = ask(&s, "GET", "/orders", bearer.clone(), &[])
            .await
            .status();
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            revoked_at.elapsed() < StdDuration::from_secs(1),
            "still accepted a second after its revocation"
        );
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
}

/// Envoy's HTTP ext_authz check request (`http_service` with `path_prefix: /envoy`,
/// `allowed_headers` authorization, dpop, x-forwarded-for): the original method, the
/// prefix + the original path and query, the original `Host`, `content-length: 0` and
/// Envoy's own headers. Envoy copies `allowed_upstream_headers` of a 200 onto the
/// upstream request and returns a denial's status and headers to the client.
async fn gateway_answers_envoy_ext_authz_as_envoy_asks(app: TestApp) {
    let s = setup(&app).await;
    wait_ready(&s).await;
    let read = token(&app, &s.worker, "orders:read").await;
    let envoy = |method: reqwest::Method, path: &str, authorization: Option<&str>| {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}/envoy{path}", s.base))
            .header("host", "api.example.com")
            .header("content-length", "0")
            .header("x-forwarded-for", "203.0.113.7")
            .header("x-forwarded-proto", "https")
            .header("x-request-id", "5d6f1a0e-3a37-4f0e-9a56-0d1c1c1f2b7e")
            .header("x-envoy-expected-rq-timeout-ms", "250")
            .header("x-envoy-internal", "true");
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        request.send()
    };
    let bearer = format!("Bearer {read}");
    let ok = envoy(reqwest::Method::GET, "/orders/7?page=2", Some(&bearer))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(header(&ok, "x-mayfly-subject"), s.worker.id.to_string());
    let head = envoy(reqwest::Method::HEAD, "/orders", Some(&bearer))
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    let post = envoy(reqwest::Method::POST, "/orders", Some(&bearer))
        .await
        .unwrap();
    assert_eq!(post.status(), 403);
    assert!(header(&post, "www-authenticate").contains("insufficient_scope"));
    let none = envoy(reqwest::Method::GET, "/orders", None).await.unwrap();
    assert_eq!(none.status(), 401);
    let root = envoy(reqwest::Method::GET, "", Some(&bearer))
        .await
        .unwrap();
    assert_eq!(root.status(), 403, "/ matches no route");
}

async fn gateway_refuses_dpop_bound_tokens_without_their_proof(app: TestApp) {
    let s = setup(&app).await;
    wait_ready(&s).await;
    let source = TokenSource::builder(app.issuer())
        .client_secret(
            s.worker.id.to_string(),
            ClientSecret::new(s.worker.secret.clone()),
        )
        .audience(ORDERS)
        .scopes(["orders:read"])
        .dpop_key(JwsKey::ed25519_from_seed(&[61; 32]))
        .http_client(issuer_http(&app))
        .clock(Arc::new(AppClock(app.clock.clone())))
        .build()
        .unwrap();
    let bound = source.token().await.unwrap();
    assert!(bound.is_dpop_bound());
    let secret = bound.secret().to_owned();
    // Stolen and sent as Bearer, or as DPoP without the proof: 401.
    let stolen = ask(&s, "GET", "/orders", Some(format!("Bearer {secret}")), &[]).await;
    assert_eq!(stolen.status(), 401);
    assert!(header(&stolen, "www-authenticate").starts_with("DPoP "));
    let bare = ask(&s, "GET", "/orders", Some(format!("DPoP {secret}")), &[]).await;
    assert_eq!(bare.status(), 401);
    // With a proof for the original method and public URL: 200; replayed: 401.
    let url = "https://api.example.com/orders/7";
    let proof = source.proof("DELETE", url, Some(&secret)).unwrap();
    let with = [("dpop", proof.as_str())];
    let ok = ask(
        &s,
        "DELETE",
        "/orders/7",
        Some(format!("DPoP {secret}")),
        &with,
    )
    .await;
    assert_eq!(ok.status(), 200);
    let replay = ask(
        &s,
        "DELETE",
        "/orders/7",
        Some(format!("DPoP {secret}")),
        &with,
    )
    .await;
    assert_eq!(replay.status(), 401);
    // A proof for another URL: 401.
    let other = source
        .proof("DELETE", "https://evil.example/orders/7", Some(&secret))
        .unwrap();
    let wrong = ask(
        &s,
        "DELETE",
        "/orders/7",
        Some(format!("DPoP {secret}")),
        &[("dpop", &other)],
    )
    .await;
    assert_eq!(wrong.status(), 401);
    // dpop = "required": a valid bearer token is refused there.
    let read = token(&app, &s.worker, "orders:read").await;
    let bearer = ask(
        &s,
        "DELETE",
        "/orders/7",
        Some(format!("Bearer {read}")),
        &[],
    )
    .await;
    assert_eq!(bearer.status(), 401);
    assert!(header(&bearer, "www-authenticate").starts_with("DPoP "));
}

async fn gateway_fails_closed_without_keys_and_with_a_silent_feed(app: TestApp) {
    let s = setup(&app).await;
    wait_ready(&s).await;
    let read = Some(format!(
        "Bearer {}",
        token(&app, &s.worker, "orders:read").await
    ));
    let ask_at = |base: &str| {
        reqwest::Client::new()
            .get(format!("{base}/auth"))
            .header("x-original-method", "GET")
            .header("x-original-uri", "/orders")
            .header("authorization", read.clone().unwrap())
            .send()
    };

    // No issuer reachable: no key set, every verdict 503.
    let (_lost, lost, _, _dir) = start(
        &app,
        &s.reader,
        vec!["127.0.0.0/8".parse().unwrap()],
        None,
        Duration::seconds(30),
    )
    .await;
    assert_eq!(ask_at(&lost).await.unwrap().status(), 503);
    let ready = reqwest::get(format!("{lost}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.text().await.unwrap(), "no key set yet");
    let health = reqwest::get(format!("{lost}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);

    // Proxies outside the configured ones get no verdict at all.
    let (_far, far, _, _dir2) = start(
        &app,
        &s.reader,
        vec!["10.0.0.0/8".parse().unwrap()],
        Some(app.issuer()),
        Duration::seconds(30),
    )
    .await;
    assert_eq!(ask_at(&far).await.unwrap().status(), 403);

    // The feed silent for longer than the bound: 503, and /readyz says why.
    assert_eq!(
        ask(&s, "GET", "/orders", read.clone(), &[]).await.status(),
        200
    );
    let ready = reqwest::get(format!("{}/readyz", s.base)).await.unwrap();
    assert_eq!(ready.status(), 200);
    app.clock.advance(Duration::seconds(31));
    assert_eq!(
        ask(&s, "GET", "/orders", read.clone(), &[]).await.status(),
        503
    );
    let ready = reqwest::get(format!("{}/readyz", s.base)).await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.text().await.unwrap(), "revocation feed behind");
    let metrics = reqwest::get(format!("{}/metrics", s.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("mayfly_gateway_unavailable_total"),
        "{metrics}"
    );
}

async fn gateway_reload_swaps_the_table_and_keeps_it_on_a_bad_file(app: TestApp) {
    let s = setup(&app).await;
    wait_ready(&s).await;
    let read = Some(format!(
        "Bearer {}",
        token(&app, &s.worker, "orders:read").await
    ));
    assert_eq!(
        ask(&s, "PUT", "/orders/7", read.clone(), &[])
            .await
            .status(),
        403
    );
    std::fs::write(
        &s.routes,
        format!("{ROUTES}\n[[route]]\nmethod = \"PUT\"\npath = \"/orders/*\"\nscopes = [\"orders:read\"]\n"),
    )
    .unwrap();
    s.gateway.reload().unwrap();
    assert_eq!(
        ask(&s, "PUT", "/orders/7", read.clone(), &[])
            .await
            .status(),
        200
    );
    std::fs::write(&s.routes, "audience = ").unwrap();
    assert!(s.gateway.reload().is_err());
    assert_eq!(
        ask(&s, "PUT", "/orders/7", read.clone(), &[])
            .await
            .status(),
        200
    );
    std::fs::write(
        &s.routes,
        ROUTES.replace("api.example.com/orders\"", "other\""),
    )
    .unwrap();
    assert!(
        s.gateway.reload().is_err(),
        "the audience is fixed at start"
    );
}

async fn gateway_reports_usage_with_the_original_path_and_client_address(app: TestApp) {
    let s = setup(&app).await;
    app.grant(
        &s.reader,
        &app.issuer(),
        &["mayfly:revocations:read", "mayfly:usage:write"],
    )
    .await;
    let (gateway, base, _, _dir) = start_reporting(
        &app,
        &s.reader,
        vec!["127.0.0.0/8".parse().unwrap()],
        Some(app.issuer()),
        Duration::seconds(30),
        true,
    )
    .await;
    let deadline = Instant::now() + StdDuration::from_secs(10);
    while gateway.ready().is_err() {
        assert!(Instant::now() < deadline, "gateway never ready");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    let read = token(&app, &s.worker, "orders:read").await;
    let verdict = |uri: &'static str, bearer: String| {
        reqwest::Client::new()
            .get(format!("{base}/auth"))
            .header("x-original-method", "GET")
            .header("x-original-uri", uri)
            .header("x-forwarded-for", "203.0.113.7")
            .header("authorization", bearer)
            .send()
    };
    let ok = verdict("/orders/9?page=2", format!("Bearer {read}"))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let jti = header(&ok, "x-mayfly-token-id");
    let refused = verdict("/orders/10", "Bearer v4.public.garbage".into())
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let deadline = Instant::now() + StdDuration::from_secs(10);
    let used = loop {
        let used = app.audit("token.used").await;
        if !used.is_empty() {
            break used;
        }
        assert!(Instant::now() < deadline, "no use reported");
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    };
    assert_eq!(used.len(), 1, "refused verdicts are not use");
    assert_eq!(used[0].jti.as_deref(), Some(jti.as_str()));
    assert_eq!(used[0].detail["path"], "/orders/9");
    assert_eq!(used[0].source_ip.as_deref(), Some("203.0.113.7"));
}
