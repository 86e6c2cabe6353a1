//! Just-in-time access.

use super::*;

pub(super) async fn access_policies_and_requests_decide_once(store: Arc<dyn Store>) {
    let t0 = now();
    let audience = store
        .create_audience(
            NewAudience {
                id: Uuid::now_v7(),
                uri: "https://api.example/jit".into(),
                description: String::new(),
                now: t0,
            },
            &ChangeEffects::default(),
        )
        .await
        .unwrap();
    let policy = AccessPolicyRecord {
        id: Uuid::now_v7(),
        name: "ops".into(),
        audience_id: audience.id,
        scopes: vec!["db:read".into()],
        subjects: vec!["users".into()],
        max_duration_secs: 900,
        decision: "approval".into(),
        approvals_required: 2,
        break_glass: false,
        created_by: "test".into(),
        created_at: t0,
        updated_at: t0,
    };
    assert_eq!(
        store
            .create_access_policy(&policy, &ChangeEffects::default())
            .await
            .unwrap(),
        policy
    );
    let dangling = AccessPolicyRecord {
        id: Uuid::now_v7(),
        audience_id: Uuid::now_v7(),
        ..policy.clone()
    };
    assert!(matches!(
        store
            .create_access_policy(&dangling, &ChangeEffects::default())
            .await,
        Err(StoreError::NotFound("audience"))
    ));
    let changed = store
        .update_access_policy(
            &AccessPolicyRecord {
                max_duration_secs: 60,
                ..policy.clone()
            },
            &ChangeEffects::default(),
        )
        .await
        .unwrap();
    assert_eq!(changed.max_duration_secs, 60);
    let listed = store
        .list_access_policies(
            Some(audience.id),
            Page {
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(listed, vec![changed.clone()]);

    let user = Uuid::now_v7();
    let request = AccessRequestRecord {
        id: Uuid::now_v7(),
        subject: Subject::User(user),
        audience_id: audience.id,
        audience: audience.uri.clone(),
        scopes: vec!["db:read".into()],
        duration_secs: 60,
        reason: "incident 42".into(),
        break_glass: false,
        state: "pending".into(),
        policy_id: Some(policy.id),
        approvals_required: 2,
        approvals: Vec::new(),
        grant_id: None,
        needs_review: false,
        created_at: t0,
        pending_until: t0 + Duration::minutes(10),
        decided_at: None,
        decided_by: None,
        decision_comment: String::new(),
    };
    store.create_access_request(&request).await.unwrap();
    assert_eq!(
        store.access_request(request.id).await.unwrap().as_ref(),
        Some(&request)
    );
    let approval = |who: &str| AccessApproval {
        approver: who.into(),
        comment: "ok".into(),
        at: t0,
    };
    assert_eq!(
        store
            .add_access_approval(request.id, &approval("bob"))
            .await
            .unwrap(),
        Some(1)
    );
    assert!(matches!(
        store
            .add_access_approval(request.id, &approval("bob"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store
            .add_access_approval(request.id, &approval("carol"))
            .await
            .unwrap(),
        Some(2)
    );
    let stored = store.access_request(request.id).await.unwrap().unwrap();
    assert_eq!(stored.approvals.len(), 2);
    let grant_id = Uuid::now_v7();
    let approve = AccessTransition {
        id: request.id,
        from: "pending",
        to: "approved",
        by: "carol".into(),
        comment: "ok".into(),
        grant_id: Some(grant_id),
        needs_review: false,
        now: t0,
    };
    assert!(store.transition_access_request(&approve).await.unwrap());
    assert!(
        !store.transition_access_request(&approve).await.unwrap(),
        "a second decision loses"
    );
    assert_eq!(
        store
            .add_access_approval(request.id, &approval("dave"))
            .await
            .unwrap(),
        None,
        "no approvals once decided"
    );
    let stored = store.access_request(request.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.state.as_str(), stored.grant_id),
        ("approved", Some(grant_id))
    );

    // A pending request expires once its time is up, exactly once.
    let late = AccessRequestRecord {
        id: Uuid::now_v7(),
        ..request.clone()
    };
    store.create_access_request(&late).await.unwrap();
    assert!(
        store
            .expire_access_requests(t0 + Duration::minutes(9))
            .await
            .unwrap()
            .is_empty()
    );
    let expired = store
        .expire_access_requests(t0 + Duration::minutes(10))
        .await
        .unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(
        (expired[0].id, expired[0].state.as_str()),
        (late.id, "expired")
    );
    assert!(
        store
            .expire_access_requests(t0 + Duration::minutes(11))
            .await
            .unwrap()
            .is_empty()
    );
    let mine = store
        .list_access_requests(
            AccessRequestFilter {
                subject: Some(Subject::User(user)),
                state: Some("approved".into()),
                needs_review: None,
            },
            Page {
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].approvals.len(), 2);
    assert!(
        !store.clear_access_review(request.id).await.unwrap(),
        "not marked"
    );
    let marked = AccessRequestRecord {
        id: Uuid::now_v7(),
        needs_review: true,
        ..request.clone()
    };
    store.create_access_request(&marked).await.unwrap();
    assert!(store.clear_access_review(marked.id).await.unwrap());
    assert!(
        !store
            .access_request(marked.id)
            .await
            .unwrap()
            .unwrap()
            .needs_review
    );
    assert!(!store.clear_access_review(marked.id).await.unwrap(), "once");
    store
        .delete_access_policy(policy.id, &ChangeEffects::default())
        .await
        .unwrap();
    assert_eq!(
        store
            .access_request(request.id)
            .await
            .unwrap()
            .unwrap()
            .policy_id,
        None,
        "requests outlive their policy"
    );
}
