//! Revocations, their feed, and the refresh families they end.

use super::*;

pub(super) async fn revocation_feed(store: Arc<dyn Store>) {
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

/// A subject, client or family revocation ends the families started before its cutoff,
/// in the same transaction; other kinds and later families are left alone.
pub(super) async fn revocations_end_the_refresh_families_they_cover(store: Arc<dyn Store>) {
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
        key: key(digest),
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
                .refresh_token(&key(digest))
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
