//! The store contract: every test runs against SQLite and Postgres.

use std::sync::Arc;

use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::testing::TestDb;
use crate::*;

/// Both backends store microseconds; compare at that precision.
#[allow(clippy::disallowed_methods)] // Store tests need a plausible wall-clock time.
fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1000 * 1000)
        .unwrap_or(t)
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                let db = super::TestDb::new(super::Backend::Sqlite).await;
                super::$name(db.store().await).await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                let db = super::TestDb::new(super::Backend::Postgres).await;
                super::$name(db.store().await).await;
            })*
        }
    };
}

contract!(
    audiences_and_scopes,
    clients_and_secrets,
    grant_references_must_exist,
    one_active_key,
    audit_batches_and_filters,
    migrate_twice_is_harmless,
    client_view_and_revision,
);

async fn audience(store: &dyn Store, uri: &str, scopes: &[&str]) -> AudienceRecord {
    let aud = store
        .create_audience(NewAudience {
            uri: uri.into(),
            description: "d".into(),
            now: now(),
        })
        .await
        .unwrap();
    for name in scopes {
        store
            .create_scope(NewScope {
                audience_id: aud.id,
                name: (*name).into(),
                description: String::new(),
                now: now(),
            })
            .await
            .unwrap();
    }
    aud
}

async fn client(store: &dyn Store) -> ClientRecord {
    store
        .create_client(NewClient {
            name: "svc".into(),
            enabled: true,
            default_ttl_secs: Some(120),
            max_ttl_secs: None,
            allowed_cidrs: vec!["10.0.0.0/8".into()],
            require_dpop: false,
            now: now(),
        })
        .await
        .unwrap()
}

fn grant(subject: Subject, audience_id: Uuid, scopes: &[&str]) -> NewGrant {
    NewGrant {
        subject,
        audience_id,
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        not_before: None,
        expires_at: None,
        allowed_cidrs: vec![],
        max_ttl_secs: None,
        reason: "test".into(),
        created_by: "tester".into(),
        now: now(),
    }
}

async fn audiences_and_scopes(store: Arc<dyn Store>) {
    let aud = audience(
        &*store,
        "https://api.example/orders",
        &["orders:write", "orders:read"],
    )
    .await;
    assert_eq!(
        store
            .audience_by_uri("https://api.example/orders")
            .await
            .unwrap(),
        Some(aud.clone())
    );
    assert_eq!(
        store
            .audience_by_uri("https://api.example/other")
            .await
            .unwrap(),
        None
    );
    let dup = store
        .create_audience(NewAudience {
            uri: aud.uri.clone(),
            description: String::new(),
            now: now(),
        })
        .await;
    assert!(
        matches!(dup, Err(StoreError::Conflict("audience"))),
        "{dup:?}"
    );

    let names: Vec<_> = store
        .scopes_of(aud.id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["orders:read", "orders:write"]);
    let dup = store
        .create_scope(NewScope {
            audience_id: aud.id,
            name: "orders:read".into(),
            description: String::new(),
            now: now(),
        })
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict("scope"))), "{dup:?}");
    let orphan = store
        .create_scope(NewScope {
            audience_id: Uuid::now_v7(),
            name: "x:y".into(),
            description: String::new(),
            now: now(),
        })
        .await;
    assert!(
        matches!(orphan, Err(StoreError::NotFound("audience"))),
        "{orphan:?}"
    );

    audience(&*store, "https://api.example/billing", &[]).await;
    let uris: Vec<_> = store
        .list_audiences()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.uri)
        .collect();
    assert_eq!(
        uris,
        ["https://api.example/billing", "https://api.example/orders"]
    );
}

