//! Refresh token families.

use super::*;

/// A family of `user_id` at `client_id` for audience `a`, scope `a:b`, started at `now`
/// with token `key(n)`: idle for an hour, living a day.
fn new_family(user_id: Uuid, client_id: Uuid, n: u8, now: OffsetDateTime) -> NewRefreshFamily {
    NewRefreshFamily {
        jkt: None,
        id: Uuid::new_v4(),
        user_id,
        client_id,
        audience: "a".into(),
        scope: "a:b".into(),
        key: key(n),
        token_expires_at: now + Duration::hours(1),
        expires_at: now + Duration::days(1),
        now,
    }
}

/// Rotates the way the server does: in one commit with the event that records it.
/// Whether it applied, and checks the event was appended exactly then.
async fn rotate(store: &dyn Store, rotation: RefreshRotation) -> bool {
    let event = event("token.issued", "refresh", rotation.now);
    let jti = event.jti.clone();
    let entry = AuditEntry {
        event,
        rotation: Some(rotation),
    };
    let applied = store
        .append_audit_entries(std::slice::from_ref(&entry))
        .await
        .unwrap();
    assert_eq!(applied.len(), 1);
    let found = store
        .audit_events(&AuditQuery {
            jti,
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), usize::from(applied[0]), "{found:?}");
    applied[0]
}

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
            key: key(1),
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
                token_expires_at: t,
                expires_at: t,
                ..new_family(Uuid::now_v7(), app.id, 9, t)
            })
            .await,
        Err(StoreError::NotFound(_))
    ));
    let first = store.refresh_token(&key(1)).await.unwrap().unwrap();
    assert_eq!(first.family, family);
    assert!(first.user_enabled);
    assert_eq!(
        (first.expires_at, first.used_at),
        (t + Duration::hours(1), None)
    );
    assert_eq!(store.refresh_token(&key(2)).await.unwrap(), None);
    // The selector finds the row; only the digest proves the token.
    let forged = RefreshKey {
        digest: [0xEE; 32],
        ..key(1)
    };
    assert_eq!(store.refresh_token(&forged).await.unwrap(), None);

    let rotation = RefreshRotation {
        old: key(1).selector,
        new: key(2),
        expires_at: t + Duration::hours(2),
        now: t + Duration::seconds(5),
    };
    assert!(rotate(&*store, rotation.clone()).await);
    let used = store.refresh_token(&key(1)).await.unwrap().unwrap();
    assert_eq!(used.used_at, Some(t + Duration::seconds(5)));
    let second = store.refresh_token(&key(2)).await.unwrap().unwrap();
    assert_eq!((second.family.id, second.used_at), (family.id, None));
    // A used token rotates no more: that would be reuse.
    assert!(
        !rotate(
            &*store,
            RefreshRotation {
                new: key(3),
                ..rotation.clone()
            }
        )
        .await
    );
    assert_eq!(store.refresh_token(&key(3)).await.unwrap(), None);
    // Concurrent uses of one token: exactly one wins.
    let attempts: Vec<_> = (0..4u8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                rotate(
                    &*store,
                    RefreshRotation {
                        old: key(2).selector,
                        new: key(10 + i),
                        expires_at: t + Duration::hours(2),
                        now: t + Duration::seconds(6),
                    },
                )
                .await
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
    let revoked = store.refresh_token(&key(2)).await.unwrap().unwrap();
    assert_eq!(revoked.family.revoked_at, Some(t + Duration::seconds(7)));
    // Nothing of a revoked family rotates, not even its newest token.
    let newest = won.iter().position(|w| *w).unwrap() as u8;
    assert!(
        !rotate(
            &*store,
            RefreshRotation {
                old: key(10 + newest).selector,
                new: key(20),
                expires_at: t + Duration::hours(2),
                now: t + Duration::seconds(8),
            }
        )
        .await
    );

    // A disabled user's tokens rotate no more, whatever was read before; enabled again,
    // they do.
    let bob = user(&*store, "bob").await;
    store
        .create_refresh_family(NewRefreshFamily {
            expires_at: t + Duration::days(2),
            ..new_family(bob.id, app.id, 40, t)
        })
        .await
        .unwrap();
    let set_enabled = async |user: &UserRecord, enabled: bool| {
        store
            .update_user(
                &UserRecord {
                    enabled,
                    ..user.clone()
                },
                user.updated_at,
                &ChangeEffects::default(),
            )
            .await
            .unwrap()
    };
    let disabled = set_enabled(&bob, false).await;
    let bobs = |new: u8| RefreshRotation {
        old: key(40).selector,
        new: key(new),
        expires_at: t + Duration::hours(2),
        now: t + Duration::seconds(9),
    };
    assert!(!rotate(&*store, bobs(41)).await);
    assert_eq!(store.refresh_token(&key(41)).await.unwrap(), None);
    set_enabled(&disabled, true).await;
    assert!(rotate(&*store, bobs(42)).await);

    assert_eq!(
        store.prune_refresh_families(t).await.unwrap(),
        PrunedRefresh::default()
    );
    // Alice's family ends, and its three tokens with it.
    assert_eq!(
        store
            .prune_refresh_families(t + Duration::days(1))
            .await
            .unwrap(),
        PrunedRefresh {
            families: 1,
            tokens: 3
        }
    );
    assert_eq!(store.refresh_token(&key(2)).await.unwrap(), None);
    // Deleting the user takes their families along.
    let again = store
        .create_refresh_family(new_family(alice.id, app.id, 30, t))
        .await
        .unwrap();
    store
        .delete_user(alice.id, &ChangeEffects::default())
        .await
        .unwrap();
    assert_eq!(
        store.refresh_token(&key(30)).await.unwrap(),
        None,
        "{again:?}"
    );
    // Its token is refused at once, and deleted at the next prune.
    assert_eq!(
        store.prune_refresh_families(t).await.unwrap(),
        PrunedRefresh {
            families: 0,
            tokens: 1
        }
    );
}

