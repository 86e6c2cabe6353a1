//! Three `mayfly serve` processes share one fresh Postgres database, with key periods of
//! seconds, while tokens are issued from all three and verified the way a resource
//! server does: with the key set it fetched from any replica, cached for the `max-age`
//! the response gave, refetched early only for an unknown `kid`. Through at least three
//! rotations no verification fails, no token carries a key the cached set did not know
//! yet, and each rotation happens exactly once.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mayfly_core::token::{Claims, peek_key_id};
use mayfly_core::wire::JwkSet;
use mayfly_sdk::OfflineVerifier;
use mayfly_server::clock::{Clock as _, SystemClock};
use mayfly_server::service::{Actor, ClientSpec, GrantSpec};
use mayfly_store::Subject;
use mayfly_store::testing::TestDb;
use mayfly_store::{AuditQuery, Backend, KeyState};
use serde_json::Value;

const ISSUER: &str = "https://sts.replicas.test";
const ORDERS: &str = "https://api.example.com/orders";
/// A key signs for 7 s; its successor is published 4 s before; caches keep the key set
/// 1 s. Three rotations take about 21 s after the first key.
const LIFETIME_SECS: i64 = 7;
const LEAD_SECS: i64 = 4;
const ROTATIONS: usize = 3;
/// Give up waiting for the rotations after this long.
const DEADLINE: Duration = Duration::from_secs(32);

/// One `mayfly serve` process, killed when dropped.
struct Replica {
    child: Child,
    base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_replica(db_url: &str, key_file: &Path) -> Replica {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mayfly"));
    for (k, _) in std::env::vars() {
        if k.starts_with("MAYFLY_") {
            command.env_remove(k);
        }
    }
    command
        .arg("serve")
        .env_remove("RUST_LOG")
        .envs([
            ("MAYFLY_DATABASE_URL", db_url),
            ("MAYFLY_MASTER_KEY_FILE", &key_file.display().to_string()),
            ("MAYFLY_LISTEN", "127.0.0.1:0"),
            ("MAYFLY_ISSUER", ISSUER),
            ("MAYFLY_LOG_FORMAT", "json"),
            ("MAYFLY_TOKEN_TTL", "5s"),
            ("MAYFLY_MAX_TOKEN_TTL", "5s"),
            ("MAYFLY_KEY_LIFETIME", &format!("{LIFETIME_SECS}s")),
            ("MAYFLY_KEY_PUBLISH_LEAD", &format!("{LEAD_SECS}s")),
            ("MAYFLY_KEY_SET_MAX_AGE", "1s"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let lines = log.clone();
    // Keeps draining the pipe for the process's whole life, so logging never blocks it.
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Ok(event) = serde_json::from_str::<Value>(&line)
                && event["message"] == "mayfly ready"
            {
                let _ = ready_tx.send(event["listen"].as_str().unwrap_or_default().to_owned());
            }
            lines.lock().unwrap().push(line);
        }
    });
    let mut replica = Replica {
        child,
        base: String::new(),
        log,
    };
    match ready_rx.recv_timeout(Duration::from_secs(20)) {
        Ok(addr) => replica.base = format!("http://{addr}"),
        Err(_) => panic!(
            "replica did not start:\n{}",
            replica.log.lock().unwrap().join("\n")
        ),
    }
    replica
}

/// What a resource server keeps: the key set it fetched, until `max-age` runs out.
struct Cached {
    verifier: OfflineVerifier,
    kids: BTreeSet<String>,
    etag: String,
    fetched: Instant,
    max_age: Duration,
}

/// A resource server verifying offline, fetching the key set through a "load balancer"
/// (round robin over the replicas).
struct ResourceServer {
    http: reqwest::Client,
    replicas: Vec<String>,
    next_replica: AtomicUsize,
    cache: tokio::sync::Mutex<Option<Cached>>,
    fetches: AtomicUsize,
    unknown_kid_refetches: AtomicUsize,
}

impl ResourceServer {
    async fn fetch(&self, cached: &mut Option<Cached>) -> Result<(), String> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let i = self.next_replica.fetch_add(1, Ordering::Relaxed) % self.replicas.len();
        let mut request = self
            .http
            .get(format!("{}/.well-known/jwks.json", self.replicas[i]));
        if let Some(c) = cached.as_ref() {
            request = request.header("if-none-match", &c.etag);
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let etag = header("etag");
        let max_age: u64 = header("cache-control")
            .strip_prefix("public, max-age=")
            .and_then(|n| n.parse().ok())
            .ok_or("key set without public max-age")?;
        let max_age = Duration::from_secs(max_age);
        let fetched = Instant::now();
        match (response.status().as_u16(), cached.as_mut()) {
            (304, Some(c)) => {
                c.fetched = fetched;
                c.max_age = max_age;
            }
            (200, _) => {
                let jwks: JwkSet = response.json().await.map_err(|e| e.to_string())?;
                *cached = Some(Cached {
                    verifier: OfflineVerifier::new(ISSUER, ORDERS, &jwks),
                    kids: jwks.keys.iter().map(|k| k.kid.clone()).collect(),
                    etag,
                    fetched,
                    max_age,
                });
            }
            (status, _) => return Err(format!("key set answered {status}")),
        }
        Ok(())
    }

