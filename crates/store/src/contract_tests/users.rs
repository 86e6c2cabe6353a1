//! Users and login failure bookkeeping.

use super::*;

pub(super) async fn users(store: Arc<dyn Store>) {
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
    // A NUL no stored name can hold: absent (SQLite) or the caller's error (Postgres
    // refuses to compare it), never a server fault.
    match (store.backend(), store.user_by_username("ali\u{0}ce").await) {
        (Backend::Sqlite, Ok(None)) | (Backend::Postgres, Err(StoreError::Unstorable(_))) => {}
        other => panic!("{other:?}"),
    }
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

pub(super) async fn login_attempts_are_counted_before_the_check(store: Arc<dyn Store>) {
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
    assert!(
        store
            .record_login_success(alice.id, &alice.password_hash)
            .await
            .unwrap()
    );
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

pub(super) async fn login_failures_lock_out_without_moving_the_revision(store: Arc<dyn Store>) {
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
    assert!(
        store
            .record_login_success(alice.id, &alice.password_hash)
            .await
            .unwrap()
    );
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

/// A login checked against a hash that is no longer the user's, or for a user disabled
/// meanwhile, is not cleared (the server refuses it): the check may have waited in the
/// password queue while an admin changed the password or disabled the user.
pub(super) async fn a_login_is_cleared_only_against_the_current_password(store: Arc<dyn Store>) {
    let alice = user(&*store, "alice").await;
    let old = alice.password_hash.clone();
    assert!(store.record_login_success(alice.id, &old).await.unwrap());
    let changed = UserRecord {
        password_hash: "$argon2id$changed".into(),
        updated_at: alice.updated_at + Duration::seconds(1),
        ..alice.clone()
    };
    store
        .update_user(&changed, alice.updated_at, &ChangeEffects::default())
        .await
        .unwrap();
    assert!(!store.record_login_success(alice.id, &old).await.unwrap());
    assert!(
        store
            .record_login_success(alice.id, &changed.password_hash)
            .await
            .unwrap()
    );
    let disabled = UserRecord {
        enabled: false,
        updated_at: changed.updated_at + Duration::seconds(1),
        ..changed.clone()
    };
    store
        .update_user(&disabled, changed.updated_at, &ChangeEffects::default())
        .await
        .unwrap();
    assert!(
        !store
            .record_login_success(alice.id, &changed.password_hash)
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_login_success(Uuid::now_v7(), &old)
            .await
            .unwrap()
    );
}
