//! Refresh token families.

use super::*;

pub(super) async fn refresh_families_rotate_once_and_revoke_with_a_revocation(
    store: Arc<dyn Store>,
) {
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
