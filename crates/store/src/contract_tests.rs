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
    access_policies_and_requests_decide_once,
    audiences_and_scopes,
    clients_and_secrets,
    grant_references_must_exist,
    one_active_key,
    key_lifecycle_walks_next_active_retired_gone,
    activation_waits_for_the_publication_lead,
    emergency_rotation_revokes_the_active_key,
    concurrent_key_steps_change_once,
    rewrap_replaces_every_private_key_or_none,
    audit_batches_and_filters,
    migrate_twice_is_harmless,
    client_view_and_revision,
    paging_updates_and_deletes,
    users,
    client_keys_and_secret_deletion,
    grant_listing_and_changes,
    revocation_feed,
    audit_search_filters_and_retention,
    login_failures_lock_out_without_moving_the_revision,
    login_attempts_are_counted_before_the_check,
    subject_grants_of_users_and_clients,
    refresh_families_rotate_once_and_revoke_with_a_revocation,
    revocations_end_the_refresh_families_they_cover,
    a_change_commits_with_its_effects_or_not_at_all,
    sightings_and_anomaly_policy,
    audit_batch_larger_than_one_statement,
    one_time_ids,
    client_view_holds_public_keys,
    labels_round_trip_on_users_and_clients,
    a_create_commits_with_its_effects_or_not_at_all,
);

async fn audience(store: &dyn Store, uri: &str, scopes: &[&str]) -> AudienceRecord {
    let aud = store
        .create_audience(
            NewAudience {
                id: Uuid::now_v7(),
                uri: uri.into(),
                description: "d".into(),
                now: now(),
            },
            &ChangeEffects::default(),
        )
        .await
        .unwrap();
    for name in scopes {
        store
            .create_scope(
                NewScope {
                    id: Uuid::now_v7(),
                    audience_id: aud.id,
                    name: (*name).into(),
                    description: String::new(),
                    now: now(),
                },
                &ChangeEffects::default(),
            )
            .await
            .unwrap();
    }
    aud
}

async fn client(store: &dyn Store) -> ClientRecord {
    store
        .create_client(
            NewClient {
                id: Uuid::now_v7(),
                name: "svc".into(),
                enabled: true,
                default_ttl_secs: Some(120),
                max_ttl_secs: None,
                allowed_cidrs: vec!["10.0.0.0/8".into()],
                require_dpop: false,
                grant_types: vec!["client_credentials".into()],
                labels: vec![],
                anomaly_policy: AnomalyPolicy::Alert,
                now: now(),
            },
            &ChangeEffects::default(),
        )
        .await
        .unwrap()
}

fn grant(subject: Subject, audience_id: Uuid, scopes: &[&str]) -> NewGrant {
    NewGrant {
        id: Uuid::now_v7(),
        subject,
        audience_id,
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        not_before: None,
        expires_at: None,
        allowed_cidrs: vec![],
        max_ttl_secs: None,
        may_act: vec![],
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
        .create_audience(
            NewAudience {
                id: Uuid::now_v7(),
                uri: aud.uri.clone(),
                description: String::new(),
                now: now(),
            },
            &ChangeEffects::default(),
        )
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
        .create_scope(
            NewScope {
                id: Uuid::now_v7(),
                audience_id: aud.id,
                name: "orders:read".into(),
                description: String::new(),
                now: now(),
            },
            &ChangeEffects::default(),
        )
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict("scope"))), "{dup:?}");
    let orphan = store
        .create_scope(
            NewScope {
                id: Uuid::now_v7(),
                audience_id: Uuid::now_v7(),
                name: "x:y".into(),
                description: String::new(),
                now: now(),
            },
            &ChangeEffects::default(),
        )
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

    store
        .set_client_enabled(c.id, false, now(), &ChangeEffects::default())
        .await
        .unwrap();
    assert!(!store.client(c.id).await.unwrap().unwrap().enabled);
    let missing = store
        .set_client_enabled(Uuid::now_v7(), false, now(), &ChangeEffects::default())
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound("client"))));

    let t = now();
    let s1 = store
        .add_client_secret(
            NewClientSecret {
                id: Uuid::now_v7(),
                client_id: c.id,
                digest: [1; 32],
                expires_at: None,
                now: t,
            },
            &ChangeEffects::default(),
        )
        .await
        .unwrap();
    let s2 = store
        .add_client_secret(
            NewClientSecret {
                id: Uuid::now_v7(),
                client_id: c.id,
                digest: [2; 32],
                expires_at: Some(t + Duration::hours(1)),
                now: t + Duration::seconds(1),
            },
            &ChangeEffects::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        store.client_secrets(c.id).await.unwrap(),
        vec![s1.clone(), s2.clone()]
    );
    assert!(s2.is_valid_at(t) && !s2.is_valid_at(t + Duration::hours(1)));
    let orphan = store
        .add_client_secret(
            NewClientSecret {
                id: Uuid::now_v7(),
                client_id: Uuid::now_v7(),
                digest: [3; 32],
                expires_at: None,
                now: t,
            },
            &ChangeEffects::default(),
        )
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
        .create_grant(
            grant(who, orders.id, &["orders:read", "orders:delete"]),
            &ChangeEffects::default(),
        )
        .await;
    assert!(
        matches!(unknown_scope, Err(StoreError::NotFound("scope"))),
        "{unknown_scope:?}"
    );
    // A scope of another audience does not count.
    let foreign = store
        .create_grant(
            grant(who, orders.id, &["other:read"]),
            &ChangeEffects::default(),
        )
        .await;
    assert!(
        matches!(foreign, Err(StoreError::NotFound("scope"))),
        "{foreign:?}"
    );
    let no_audience = store
        .create_grant(
            grant(who, Uuid::now_v7(), &["orders:read"]),
            &ChangeEffects::default(),
        )
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
        published_at: now(),
        activated_at: Some(now()),
        rotate_requested_at: None,
        retired_at: None,
        removes_at: None,
        removed_at: None,
        revoked_at: None,
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
            ..Default::default()
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
        .add_client_secret(
            NewClientSecret {
                id: Uuid::now_v7(),
                client_id: c.id,
                digest: [9; 32],
                expires_at: None,
                now: now(),
            },
            &ChangeEffects::default(),
        )
        .await
        .unwrap();
    let g1 = store
        .create_grant(
            grant(who, orders.id, &["orders:read", "orders:write"]),
            &ChangeEffects::default(),
        )
        .await
        .unwrap();
    let g2 = store
        .create_grant(
            NewGrant {
                id: Uuid::now_v7(),
                expires_at: Some(now() - Duration::hours(1)),
                ..grant(who, billing.id, &["billing:read"])
            },
            &ChangeEffects::default(),
        )
        .await
        .unwrap();
    // Another client's grant does not show.
    let other = client(&*store).await;
    store
        .create_grant(
            grant(Subject::Client(other.id), orders.id, &["orders:read"]),
            &ChangeEffects::default(),
        )
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
    store
        .set_client_enabled(c.id, false, now(), &ChangeEffects::default())
        .await
        .unwrap();
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

    let updated = store
        .update_audience(ids[0], "new words", &ChangeEffects::default())
        .await
        .unwrap();
    assert_eq!(updated.description, "new words");
    assert_eq!(store.audience(ids[0]).await.unwrap(), Some(updated));
    assert!(matches!(
        store
            .update_audience(Uuid::now_v7(), "x", &ChangeEffects::default())
            .await,
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
            .update_scope(read.id, "read orders", &ChangeEffects::default())
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
        .create_grant(
            grant(Subject::Client(c.id), orders.id, &["orders:read"]),
            &ChangeEffects::default(),
        )
        .await
        .unwrap();
    assert!(matches!(
        store.delete_scope(read.id, &ChangeEffects::default()).await,
        Err(StoreError::InUse("scope"))
    ));
    assert!(matches!(
        store
            .delete_audience(orders.id, &ChangeEffects::default())
            .await,
        Err(StoreError::InUse("audience"))
    ));
    store
        .delete_scope(write.id, &ChangeEffects::default())
        .await
        .unwrap();
    assert_eq!(store.scope(write.id).await.unwrap(), None);
    assert!(matches!(
        store
            .delete_scope(write.id, &ChangeEffects::default())
            .await,
        Err(StoreError::NotFound("scope"))
    ));
    store
        .delete_audience(ids[4], &ChangeEffects::default())
        .await
        .unwrap();
    assert_eq!(store.audience(ids[4]).await.unwrap(), None);
    assert!(matches!(
        store
            .delete_audience(ids[4], &ChangeEffects::default())
            .await,
        Err(StoreError::NotFound("audience"))
    ));

    // Clients: optimistic concurrency on update; delete takes grants and secrets along.
    let seen = c.updated_at;
    let changed = ClientRecord {
        name: "renamed".into(),
        enabled: false,
        max_ttl_secs: Some(60),
        grant_types: vec!["password".into(), "refresh_token".into()],
        updated_at: seen + Duration::seconds(1),
        ..c.clone()
    };
    let stored = store
        .update_client(&changed, seen, &ChangeEffects::default())
        .await
        .unwrap();
    assert_eq!(stored, changed);
    let stale = store
        .update_client(
            &ClientRecord {
                name: "late".into(),
                ..changed.clone()
            },
            seen,
            &ChangeEffects::default(),
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
        .add_client_secret(
            NewClientSecret {
                id: Uuid::now_v7(),
                client_id: c.id,
                digest: [1; 32],
                expires_at: None,
                now: now(),
            },
            &ChangeEffects::default(),
        )
        .await
        .unwrap();
    store
        .delete_client(c.id, &ChangeEffects::default())
        .await
        .unwrap();
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
        store.delete_client(c.id, &ChangeEffects::default()).await,
        Err(StoreError::NotFound("client"))
    ));
    let ghost = store
        .update_client(&changed, changed.updated_at, &ChangeEffects::default())
        .await;
    assert!(
        matches!(ghost, Err(StoreError::NotFound("client"))),
        "{ghost:?}"
    );
    // With its grant gone, the audience can go too.
    store
        .delete_audience(orders.id, &ChangeEffects::default())
        .await
        .unwrap();
}

