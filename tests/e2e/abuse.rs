//! Abuse resistance (issue #15): hostile bytes, hostile times, hostile headers and a
//! database that went away must not take issuance down for anyone else.

use mayfly_core::net::ForwardedHeader;
use mayfly_server::service::ClientChanges;
use mayfly_store::Backend;

use crate::helpers::{
    Auth, TestApp, TestClient, assert_oauth_error, spawn_app_via, spawn_app_with,
};

const ORDERS: &str = "https://api.example.com/orders";

crate::both_stores!(
    nul_bytes_never_fail_another_requests_audit,
    a_refused_audit_event_fails_only_itself,
    hostile_text_in_admin_input_is_refused,
);

async fn orders_client(app: &TestApp) -> TestClient {
    app.audience(ORDERS, &["orders:read"]).await;
    let worker = app.client().await;
    app.grant(&worker, ORDERS, &["orders:read"]).await;
    worker
}

/// Postgres `text` and `jsonb` refuse NUL: a NUL that reached the audit batch failed the
/// whole group commit, and every legitimate request sharing it got 503.
async fn nul_bytes_never_fail_another_requests_audit(app: TestApp) {
    let worker = orders_client(&app).await;
    let attacker = app.client().await;
    let app = std::sync::Arc::new(app);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flood = Vec::new();
    for i in 0..8 {
        let (app, attacker, stop) = (app.clone(), attacker.clone(), stop.clone());
        flood.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (auth, params): (Auth<'_>, Vec<(&str, &str)>) = match i % 3 {
                    0 => (
                        Auth::Basic(&attacker),
                        vec![("grant_type", "client_credentials"), ("scope", "\0")],
                    ),
                    1 => (
                        Auth::Basic(&attacker),
                        vec![
                            ("grant_type", "client_credentials"),
                            ("scope", "orders:read"),
                            ("resource", "https://x\0\u{1b}[31m"),
                        ],
                    ),
                    _ => (Auth::None, vec![("grant_type", "\0\u{7f}\u{202e}")]),
                };
                statuses.push(app.token_request(auth, &params).await.status().as_u16());
            }
            statuses
        }));
    }
    let ask = [
        ("grant_type", "client_credentials"),
        ("scope", "orders:read"),
        ("resource", ORDERS),
    ];
    let legit: Vec<_> = (0..50)
        .map(|_| {
            let (app, worker) = (app.clone(), worker.clone());
            tokio::spawn(async move {
                app.token_request(Auth::Basic(&worker), &ask)
                    .await
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut ok = 0;
    for task in legit {
        if task.await.unwrap() == 200 {
            ok += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut refused = Vec::new();
    for task in flood {
        refused.extend(task.await.unwrap());
    }
    assert!(ok >= 49, "only {ok} of 50 legitimate requests succeeded");
    assert!(!refused.is_empty());
    assert!(
        refused.iter().all(|s| (400..500).contains(s)),
        "hostile requests are the client's mistake: {refused:?}"
    );

    // Their audit events were written, with the bytes escaped rather than dropped.
    let denied = app.audit("token.denied").await;
    let scope = denied
        .iter()
        .find_map(|e| e.scopes.as_deref().filter(|s| s.contains("\\u{0}")))
        .expect("the NUL scope is audited, escaped");
    assert_eq!(scope, "\\u{0}");
    assert!(
        denied
            .iter()
            .any(|e| e.audience.as_deref() == Some("https://x\\u{0}\\u{1b}[31m"))
    );
    assert!(
        denied
            .iter()
            .any(|e| e.detail["grant_type"] == "\\u{0}\\u{7f}\\u{202e}")
    );
    for e in &denied {
        let all = format!("{:?}{:?}{}", e.scopes, e.audience, e.detail);
        assert!(!all.chars().any(|c| c.is_control() && c != '\n'), "{all}");
    }
}

/// A group commit the store refuses is retried event by event: only the event at fault
/// fails (here one whose id already exists), never the others that shared its batch.
async fn a_refused_audit_event_fails_only_itself(app: TestApp) {
    use mayfly_server::audit::{self, RequestContext};
    let event = |n: usize| mayfly_store::AuditEvent {
        subject: Some(format!("event {n}")),
        ..audit::event(
            "test.event",
            "success",
            app.now(),
            &RequestContext::default(),
        )
    };
    let taken = event(0);
    app.state.audit.record(taken.clone()).await.unwrap();
    let mut batch = vec![mayfly_store::AuditEvent {
        subject: Some("duplicate".into()),
        ..taken
    }];
    batch.extend((1..40).map(event));
    let results =
        futures_util::future::join_all(batch.into_iter().map(|e| app.state.audit.record(e))).await;
    assert!(results[0].is_err(), "the duplicate is refused");
    assert!(
        results[1..].iter().all(Result::is_ok),
        "{:?}",
        results.iter().filter(|r| r.is_err()).count()
    );
    assert_eq!(app.audit("test.event").await.len(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_sqlite() {
    forwarded_headers(Backend::Sqlite, ForwardedHeader::XForwardedFor).await;
    forwarded_headers(Backend::Sqlite, ForwardedHeader::Forwarded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_postgres() {
    forwarded_headers(Backend::Postgres, ForwardedHeader::XForwardedFor).await;
    forwarded_headers(Backend::Postgres, ForwardedHeader::Forwarded).await;
}

/// Behind a trusted proxy (the test's own 127.0.0.1) that writes `header`: a client's
/// copy of the other header is ignored (it passes through the proxy untouched), and a
/// chain with a malformed or `unknown` hop is refused with 400, never taken to be the
/// proxy's own address.
async fn forwarded_headers(backend: Backend, header: ForwardedHeader) {
    let app = spawn_app_with(backend, |c| {
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        c.forwarded_header = header;
    })
    .await;
    let worker = orders_client(&app).await;
    // The victim network the attacker wants to pass as.
    app.admin()
        .update_client(
            worker.id,
            ClientChanges {
                allowed_cidrs: Some(vec!["10.9.0.0/16".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let ask = [
        ("grant_type", "client_credentials"),
        ("scope", "orders:read"),
        ("resource", ORDERS),
    ];
    let send = |headers: Vec<(&'static str, &'static str)>| {
        let mut request = app
            .http
            .post(format!("{}/oauth2/token", app.base))
            .basic_auth(worker.id, Some(&worker.secret))
            .form(&ask);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    let (ours, other, hop) = match header {
        ForwardedHeader::XForwardedFor => ("x-forwarded-for", "forwarded", "198.51.100.7"),
        ForwardedHeader::Forwarded => ("forwarded", "x-forwarded-for", "for=198.51.100.7"),
    };
    let spoof = match header {
        ForwardedHeader::XForwardedFor => "for=10.9.1.1",
        ForwardedHeader::Forwarded => "10.9.1.1",
    };
    let genuine = match header {
        ForwardedHeader::XForwardedFor => "10.9.1.1",
        ForwardedHeader::Forwarded => "for=10.9.1.1;proto=https",
    };
    // The proxy's own hop is honoured.
    let response = send(vec![(ours, genuine)]).await.unwrap();
    assert_eq!(response.status(), 200, "{header:?}");
    // Spoofed: the proxy wrote the client's real address, the client added the other
    // header naming the victim network.
    let response = send(vec![(ours, hop), (other, spoof)]).await.unwrap();
    assert_oauth_error(response, 400, "unauthorized_client").await;
    let response = send(vec![(other, spoof)]).await.unwrap();
    assert_oauth_error(response, 400, "unauthorized_client").await;
    let denied = app.audit("token.denied").await;
    assert_eq!(denied[1].source_ip.as_deref(), Some("198.51.100.7"));
    assert_eq!(
        denied[0].source_ip.as_deref(),
        Some("127.0.0.1"),
        "no header: the peer itself"
    );

    // Garbage and unknown hops: 400, on every route, in that route's error format.
    let garbage: &[&'static str] = match header {
        ForwardedHeader::XForwardedFor => &[
            "garbage",
            "unknown",
            "10.9.1.1, garbage",
            "10.9.1.1,",
            "10.9.1.1:99999",
            "_hidden",
        ],
        ForwardedHeader::Forwarded => &[
            "for=unknown",
            "for=_hidden",
            "garbage",
            "proto=https",
            "for=10.9.1.1, for=\"10.9.1.1",
            "for=10.9.1.1, for=unknown",
        ],
    };
    for value in garbage {
        let response = send(vec![(ours, value)]).await.unwrap();
        let body = assert_oauth_error(response, 400, "invalid_request").await;
        assert!(
            body["error_description"].as_str().unwrap().contains(ours),
            "{body}"
        );
    }
    let response = app
        .http
        .get(format!("{}/admin/v1/clients", app.base))
        .header(ours, "garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(app.audit("token.issued").await.len(), 1);
}

/// Where a [`Relay`] forwards to (`host:port`).
type Upstream = std::sync::Arc<std::sync::Mutex<String>>;

/// A TCP relay to Postgres that a test can cut and restore: an outage for one service,
/// without stopping the Postgres server others share.
struct Relay {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Relays `127.0.0.1:port` (0: any free port) to `upstream`.
    async fn start(port: u16, upstream: Upstream) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket
            .bind(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
            .unwrap();
        let listener = socket.listen(64).unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            // Dropped with this task: every relayed connection is cut with it.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.lock().unwrap().clone();
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { port, task }
    }

    /// Closes the port and every connection through it.
    async fn cut(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// `postgres://user@host:port/db` -> (`host:port`, the same URL through 127.0.0.1:`port`).
fn through(url: &str, port: u16) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (authority, path) = rest.split_once('/').unwrap();
    let (user, host) = match authority.rsplit_once('@') {
        Some((user, host)) => (format!("{user}@"), host),
        None => (String::new(), authority),
    };
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    };
    (host, format!("{scheme}://{user}127.0.0.1:{port}/{path}"))
}

/// With Postgres unreachable, the first request learns it the slow way (the pool's
/// acquire timeout); from then on requests get 503 + Retry-After at once, `/readyz`
/// answers within a second, and service resumes as soon as the database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_fails_fast_postgres() {
    use std::time::{Duration, Instant};
    // Postgres's address is known once the test database exists.
    let upstream = Upstream::default();
    let relay = Relay::start(0, upstream.clone()).await;
    let port = relay.port;
    let app = spawn_app_via(
        Backend::Postgres,
        |url| {
            let (host, routed) = through(url, port);
            *upstream.lock().unwrap() = host;
            routed
        },
        |_| {},
    )
    .await;
    let worker = orders_client(&app).await;
    let ask = [
        ("grant_type", "client_credentials"),
        ("scope", "orders:read"),
        ("resource", ORDERS),
    ];
    app.token_ok(Auth::Basic(&worker), &ask).await;

    relay.cut().await;
    let first = app.token_request(Auth::Basic(&worker), &ask).await;
    assert_eq!(first.status(), 503);
    let started = Instant::now();
    let ready = app
        .http
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "/readyz took {:?}",
        started.elapsed()
    );
    for _ in 0..50 {
        if app.state.availability.is_down() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(app.state.availability.is_down());

    let mut took = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let response = app.token_request(Auth::Basic(&worker), &ask).await;
        took.push(started.elapsed());
        assert_eq!(response.headers()["retry-after"], "1");
        assert_oauth_error(response, 503, "temporarily_unavailable").await;
    }
    took.sort();
    eprintln!("503 while down: median {:?}, max {:?}", took[10], took[19]);
    // Generous bounds (a shared, loaded machine): the pool timeout is 3 s.
    assert!(took[10] < Duration::from_millis(100), "{took:?}");
    assert!(took[19] < Duration::from_millis(500), "{took:?}");
    let admin = app
        .http
        .get(format!("{}/admin/v1/clients", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 503);
    assert_eq!(admin.headers()["content-type"], "application/problem+json");
    for path in ["/healthz", "/.well-known/jwks.json"] {
        let response = app
            .http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }

    // Back: the next probe reopens the gate.
    let relay = Relay::start(port, upstream).await;
    let back = Instant::now();
    loop {
        let response = app.token_request(Auth::Basic(&worker), &ask).await;
        if response.status() == 200 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "still {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("first 200 {:?} after the database returned", back.elapsed());
    assert!(!app.state.availability.is_down());
    let ready = app
        .http
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    drop(app);
    relay.cut().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_on_their_own_listener() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let app = spawn_app_with(Backend::Sqlite, |c| c.metrics_listen = Some(addr)).await;
    let main = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(main.status(), 404, "not on the API's listener");
    let apart = app
        .http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(apart.status(), 200);
    let text = apart.text().await.unwrap();
    assert!(text.contains("mayfly_signing_key_age_seconds"), "{text}");
    let other = app
        .http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404, "only /metrics there");
}

/// Free text an admin sends (names, descriptions, reasons, revocation values) is stored
/// and audited: a NUL made Postgres refuse the write (500), and control characters could
/// forge log lines. Every such field refuses them with a 422 naming the field.
async fn hostile_text_in_admin_input_is_refused(app: TestApp) {
    let worker = orders_client(&app).await;
    let api = app.bootstrap_admin().await;
    let audience = api
        .get("/admin/v1/audiences")
        .await
        .ok(200)
        .as_object()
        .and_then(|page| page.get("items"))
        .and_then(|items| items.as_array())
        .and_then(|items| items.iter().find(|a| a["uri"] == ORDERS))
        .map(|a| a["id"].clone())
        .expect("the orders audience");
    for bad in [
        "a\u{0}b",
        "a\u{1b}[31mred",
        "line\nforged: entry",
        "\u{202e}txt.exe",
    ] {
        let cases = [
            (
                reqwest::Method::POST,
                "/admin/v1/audiences".to_owned(),
                serde_json::json!({ "uri": "https://api.example.com/other", "description": bad }),
                "description",
            ),
            (
                reqwest::Method::PATCH,
                format!("/admin/v1/audiences/{}", audience.as_str().unwrap()),
                serde_json::json!({ "description": bad }),
                "description",
            ),
            (
                reqwest::Method::POST,
                "/admin/v1/scopes".to_owned(),
                serde_json::json!({ "audience_id": audience, "name": "orders:write", "description": bad }),
                "description",
            ),
            (
                reqwest::Method::POST,
                "/admin/v1/clients".to_owned(),
                serde_json::json!({ "name": bad }),
                "name",
            ),
            (
                reqwest::Method::PATCH,
                format!("/admin/v1/clients/{}", worker.id),
                serde_json::json!({ "name": bad }),
                "name",
            ),
            (
                reqwest::Method::POST,
                "/admin/v1/grants".to_owned(),
                serde_json::json!({
                    "subject": { "kind": "client", "id": worker.id },
                    "audience": ORDERS, "scopes": ["orders:read"], "reason": bad,
                }),
                "reason",
            ),
            (
                reqwest::Method::POST,
                "/admin/v1/revocations".to_owned(),
                serde_json::json!({ "kind": "subject", "value": bad, "reason": "test" }),
                "value",
            ),
            (
                reqwest::Method::POST,
                "/admin/v1/revocations".to_owned(),
                serde_json::json!({ "kind": "subject", "value": "someone", "reason": bad }),
                "reason",
            ),
        ];
        for (method, path, body, field) in cases {
            let answer = api.send(method.clone(), &path, Some(body)).await;
            let problem = answer.problem(422);
            assert!(
                problem.to_string().contains(field),
                "{method} {path} with {bad:?}: {problem}"
            );
        }
    }
    // Nothing of it was stored, and issuance goes on.
    app.token_ok(
        Auth::Basic(&worker),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "orders:read"),
        ],
    )
    .await;
}