    async fn verify(&self, token: &str) -> Result<Claims, String> {
        let kid = peek_key_id(token).map_err(|e| e.to_string())?.to_string();
        let mut cached = self.cache.lock().await;
        if cached
            .as_ref()
            .is_none_or(|c| c.fetched.elapsed() >= c.max_age)
        {
            self.fetch(&mut cached).await?;
        }
        if cached.as_ref().is_some_and(|c| !c.kids.contains(&kid)) {
            self.unknown_kid_refetches.fetch_add(1, Ordering::Relaxed);
            self.fetch(&mut cached).await?;
        }
        let c = cached.as_ref().ok_or("no key set")?;
        c.verifier
            .verify(token, &["orders:read"], SystemClock.now())
            .map_err(|e| format!("{kid}: {e}"))
    }
}

#[derive(Default)]
struct Tally {
    /// Per replica, per kid: tokens issued and verified.
    verified: BTreeMap<(usize, String), usize>,
    /// `(kid, iat)` of every token.
    issued: Vec<(String, time::OffsetDateTime)>,
    failures: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_rotate_once_per_period_without_failed_verifications() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let db = TestDb::new(Backend::Postgres).await;
    let store = db.store().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("master.key");
    std::fs::write(&key_file, format!("{}\n", "3c".repeat(32))).unwrap();
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();

    let admin = Actor::trusted(
        store.as_ref(),
        "test",
        SystemClock.now(),
        Default::default(),
    );
    admin
        .create_audience(ORDERS, "", &["orders:read".to_owned()])
        .await
        .unwrap();
    let client = admin
        .create_client(ClientSpec::named("worker"))
        .await
        .unwrap();
    admin
        .create_grant(GrantSpec::new(
            Subject::Client(client.client.id),
            ORDERS,
            &["orders:read"],
        ))
        .await
        .unwrap();
    let client_id = client.client.id.to_string();
    let secret = client.secret.expose().to_owned();

    // Started together on one database: one first key, whoever is first.
    let replicas: Vec<Replica> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| s.spawn(|| start_replica(&db.url, &key_file)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let bases: Vec<String> = replicas.iter().map(|r| r.base.clone()).collect();

    let http = reqwest::Client::new();
    let resource = Arc::new(ResourceServer {
        http: http.clone(),
        replicas: bases.clone(),
        next_replica: AtomicUsize::new(0),
        cache: tokio::sync::Mutex::new(None),
        fetches: AtomicUsize::new(0),
        unknown_kid_refetches: AtomicUsize::new(0),
    });
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // One worker per replica, each issuing tokens continuously and verifying each.
    let workers: Vec<_> = bases
        .iter()
        .enumerate()
        .map(|(i, base)| {
            let (http, base, resource, tally, stop) = (
                http.clone(),
                base.clone(),
                resource.clone(),
                tally.clone(),
                stop.clone(),
            );
            let (client_id, secret) = (client_id.clone(), secret.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let outcome = async {
                        let response = http
                            .post(format!("{base}/oauth2/token"))
                            .basic_auth(&client_id, Some(&secret))
                            .form(&[
                                ("grant_type", "client_credentials"),
                                ("scope", "orders:read"),
                            ])
                            .send()
                            .await
                            .map_err(|e| e.to_string())?;
                        let status = response.status();
                        let body: Value = response.json().await.map_err(|e| e.to_string())?;
                        let token = body["access_token"]
                            .as_str()
                            .ok_or(format!("replica {i} answered {status}: {body}"))?
                            .to_owned();
                        let claims = resource.verify(&token).await?;
                        let kid = peek_key_id(&token).unwrap().to_string();
                        Ok::<_, String>((kid, claims.iat))
                    }
                    .await;
                    {
                        let mut t = tally.lock().unwrap();
                        match outcome {
                            Ok((kid, iat)) => {
                                *t.verified.entry((i, kid.clone())).or_default() += 1;
                                t.issued.push((kid, iat));
                            }
                            Err(e) => t.failures.push(e),
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(15)).await;
                }
            })
        })
        .collect();