async fn users(store: Arc<dyn Store>) {
    let t = now();
    let alice = store
        .create_user(
            NewUser {
                id: Uuid::now_v7(),
                username: "alice".into(),
                password_hash: "$argon2id$x".into(),
                enabled: true,
                labels: vec![],
                now: t,
            },
            &ChangeEffects::default(),
        )
        .await
        .unwrap();
    let dup = store
        .create_user(
            NewUser {
                id: Uuid::now_v7(),
                username: "alice".into(),
                password_hash: "h".into(),
                enabled: true,
                labels: vec![],
                now: t,
            },
            &ChangeEffects::default(),
        )
        .await;
    assert!(
        matches!(dup, Err(StoreError::Conflict("username"))),
        "{dup:?}"
    );
    store
        .create_user(
            NewUser {
                id: Uuid::now_v7(),
                username: "bob".into(),
                password_hash: "h".into(),
                enabled: false,
                labels: vec![],
                now: t,
            },
            &ChangeEffects::default(),
        )
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
        store
            .update_user(&locked, alice.updated_at, &ChangeEffects::default())
            .await
            .unwrap(),
        locked
    );
    assert!(matches!(
        store
            .update_user(&locked, alice.updated_at, &ChangeEffects::default())
            .await,
        Err(StoreError::Conflict(_))
    ));

    let aud = audience(&*store, "https://api.example/orders", &["orders:read"]).await;
    store
        .create_grant(
            grant(Subject::User(alice.id), aud.id, &["orders:read"]),
            &ChangeEffects::default(),
        )
        .await
        .unwrap();
    store
        .delete_user(alice.id, &ChangeEffects::default())
        .await
        .unwrap();
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
        store.delete_user(alice.id, &ChangeEffects::default()).await,
        Err(StoreError::NotFound("user"))
    ));
}

async fn client_keys_and_secret_deletion(store: Arc<dyn Store>) {
    let c = client(&*store).await;
    let key = store
        .add_client_public_key(
            NewClientPublicKey {
                id: Uuid::now_v7(),
                client_id: c.id,
                kid: "kid-1".into(),
                public_key: [7; 32],
                now: now(),
            },
            &ChangeEffects::default(),
        )
        .await
        .unwrap();
    let dup = store
        .add_client_public_key(
            NewClientPublicKey {
                id: Uuid::now_v7(),
                client_id: c.id,
                kid: "kid-1".into(),
                public_key: [8; 32],
                now: now(),
            },
            &ChangeEffects::default(),
        )
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    let orphan = store
        .add_client_public_key(
            NewClientPublicKey {
                id: Uuid::now_v7(),
                client_id: Uuid::now_v7(),
                kid: "k".into(),
                public_key: [8; 32],
                now: now(),
            },
            &ChangeEffects::default(),
        )
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
    store
        .delete_client_public_key(c.id, key.id, &ChangeEffects::default())
        .await
        .unwrap();
    assert!(store.client_public_keys(c.id).await.unwrap().is_empty());
    assert!(matches!(
        store
            .delete_client_public_key(c.id, key.id, &ChangeEffects::default())
            .await,
        Err(StoreError::NotFound(_))
    ));

    let s = store
        .add_client_secret(
            NewClientSecret {
                id: Uuid::now_v7(),
                client_id: c.id,
                digest: [1; 32],
                expires_at: None,
                now: now(),
            },
            &ChangeEffects::default(),
        )
        .await
        .unwrap();
    let other = client(&*store).await;
    assert!(
        matches!(
            store
                .delete_client_secret(other.id, s.id, &ChangeEffects::default())
                .await,
            Err(StoreError::NotFound(_))
        ),
        "only the owner's secret"
    );
    store
        .delete_client_secret(c.id, s.id, &ChangeEffects::default())
        .await
        .unwrap();
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
        .create_grant(
            grant(a, orders.id, &["orders:read", "orders:write"]),
            &ChangeEffects::default(),
        )
        .await
        .unwrap();
    let g2 = store
        .create_grant(
            grant(a, billing.id, &["billing:read"]),
            &ChangeEffects::default(),
        )
        .await
        .unwrap();
    let g3 = store
        .create_grant(
            grant(b, orders.id, &["orders:read"]),
            &ChangeEffects::default(),
        )
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
        may_act: vec![Uuid::now_v7()],
        ..g1.clone()
    };
    assert_eq!(
        store
            .update_grant(&changed, &ChangeEffects::default())
            .await
            .unwrap(),
        changed
    );
    assert!(matches!(
        store
            .update_grant(
                &GrantRecord {
                    id: Uuid::now_v7(),
                    ..changed.clone()
                },
                &ChangeEffects::default()
            )
            .await,
        Err(StoreError::NotFound("grant"))
    ));
    store
        .delete_grant(g2.id, &ChangeEffects::default())
        .await
        .unwrap();
    assert_eq!(store.grant(g2.id).await.unwrap(), None);
    assert!(matches!(
        store.delete_grant(g2.id, &ChangeEffects::default()).await,
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

// --- Signing-key lifecycle -------------------------------------------------------------

fn policy() -> KeyPolicy {
    KeyPolicy {
        lifetime: Duration::hours(24),
        publish_lead: Duration::hours(1),
        retire_hold: Duration::minutes(65),
    }
}

fn new_key(id: &str) -> NewSigningKey {
    NewSigningKey {
        id: id.into(),
        public_key: vec![3; 32],
        private_key_enc: vec![4; 72],
    }
}

fn key_audit(change: &KeyChange) -> AuditEvent {
    AuditEvent {
        subject: Some(change.id.clone()),
        detail: serde_json::json!({
            "from": change.from.map(KeyState::as_str),
            "to": change.to.as_str(),
            "revoked": change.revoked,
        }),
        ..event("key.change", "scheduler", change.at)
    }
}

fn step(now: OffsetDateTime) -> KeyStep<'static> {
    KeyStep {
        now,
        policy: policy(),
        audit: &key_audit,
    }
}

/// `(id, state)` of every key, gone ones included, for compact assertions.
async fn states(store: &dyn Store) -> Vec<(String, KeyState)> {
    let mut keys: Vec<_> = store
        .all_signing_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.id, k.state))
        .collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    keys
}

fn moves(changes: &[KeyChange]) -> Vec<(&str, Option<KeyState>, KeyState)> {
    changes
        .iter()
        .map(|c| (c.id.as_str(), c.from, c.to))
        .collect()
}

