//! Workload identity federation: trusted issuers, federated identities, and audit
//! search by external identity.

use serde_json::json;

use super::*;

const GITHUB: &str = "https://token.actions.githubusercontent.com";

fn new_issuer(url: &str) -> NewTrustedIssuer {
    NewTrustedIssuer {
        id: Uuid::now_v7(),
        issuer: url.into(),
        description: "CI".into(),
        settings: json!({"issuer": url, "audience": "https://mayfly.example"}),
        now: now(),
    }
}

fn by_subject(issuer: Uuid, owner: Subject, sub: &str) -> NewFederatedIdentity {
    NewFederatedIdentity {
        id: Uuid::now_v7(),
        trusted_issuer_id: issuer,
        owner,
        rule: json!({"type": "subject", "subject": sub}),
        exact_subject: Some(sub.into()),
        conditions_key: None,
        now: now(),
    }
}

fn by_claims(issuer: Uuid, owner: Subject, key: &str) -> NewFederatedIdentity {
    NewFederatedIdentity {
        id: Uuid::now_v7(),
        trusted_issuer_id: issuer,
        owner,
        rule: json!({"type": "claims", "conditions": [{"type": "equals", "claim": "/repository", "value": key}]}),
        exact_subject: None,
        conditions_key: Some(key.into()),
        now: now(),
    }
}

/// One audit event tagged `tag` (in `client_id`), for counting what a change stored.
fn tagged(tag: &str) -> ChangeEffects {
    ChangeEffects {
        audit: vec![event("admin.change", tag, now())],
        revocation: None,
    }
}

/// Effects whose audit event cannot be stored: its id is `taken`'s, already logged.
fn failing(taken: &AuditEvent, tag: &str) -> ChangeEffects {
    let mut clash = event("admin.change", tag, now());
    clash.id = taken.id;
    ChangeEffects {
        audit: vec![clash],
        revocation: None,
    }
}

async fn audited(store: &dyn Store, tag: &str) -> usize {
    let query = AuditQuery {
        client_id: Some(tag.into()),
        limit: 10,
        ..AuditQuery::default()
    };
    store.audit_events(&query).await.unwrap().len()
}

