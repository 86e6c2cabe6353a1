//! Benchmark: how long a revocation made on one replica takes to reach another
//! replica's revocation stream (and so its introspection, which reads the same cache).
//!
//! Two release `mayfly serve` processes share a fresh Postgres database. The program
//! revokes N tokens on replica A, one at a time, and times each from the request's start
//! to the event's arrival on replica B's `/v1/revocations/stream`. Prints p50/p99/max.
//!
//!     cargo build --release -p mayfly-server --bin mayfly
//!     cargo run --release -p mayfly-server --example revocation_propagation -- [target/release/mayfly] [N]

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mayfly_store::Backend;
use mayfly_store::testing::TestDb;
use serde_json::{Value, json};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(bin: &str, port: u16, issuer: &str, db: &str, key: &std::path::Path) -> Server {
    let child = Command::new(bin)
        .arg("serve")
        .env("MAYFLY_LISTEN", format!("127.0.0.1:{port}"))
        .env("MAYFLY_ISSUER", issuer)
        .env("MAYFLY_DATABASE_URL", db)
        .env("MAYFLY_MASTER_KEY_FILE", key)
        .env("MAYFLY_LOG_FORMAT", "json")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mayfly serve");
    Server(child)
}

async fn wait_up(http: &reqwest::Client, base: &str) {
    for _ in 0..100 {
        if http
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{base} did not come up");
}

async fn token(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    secret: &str,
    scope: &str,
    resource: &str,
) -> String {
    let body: Value = http
        .post(format!("{base}/oauth2/token"))
        .basic_auth(id, Some(secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", scope),
            ("resource", resource),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {body}"))
        .to_owned()
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    let bin = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "target/release/mayfly".into());
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200);

    let db = TestDb::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("mayfly.key");
    std::fs::write(&key, format!("{}\n", "5a".repeat(32))).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let (pa, pb) = (free_port(), free_port());
    let issuer = format!("http://127.0.0.1:{pa}");
    let (a, b) = (
        format!("http://127.0.0.1:{pa}"),
        format!("http://127.0.0.1:{pb}"),
    );
    let _sa = serve(&bin, pa, &issuer, &db.url, &key);
    let http = reqwest::Client::new();
    wait_up(&http, &a).await;
    let _sb = serve(&bin, pb, &issuer, &db.url, &key);
    wait_up(&http, &b).await;

    let out = Command::new(&bin)
        .args(["admin", "bootstrap"])
        .env("MAYFLY_ISSUER", &issuer)
        .env("MAYFLY_DATABASE_URL", &db.url)
        .env("MAYFLY_MASTER_KEY_FILE", &key)
        .output()
        .unwrap();
    let admin: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (admin_id, admin_secret) = (
        admin["client_id"].as_str().unwrap(),
        admin["client_secret"].as_str().unwrap(),
    );
    // Replica A learns of the bootstrap within its directory poll.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let admin_token = token(&http, &a, admin_id, admin_secret, "mayfly:admin", &issuer).await;
    let created: Value = http
        .post(format!("{a}/admin/v1/clients"))
        .bearer_auth(&admin_token)
        .json(&json!({ "name": "reader" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (rid, rsecret) = (
        created["id"].as_str().unwrap(),
        created["client_secret"].as_str().unwrap(),
    );
    http.post(format!("{a}/admin/v1/grants"))
        .bearer_auth(&admin_token)
        .json(&json!({ "subject": { "kind": "client", "id": rid }, "audience": issuer, "scopes": ["mayfly:revocations:read"] }))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reader = token(&http, &b, rid, rsecret, "mayfly:revocations:read", &issuer).await;
    let mut stream = http
        .get(format!("{b}/v1/revocations/stream"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert!(stream.status().is_success(), "stream: {}", stream.status());

    let mut buffer = String::new();
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let value = format!("bench-{i}");
        let start = Instant::now();
        let posted = http
            .post(format!("{a}/admin/v1/revocations"))
            .bearer_auth(&admin_token)
            .json(&json!({ "kind": "jti", "value": value }))
            .send()
            .await
            .unwrap();
        assert_eq!(posted.status(), 201);
        'wait: loop {
            let chunk = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
                .await
                .expect("event in time")
                .unwrap()
                .unwrap();
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                if block.contains(&format!("\"value\":\"{value}\"")) {
                    times.push(start.elapsed());
                    break 'wait;
                }
            }
        }
    }
    times.sort();
    let pct = |p: f64| {
        times[((times.len() as f64 * p).ceil() as usize)
            .saturating_sub(1)
            .min(times.len() - 1)]
    };
    println!(
        "revocation propagation A -> B stream over {n} revocations: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3
    );
}
