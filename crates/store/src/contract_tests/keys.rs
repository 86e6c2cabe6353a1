//! The signing-key lifecycle.

use super::*;

pub(super) fn key(id: &str) -> SigningKeyRecord {
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

pub(super) async fn one_active_key(store: Arc<dyn Store>) {
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

pub(super) fn policy() -> KeyPolicy {
    KeyPolicy {
        lifetime: Duration::hours(24),
        publish_lead: Duration::hours(1),
        retire_hold: Duration::minutes(65),
    }
}

pub(super) fn new_key(id: &str) -> NewSigningKey {
    NewSigningKey {
        id: id.into(),
        public_key: vec![3; 32],
        private_key_enc: vec![4; 72],
    }
}

pub(super) fn key_audit(change: &KeyChange) -> AuditEvent {
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

pub(super) fn step(now: OffsetDateTime) -> KeyStep<'static> {
    KeyStep {
        now,
        policy: policy(),
        audit: &key_audit,
    }
}

/// `(id, state)` of every key, gone ones included, for compact assertions.
pub(super) async fn states(store: &dyn Store) -> Vec<(String, KeyState)> {
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

pub(super) fn moves(changes: &[KeyChange]) -> Vec<(&str, Option<KeyState>, KeyState)> {
    changes
        .iter()
        .map(|c| (c.id.as_str(), c.from, c.to))
        .collect()
}

pub(super) async fn key_events(store: &dyn Store) -> Vec<AuditEvent> {
    store
        .audit_events(&AuditQuery {
            event_type: Some("key.change".into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
}

pub(super) async fn key_lifecycle_walks_next_active_retired_gone(store: Arc<dyn Store>) {
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

pub(super) async fn activation_waits_for_the_publication_lead(store: Arc<dyn Store>) {
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

pub(super) async fn emergency_rotation_revokes_the_active_key(store: Arc<dyn Store>) {
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
pub(super) async fn concurrent_key_steps_change_once(store: Arc<dyn Store>) {
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

pub(super) async fn rewrap_replaces_every_private_key_or_none(store: Arc<dyn Store>) {
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