/// The tokens of a deleted user's families go at the next prune, in slices (three
/// tokens each under test), whatever lies between them in selector order; every token
/// of a live family stays, used ones included, so reusing one is still recognized.
pub(super) async fn tokens_of_gone_families_are_pruned_in_slices(store: Arc<dyn Store>) {
    let carol = user(&*store, "carol").await;
    let dave = user(&*store, "dave").await;
    let app = client(&*store).await;
    let t = now();
    let start = async |user: &UserRecord, n: u8| {
        store
            .create_refresh_family(new_family(user.id, app.id, n, t))
            .await
            .unwrap();
    };
    let rotation = |old: u8, new: u8| RefreshRotation {
        old: key(old).selector,
        new: key(new),
        expires_at: t + Duration::hours(1),
        now: t + Duration::seconds(i64::from(new)),
    };
    // Carol: seven logins, one rotated twice (nine tokens); Dave: one, rotated once.
    for n in [50, 52, 54, 56, 58, 60, 62] {
        start(&carol, n).await;
    }
    assert!(rotate(&*store, rotation(50, 64)).await);
    assert!(rotate(&*store, rotation(64, 66)).await);
    start(&dave, 51).await;
    assert!(rotate(&*store, rotation(51, 53)).await);

    assert_eq!(
        store.prune_refresh_families(t).await.unwrap(),
        PrunedRefresh::default()
    );
    store
        .delete_user(carol.id, &ChangeEffects::default())
        .await
        .unwrap();
    assert_eq!(
        store.prune_refresh_families(t).await.unwrap(),
        PrunedRefresh {
            families: 0,
            tokens: 9
        }
    );
    let used = store.refresh_token(&key(51)).await.unwrap().unwrap();
    assert_eq!(used.used_at, Some(t + Duration::seconds(53)));
    let live = store.refresh_token(&key(53)).await.unwrap().unwrap();
    assert_eq!((live.family.user_id, live.used_at), (dave.id, None));
    assert!(rotate(&*store, rotation(53, 55)).await);
    assert_eq!(
        store.prune_refresh_families(t).await.unwrap(),
        PrunedRefresh::default()
    );
}