async fn clients_and_secrets(store: Arc<dyn Store>) {
    let c = client(&*store).await;
    let got = store.client(c.id).await.unwrap().unwrap();
    assert_eq!(got, c);
    assert_eq!(got.allowed_cidrs, ["10.0.0.0/8"]);
    assert_eq!(store.client(Uuid::now_v7()).await.unwrap(), None);

    store.set_client_enabled(c.id, false, now()).await.unwrap();
    assert!(!store.client(c.id).await.unwrap().unwrap().enabled);
    let missing = store.set_client_enabled(Uuid::now_v7(), false, now()).await;
    assert!(matches!(missing, Err(StoreError::NotFound("client"))));

    let t = now();
    let s1 = store
        .add_client_secret(NewClientSecret {
            client_id: c.id,
            digest: [1; 32],
            expires_at: None,
            now: t,
        })
        .await
        .unwrap();
    let s2 = store
        .add_client_secret(NewClientSecret {
            client_id: c.id,
            digest: [2; 32],
            expires_at: Some(t + Duration::hours(1)),
            now: t + Duration::seconds(1),
        })
        .await
        .unwrap();
    assert_eq!(
        store.client_secrets(c.id).await.unwrap(),
        vec![s1.clone(), s2.clone()]
    );
    assert!(s2.is_valid_at(t) && !s2.is_valid_at(t + Duration::hours(1)));
    let orphan = store
        .add_client_secret(NewClientSecret {
            client_id: Uuid::now_v7(),
            digest: [3; 32],
            expires_at: None,
            now: t,
        })
        .await;
    assert!(
        matches!(orphan, Err(StoreError::NotFound("client"))),
        "{orphan:?}"
    );
}

async fn grant_references_must_exist(store: Arc<dyn Store>) {
    let orders = audience(&*store, "https://api.example/orders", &["orders:read"]).await;
    let other = audience(&*store, "https://api.example/other", &["other:read"]).await;
    let who = Subject::Client(client(&*store).await.id);
    let unknown_scope = store
        .create_grant(grant(who, orders.id, &["orders:read", "orders:delete"]))
        .await;
    assert!(
        matches!(unknown_scope, Err(StoreError::NotFound("scope"))),
        "{unknown_scope:?}"
    );
    // A scope of another audience does not count.
    let foreign = store
        .create_grant(grant(who, orders.id, &["other:read"]))
        .await;
    assert!(
        matches!(foreign, Err(StoreError::NotFound("scope"))),
        "{foreign:?}"
    );
    let no_audience = store
        .create_grant(grant(who, Uuid::now_v7(), &["orders:read"]))
        .await;
    assert!(
        matches!(no_audience, Err(StoreError::NotFound(_))),
        "{no_audience:?}"
    );
    // Nothing half-written survives a failed create.
    let Subject::Client(id) = who else {
        unreachable!()
    };
    assert!(
        store
            .client_view(id)
            .await
            .unwrap()
            .unwrap()
            .grants
            .is_empty()
    );
    let _ = (orders, other);
}

fn key(id: &str) -> SigningKeyRecord {
    SigningKeyRecord {
        id: id.into(),
        state: KeyState::Active,
        public_key: vec![1; 32],
        private_key_enc: vec![2; 72],
        created_at: now(),
        activated_at: Some(now()),
        retired_at: None,
    }
}

async fn one_active_key(store: Arc<dyn Store>) {
    let first = store.ensure_active_key(key("k4.pid.first")).await.unwrap();
    assert_eq!(first.id, "k4.pid.first");
    let again = store.ensure_active_key(key("k4.pid.second")).await.unwrap();
    assert_eq!(again, first);
    // Concurrent first starts (several replicas) still end with one key.
    let racers = (0..8).map(|i| {
        let store = store.clone();
        tokio::spawn(async move { store.ensure_active_key(key(&format!("k4.pid.r{i}"))).await })
    });
    for racer in racers {
        assert_eq!(racer.await.unwrap().unwrap().id, "k4.pid.first");
    }
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].private_key_enc, vec![2; 72]);
}

fn event(event_type: &str, client_id: &str, at: OffsetDateTime) -> AuditEvent {
    AuditEvent {
        id: Uuid::now_v7(),
        occurred_at: at,
        event_type: event_type.into(),
        outcome: "success".into(),
        actor: Some(client_id.into()),
        subject: Some(client_id.into()),
        client_id: Some(client_id.into()),
        jti: Some(Uuid::new_v4().to_string()),
        audience: Some("https://api.example/orders".into()),
        scopes: Some("orders:read".into()),
        source_ip: Some("127.0.0.1".into()),
        user_agent: None,
        request_id: Some("req-1".into()),
        detail: serde_json::json!({"ttl": 300}),
    }
}

