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
    paging_updates_and_deletes,
    users,
    client_keys_and_secret_deletion,
    grant_listing_and_changes,
    revocation_feed,
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
        .list_audiences(Page {
            after: None,
            limit: 10,
        })
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.uri)
        .collect();
    assert_eq!(
        uris,
        ["https://api.example/orders", "https://api.example/billing"],
        "in creation (id) order"
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

async fn paging_updates_and_deletes(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            audience(&*store, &format!("https://api.example/{i}"), &[])
                .await
                .id,
        );
    }
    let first = store
        .list_audiences(Page {
            after: None,
            limit: 2,
        })
        .await
        .unwrap();
    assert_eq!(first.iter().map(|a| a.id).collect::<Vec<_>>(), ids[..2]);
    let rest = store
        .list_audiences(Page {
            after: Some(ids[1]),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(rest.iter().map(|a| a.id).collect::<Vec<_>>(), ids[2..]);

    let updated = store.update_audience(ids[0], "new words").await.unwrap();
    assert_eq!(updated.description, "new words");
    assert_eq!(store.audience(ids[0]).await.unwrap(), Some(updated));
    assert!(matches!(
        store.update_audience(Uuid::now_v7(), "x").await,
        Err(StoreError::NotFound("audience"))
    ));

    let orders = audience(
        &*store,
        "https://api.example/orders",
        &["orders:read", "orders:write"],
    )
    .await;
    let scopes = store
        .list_scopes(
            Some(orders.id),
            Page {
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(scopes.len(), 2);
    assert_eq!(
        store
            .list_scopes(
                None,
                Page {
                    after: None,
                    limit: 100
                }
            )
            .await
            .unwrap()
            .len(),
        2
    );
    let read = scopes
        .iter()
        .find(|s| s.name == "orders:read")
        .unwrap()
        .clone();
    let write = scopes
        .iter()
        .find(|s| s.name == "orders:write")
        .unwrap()
        .clone();
    assert_eq!(
        store
            .update_scope(read.id, "read orders")
            .await
            .unwrap()
            .description,
        "read orders"
    );
    assert_eq!(
        store.scope(read.id).await.unwrap().unwrap().description,
        "read orders"
    );

    let c = client(&*store).await;
    store
        .create_grant(grant(Subject::Client(c.id), orders.id, &["orders:read"]))
        .await
        .unwrap();
    assert!(matches!(
        store.delete_scope(read.id).await,
        Err(StoreError::InUse("scope"))
    ));
    assert!(matches!(
        store.delete_audience(orders.id).await,
        Err(StoreError::InUse("audience"))
    ));
    store.delete_scope(write.id).await.unwrap();
    assert_eq!(store.scope(write.id).await.unwrap(), None);
    assert!(matches!(
        store.delete_scope(write.id).await,
        Err(StoreError::NotFound("scope"))
    ));
    store.delete_audience(ids[4]).await.unwrap();
    assert_eq!(store.audience(ids[4]).await.unwrap(), None);
    assert!(matches!(
        store.delete_audience(ids[4]).await,
        Err(StoreError::NotFound("audience"))
    ));

    // Clients: optimistic concurrency on update; delete takes grants and secrets along.
    let seen = c.updated_at;
    let changed = ClientRecord {
        name: "renamed".into(),
        enabled: false,
        max_ttl_secs: Some(60),
        updated_at: seen + Duration::seconds(1),
        ..c.clone()
    };
    let stored = store.update_client(&changed, seen).await.unwrap();
    assert_eq!(stored, changed);
    let stale = store
        .update_client(
            &ClientRecord {
                name: "late".into(),
                ..changed.clone()
            },
            seen,
        )
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    let page = store
        .list_clients(Page {
            after: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(page, vec![stored.clone()]);
    store
        .add_client_secret(NewClientSecret {
            client_id: c.id,
            digest: [1; 32],
            expires_at: None,
            now: now(),
        })
        .await
        .unwrap();
    store.delete_client(c.id).await.unwrap();
    assert_eq!(store.client(c.id).await.unwrap(), None);
    assert!(store.client_secrets(c.id).await.unwrap().is_empty());
    assert!(
        store
            .list_grants(
                GrantFilter {
                    subject: Some(Subject::Client(c.id)),
                    audience_id: None
                },
                Page {
                    after: None,
                    limit: 10
                }
            )
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        store.delete_client(c.id).await,
        Err(StoreError::NotFound("client"))
    ));
    let ghost = store.update_client(&changed, changed.updated_at).await;
    assert!(
        matches!(ghost, Err(StoreError::NotFound("client"))),
        "{ghost:?}"
    );
    // With its grant gone, the audience can go too.
    store.delete_audience(orders.id).await.unwrap();
}

async fn users(store: Arc<dyn Store>) {
    let t = now();
    let alice = store
        .create_user(NewUser {
            username: "alice".into(),
            password_hash: "$argon2id$x".into(),
            enabled: true,
            now: t,
        })
        .await
        .unwrap();
    let dup = store
        .create_user(NewUser {
            username: "alice".into(),
            password_hash: "h".into(),
            enabled: true,
            now: t,
        })
        .await;
    assert!(
        matches!(dup, Err(StoreError::Conflict("username"))),
        "{dup:?}"
    );
    store
        .create_user(NewUser {
            username: "bob".into(),
            password_hash: "h".into(),
            enabled: false,
            now: t,
        })
        .await
        .unwrap();
    assert_eq!(store.user(alice.id).await.unwrap(), Some(alice.clone()));
    assert_eq!(
        store.user_by_username("alice").await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(store.user_by_username("carol").await.unwrap(), None);
    let names: Vec<_> = store
        .list_users(Page {
            after: None,
            limit: 10,
        })
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    assert_eq!(
        store
            .list_users(Page {
                after: Some(alice.id),
                limit: 10
            })
            .await
            .unwrap()
            .len(),
        1
    );

    let locked = UserRecord {
        failed_logins: 3,
        locked_until: Some(t + Duration::minutes(5)),
        password_hash: "$argon2id$y".into(),
        updated_at: t + Duration::seconds(1),
        ..alice.clone()
    };
    assert_eq!(
        store.update_user(&locked, alice.updated_at).await.unwrap(),
        locked
    );
    assert!(matches!(
        store.update_user(&locked, alice.updated_at).await,
        Err(StoreError::Conflict(_))
    ));

    let aud = audience(&*store, "https://api.example/orders", &["orders:read"]).await;
    store
        .create_grant(grant(Subject::User(alice.id), aud.id, &["orders:read"]))
        .await
        .unwrap();
    store.delete_user(alice.id).await.unwrap();
    assert_eq!(store.user(alice.id).await.unwrap(), None);
    assert!(
        store
            .list_grants(
                GrantFilter::default(),
                Page {
                    after: None,
                    limit: 10
                }
            )
            .await
            .unwrap()
            .is_empty(),
        "grants go with the user"
    );
    assert!(matches!(
        store.delete_user(alice.id).await,
        Err(StoreError::NotFound("user"))
    ));
}

async fn client_keys_and_secret_deletion(store: Arc<dyn Store>) {
    let c = client(&*store).await;
    let key = store
        .add_client_public_key(NewClientPublicKey {
            client_id: c.id,
            kid: "kid-1".into(),
            public_key: [7; 32],
            now: now(),
        })
        .await
        .unwrap();
    let dup = store
        .add_client_public_key(NewClientPublicKey {
            client_id: c.id,
            kid: "kid-1".into(),
            public_key: [8; 32],
            now: now(),
        })
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    let orphan = store
        .add_client_public_key(NewClientPublicKey {
            client_id: Uuid::now_v7(),
            kid: "k".into(),
            public_key: [8; 32],
            now: now(),
        })
        .await;
    assert!(
        matches!(orphan, Err(StoreError::NotFound("client"))),
        "{orphan:?}"
    );
    assert_eq!(
        store.client_public_keys(c.id).await.unwrap(),
        vec![key.clone()]
    );
    assert_eq!(key.public_key, vec![7; 32]);
    store.delete_client_public_key(c.id, key.id).await.unwrap();
    assert!(store.client_public_keys(c.id).await.unwrap().is_empty());
    assert!(matches!(
        store.delete_client_public_key(c.id, key.id).await,
        Err(StoreError::NotFound(_))
    ));

    let s = store
        .add_client_secret(NewClientSecret {
            client_id: c.id,
            digest: [1; 32],
            expires_at: None,
            now: now(),
        })
        .await
        .unwrap();
    let other = client(&*store).await;
    assert!(
        matches!(
            store.delete_client_secret(other.id, s.id).await,
            Err(StoreError::NotFound(_))
        ),
        "only the owner's secret"
    );
    store.delete_client_secret(c.id, s.id).await.unwrap();
    assert!(store.client_secrets(c.id).await.unwrap().is_empty());
}

async fn grant_listing_and_changes(store: Arc<dyn Store>) {
    let orders = audience(
        &*store,
        "https://api.example/orders",
        &["orders:read", "orders:write"],
    )
    .await;
    let billing = audience(&*store, "https://api.example/billing", &["billing:read"]).await;
    let a = Subject::Client(client(&*store).await.id);
    let b = Subject::Client(client(&*store).await.id);
    let g1 = store
        .create_grant(grant(a, orders.id, &["orders:read", "orders:write"]))
        .await
        .unwrap();
    let g2 = store
        .create_grant(grant(a, billing.id, &["billing:read"]))
        .await
        .unwrap();
    let g3 = store
        .create_grant(grant(b, orders.id, &["orders:read"]))
        .await
        .unwrap();
    let all = Page {
        after: None,
        limit: 100,
    };
    assert_eq!(
        store
            .list_grants(GrantFilter::default(), all)
            .await
            .unwrap(),
        vec![g1.clone(), g2.clone(), g3.clone()]
    );
    assert_eq!(
        store
            .list_grants(
                GrantFilter {
                    subject: Some(a),
                    audience_id: None
                },
                all
            )
            .await
            .unwrap(),
        vec![g1.clone(), g2.clone()]
    );
    assert_eq!(
        store
            .list_grants(
                GrantFilter {
                    subject: None,
                    audience_id: Some(orders.id)
                },
                all
            )
            .await
            .unwrap(),
        vec![g1.clone(), g3.clone()]
    );
    assert_eq!(
        store
            .list_grants(
                GrantFilter::default(),
                Page {
                    after: Some(g1.id),
                    limit: 1
                }
            )
            .await
            .unwrap(),
        vec![g2.clone()]
    );
    assert_eq!(store.grant(g1.id).await.unwrap(), Some(g1.clone()));
    assert_eq!(store.grant(Uuid::now_v7()).await.unwrap(), None);

    let t = now();
    let changed = GrantRecord {
        expires_at: Some(t + Duration::hours(1)),
        not_before: Some(t),
        reason: "narrowed".into(),
        max_ttl_secs: Some(60),
        allowed_cidrs: vec!["10.0.0.0/8".into()],
        ..g1.clone()
    };
    assert_eq!(store.update_grant(&changed).await.unwrap(), changed);
    assert!(matches!(
        store
            .update_grant(&GrantRecord {
                id: Uuid::now_v7(),
                ..changed.clone()
            })
            .await,
        Err(StoreError::NotFound("grant"))
    ));
    store.delete_grant(g2.id).await.unwrap();
    assert_eq!(store.grant(g2.id).await.unwrap(), None);
    assert!(matches!(
        store.delete_grant(g2.id).await,
        Err(StoreError::NotFound("grant"))
    ));
}

fn revoke(kind: &str, value: &str, expires_at: OffsetDateTime) -> NewRevocation {
    NewRevocation {
        kind: kind.into(),
        value: value.into(),
        issued_before: now(),
        expires_at,
        reason: "test".into(),
        created_by: "tester".into(),
        now: now(),
    }
}

async fn revocation_feed(store: Arc<dyn Store>) {
    let t = now();
    let a = store
        .insert_revocation(revoke("jti", "j1", t + Duration::minutes(5)))
        .await
        .unwrap();
    let b = store
        .insert_revocation(revoke("client", "c1", t + Duration::hours(1)))
        .await
        .unwrap();
    let c = store
        .insert_revocation(revoke("key", "k4.pid.x", t - Duration::seconds(1)))
        .await
        .unwrap();
    assert!(a.seq < b.seq && b.seq < c.seq, "seq increases");
    assert_eq!(
        (b.kind.as_str(), b.value.as_str(), b.reason.as_str()),
        ("client", "c1", "test")
    );
    assert_eq!(
        store.revocations_after(0, 100).await.unwrap(),
        vec![a.clone(), b.clone(), c.clone()]
    );
    assert_eq!(
        store.revocations_after(a.seq, 1).await.unwrap(),
        vec![b.clone()]
    );
    assert!(
        store
            .revocations_after(c.seq, 100)
            .await
            .unwrap()
            .is_empty()
    );

    assert_eq!(
        store.prune_revocations(t).await.unwrap(),
        1,
        "only the one whose tokens all expired"
    );
    assert_eq!(
        store.revocations_after(0, 100).await.unwrap(),
        vec![a.clone(), b.clone()]
    );
    let d = store
        .insert_revocation(revoke("grant", "g1", t + Duration::hours(1)))
        .await
        .unwrap();
    assert!(d.seq > c.seq, "a pruned seq is never reused");

    // Concurrent inserts: every one lands, with distinct seqs.
    let inserts = (0..10).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .insert_revocation(revoke("jti", &format!("x{i}"), now() + Duration::hours(1)))
                .await
        })
    });
    let mut seqs = Vec::new();
    for insert in inserts {
        seqs.push(insert.await.unwrap().unwrap().seq);
    }
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 10);
    assert_eq!(store.revocations_after(d.seq, 100).await.unwrap().len(), 10);

    let signal = store
        .revocation_signal()
        .await
        .unwrap()
        .expect("revocations are announced");
    let waiting = tokio::spawn(async move { signal.notified().await });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    store
        .insert_revocation(revoke("jti", "announced", now() + Duration::hours(1)))
        .await
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
        .await
        .expect("notified")
        .unwrap();
}