/// A batch of entries commits each rotation with its event, or neither: a used token, a
/// revoked family and a second use of one token in the same batch change nothing and
/// append no event; a batch the store refuses leaves every token as it was.
pub(super) async fn rotations_commit_with_their_events_in_one_batch(store: Arc<dyn Store>) {
    let alice = user(&*store, "alice").await;
    let app = client(&*store).await;
    let t = now();
    let family = |digest: u8| NewRefreshFamily {
        jkt: None,
        id: Uuid::new_v4(),
        user_id: alice.id,
        client_id: app.id,
        audience: "https://orders".into(),
        scope: "orders:read".into(),
        key: key(digest),
        token_expires_at: t + Duration::hours(1),
        expires_at: t + Duration::days(1),
        now: t,
    };
    let live = store.create_refresh_family(family(41)).await.unwrap();
    let other = store.create_refresh_family(family(42)).await.unwrap();
    let revoked = store.create_refresh_family(family(43)).await.unwrap();
    store
        .revoke_refresh_family(
            revoked.id,
            revoke("family", &revoked.id.to_string(), t + Duration::hours(1)),
        )
        .await
        .unwrap();
    let spent = store.create_refresh_family(family(44)).await.unwrap();
    assert!(
        rotate(
            &*store,
            RefreshRotation {
                old: key(44).selector,
                new: key(45),
                expires_at: t + Duration::hours(1),
                now: t,
            }
        )
        .await
    );
    let at = t + Duration::seconds(3);
    let rotation = |old: u8, new: u8| RefreshRotation {
        old: key(old).selector,
        new: key(new),
        expires_at: at + Duration::hours(1),
        now: at,
    };
    let entry = |rotation: Option<RefreshRotation>| AuditEntry {
        event: event("token.issued", "batch", at),
        rotation,
    };
    let entries = vec![
        entry(None),
        entry(Some(rotation(41, 51))),
        entry(Some(rotation(41, 52))),
        entry(Some(rotation(43, 53))),
        entry(Some(rotation(44, 54))),
        entry(Some(rotation(42, 55))),
    ];
    // A batch the store refuses (an event id already taken) applies none of it.
    let mut refused = entries.clone();
    refused[0].event.id = refused[5].event.id;
    assert!(store.append_audit_entries(&refused).await.is_err());
    let untouched = store.refresh_token(&key(41)).await.unwrap().unwrap();
    assert_eq!(untouched.used_at, None);
    assert_eq!(store.refresh_token(&key(51)).await.unwrap(), None);

    let applied = store.append_audit_entries(&entries).await.unwrap();
    assert_eq!(applied, [true, true, false, false, false, true]);
    for (entry, applied) in entries.iter().zip(&applied) {
        let found = store
            .audit_events(&AuditQuery {
                jti: entry.event.jti.clone(),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(found.len(), usize::from(*applied), "{entry:?}");
    }
    let first = store.refresh_token(&key(41)).await.unwrap().unwrap();
    assert_eq!(first.used_at, Some(at));
    let next = store.refresh_token(&key(51)).await.unwrap().unwrap();
    assert_eq!(
        (next.family.id, next.used_at, next.expires_at),
        (live.id, None, at + Duration::hours(1))
    );
    let next = store.refresh_token(&key(55)).await.unwrap().unwrap();
    assert_eq!(next.family.id, other.id);
    for absent in [52, 53, 54] {
        assert_eq!(store.refresh_token(&key(absent)).await.unwrap(), None);
    }
    assert_eq!(
        store
            .refresh_token(&key(43))
            .await
            .unwrap()
            .unwrap()
            .used_at,
        None
    );
    assert_eq!(
        store
            .refresh_token(&key(44))
            .await
            .unwrap()
            .unwrap()
            .used_at,
        Some(t),
        "{spent:?}"
    );
}
