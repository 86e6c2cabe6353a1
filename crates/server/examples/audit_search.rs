//! Audit search at scale: fills a throwaway database with a million audit events (30
//! days of a busy deployment: 1,000 clients, 200 audiences, mostly issuance, some
//! denials, introspections, uses and rare anomalies), then times a search by each filter
//! the admin API offers (first page of 100, newest first).
//!
//! ```text
//! cargo run --release -p mayfly-server --example audit_search            # Postgres
//! cargo run --release -p mayfly-server --example audit_search -- sqlite 200000
//! ```
//!
//! Postgres is `MAYFLY_TEST_POSTGRES_URL` (default postgres://postgres@127.0.0.1:5432/postgres);
//! the database is created for the run and dropped after.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration as StdDuration, Instant};

use mayfly_store::testing::TestDb;
use mayfly_store::{AuditEvent, AuditQuery, Backend};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

const CLIENTS: u64 = 1_000;
const AUDIENCES: u64 = 200;
const BATCH: usize = 5_000;
const RUNS: usize = 5;

/// A cheap deterministic generator (xorshift), so every run holds the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn client(i: u64) -> String {
    Uuid::from_u128(0x0196_0000_0000_7000_8000_0000_0000_0000 | u128::from(i)).to_string()
}

fn event(rng: &mut Rng, at: OffsetDateTime) -> AuditEvent {
    let c = rng.below(CLIENTS);
    let roll = rng.below(1000);
    let (event_type, outcome) = match roll {
        0 => ("anomaly", "detected"),
        1..=80 => ("token.denied", "denied"),
        81..=120 => ("client.auth_failed", "failure"),
        121..=300 => ("token.introspected", "success"),
        301..=450 => ("token.used", "success"),
        _ => ("token.issued", "success"),
    };
    let id = client(c);
    let jti = Uuid::from_u64_pair(rng.next(), rng.next()).to_string();
    AuditEvent {
        id: Uuid::now_v7(),
        occurred_at: at,
        event_type: event_type.into(),
        outcome: outcome.into(),
        actor: Some(id.clone()),
        subject: Some(id.clone()),
        client_id: Some(id),
        jti: Some(jti),
        audience: Some(format!("https://api{}.example.com", c % AUDIENCES)),
        scopes: Some("orders:read orders:write".into()),
        source_ip: Some(format!(
            "10.{}.{}.{}",
            c % 250,
            rng.below(250),
            rng.below(250)
        )),
        user_agent: Some("mayfly-sdk/0.1".into()),
        request_id: Some(Uuid::new_v4().to_string()),
        detail: serde_json::json!({ "grant_type": "client_credentials", "expires_in": 300 }),
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let backend = match args.next().as_deref() {
        None | Some("postgres") => Backend::Postgres,
        Some("sqlite") => Backend::Sqlite,
        Some(other) => panic!("unknown backend {other}: postgres or sqlite"),
    };
    let total: usize = args.next().map_or(1_000_000, |n| n.parse().unwrap());
    let db = TestDb::new(backend).await;
    let store = db.store().await;

    #[allow(clippy::disallowed_methods)] // a benchmark: the wall clock is what we want
    let end = OffsetDateTime::now_utc();
    let span = Duration::days(30);
    let step = span / total as f64;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let started = Instant::now();
    let mut written = 0;
    let mut sample_jti = String::new();
    while written < total {
        let n = BATCH.min(total - written);
        let events: Vec<AuditEvent> = (0..n)
            .map(|i| event(&mut rng, end - span + step * (written + i) as f64))
            .collect();
        if written == total / 2 {
            sample_jti = events[0].jti.clone().unwrap();
        }
        store.append_audit_events(&events).await.unwrap();
        written += n;
    }
    let fill = started.elapsed();
    // Fresh planner statistics, as autovacuum (Postgres) or `PRAGMA optimize` would
    // provide on a live system; without them the planner guesses.
    match backend {
        Backend::Postgres => {
            use sqlx::Connection as _;
            let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
            sqlx::query("ANALYZE audit_events")
                .execute(&mut conn)
                .await
                .unwrap();
        }
        Backend::Sqlite => {
            use sqlx::Connection as _;
            let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            sqlx::query("ANALYZE").execute(&mut conn).await.unwrap();
        }
    }
    println!(
        "{backend:?}: {total} events written in {:.1} s ({:.0}/s, batches of {BATCH})",
        fill.as_secs_f64(),
        total as f64 / fill.as_secs_f64()
    );

    let some_client = client(417);
    let queries: Vec<(&str, AuditQuery)> = vec![
        ("newest page, no filter", AuditQuery::default()),
        (
            "type=token.denied",
            AuditQuery {
                event_type: Some("token.denied".into()),
                ..Default::default()
            },
        ),
        (
            "type=anomaly (rare)",
            AuditQuery {
                event_type: Some("anomaly".into()),
                ..Default::default()
            },
        ),
        (
            "outcome=failure",
            AuditQuery {
                outcome: Some("failure".into()),
                ..Default::default()
            },
        ),
        (
            "client_id",
            AuditQuery {
                client_id: Some(some_client.clone()),
                ..Default::default()
            },
        ),
        (
            "subject",
            AuditQuery {
                subject: Some(some_client.clone()),
                ..Default::default()
            },
        ),
        (
            "jti",
            AuditQuery {
                jti: Some(sample_jti.clone()),
                ..Default::default()
            },
        ),
        (
            "audience",
            AuditQuery {
                audience: Some("https://api17.example.com".into()),
                ..Default::default()
            },
        ),
        (
            "ip in 10.17.0.0/16",
            AuditQuery {
                network: Some("10.17.0.0/16".parse().unwrap()),
                ..Default::default()
            },
        ),
        (
            "one day, 10 days ago",
            AuditQuery {
                since: Some(end - Duration::days(11)),
                until: Some(end - Duration::days(10)),
                ..Default::default()
            },
        ),
        (
            "client_id + one day",
            AuditQuery {
                client_id: Some(some_client.clone()),
                since: Some(end - Duration::days(11)),
                until: Some(end - Duration::days(10)),
                ..Default::default()
            },
        ),
        (
            "type=anomaly + client_id",
            AuditQuery {
                event_type: Some("anomaly".into()),
                client_id: Some(some_client.clone()),
                ..Default::default()
            },
        ),
        (
            "subject never seen (worst case)",
            AuditQuery {
                subject: Some("nobody".into()),
                ..Default::default()
            },
        ),
        (
            "ip never seen (worst case)",
            AuditQuery {
                network: Some("192.0.2.0/24".parse().unwrap()),
                ..Default::default()
            },
        ),
    ];
    println!(
        "{:<34} {:>6} {:>10} {:>10}",
        "search (limit 100)", "rows", "median", "max"
    );
    for (name, mut query) in queries {
        query.limit = 100;
        let mut times: Vec<StdDuration> = Vec::with_capacity(RUNS);
        let mut rows = 0;
        for _ in 0..RUNS {
            let t = Instant::now();
            rows = store.audit_events(&query).await.unwrap().len();
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "{name:<34} {rows:>6} {:>8.1}ms {:>8.1}ms",
            times[RUNS / 2].as_secs_f64() * 1e3,
            times[RUNS - 1].as_secs_f64() * 1e3
        );
    }
}