async fn key_events(store: &dyn Store) -> Vec<AuditEvent> {
    store
        .audit_events(&AuditQuery {
            event_type: Some("key.change".into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
}

async fn key_lifecycle_walks_next_active_retired_gone(store: Arc<dyn Store>) {
    use KeyState::*;
    let t0 = now();
    store
        .ensure_active_key(SigningKeyRecord {
            created_at: t0,
            published_at: t0,
            activated_at: Some(t0),
            ..key("k4.pid.a")
        })
        .await
        .unwrap();

    // Nothing is due during most of the key's life.
    let early = t0 + Duration::hours(22);
    assert!(
        store
            .publish_next_key(new_key("k4.pid.b"), &step(early))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .activate_next_key(&step(early))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .remove_retired_keys(&step(early))
            .await
            .unwrap()
            .is_empty()
    );

    // The lead time before the end of its life, a successor is published.
    let t_pub = t0 + Duration::hours(23);
    let published = store
        .publish_next_key(new_key("k4.pid.b"), &step(t_pub))
        .await
        .unwrap();
    assert_eq!(moves(&published), [("k4.pid.b", None, Next)]);
    assert!(
        store
            .publish_next_key(new_key("k4.pid.c"), &step(t_pub + Duration::minutes(1)))
            .await
            .unwrap()
            .is_empty(),
        "one next key at a time"
    );
    let next = store.signing_keys().await.unwrap();
    let b = next.iter().find(|k| k.id == "k4.pid.b").unwrap();
    assert_eq!((b.published_at, b.activated_at), (t_pub, None));
    assert_eq!(b.private_key_enc, vec![4; 72]);

    // At the end of its life the successor takes over; the old key is retired.
    let t_act = t0 + Duration::hours(24);
    assert!(
        store
            .activate_next_key(&step(t_act - Duration::seconds(1)))
            .await
            .unwrap()
            .is_empty()
    );
    let activated = store.activate_next_key(&step(t_act)).await.unwrap();
    assert_eq!(
        moves(&activated),
        [
            ("k4.pid.a", Some(Active), Retired),
            ("k4.pid.b", Some(Next), Active)
        ]
    );
    assert!(
        store
            .activate_next_key(&step(t_act))
            .await
            .unwrap()
            .is_empty(),
        "idempotent"
    );
    let keys = store.signing_keys().await.unwrap();
    let a = keys.iter().find(|k| k.id == "k4.pid.a").unwrap();
    assert_eq!(a.retired_at, Some(t_act));
    assert_eq!(a.removes_at, Some(t_act + Duration::minutes(65)));
    assert!(
        !a.private_key_enc.is_empty(),
        "a retired key keeps its private half"
    );
    let b = keys.iter().find(|k| k.id == "k4.pid.b").unwrap();
    assert_eq!(b.activated_at, Some(t_act));
    assert_eq!(
        states(&*store).await,
        [("k4.pid.a".into(), Retired), ("k4.pid.b".into(), Active)]
    );

    // Once every token it signed has expired, the retired key is removed and wiped.
    let t_rm = t_act + Duration::minutes(65);
    assert!(
        store
            .remove_retired_keys(&step(t_rm - Duration::seconds(1)))
            .await
            .unwrap()
            .is_empty()
    );
    let removed = store.remove_retired_keys(&step(t_rm)).await.unwrap();
    assert_eq!(moves(&removed), [("k4.pid.a", Some(Retired), Gone)]);
    assert!(!removed[0].revoked);
    assert_eq!(
        store
            .signing_keys()
            .await
            .unwrap()
            .iter()
            .map(|k| k.id.as_str())
            .collect::<Vec<_>>(),
        ["k4.pid.b"]
    );
    let all = store.all_signing_keys().await.unwrap();
    let a = all.iter().find(|k| k.id == "k4.pid.a").unwrap();
    assert_eq!(
        (a.state, a.removed_at, a.revoked_at),
        (Gone, Some(t_rm), None)
    );
    assert!(a.private_key_enc.is_empty(), "private key wiped");
    assert!(
        store
            .remove_retired_keys(&step(t_rm))
            .await
            .unwrap()
            .is_empty()
    );

    // Every change was audited, in the same transactions.
    let events = key_events(&*store).await;
    assert_eq!(events.len(), 4);
    assert!(
        events
            .iter()
            .any(|e| e.subject.as_deref() == Some("k4.pid.a")
                && e.detail["from"] == "retired"
                && e.detail["to"] == "gone")
    );

    // The cycle goes on from the new key's activation.
    assert!(
        store
            .publish_next_key(new_key("k4.pid.c"), &step(t_act + Duration::hours(22)))
            .await
            .unwrap()
            .is_empty()
    );
    let again = store
        .publish_next_key(new_key("k4.pid.c"), &step(t_act + Duration::hours(23)))
        .await
        .unwrap();
    assert_eq!(moves(&again), [("k4.pid.c", None, Next)]);
}

async fn activation_waits_for_the_publication_lead(store: Arc<dyn Store>) {
    use KeyState::*;
    let t0 = now();
    store
        .ensure_active_key(SigningKeyRecord {
            activated_at: Some(t0),
            ..key("k4.pid.a")
        })
        .await
        .unwrap();
    // An operator asks for a rotation early in the key's life: a successor is published
    // at once, but it signs only once published for the lead time.
    let asked = t0 + Duration::hours(2);
    let requested = store
        .request_rotation(new_key("k4.pid.b"), &step(asked))
        .await
        .unwrap();
    assert_eq!(moves(&requested), [("k4.pid.b", None, Next)]);
    let active = store
        .signing_keys()
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.state == Active)
        .unwrap();
    assert_eq!(active.rotate_requested_at, Some(asked));
    // Asking again neither adds a key nor resets the request.
    let repeated = store
        .request_rotation(new_key("k4.pid.c"), &step(asked + Duration::minutes(5)))
        .await
        .unwrap();
    assert!(repeated.is_empty());
    let ready = asked + Duration::hours(1);
    assert!(
        store
            .activate_next_key(&step(ready - Duration::microseconds(1)))
            .await
            .unwrap()
            .is_empty()
    );
    let activated = store.activate_next_key(&step(ready)).await.unwrap();
    assert_eq!(
        moves(&activated),
        [
            ("k4.pid.a", Some(Active), Retired),
            ("k4.pid.b", Some(Next), Active)
        ]
    );

    // A successor published late: the overdue key signs on until the successor is ready.
    let b_active = ready;
    let late = b_active + Duration::hours(23) + Duration::minutes(30);
    store
        .publish_next_key(new_key("k4.pid.d"), &step(late))
        .await
        .unwrap();
    assert!(
        store
            .activate_next_key(&step(b_active + Duration::hours(24)))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        moves(
            &store
                .activate_next_key(&step(late + Duration::hours(1)))
                .await
                .unwrap()
        ),
        [
            ("k4.pid.b", Some(Active), Retired),
            ("k4.pid.d", Some(Next), Active)
        ]
    );
}

async fn emergency_rotation_revokes_the_active_key(store: Arc<dyn Store>) {
    use KeyState::*;
    let t0 = now();
    store.ensure_active_key(key("k4.pid.a")).await.unwrap();
    // No next key yet: the fresh candidate signs at once.
    let t1 = t0 + Duration::minutes(1);
    let changes = store
        .emergency_rotate(new_key("k4.pid.b"), &step(t1))
        .await
        .unwrap();
    assert_eq!(
        moves(&changes),
        [("k4.pid.a", Some(Active), Gone), ("k4.pid.b", None, Active)]
    );
    assert!(changes[0].revoked && !changes[1].revoked);
    let all = store.all_signing_keys().await.unwrap();
    let a = all.iter().find(|k| k.id == "k4.pid.a").unwrap();
    assert_eq!(
        (a.revoked_at, a.removed_at, a.retired_at),
        (Some(t1), Some(t1), Some(t1))
    );
    assert!(a.private_key_enc.is_empty());
    assert_eq!(
        store.signing_keys().await.unwrap().len(),
        1,
        "unpublished at once"
    );

    // With a next key published (however recently), that key signs at once instead.
    let t2 = t1 + Duration::hours(23);
    store
        .publish_next_key(new_key("k4.pid.c"), &step(t2))
        .await
        .unwrap();
    let changes = store
        .emergency_rotate(new_key("k4.pid.unused"), &step(t2 + Duration::seconds(1)))
        .await
        .unwrap();
    assert_eq!(
        moves(&changes),
        [
            ("k4.pid.b", Some(Active), Gone),
            ("k4.pid.c", Some(Next), Active)
        ]
    );
    assert_eq!(
        states(&*store).await,
        [
            ("k4.pid.a".into(), Gone),
            ("k4.pid.b".into(), Gone),
            ("k4.pid.c".into(), Active)
        ]
    );
    let revoked: Vec<_> = key_events(&*store)
        .await
        .into_iter()
        .filter(|e| e.detail["revoked"] == true)
        .filter_map(|e| e.subject)
        .collect();
    assert_eq!(revoked.len(), 2);
}

/// Replicas attempt the same step at once: exactly one performs it, the others find
/// nothing to do (Postgres: advisory lock; SQLite: `BEGIN IMMEDIATE`). Each racer runs
/// on its own pooled connection, as separate processes would. Without the lock the
/// racers would either collide on the unique indexes or all report the change.
async fn concurrent_key_steps_change_once(store: Arc<dyn Store>) {
    let t0 = now();
    store
        .ensure_active_key(SigningKeyRecord {
            activated_at: Some(t0),
            ..key("k4.pid.a")
        })
        .await
        .unwrap();
    let t_pub = t0 + Duration::hours(23);
    let racers: Vec<_> = (0..6)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .publish_next_key(new_key(&format!("k4.pid.n{i}")), &step(t_pub))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut published = Vec::new();
    for racer in racers {
        published.extend(racer.await.unwrap());
    }
    assert_eq!(published.len(), 1, "{published:?}");

    let t_act = t0 + Duration::hours(24);
    let racers: Vec<_> = (0..6)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.activate_next_key(&step(t_act)).await.unwrap() })
        })
        .collect();
    let mut outcomes = Vec::new();
    for racer in racers {
        outcomes.push(racer.await.unwrap());
    }
    assert_eq!(
        outcomes.iter().filter(|c| !c.is_empty()).count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().map(Vec::len).sum::<usize>(),
        2,
        "one retire, one activate"
    );

    let t_rm = t_act + Duration::minutes(65);
    let racers: Vec<_> = (0..6)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.remove_retired_keys(&step(t_rm)).await.unwrap() })
        })
        .collect();
    let mut removed = 0;
    for racer in racers {
        removed += racer.await.unwrap().len();
    }
    assert_eq!(removed, 1);
    assert_eq!(
        key_events(&*store).await.len(),
        4,
        "one audit event per change, no more"
    );
}