async fn audit_batches_and_filters(store: Arc<dyn Store>) {
    let t = now();
    let batch: Vec<_> = (0..150)
        .map(|i| {
            event(
                if i % 3 == 0 {
                    "token.denied"
                } else {
                    "token.issued"
                },
                if i % 2 == 0 { "a" } else { "b" },
                t + Duration::milliseconds(i),
            )
        })
        .collect();
    store.append_audit_events(&batch).await.unwrap();
    store.append_audit_events(&[]).await.unwrap();

    let all = store
        .audit_events(&AuditQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 150);
    assert_eq!(all[0], batch[149], "newest first, every field kept");
    let denied = store
        .audit_events(&AuditQuery {
            event_type: Some("token.denied".into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(denied.len(), 50);
    let denied_a = store
        .audit_events(&AuditQuery {
            event_type: Some("token.denied".into()),
            client_id: Some("a".into()),
            limit: 1000,
        })
        .await
        .unwrap();
    assert_eq!(denied_a.len(), 25);
    assert!(
        denied_a
            .iter()
            .all(|e| e.event_type == "token.denied" && e.client_id.as_deref() == Some("a"))
    );
    let limited = store
        .audit_events(&AuditQuery {
            limit: 7,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(limited.len(), 7);
}

async fn migrate_twice_is_harmless(store: Arc<dyn Store>) {
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
}

async fn client_view_and_revision(store: Arc<dyn Store>) {
    let r0 = store.revision().await.unwrap();
    let l0 = store.local_changes();
    let orders = audience(
        &*store,
        "https://api.example/orders",
        &["orders:read", "orders:write"],
    )
    .await;
    let billing = audience(&*store, "https://api.example/billing", &["billing:read"]).await;
    let c = client(&*store).await;
    let who = Subject::Client(c.id);
    let r1 = store.revision().await.unwrap();
    assert!(r1 > r0, "changes move the revision");
    assert!(store.local_changes() > l0);

    assert_eq!(store.client_view(Uuid::now_v7()).await.unwrap(), None);
    let empty = store.client_view(c.id).await.unwrap().unwrap();
    assert_eq!(
        (
            empty.client.clone(),
            empty.secrets.len(),
            empty.grants.len()
        ),
        (c.clone(), 0, 0)
    );

    let s = store
        .add_client_secret(NewClientSecret {
            client_id: c.id,
            digest: [9; 32],
            expires_at: None,
            now: now(),
        })
        .await
        .unwrap();
    let g1 = store
        .create_grant(grant(who, orders.id, &["orders:read", "orders:write"]))
        .await
        .unwrap();
    let g2 = store
        .create_grant(NewGrant {
            expires_at: Some(now() - Duration::hours(1)),
            ..grant(who, billing.id, &["billing:read"])
        })
        .await
        .unwrap();
    // Another client's grant does not show.
    let other = client(&*store).await;
    store
        .create_grant(grant(
            Subject::Client(other.id),
            orders.id,
            &["orders:read"],
        ))
        .await
        .unwrap();

    let view = store.client_view(c.id).await.unwrap().unwrap();
    assert_eq!(view.secrets, vec![s]);
    let mut grants = view.grants.clone();
    grants.sort_by_key(|g| g.grant.id);
    assert_eq!(
        grants,
        vec![
            SubjectGrant {
                grant: g1,
                audience_uri: orders.uri.clone()
            },
            SubjectGrant {
                grant: g2,
                audience_uri: billing.uri.clone()
            },
        ],
        "every grant, expired too, with its audience"
    );

    let r2 = store.revision().await.unwrap();
    store.set_client_enabled(c.id, false, now()).await.unwrap();
    assert!(
        store.revision().await.unwrap() > r2,
        "disabling moves the revision"
    );
    let before_reads = store.local_changes();
    store.client_view(c.id).await.unwrap();
    store
        .append_audit_events(&[event("token.issued", "a", now())])
        .await
        .unwrap();
    assert_eq!(
        store.local_changes(),
        before_reads,
        "reads and audit do not count as changes"
    );
}
