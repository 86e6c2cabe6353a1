//! Admin changes commit with their effects or not at all; migrations.

use super::*;

pub(super) async fn migrate_twice_is_harmless(store: Arc<dyn Store>) {
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
}

/// An admin change commits with its audit events and revocation, or nothing does.
pub(super) async fn a_change_commits_with_its_effects_or_not_at_all(store: Arc<dyn Store>) {
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
pub(super) async fn a_create_commits_with_its_effects_or_not_at_all(store: Arc<dyn Store>) {
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