async fn rewrap_replaces_every_private_key_or_none(store: Arc<dyn Store>) {
    let t0 = now();
    store
        .ensure_active_key(SigningKeyRecord {
            activated_at: Some(t0),
            ..key("k4.pid.a")
        })
        .await
        .unwrap();
    store
        .publish_next_key(new_key("k4.pid.b"), &step(t0 + Duration::hours(23)))
        .await
        .unwrap();
    // A removed key has no private half left and takes no part.
    store
        .activate_next_key(&step(t0 + Duration::hours(24)))
        .await
        .unwrap();
    store
        .remove_retired_keys(&step(t0 + Duration::hours(26)))
        .await
        .unwrap();
    store
        .publish_next_key(new_key("k4.pid.c"), &step(t0 + Duration::hours(47)))
        .await
        .unwrap();
    let held: Vec<_> = store
        .signing_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.id, k.private_key_enc))
        .collect();
    assert_eq!(held.len(), 2);
    let rewrapped: Vec<RewrappedKey> = held
        .iter()
        .map(|(id, old)| RewrappedKey {
            id: id.clone(),
            old: old.clone(),
            new: [id.as_bytes(), b"-new"].concat(),
        })
        .collect();
    let audit = || event("admin.change", "cli", t0);

    // A stale or incomplete list changes nothing.
    let stale = RewrappedKey {
        old: vec![9; 72],
        ..rewrapped[0].clone()
    };
    for bad in [
        vec![stale, rewrapped[1].clone()],
        vec![rewrapped[0].clone()],
        vec![rewrapped[0].clone(), rewrapped[0].clone()],
    ] {
        let result = store.rewrap_signing_keys(&bad, audit()).await;
        assert!(matches!(result, Err(StoreError::Stale(_))), "{result:?}");
    }
    let unchanged: Vec<_> = store
        .signing_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.id, k.private_key_enc))
        .collect();
    assert_eq!(unchanged, held);

    store
        .rewrap_signing_keys(&rewrapped, audit())
        .await
        .unwrap();
    for key in store.signing_keys().await.unwrap() {
        assert_eq!(key.private_key_enc, [key.id.as_bytes(), b"-new"].concat());
    }
    let gone = store
        .all_signing_keys()
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.id == "k4.pid.a")
        .unwrap();
    assert!(gone.private_key_enc.is_empty());
    assert_eq!(
        store
            .audit_events(&AuditQuery {
                event_type: Some("admin.change".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn audit_search_filters_and_retention(store: Arc<dyn Store>) {
    let t = now();
    let ips = [
        "10.1.2.3",
        "10.9.9.9",
        "192.168.1.5",
        "2001:db8::7",
        "127.0.0.1",
    ];
    let mut all = Vec::new();
    for i in 0..40i64 {
        let mut e = event(
            if i % 4 == 0 {
                "token.denied"
            } else {
                "token.issued"
            },
            &format!("c{}", i % 3),
            t + Duration::seconds(i),
        );
        e.outcome = if i % 4 == 0 {
            "denied".into()
        } else {
            "success".into()
        };
        e.subject = Some(format!("s{}", i % 2));
        e.jti = Some(format!("jti-{i}"));
        e.audience = Some(format!("https://api.example/{}", i % 5));
        e.source_ip = Some(ips[(i % 5) as usize].into());
        all.push(e);
    }
    store.append_audit_events(&all).await.unwrap();
    let q = |f: &dyn Fn(&mut AuditQuery)| {
        let mut query = AuditQuery {
            limit: 1000,
            ..Default::default()
        };
        f(&mut query);
        query
    };
    let ids = |events: Vec<AuditEvent>| {
        events
            .into_iter()
            .map(|e| e.jti.unwrap())
            .collect::<Vec<_>>()
    };
    let expect = |pred: &dyn Fn(&AuditEvent) -> bool| {
        all.iter()
            .rev()
            .filter(|e| pred(e))
            .map(|e| e.jti.clone().unwrap())
            .collect::<Vec<_>>()
    };
    let run = |query: AuditQuery| {
        let store = store.clone();
        async move { store.audit_events(&query).await.unwrap() }
    };

    assert_eq!(
        ids(run(q(&|q| q.outcome = Some("denied".into()))).await),
        expect(&|e| e.outcome == "denied")
    );
    assert_eq!(
        ids(run(q(&|q| q.subject = Some("s1".into()))).await),
        expect(&|e| e.subject.as_deref() == Some("s1"))
    );
    assert_eq!(
        ids(run(q(&|q| q.jti = Some("jti-7".into()))).await),
        ["jti-7"]
    );
    assert_eq!(
        ids(run(q(&|q| q.audience = Some("https://api.example/3".into()))).await),
        expect(&|e| e.audience.as_deref() == Some("https://api.example/3"))
    );
    assert_eq!(
        ids(run(q(&|q| q.client_id = Some("c2".into()))).await),
        expect(&|e| e.client_id.as_deref() == Some("c2"))
    );
    let ten: ipnet::IpNet = "10.0.0.0/8".parse().unwrap();
    assert_eq!(
        ids(run(q(&|q| q.network = Some(ten))).await),
        expect(&|e| e
            .source_ip
            .as_deref()
            .is_some_and(|ip| ip.starts_with("10.")))
    );
    let one: ipnet::IpNet = "192.168.1.5/32".parse().unwrap();
    assert_eq!(
        ids(run(q(&|q| q.network = Some(one))).await),
        expect(&|e| e.source_ip.as_deref() == Some("192.168.1.5"))
    );
    let v6: ipnet::IpNet = "2001:db8::/32".parse().unwrap();
    assert_eq!(run(q(&|q| q.network = Some(v6))).await.len(), 8);
    assert_eq!(
        ids(run(q(&|q| {
            q.since = Some(t + Duration::seconds(10));
            q.until = Some(t + Duration::seconds(20));
        }))
        .await),
        expect(&|e| e.occurred_at >= t + Duration::seconds(10)
            && e.occurred_at < t + Duration::seconds(20))
    );
    // Combined filters.
    assert_eq!(
        ids(run(q(&|q| {
            q.event_type = Some("token.issued".into());
            q.network = Some(ten);
            q.subject = Some("s0".into());
        }))
        .await),
        expect(&|e| e.event_type == "token.issued"
            && e.subject.as_deref() == Some("s0")
            && e.source_ip
                .as_deref()
                .is_some_and(|ip| ip.starts_with("10.")))
    );

    // Newest first, page by page, with no gap and no duplicate.
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = run(AuditQuery {
            limit: 7,
            before,
            network: Some(ten),
            ..Default::default()
        })
        .await;
        if page.is_empty() {
            break;
        }
        before = page.last().map(|e| (e.occurred_at, e.id));
        paged.extend(ids(page));
    }
    assert_eq!(
        paged,
        expect(&|e| e
            .source_ip
            .as_deref()
            .is_some_and(|ip| ip.starts_with("10.")))
    );

    // Retention.
    assert_eq!(
        store
            .prune_audit_events(t + Duration::seconds(30))
            .await
            .unwrap(),
        30
    );
    assert_eq!(run(q(&|_| {})).await.len(), 10);
}

async fn sightings_and_anomaly_policy(store: Arc<dyn Store>) {
    let t = now();
    let client = "0196a1f0-0000-7000-8000-000000000001";
    let net = SightingKind::Network;
    assert_eq!(
        store
            .record_sighting(client, net, "10.0.0.0/24", t)
            .await
            .unwrap(),
        Sighting::FirstOfKind
    );
    assert_eq!(
        store
            .record_sighting(client, net, "10.0.0.0/24", t)
            .await
            .unwrap(),
        Sighting::Known
    );
    assert_eq!(
        store
            .record_sighting(client, net, "10.9.0.0/24", t)
            .await
            .unwrap(),
        Sighting::New
    );
    assert_eq!(
        store
            .record_sighting(client, net, "10.9.0.0/24", t)
            .await
            .unwrap(),
        Sighting::Known
    );
    // Kinds and clients are separate baselines.
    assert_eq!(
        store
            .record_sighting(client, SightingKind::Audience, "10.9.0.0/24", t)
            .await
            .unwrap(),
        Sighting::FirstOfKind
    );
    assert_eq!(
        store
            .record_sighting("other", net, "10.9.0.0/24", t)
            .await
            .unwrap(),
        Sighting::FirstOfKind
    );

    // The policy defaults to alert, and survives an update.
    let created = store
        .create_client(
            NewClient {
                id: Uuid::now_v7(),
                name: "watched".into(),
                enabled: true,
                default_ttl_secs: None,
                max_ttl_secs: None,
                allowed_cidrs: vec![],
                require_dpop: false,
                anomaly_policy: AnomalyPolicy::default(),
                grant_types: vec!["client_credentials".into()],
                labels: vec![],
                now: t,
            },
            &ChangeEffects::default(),
        )
        .await
        .unwrap();
    assert_eq!(created.anomaly_policy, AnomalyPolicy::Alert);
    let mut changed = created.clone();
    changed.anomaly_policy = AnomalyPolicy::Revoke;
    changed.updated_at = t + Duration::seconds(1);
    let updated = store
        .update_client(&changed, created.updated_at, &ChangeEffects::default())
        .await
        .unwrap();
    assert_eq!(updated.anomaly_policy, AnomalyPolicy::Revoke);
    assert_eq!(
        store
            .client(created.id)
            .await
            .unwrap()
            .unwrap()
            .anomaly_policy,
        AnomalyPolicy::Revoke
    );

    // Deleting the client forgets what it was seen doing.
    let id = created.id.to_string();
    store
        .record_sighting(&id, net, "10.0.0.0/24", t)
        .await
        .unwrap();
    store
        .delete_client(created.id, &ChangeEffects::default())
        .await
        .unwrap();
    assert_eq!(
        store
            .record_sighting(&id, net, "10.0.0.0/24", t)
            .await
            .unwrap(),
        Sighting::FirstOfKind
    );
}

/// A batch larger than one INSERT may bind (Postgres: 65,535 parameters) is written
/// whole.
async fn audit_batch_larger_than_one_statement(store: Arc<dyn Store>) {
    let t = now();
    let batch: Vec<_> = (0..5000)
        .map(|i| event("token.used", "c", t + Duration::microseconds(i)))
        .collect();
    store.append_audit_events(&batch).await.unwrap();
    let newest = store
        .audit_events(&AuditQuery {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(newest, vec![batch[4999].clone()]);
    // A failing batch writes nothing: the same ids again collide.
    assert!(store.append_audit_events(&batch).await.is_err());
    let mut count = 0;
    let mut before = None;
    loop {
        let page = store
            .audit_events(&AuditQuery {
                limit: 1000,
                before,
                ..Default::default()
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        before = Some((last.occurred_at, last.id));
        count += page.len();
    }
    assert_eq!(count, 5000);
}

async fn one_time_ids(store: Arc<dyn Store>) {
    let t = now();
    let exp = t + Duration::minutes(5);
    assert!(store.use_once("assertion:c1", "j1", exp, t).await.unwrap());
    assert!(
        !store.use_once("assertion:c1", "j1", exp, t).await.unwrap(),
        "a second use is a replay"
    );
    assert!(
        store.use_once("assertion:c2", "j1", exp, t).await.unwrap(),
        "namespaces are separate"
    );
    assert!(store.use_once("dpop:k", "j1", exp, t).await.unwrap());
    // Concurrent uses of one id: exactly one wins.
    let racers = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.use_once("dpop:k", "race", exp, t).await })
    });
    let mut wins = 0;
    for racer in racers {
        wins += usize::from(racer.await.unwrap().unwrap());
    }
    assert_eq!(wins, 1);
    // Once expired, the id is forgotten (and may be taken again).
    let later = exp + Duration::seconds(1);
    assert!(
        store
            .use_once("assertion:c1", "j1", later + Duration::minutes(5), later)
            .await
            .unwrap()
    );
    assert_eq!(store.prune_used_ids(later).await.unwrap(), 3);
    assert!(
        !store
            .use_once("assertion:c1", "j1", later, later)
            .await
            .unwrap()
    );
}

async fn client_view_holds_public_keys(store: Arc<dyn Store>) {
    let c = client(&*store).await;
    let key = store
        .add_client_public_key(
            NewClientPublicKey {
                id: Uuid::now_v7(),
                client_id: c.id,
                kid: "kid-1".into(),
                public_key: [7; 32],
                now: now(),
            },
            &ChangeEffects::default(),
        )
        .await
        .unwrap();
    let view = store.client_view(c.id).await.unwrap().unwrap();
    assert_eq!(view.public_keys, vec![key]);
}

async fn user(store: &dyn Store, name: &str) -> UserRecord {
    store
        .create_user(
            NewUser {
                id: Uuid::now_v7(),
                username: name.into(),
                password_hash: "$argon2id$x".into(),
                enabled: true,
                labels: vec![],
                now: now(),
            },
            &ChangeEffects::default(),
        )
        .await
        .unwrap()
}

async fn login_attempts_are_counted_before_the_check(store: Arc<dyn Store>) {
    let alice = user(&*store, "alice").await;
    let t = now();
    let attempt = LoginFailure {
        user_id: alice.id,
        now: t,
        max_failures: 3,
        lockout: Duration::minutes(15),
    };
    // Concurrent attempts: exactly max_failures get through, the rest find the lockout.
    let tries: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.begin_login_attempt(attempt).await })
        })
        .collect();
    let mut admitted = 0;
    for attempt in tries {
        admitted += usize::from(attempt.await.unwrap().unwrap().is_some());
    }
    assert_eq!(admitted, 3);
    let locked = store.user(alice.id).await.unwrap().unwrap();
    assert_eq!(locked.locked_until, Some(t + Duration::minutes(15)));
    assert!(store.begin_login_attempt(attempt).await.unwrap().is_none());
    assert_eq!(
        store.user(alice.id).await.unwrap().unwrap().locked_until,
        locked.locked_until,
        "a refused attempt does not extend the lockout"
    );
    let after = LoginFailure {
        now: t + Duration::minutes(15),
        ..attempt
    };
    let counted = store.begin_login_attempt(after).await.unwrap().unwrap();
    assert_eq!(
        (counted.failed_logins, counted.locked_until),
        (1, locked.locked_until)
    );
    store.record_login_success(alice.id).await.unwrap();
    let cleared = store.user(alice.id).await.unwrap().unwrap();
    assert_eq!((cleared.failed_logins, cleared.locked_until), (0, None));
    assert!(
        store
            .begin_login_attempt(LoginFailure {
                user_id: Uuid::now_v7(),
                ..attempt
            })
            .await
            .unwrap()
            .is_none()
    );
}

