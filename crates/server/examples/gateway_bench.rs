//! Latency the gateway adds to a request: one `/auth` verdict (nginx `auth_request`
//! shape) through the gateway's router in-process, no network, against a stand-in
//! issuer (metadata, key set, an empty revocation feed kept alive). Two cases: the same
//! token again and again (the SDK's verified-token cache: expiry, revocation, scopes
//! still checked) and a distinct token each time (one Ed25519 verification).
//!
//! ```sh
//! cargo run --release -p mayfly-server --example gateway_bench
//! ```

use std::net::SocketAddr;
use std::time::{Duration as StdDuration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::Request;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use mayfly_core::SigningKey;
use mayfly_core::token::{self, Claims};
use mayfly_core::wire::{Jwk, JwkSet};
use mayfly_sdk::{ClientSecret, Clock as _, SystemClock};
use mayfly_server::gateway::{Gateway, GatewayOptions, handler};
use time::Duration;
use tower::ServiceExt as _;

const AUDIENCE: &str = "https://api.example.com/orders";
const N: usize = 20_000;

fn percentile(sorted: &[StdDuration], p: f64) -> StdDuration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

async fn issuer(key: &SigningKey) -> Result<String, Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let jwks = JwkSet {
        keys: vec![Jwk::from_public(key.public())],
    };
    let b = base.clone();
    let metadata = serde_json::json!({
        "issuer": b, "token_endpoint": format!("{b}/oauth2/token"),
        "jwks_uri": format!("{b}/jwks"), "introspection_endpoint": format!("{b}/i"),
        "introspection_endpoint_auth_methods_supported": [],
        "revocation_endpoint": format!("{b}/r"), "revocation_endpoint_auth_methods_supported": [],
        "grant_types_supported": [], "token_endpoint_auth_methods_supported": [],
        "response_types_supported": [],
    });
    let app = axum::Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(move || async move { Json(metadata) }),
        )
        .route("/jwks", get(move || async move { Json(jwks) }))
        .route(
            "/oauth2/token",
            post(|| async {
                Json(serde_json::json!({
                    "access_token": "v4.public.reader", "token_type": "Bearer",
                    "expires_in": 3600, "scope": "mayfly:revocations:read",
                }))
            }),
        )
        .route(
            "/v1/revocations",
            get(|| async { Json(serde_json::json!({ "items": [], "next_cursor": "" })) }),
        )
        .route(
            "/v1/revocations/stream",
            get(|| async {
                // A keep-alive comment every second, for ever.
                let stream = futures_util::stream::unfold((), |()| async {
                    tokio::time::sleep(StdDuration::from_secs(1)).await;
                    Some((Ok::<_, std::io::Error>(": keep-alive\n\n"), ()))
                });
                (
                    [("content-type", "text/event-stream")],
                    Body::from_stream(stream),
                )
                    .into_response()
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(base)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key = SigningKey::from_seed(&[7; 32]);
    let base = issuer(&key).await?;
    let dir = tempfile::tempdir()?;
    let routes = dir.path().join("routes.toml");
    std::fs::write(
        &routes,
        format!(
            "audience = \"{AUDIENCE}\"\n\
             [[route]]\nmethod = \"POST\"\npath = \"/orders\"\nscopes = [\"orders:write\"]\n\
             [[route]]\nmethod = \"GET\"\npath = \"/orders/**\"\nscopes = [\"orders:read\"]\n"
        ),
    )?;
    let gateway = Gateway::start(GatewayOptions {
        issuer: base.clone(),
        routes_file: routes,
        proxies: vec!["127.0.0.0/8".parse()?],
        forwarded_header: Default::default(),
        client_id: "reader".into(),
        client_secret: ClientSecret::new("s"),
        report_usage: false,
        max_feed_silence: Duration::seconds(30),
        leeway: mayfly_sdk::DEFAULT_LEEWAY,
        http: None,
        clock: None,
    })?;
    while gateway.ready().is_err() {
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
    let peer: SocketAddr = "127.0.0.1:40000".parse()?;
    let router = handler::router(gateway).layer(MockConnectInfo(peer));

    let now = SystemClock.now();
    let tokens: Vec<String> = (0..N)
        .map(|i| {
            token::mint(
                &key,
                &Claims {
                    iss: base.clone(),
                    sub: "0193a5b2-7c1d-7e4f-8a9b-0c1d2e3f4a5b".into(),
                    aud: AUDIENCE.into(),
                    iat: now,
                    nbf: now,
                    exp: now + Duration::minutes(5),
                    jti: format!("0193a5b2-7c1d-7e4f-8a9b-{i:012}"),
                    scope: "orders:read orders:write".into(),
                    client_id: "0193a5b2-7c1d-7e4f-8a9b-0c1d2e3f4a5b".into(),
                    gid: vec![],
                    cnf: None,
                    cidr: vec![],
                    act: None,
                    fam: None,
                    orig: Vec::new(),
                },
            )
        })
        .collect::<Result<_, _>>()?;

    let ask = |token: &str| {
        Request::get("/auth")
            .header("x-original-method", "GET")
            .header("x-original-uri", "/orders/7?page=2")
            .header("x-forwarded-for", "203.0.113.7")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
    };
    let measure = async |label: &str,
                         pick: &dyn Fn(usize) -> usize|
           -> Result<(), Box<dyn std::error::Error>> {
        let mut samples = Vec::with_capacity(N);
        for i in 0..N {
            let request = ask(&tokens[pick(i)])?;
            let started = Instant::now();
            let response = router.clone().oneshot(request).await?;
            samples.push(started.elapsed());
            assert_eq!(response.status(), 200);
        }
        samples.sort();
        println!(
            "{label:<28} p50 {:>6.1} µs   p99 {:>6.1} µs   max {:>7.1} µs   ({N} verdicts)",
            percentile(&samples, 0.50).as_secs_f64() * 1e6,
            percentile(&samples, 0.99).as_secs_f64() * 1e6,
            percentile(&samples, 1.0).as_secs_f64() * 1e6,
        );
        Ok(())
    };
    measure("distinct token (Ed25519)", &|i| i).await?;
    measure("cached verdict (same token)", &|_| 0).await?;
    Ok(())
}
