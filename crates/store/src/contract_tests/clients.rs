//! Clients, their secrets, public keys, views and labels.

use super::*;

pub(super) async fn clients_and_secrets(store: Arc<dyn Store>) {
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

pub(super) async fn client_view_and_revision(store: Arc<dyn Store>) {
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

pub(super) async fn client_keys_and_secret_deletion(store: Arc<dyn Store>) {
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

pub(super) async fn client_view_holds_public_keys(store: Arc<dyn Store>) {
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

pub(super) async fn labels_round_trip_on_users_and_clients(store: Arc<dyn Store>) {
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