async fn login_failures_lock_out_without_moving_the_revision(store: Arc<dyn Store>) {
    let alice = user(&*store, "alice").await;
    let t = now();
    let failure = LoginFailure {
        user_id: alice.id,
        now: t,
        max_failures: 3,
        lockout: Duration::minutes(15),
    };
    let revision = store.revision().await.unwrap();
    let local = store.local_changes();
    let one = store.record_login_failure(failure).await.unwrap();
    assert_eq!((one.failed_logins, one.locked_until), (1, None));
    let two = store.record_login_failure(failure).await.unwrap();
    assert_eq!((two.failed_logins, two.locked_until), (2, None));
    let three = store.record_login_failure(failure).await.unwrap();
    assert_eq!(
        (three.failed_logins, three.locked_until),
        (0, Some(t + Duration::minutes(15))),
        "the third failure locks and starts the count over"
    );
    assert_eq!(three.updated_at, alice.updated_at, "not an admin change");
    assert_eq!(store.revision().await.unwrap(), revision, "caches keep");
    assert_eq!(store.local_changes(), local);
    store.record_login_failure(failure).await.unwrap();
    store.record_login_success(alice.id).await.unwrap();
    let cleared = store.user(alice.id).await.unwrap().unwrap();
    assert_eq!((cleared.failed_logins, cleared.locked_until), (0, None));
    assert!(matches!(
        store
            .record_login_failure(LoginFailure {
                user_id: Uuid::now_v7(),
                ..failure
            })
            .await,
        Err(StoreError::NotFound("user"))
    ));
    // An admin change still moves it.
    store
        .update_user(
            &UserRecord {
                enabled: false,
                updated_at: alice.updated_at + Duration::seconds(1),
                ..cleared.clone()
            },
            alice.updated_at,
            &ChangeEffects::default(),
        )
        .await
        .unwrap();
    assert_ne!(store.revision().await.unwrap(), revision);
}