    // Run until three rotations have happened (each activates a successor), then a
    // little longer so tokens of the last key are verified too.
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let activated = store
            .all_signing_keys()
            .await
            .unwrap()
            .iter()
            .filter(|k| k.activated_at.is_some())
            .count();
        if activated > ROTATIONS {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "only {} rotations in {DEADLINE:?}",
            activated.saturating_sub(1)
        );
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }

    let tally = std::mem::take(&mut *tally.lock().unwrap());
    eprintln!(
        "{} tokens verified, {} failures, {} key set fetches, signed by {:?}",
        tally.issued.len(),
        tally.failures.len(),
        resource.fetches.load(Ordering::Relaxed),
        tally.verified
    );
    assert!(
        tally.failures.is_empty(),
        "{} failed of {}: {:?}",
        tally.failures.len(),
        tally.issued.len() + tally.failures.len(),
        &tally.failures[..tally.failures.len().min(10)]
    );
    assert_eq!(
        resource.unknown_kid_refetches.load(Ordering::Relaxed),
        0,
        "every token's key was already in the cached key set"
    );
    assert!(
        resource.fetches.load(Ordering::Relaxed) >= 10,
        "the key set was refetched as its max-age ran out"
    );

    // Keys as the store holds them.
    let keys = store.all_signing_keys().await.unwrap();
    let mut activated: Vec<_> = keys.iter().filter(|k| k.activated_at.is_some()).collect();
    activated.sort_by_key(|k| k.activated_at);
    assert!(activated.len() > ROTATIONS, "{activated:?}");
    // Each successor signed only after being published for the lead time, and exactly
    // one key was activated per period: activations are a key lifetime apart.
    for pair in activated.windows(2) {
        let (old, new) = (pair[0], pair[1]);
        let (old_at, new_at) = (old.activated_at.unwrap(), new.activated_at.unwrap());
        assert!(
            new.published_at + time::Duration::seconds(LEAD_SECS) <= new_at,
            "{new:?} activated before its lead time"
        );
        assert!(
            new_at - old_at >= time::Duration::seconds(LIFETIME_SECS),
            "two activations within one period: {old:?} {new:?}"
        );
        assert_eq!(
            old.retired_at,
            Some(new_at),
            "retired as its successor activated"
        );
    }
    assert_eq!(
        keys.iter().filter(|k| k.state == KeyState::Active).count(),
        1
    );

    // The audit log agrees: each transition recorded once, by one replica.
    let events = store
        .audit_events(&AuditQuery {
            event_type: Some("key.change".into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut per_action: BTreeMap<(String, String), usize> = BTreeMap::new();
    for e in &events {
        *per_action
            .entry((
                e.detail["action"].as_str().unwrap().to_owned(),
                e.detail["kid"].as_str().unwrap().to_owned(),
            ))
            .or_default() += 1;
    }
    assert!(per_action.values().all(|n| *n == 1), "{per_action:?}");
    let activations = per_action.keys().filter(|(a, _)| a == "activate").count();
    assert_eq!(
        activations,
        activated.len() - 1,
        "the first key was never a successor"
    );
    assert!(activations >= ROTATIONS);

    // No token carries a key before that key was published for the lead time (iat has
    // second precision), and every replica issued with several keys.
    let published: BTreeMap<&str, time::OffsetDateTime> = keys
        .iter()
        .map(|k| (k.id.as_str(), k.published_at))
        .collect();
    let first = activated[0].id.as_str();
    for (kid, iat) in &tally.issued {
        if kid != first {
            assert!(
                *iat + time::Duration::SECOND
                    > published[kid.as_str()] + time::Duration::seconds(LEAD_SECS),
                "a token of {kid} issued at {iat} before its lead time"
            );
        }
    }
    for i in 0..replicas.len() {
        let kids = tally.verified.keys().filter(|(r, _)| *r == i).count();
        assert!(kids > ROTATIONS, "replica {i} signed with {kids} keys");
    }
    drop(replicas);
}