/// Creates, reads, lists, updates and deletes trusted issuers; each change commits with
/// its audit event, and with a failing audit event nothing is stored.
pub(super) async fn trusted_issuers_commit_with_their_audit_events(store: Arc<dyn Store>) {
    let taken = event("admin.change", "taken", now());
    store
        .append_audit_events(std::slice::from_ref(&taken))
        .await
        .unwrap();
    let r0 = store.revision().await.unwrap();

    // Create: not stored when its audit event fails.
    let github = new_issuer(GITHUB);
    assert!(
        store
            .create_trusted_issuer(github.clone(), &failing(&taken, "create-bad"))
            .await
            .is_err()
    );
    assert!(store.trusted_issuer(github.id).await.unwrap().is_none());
    assert_eq!(audited(&*store, "create-bad").await, 0);
    let created = store
        .create_trusted_issuer(github.clone(), &tagged("create"))
        .await
        .unwrap();
    assert_eq!(audited(&*store, "create").await, 1);
    assert_eq!(
        (&created.issuer, &created.settings, created.created_at),
        (&github.issuer, &github.settings, github.now)
    );
    assert_eq!(created.updated_at, created.created_at);
    assert!(
        store.revision().await.unwrap() > r0,
        "issuers decide issuance"
    );

    // The issuer URL is unique.
    assert!(matches!(
        store
            .create_trusted_issuer(new_issuer(GITHUB), &tagged("dup"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(audited(&*store, "dup").await, 0);

    // Read by id, by URL; list in pages.
    assert_eq!(
        store.trusted_issuer(created.id).await.unwrap().as_ref(),
        Some(&created)
    );
    assert_eq!(
        store.trusted_issuer_by_url(GITHUB).await.unwrap().as_ref(),
        Some(&created)
    );
    assert!(
        store
            .trusted_issuer_by_url("https://token.actions.githubusercontent.com/")
            .await
            .unwrap()
            .is_none(),
        "URLs compare exactly"
    );
    let k8s = store
        .create_trusted_issuer(
            new_issuer("https://kubernetes.default.svc"),
            &ChangeEffects::default(),
        )
        .await
        .unwrap();
    let first = store
        .list_trusted_issuers(Page {
            after: None,
            limit: 1,
        })
        .await
        .unwrap();
    let rest = store
        .list_trusted_issuers(Page {
            after: Some(first[0].id),
            limit: 10,
        })
        .await
        .unwrap();
    let ids: Vec<Uuid> = first.iter().chain(&rest).map(|i| i.id).collect();
    assert_eq!(ids, vec![created.id, k8s.id]);

    // Update: optimistic, and not stored when its audit event fails.
    let mut changed = created.clone();
    changed.description = "GitHub Actions".into();
    changed.settings = json!({"issuer": GITHUB, "audience": "https://other.example"});
    changed.updated_at = created.updated_at + Duration::seconds(1);
    assert!(
        store
            .update_trusted_issuer(&changed, created.updated_at, &failing(&taken, "update-bad"))
            .await
            .is_err()
    );
    assert_eq!(
        store.trusted_issuer(created.id).await.unwrap().as_ref(),
        Some(&created)
    );
    assert!(matches!(
        store
            .update_trusted_issuer(
                &changed,
                created.updated_at - Duration::days(1),
                &tagged("stale")
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(audited(&*store, "stale").await, 0);
    let updated = store
        .update_trusted_issuer(&changed, created.updated_at, &tagged("update"))
        .await
        .unwrap();
    assert_eq!(updated, changed);
    assert_eq!(audited(&*store, "update").await, 1);
    let mut gone = changed.clone();
    gone.id = Uuid::now_v7();
    assert!(matches!(
        store
            .update_trusted_issuer(&gone, gone.updated_at, &tagged("update-gone"))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(audited(&*store, "update-gone").await, 0);

    // Delete: not when its audit event fails; then for real; then NotFound.
    assert!(
        store
            .delete_trusted_issuer(k8s.id, &failing(&taken, "delete-bad"))
            .await
            .is_err()
    );
    assert!(store.trusted_issuer(k8s.id).await.unwrap().is_some());
    store
        .delete_trusted_issuer(k8s.id, &tagged("delete"))
        .await
        .unwrap();
    assert_eq!(audited(&*store, "delete").await, 1);
    assert!(store.trusted_issuer(k8s.id).await.unwrap().is_none());
    assert!(matches!(
        store
            .delete_trusted_issuer(k8s.id, &tagged("delete-gone"))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(audited(&*store, "delete-gone").await, 0);
}

/// Identities: added with their audit event, unique per issuer (by exact subject and by
/// condition set), listed per owner and per issuer, deleted; an issuer with identities
/// is not deleted.
pub(super) async fn federated_identities_are_unique_per_issuer(store: Arc<dyn Store>) {
    let taken = event("admin.change", "taken", now());
    store
        .append_audit_events(std::slice::from_ref(&taken))
        .await
        .unwrap();
    let github = store
        .create_trusted_issuer(new_issuer(GITHUB), &ChangeEffects::default())
        .await
        .unwrap();
    let k8s = store
        .create_trusted_issuer(
            new_issuer("https://kubernetes.default.svc"),
            &ChangeEffects::default(),
        )
        .await
        .unwrap();
    let deploy = client(&*store).await;
    let alice = user(&*store, "alice").await;
    let (as_deploy, as_alice) = (Subject::Client(deploy.id), Subject::User(alice.id));

    // Added with its audit event, or not at all.
    let sub = by_subject(github.id, as_deploy, "repo:acme/deploy:ref:refs/heads/main");
    assert!(
        store
            .add_federated_identity(sub.clone(), &failing(&taken, "add-bad"))
            .await
            .is_err()
    );
    assert!(store.federated_identity(sub.id).await.unwrap().is_none());
    let r0 = store.revision().await.unwrap();
    let by_sub = store
        .add_federated_identity(sub.clone(), &tagged("add"))
        .await
        .unwrap();
    assert_eq!(audited(&*store, "add").await, 1);
    assert!(
        store.revision().await.unwrap() > r0,
        "identities decide issuance"
    );
    assert_eq!(
        (
            by_sub.owner,
            &by_sub.rule,
            &by_sub.exact_subject,
            &by_sub.conditions_key
        ),
        (as_deploy, &sub.rule, &sub.exact_subject, &None)
    );
    assert_eq!(
        store.federated_identity(sub.id).await.unwrap().as_ref(),
        Some(&by_sub)
    );

    // The same exact subject of the same issuer: refused, for any owner.
    let same = by_subject(github.id, as_alice, "repo:acme/deploy:ref:refs/heads/main");
    assert!(matches!(
        store.add_federated_identity(same, &tagged("add-dup")).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(audited(&*store, "add-dup").await, 0);
    // The same condition set: refused too.
    let by_repo = store
        .add_federated_identity(
            by_claims(github.id, as_alice, "/repository=acme/ops"),
            &ChangeEffects::default(),
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .add_federated_identity(
                by_claims(github.id, as_deploy, "/repository=acme/ops"),
                &ChangeEffects::default()
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    // Both keys are per issuer: another issuer may hold the same ones.
    let k8s_sub = store
        .add_federated_identity(
            by_subject(k8s.id, as_alice, "repo:acme/deploy:ref:refs/heads/main"),
            &ChangeEffects::default(),
        )
        .await
        .unwrap();
    store
        .add_federated_identity(
            by_claims(k8s.id, as_deploy, "/repository=acme/ops"),
            &ChangeEffects::default(),
        )
        .await
        .unwrap();

    // Missing parents are named.
    for (new, missing) in [
        (by_subject(Uuid::now_v7(), as_deploy, "x"), "trusted issuer"),
        (
            by_subject(github.id, Subject::Client(Uuid::now_v7()), "x"),
            "client",
        ),
        (
            by_subject(github.id, Subject::User(Uuid::now_v7()), "x"),
            "user",
        ),
    ] {
        match store.add_federated_identity(new, &tagged("orphan")).await {
            Err(StoreError::NotFound(what)) => assert_eq!(what, missing),
            other => panic!("expected NotFound({missing}), got {other:?}"),
        }
    }
    assert_eq!(audited(&*store, "orphan").await, 0);

    // Per issuer (the token endpoint's candidates) and per owner, in id order.
    let of_github = store
        .federated_identities_of_issuer(github.id)
        .await
        .unwrap();
    assert_eq!(of_github, vec![by_sub.clone(), by_repo.clone()]);
    let of_alice = store.federated_identities_of(as_alice).await.unwrap();
    assert_eq!(of_alice, vec![by_repo.clone(), k8s_sub.clone()]);
    assert!(
        store
            .federated_identities_of_issuer(Uuid::now_v7())
            .await
            .unwrap()
            .is_empty()
    );

    // An issuer with identities stays; deleting them frees it.
    assert!(matches!(
        store
            .delete_trusted_issuer(github.id, &tagged("issuer-in-use"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(audited(&*store, "issuer-in-use").await, 0);
    assert!(
        store
            .delete_federated_identity(by_sub.id, &failing(&taken, "remove-bad"))
            .await
            .is_err()
    );
    assert!(store.federated_identity(by_sub.id).await.unwrap().is_some());
    for id in [by_sub.id, by_repo.id] {
        store
            .delete_federated_identity(id, &tagged("remove"))
            .await
            .unwrap();
    }
    assert_eq!(audited(&*store, "remove").await, 2);
    assert!(matches!(
        store
            .delete_federated_identity(by_sub.id, &tagged("remove-gone"))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(audited(&*store, "remove-gone").await, 0);
    store
        .delete_trusted_issuer(github.id, &ChangeEffects::default())
        .await
        .unwrap();
}

/// Of concurrent adds of one identity (same subject, or same condition set), exactly
/// one is stored; the others get Conflict.
pub(super) async fn concurrent_identical_identities_one_wins(store: Arc<dyn Store>) {
    let github = store
        .create_trusted_issuer(new_issuer(GITHUB), &ChangeEffects::default())
        .await
        .unwrap();
    let owner = Subject::Client(client(&*store).await.id);
    for make in [
        by_subject as fn(Uuid, Subject, &str) -> NewFederatedIdentity,
        by_claims,
    ] {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                let new = make(github.id, owner, "repo:acme/deploy");
                tokio::spawn(
                    async move { store.add_federated_identity(new, &tagged("race")).await },
                )
            })
            .collect();
        let mut won = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => won += 1,
                Err(StoreError::Conflict(_)) => {}
                Err(other) => panic!("expected Conflict, got {other:?}"),
            }
        }
        assert_eq!(won, 1);
    }
    assert_eq!(
        store
            .federated_identities_of_issuer(github.id)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        audited(&*store, "race").await,
        2,
        "only the winners' events"
    );
}

/// Deleting a client or user deletes its identities in the same transaction.
pub(super) async fn identities_go_with_their_client_or_user(store: Arc<dyn Store>) {
    let github = store
        .create_trusted_issuer(new_issuer(GITHUB), &ChangeEffects::default())
        .await
        .unwrap();
    let deploy = client(&*store).await;
    let alice = user(&*store, "alice").await;
    let bob = user(&*store, "bob").await;
    for (owner, sub) in [
        (Subject::Client(deploy.id), "deploy"),
        (Subject::User(alice.id), "alice"),
        (Subject::User(bob.id), "bob"),
    ] {
        store
            .add_federated_identity(by_subject(github.id, owner, sub), &ChangeEffects::default())
            .await
            .unwrap();
    }
    store
        .delete_client(deploy.id, &ChangeEffects::default())
        .await
        .unwrap();
    store
        .delete_user(alice.id, &ChangeEffects::default())
        .await
        .unwrap();
    let left = store
        .federated_identities_of_issuer(github.id)
        .await
        .unwrap();
    assert_eq!(
        left.iter().map(|i| i.owner).collect::<Vec<_>>(),
        vec![Subject::User(bob.id)]
    );
    assert!(
        store
            .federated_identities_of(Subject::Client(deploy.id))
            .await
            .unwrap()
            .is_empty()
    );
}

/// Audit events are found by the external identity in their `detail`, combined with
/// the other filters and paging.
pub(super) async fn audit_search_by_external_identity(store: Arc<dyn Store>) {
    let t = now();
    let external = |i: i64, issuer: &str, subject: &str| {
        let mut e = event("token.issued", "deploy", t + Duration::seconds(i));
        e.detail = json!({"ttl": 300, "external": {"issuer": issuer, "subject": subject}});
        e
    };
    let mut denied = external(4, GITHUB, "repo:acme/deploy");
    denied.event_type = "token.denied".into();
    denied.outcome = "failure".into();
    let events = vec![
        external(0, GITHUB, "repo:acme/deploy"),
        external(1, GITHUB, "repo:acme/ops"),
        external(
            2,
            "https://kubernetes.default.svc",
            "system:serviceaccount:ci:deploy",
        ),
        event("token.issued", "deploy", t + Duration::seconds(3)),
        denied.clone(),
        external(5, GITHUB, "repo:acme/deploy"),
    ];
    store.append_audit_events(&events).await.unwrap();
    let search = |query: AuditQuery, issuer: Option<&str>, subject: Option<&str>| {
        let store = store.clone();
        let filter = ExternalIdentityFilter {
            issuer: issuer.map(Into::into),
            subject: subject.map(Into::into),
        };
        async move {
            store
                .audit_events_by_external(&query, &filter)
                .await
                .unwrap()
                .iter()
                .map(|e| e.id)
                .collect::<Vec<_>>()
        }
    };
    let all = || AuditQuery {
        limit: 100,
        ..AuditQuery::default()
    };
    assert_eq!(
        search(all(), Some(GITHUB), None).await,
        vec![events[5].id, denied.id, events[1].id, events[0].id]
    );
    assert_eq!(
        search(all(), Some(GITHUB), Some("repo:acme/deploy")).await,
        vec![events[5].id, denied.id, events[0].id]
    );
    assert_eq!(
        search(all(), None, Some("system:serviceaccount:ci:deploy")).await,
        vec![events[2].id]
    );
    assert!(
        search(all(), Some("https://other.example"), None)
            .await
            .is_empty()
    );
    // With the other filters, and in pages.
    let failures = AuditQuery {
        outcome: Some("failure".into()),
        ..all()
    };
    assert_eq!(
        search(failures, Some(GITHUB), Some("repo:acme/deploy")).await,
        vec![denied.id]
    );
    let page = AuditQuery { limit: 2, ..all() };
    let first = search(page.clone(), Some(GITHUB), None).await;
    assert_eq!(first, vec![events[5].id, denied.id]);
    let next = AuditQuery {
        before: Some((denied.occurred_at, denied.id)),
        ..page
    };
    assert_eq!(
        search(next, Some(GITHUB), None).await,
        vec![events[1].id, events[0].id]
    );
    // No external filter: the plain search.
    assert_eq!(
        search(all(), None, None).await.len(),
        store.audit_events(&all()).await.unwrap().len()
    );
}
