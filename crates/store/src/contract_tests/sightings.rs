//! Client sightings and the anomaly policy.

use super::*;

pub(super) async fn sightings_and_anomaly_policy(store: Arc<dyn Store>) {
    let t = now();
    let client = "0196a1f0-0000-7000-8000-000000000001";
    let net = SightingKind::Network;
    assert_eq!(
        store
            .record_sighting(client, net, "10.0.0.0/24", t)
            .await
            .unwrap(),
        Sighting::FirstOfKind
    );
    assert_eq!(
        store
            .record_sighting(client, net, "10.0.0.0/24", t)
            .await
            .unwrap(),
        Sighting::Known
    );
    assert_eq!(
        store
            .record_sighting(client, net, "10.9.0.0/24", t)
            .await
            .unwrap(),
        Sighting::New
    );
    assert_eq!(
        store
            .record_sighting(client, net, "10.9.0.0/24", t)
            .await
            .unwrap(),
        Sighting::Known
    );
    // Kinds and clients are separate baselines.
    assert_eq!(
        store
            .record_sighting(client, SightingKind::Audience, "10.9.0.0/24", t)
            .await
            .unwrap(),
        Sighting::FirstOfKind
    );
    assert_eq!(
        store
            .record_sighting("other", net, "10.9.0.0/24", t)
            .await
            .unwrap(),
        Sighting::FirstOfKind
    );

    // The policy defaults to alert, and survives an update.
    let created = store
        .create_client(
            NewClient {
                id: Uuid::now_v7(),
                name: "watched".into(),
                enabled: true,
                default_ttl_secs: None,
                max_ttl_secs: None,
                allowed_cidrs: vec![],
                require_dpop: false,
                anomaly_policy: AnomalyPolicy::default(),
                grant_types: vec!["client_credentials".into()],
                labels: vec![],
                now: t,
            },
            &ChangeEffects::default(),
        )
        .await
        .unwrap();
    assert_eq!(created.anomaly_policy, AnomalyPolicy::Alert);
    let mut changed = created.clone();
    changed.anomaly_policy = AnomalyPolicy::Revoke;
    changed.updated_at = t + Duration::seconds(1);
    let updated = store
        .update_client(&changed, created.updated_at, &ChangeEffects::default())
        .await
        .unwrap();
    assert_eq!(updated.anomaly_policy, AnomalyPolicy::Revoke);
    assert_eq!(
        store
            .client(created.id)
            .await
            .unwrap()
            .unwrap()
            .anomaly_policy,
        AnomalyPolicy::Revoke
    );

    // Deleting the client forgets what it was seen doing.
    let id = created.id.to_string();
    store
        .record_sighting(&id, net, "10.0.0.0/24", t)
        .await
        .unwrap();
    store
        .delete_client(created.id, &ChangeEffects::default())
        .await
        .unwrap();
    assert_eq!(
        store
            .record_sighting(&id, net, "10.0.0.0/24", t)
            .await
            .unwrap(),
        Sighting::FirstOfKind
    );
}
