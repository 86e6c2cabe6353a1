//! Audiences and scopes; paging, updates and deletes.

use super::*;

pub(super) async fn audiences_and_scopes(store: Arc<dyn Store>) {
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

pub(super) async fn paging_updates_and_deletes(store: Arc<dyn Store>) {
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
