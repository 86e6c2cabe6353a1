//! Grants and their references.

use super::*;

pub(super) async fn grant_references_must_exist(store: Arc<dyn Store>) {
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

pub(super) async fn grant_listing_and_changes(store: Arc<dyn Store>) {
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

pub(super) async fn subject_grants_of_users_and_clients(store: Arc<dyn Store>) {
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