async fn subject_grants_of_users_and_clients(store: Arc<dyn Store>) {
    let orders = audience(&*store, "https://orders", &["orders:read", "orders:write"]).await;
    let alice = user(&*store, "alice").await;
    let svc = client(&*store).await;
    let g = store
        .create_grant(
            NewGrant {
                id: Uuid::now_v7(),
                may_act: vec![svc.id],
                ..grant(
                    Subject::User(alice.id),
                    orders.id,
                    &["orders:write", "orders:read"],
                )
            },
            &ChangeEffects::default(),
        )
        .await
        .unwrap();
    store
        .create_grant(
            grant(Subject::Client(svc.id), orders.id, &["orders:read"]),
            &ChangeEffects::default(),
        )
        .await
        .unwrap();
    let mine = store.subject_grants(Subject::User(alice.id)).await.unwrap();
    assert_eq!(
        mine,
        vec![SubjectGrant {
            grant: g.clone(),
            audience_uri: "https://orders".into()
        }]
    );
    assert_eq!(mine[0].grant.may_act, vec![svc.id]);
    assert_eq!(mine[0].grant.scopes, vec!["orders:read", "orders:write"]);
    let theirs = store.subject_grants(Subject::Client(svc.id)).await.unwrap();
    assert_eq!(theirs.len(), 1);
    assert!(theirs[0].grant.may_act.is_empty());
    assert!(
        store
            .subject_grants(Subject::User(Uuid::now_v7()))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn refresh_families_rotate_once_and_revoke_with_a_revocation(store: Arc<dyn Store>) {
    let alice = user(&*store, "alice").await;
    let app = client(&*store).await;
    let t = now();
    let family = store
        .create_refresh_family(NewRefreshFamily {
            jkt: None,
            id: Uuid::new_v4(),
            user_id: alice.id,
            client_id: app.id,
            audience: "https://orders".into(),
            scope: "orders:read orders:write".into(),
            digest: [1; 32],
            token_expires_at: t + Duration::hours(1),
            expires_at: t + Duration::days(1),
            now: t,
        })
        .await
        .unwrap();
    assert_eq!(
        (family.user_id, family.client_id, family.revoked_at),
        (alice.id, app.id, None)
    );
    assert!(matches!(
        store
            .create_refresh_family(NewRefreshFamily {
                jkt: None,
                id: Uuid::new_v4(),
                user_id: Uuid::now_v7(),
                client_id: app.id,
                audience: "a".into(),
                scope: "a:b".into(),
                digest: [9; 32],
                token_expires_at: t,
                expires_at: t,
                now: t,
            })
            .await,
        Err(StoreError::NotFound(_))
    ));
    let first = store.refresh_token(&[1; 32]).await.unwrap().unwrap();
    assert_eq!(first.family, family);
    assert_eq!(
        (first.expires_at, first.used_at),
        (t + Duration::hours(1), None)
    );
    assert_eq!(store.refresh_token(&[2; 32]).await.unwrap(), None);

    let rotation = RefreshRotation {
        old: [1; 32],
        new: [2; 32],
        expires_at: t + Duration::hours(2),
        now: t + Duration::seconds(5),
    };
    assert!(store.rotate_refresh_token(rotation.clone()).await.unwrap());
    let used = store.refresh_token(&[1; 32]).await.unwrap().unwrap();
    assert_eq!(used.used_at, Some(t + Duration::seconds(5)));
    let second = store.refresh_token(&[2; 32]).await.unwrap().unwrap();
    assert_eq!((second.family.id, second.used_at), (family.id, None));
    // A used token rotates no more: that would be reuse.
    assert!(
        !store
            .rotate_refresh_token(RefreshRotation {
                new: [3; 32],
                ..rotation.clone()
            })
            .await
            .unwrap()
    );
    assert_eq!(store.refresh_token(&[3; 32]).await.unwrap(), None);
    // Concurrent uses of one token: exactly one wins.
    let attempts: Vec<_> = (0..4u8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .rotate_refresh_token(RefreshRotation {
                        old: [2; 32],
                        new: [10 + i; 32],
                        expires_at: t + Duration::hours(2),
                        now: t + Duration::seconds(6),
                    })
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut won = Vec::new();
    for attempt in attempts {
        won.push(attempt.await.unwrap());
    }
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");

    let before = store.revocations_after(0, 100).await.unwrap().len();
    let record = store
        .revoke_refresh_family(
            family.id,
            NewRevocation {
                now: t + Duration::seconds(7),
                ..revoke("family", &family.id.to_string(), t + Duration::hours(1))
            },
        )
        .await
        .unwrap();
    assert_eq!(record.kind, "family");
    let feed = store.revocations_after(0, 100).await.unwrap();
    assert_eq!(feed.len(), before + 1);
    assert_eq!(feed.last(), Some(&record));
    let revoked = store.refresh_token(&[2; 32]).await.unwrap().unwrap();
    assert_eq!(revoked.family.revoked_at, Some(t + Duration::seconds(7)));
    // Nothing of a revoked family rotates, not even its newest token.
    let newest = won.iter().position(|w| *w).unwrap() as u8;
    assert!(
        !store
            .rotate_refresh_token(RefreshRotation {
                old: [10 + newest; 32],
                new: [20; 32],
                expires_at: t + Duration::hours(2),
                now: t + Duration::seconds(8),
            })
            .await
            .unwrap()
    );

    assert_eq!(store.prune_refresh_families(t).await.unwrap(), 0);
    assert_eq!(
        store
            .prune_refresh_families(t + Duration::days(1))
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.refresh_token(&[2; 32]).await.unwrap(), None);
    // Deleting the user takes their families along.
    let again = store
        .create_refresh_family(NewRefreshFamily {
            jkt: None,
            id: Uuid::new_v4(),
            user_id: alice.id,
            client_id: app.id,
            audience: "a".into(),
            scope: "a:b".into(),
            digest: [30; 32],
            token_expires_at: t + Duration::hours(1),
            expires_at: t + Duration::days(1),
            now: t,
        })
        .await
        .unwrap();
    store
        .delete_user(alice.id, &ChangeEffects::default())
        .await
        .unwrap();
    assert_eq!(
        store.refresh_token(&[30; 32]).await.unwrap(),
        None,
        "{again:?}"
    );
}

async fn access_policies_and_requests_decide_once(store: Arc<dyn Store>) {
    let t0 = now();
    let audience = store
        .create_audience(
            NewAudience {
                id: Uuid::now_v7(),
                uri: "https://api.example/jit".into(),
                description: String::new(),
                now: t0,
            },
            &ChangeEffects::default(),
        )
        .await
        .unwrap();
    let policy = AccessPolicyRecord {
        id: Uuid::now_v7(),
        name: "ops".into(),
        audience_id: audience.id,
        scopes: vec!["db:read".into()],
        subjects: vec!["users".into()],
        max_duration_secs: 900,
        decision: "approval".into(),
        approvals_required: 2,
        break_glass: false,
        created_by: "test".into(),
        created_at: t0,
        updated_at: t0,
    };
    assert_eq!(
        store
            .create_access_policy(&policy, &ChangeEffects::default())
            .await
            .unwrap(),
        policy
    );
    let dangling = AccessPolicyRecord {
        id: Uuid::now_v7(),
        audience_id: Uuid::now_v7(),
        ..policy.clone()
    };
    assert!(matches!(
        store
            .create_access_policy(&dangling, &ChangeEffects::default())
            .await,
        Err(StoreError::NotFound("audience"))
    ));
    let changed = store
        .update_access_policy(
            &AccessPolicyRecord {
                max_duration_secs: 60,
                ..policy.clone()
            },
            &ChangeEffects::default(),
        )
        .await
        .unwrap();
    assert_eq!(changed.max_duration_secs, 60);
    let listed = store
        .list_access_policies(
            Some(audience.id),
            Page {
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(listed, vec![changed.clone()]);

    let user = Uuid::now_v7();
    let request = AccessRequestRecord {
        id: Uuid::now_v7(),
        subject: Subject::User(user),
        audience_id: audience.id,
        audience: audience.uri.clone(),
        scopes: vec!["db:read".into()],
        duration_secs: 60,
        reason: "incident 42".into(),
        break_glass: false,
        state: "pending".into(),
        policy_id: Some(policy.id),
        approvals_required: 2,
        approvals: Vec::new(),
        grant_id: None,
        needs_review: false,
        created_at: t0,
        pending_until: t0 + Duration::minutes(10),
        decided_at: None,
        decided_by: None,
        decision_comment: String::new(),
    };
    store.create_access_request(&request).await.unwrap();
    assert_eq!(
        store.access_request(request.id).await.unwrap().as_ref(),
        Some(&request)
    );
    let approval = |who: &str| AccessApproval {
        approver: who.into(),
        comment: "ok".into(),
        at: t0,
    };
    assert_eq!(
        store
            .add_access_approval(request.id, &approval("bob"))
            .await
            .unwrap(),
        Some(1)
    );
    assert!(matches!(
        store
            .add_access_approval(request.id, &approval("bob"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store
            .add_access_approval(request.id, &approval("carol"))
            .await
            .unwrap(),
        Some(2)
    );
    let stored = store.access_request(request.id).await.unwrap().unwrap();
    assert_eq!(stored.approvals.len(), 2);
    let grant_id = Uuid::now_v7();
    let approve = AccessTransition {
        id: request.id,
        from: "pending",
        to: "approved",
        by: "carol".into(),
        comment: "ok".into(),
        grant_id: Some(grant_id),
        needs_review: false,
        now: t0,
    };
    assert!(store.transition_access_request(&approve).await.unwrap());
    assert!(
        !store.transition_access_request(&approve).await.unwrap(),
        "a second decision loses"
    );
    assert_eq!(
        store
            .add_access_approval(request.id, &approval("dave"))
            .await
            .unwrap(),
        None,
        "no approvals once decided"
    );
    let stored = store.access_request(request.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.state.as_str(), stored.grant_id),
        ("approved", Some(grant_id))
    );

    // A pending request expires once its time is up, exactly once.
    let late = AccessRequestRecord {
        id: Uuid::now_v7(),
        ..request.clone()
    };
    store.create_access_request(&late).await.unwrap();
    assert!(
        store
            .expire_access_requests(t0 + Duration::minutes(9))
            .await
            .unwrap()
            .is_empty()
    );
    let expired = store
        .expire_access_requests(t0 + Duration::minutes(10))
        .await
        .unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(
        (expired[0].id, expired[0].state.as_str()),
        (late.id, "expired")
    );
    assert!(
        store
            .expire_access_requests(t0 + Duration::minutes(11))
            .await
            .unwrap()
            .is_empty()
    );
    let mine = store
        .list_access_requests(
            AccessRequestFilter {
                subject: Some(Subject::User(user)),
                state: Some("approved".into()),
                needs_review: None,
            },
            Page {
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].approvals.len(), 2);
    assert!(
        !store.clear_access_review(request.id).await.unwrap(),
        "not marked"
    );
    let marked = AccessRequestRecord {
        id: Uuid::now_v7(),
        needs_review: true,
        ..request.clone()
    };
    store.create_access_request(&marked).await.unwrap();
    assert!(store.clear_access_review(marked.id).await.unwrap());
    assert!(
        !store
            .access_request(marked.id)
            .await
            .unwrap()
            .unwrap()
            .needs_review
    );
    assert!(!store.clear_access_review(marked.id).await.unwrap(), "once");
    store
        .delete_access_policy(policy.id, &ChangeEffects::default())
        .await
        .unwrap();
    assert_eq!(
        store
            .access_request(request.id)
            .await
            .unwrap()
            .unwrap()
            .policy_id,
        None,
        "requests outlive their policy"
    );
}

async fn labels_round_trip_on_users_and_clients(store: Arc<dyn Store>) {
    let t = now();
    let alice = store
        .create_user(
            NewUser {
                id: Uuid::now_v7(),
                username: "alice".into(),
                password_hash: "$argon2id$x".into(),
                enabled: true,
                labels: vec!["oncall".into(), "sre".into()],
                now: t,
            },
            &ChangeEffects::default(),
        )
        .await
        .unwrap();
    assert_eq!(alice.labels, ["oncall", "sre"]);
    assert_eq!(store.user(alice.id).await.unwrap(), Some(alice.clone()));

    // Relabelling a user is not issuance data: the revision stays, and so does this
    // process's change count.
    let revision = store.revision().await.unwrap();
    let local = store.local_changes();
    let relabelled = UserRecord {
        labels: vec!["dba".into()],
        updated_at: t + Duration::seconds(1),
        ..alice.clone()
    };
    assert_eq!(
        store
            .update_user(&relabelled, alice.updated_at, &ChangeEffects::default())
            .await
            .unwrap(),
        relabelled
    );
    assert_eq!(store.revision().await.unwrap(), revision);
    assert_eq!(store.local_changes(), local);
    assert_eq!(
        store.user_by_username("alice").await.unwrap(),
        Some(relabelled.clone())
    );
    // Disabling still moves it.
    let disabled = UserRecord {
        enabled: false,
        updated_at: t + Duration::seconds(2),
        ..relabelled.clone()
    };
    store
        .update_user(&disabled, relabelled.updated_at, &ChangeEffects::default())
        .await
        .unwrap();
    assert!(store.revision().await.unwrap() > revision);
    assert!(store.local_changes() > local);

    let svc = store
        .create_client(
            NewClient {
                id: Uuid::now_v7(),
                name: "labelled".into(),
                enabled: true,
                default_ttl_secs: None,
                max_ttl_secs: None,
                allowed_cidrs: vec![],
                require_dpop: false,
                anomaly_policy: AnomalyPolicy::default(),
                grant_types: vec!["client_credentials".into()],
                labels: vec!["batch".into()],
                now: t,
            },
            &ChangeEffects::default(),
        )
        .await
        .unwrap();
    assert_eq!(svc.labels, ["batch"]);
    assert_eq!(store.client(svc.id).await.unwrap(), Some(svc.clone()));
    let changed = ClientRecord {
        labels: vec!["batch".into(), "oncall".into()],
        updated_at: t + Duration::seconds(1),
        ..svc.clone()
    };
    assert_eq!(
        store
            .update_client(&changed, svc.updated_at, &ChangeEffects::default())
            .await
            .unwrap(),
        changed
    );
    assert_eq!(
        store
            .client_view(svc.id)
            .await
            .unwrap()
            .unwrap()
            .client
            .labels,
        ["batch", "oncall"]
    );
    let listed = store
        .list_clients(Page {
            after: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(listed, [changed]);
}

/// A subject, client or family revocation ends the families started before its cutoff,
/// in the same transaction; other kinds and later families are left alone.
async fn revocations_end_the_refresh_families_they_cover(store: Arc<dyn Store>) {
    let alice = user(&*store, "alice").await;
    let bob = user(&*store, "bob").await;
    let app = client(&*store).await;
    let t = now();
    let family = |user_id: Uuid, digest: u8, at: OffsetDateTime| NewRefreshFamily {
        id: Uuid::new_v4(),
        user_id,
        client_id: app.id,
        audience: "https://orders".into(),
        scope: "orders:read".into(),
        digest: [digest; 32],
        token_expires_at: t + Duration::hours(1),
        expires_at: t + Duration::days(1),
        jkt: Some("thumbprint".into()),
        now: at,
    };
    let early = store
        .create_refresh_family(family(alice.id, 1, t - Duration::seconds(10)))
        .await
        .unwrap();
    assert_eq!(early.jkt.as_deref(), Some("thumbprint"));
    let late = store
        .create_refresh_family(family(alice.id, 2, t + Duration::seconds(10)))
        .await
        .unwrap();
    let bobs = store
        .create_refresh_family(family(bob.id, 3, t - Duration::seconds(10)))
        .await
        .unwrap();
    let revoked = |digest: u8| {
        let store = store.clone();
        async move {
            store
                .refresh_token(&[digest; 32])
                .await
                .unwrap()
                .unwrap()
                .family
                .revoked_at
                .is_some()
        }
    };
    // Kinds that name no login, and values that are no id, end nothing.
    for (kind, value) in [
        ("grant", alice.id.to_string()),
        ("jti", alice.id.to_string()),
        ("subject", "not-an-id".to_owned()),
    ] {
        store
            .insert_revocation(revoke(kind, &value, t + Duration::hours(1)))
            .await
            .unwrap();
    }
    assert!(!revoked(1).await && !revoked(2).await && !revoked(3).await);
    store
        .insert_revocation(revoke(
            "subject",
            &alice.id.to_string(),
            t + Duration::hours(1),
        ))
        .await
        .unwrap();
    assert!(revoked(1).await, "started before the cutoff");
    assert!(!revoked(2).await, "started after it");
    assert!(!revoked(3).await, "another user's");
    store
        .insert_revocation(revoke(
            "family",
            &late.id.to_string(),
            t + Duration::hours(1),
        ))
        .await
        .unwrap();
    assert!(!revoked(2).await, "a family revocation before its start");
    store
        .insert_revocation(revoke(
            "client",
            &app.id.to_string(),
            t + Duration::hours(1),
        ))
        .await
        .unwrap();
    assert!(revoked(3).await);
    assert_eq!(bobs.revoked_at, None);
}

/// An admin change commits with its audit events and revocation, or nothing does.
async fn a_change_commits_with_its_effects_or_not_at_all(store: Arc<dyn Store>) {
    let alice = user(&*store, "alice").await;
    let t = now();
    let effects = |tag: &str| ChangeEffects {
        audit: vec![event("admin.change", tag, t)],
        revocation: Some(revoke(
            "subject",
            &alice.id.to_string(),
            t + Duration::hours(1),
        )),
    };
    let audited = |tag: &'static str| {
        let store = store.clone();
        async move {
            store
                .audit_events(&AuditQuery {
                    client_id: Some(tag.into()),
                    limit: 10,
                    ..AuditQuery::default()
                })
                .await
                .unwrap()
                .len()
        }
    };
    let revocations = || {
        let store = store.clone();
        async move { store.revocations_after(0, 100).await.unwrap().len() }
    };
    // A stale update fails: neither its audit event nor its revocation is stored.
    let mut changed = alice.clone();
    changed.enabled = false;
    changed.updated_at = t + Duration::seconds(1);
    assert!(matches!(
        store
            .update_user(&changed, t - Duration::days(1), &effects("stale"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!((audited("stale").await, revocations().await), (0, 0));
    // The real one stores all three.
    let after = store
        .update_user(&changed, alice.updated_at, &effects("update"))
        .await
        .unwrap();
    assert!(!after.enabled);
    assert_eq!((audited("update").await, revocations().await), (1, 1));
    // Deleting what is gone stores nothing either.
    assert!(matches!(
        store.delete_grant(Uuid::now_v7(), &effects("gone")).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!((audited("gone").await, revocations().await), (0, 1));
    store
        .delete_user(alice.id, &effects("delete"))
        .await
        .unwrap();
    assert_eq!((audited("delete").await, revocations().await), (1, 2));
}

/// A create commits with its audit event, or neither is stored.
async fn a_create_commits_with_its_effects_or_not_at_all(store: Arc<dyn Store>) {
    let t = now();
    let effects = |tag: &str| ChangeEffects {
        audit: vec![event("admin.change", tag, t)],
        revocation: None,
    };
    let audited = |tag: &'static str| {
        let store = store.clone();
        async move {
            store
                .audit_events(&AuditQuery {
                    client_id: Some(tag.into()),
                    limit: 10,
                    ..AuditQuery::default()
                })
                .await
                .unwrap()
                .len()
        }
    };
    let orders = audience(&*store, "https://api.example/orders", &["orders:read"]).await;
    let new_audience = |uri: &str| NewAudience {
        id: Uuid::now_v7(),
        uri: uri.into(),
        description: String::new(),
        now: t,
    };
    assert!(matches!(
        store
            .create_audience(new_audience(&orders.uri), &effects("audience-dup"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(audited("audience-dup").await, 0);
    let billing = new_audience("https://api.example/billing");
    let id = billing.id;
    let created = store
        .create_audience(billing, &effects("audience"))
        .await
        .unwrap();
    assert_eq!((created.id, audited("audience").await), (id, 1));

    let alice = user(&*store, "alice").await;
    let new_user = |name: &str| NewUser {
        id: Uuid::now_v7(),
        username: name.into(),
        password_hash: "$argon2id$x".into(),
        enabled: true,
        labels: vec![],
        now: t,
    };
    assert!(matches!(
        store
            .create_user(new_user(&alice.username), &effects("user-dup"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(audited("user-dup").await, 0);
    let bob = new_user("bob");
    let id = bob.id;
    let created = store.create_user(bob, &effects("user")).await.unwrap();
    assert_eq!((created.id, audited("user").await), (id, 1));

    let svc = client(&*store).await;
    let new_client = |id: Uuid| NewClient {
        id,
        name: "svc".into(),
        enabled: true,
        default_ttl_secs: None,
        max_ttl_secs: None,
        allowed_cidrs: vec![],
        require_dpop: false,
        grant_types: vec!["client_credentials".into()],
        labels: vec![],
        anomaly_policy: AnomalyPolicy::Alert,
        now: t,
    };
    assert!(
        store
            .create_client(new_client(svc.id), &effects("client-dup"))
            .await
            .is_err(),
        "an id is taken once"
    );
    assert_eq!(audited("client-dup").await, 0);
    let id = Uuid::now_v7();
    let created = store
        .create_client(new_client(id), &effects("client"))
        .await
        .unwrap();
    assert_eq!((created.id, audited("client").await), (id, 1));

    let unknown_scope = grant(Subject::Client(id), orders.id, &["orders:delete"]);
    assert!(matches!(
        store
            .create_grant(unknown_scope, &effects("grant-bad"))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(audited("grant-bad").await, 0);
    let ok = grant(Subject::Client(id), orders.id, &["orders:read"]);
    let gid = ok.id;
    let created = store.create_grant(ok, &effects("grant")).await.unwrap();
    assert_eq!((created.id, audited("grant").await), (gid, 1));
}
