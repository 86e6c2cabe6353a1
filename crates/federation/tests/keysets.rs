//! Key sets over real HTTP: rotation, unknown-kid floods, an issuer that is down,
//! Cache-Control.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{AUDIENCE, setup};
use mayfly_federation::testing::{TestKey, kubernetes_claims};
use mayfly_federation::{KeySetError, VerifyError};
use serde_json::Value;
use time::Duration;

fn k8s(s: &common::Setup) -> Value {
    kubernetes_claims(s.iss(), AUDIENCE, s.now(), "pay", "api", "api-7d9f")
}

async fn verify(s: &common::Setup, kid: &str) -> Result<(), VerifyError> {
    let token = s.issuer.mint(kid, &k8s(s));
    s.verifier.verify(&s.trusted, &token).await.map(|_| ())
}

#[tokio::test]
async fn rotation_is_picked_up_with_one_refetch() {
    let s = setup().await;
    verify(&s, "rsa").await.unwrap();
    assert_eq!(s.issuer.jwks_fetches(), 1);
    // Past the refetch interval (15 s), still within the set's freshness (60 s+).
    s.clock.advance(Duration::seconds(20));
    s.issuer.add_key(TestKey::rsa("rsa-2", 1));
    verify(&s, "rsa-2").await.unwrap();
    assert_eq!(s.issuer.jwks_fetches(), 2, "one refetch for the new kid");
    verify(&s, "rsa-2").await.unwrap();
    verify(&s, "rsa").await.unwrap();
    assert_eq!(s.issuer.jwks_fetches(), 2);
    // The old key retired: once the set is refreshed, its tokens stop verifying.
    s.issuer.remove_key("rsa");
    let old = s
        .issuer
        .key("rsa-2")
        .map(|_| TestKey::rsa("rsa", 0))
        .unwrap();
    s.clock.advance(Duration::minutes(5));
    verify(&s, "rsa-2").await.unwrap();
    assert_eq!(s.issuer.jwks_fetches(), 3, "stale set refreshed");
    assert_eq!(
        s.verifier.verify(&s.trusted, &old.sign(&k8s(&s))).await,
        Err(VerifyError::UnknownKey)
    );
    assert_eq!(s.issuer.discovery_fetches(), 1, "discovery is done once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_on_a_cold_cache_share_one_fetch() {
    let s = setup().await;
    let token = s.issuer.mint("rsa", &k8s(&s));
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let (verifier, trusted, token) = (s.verifier.clone(), s.trusted.clone(), token.clone());
            tokio::spawn(async move { verifier.verify(&trusted, &token).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(s.issuer.discovery_fetches(), 1);
    assert_eq!(s.issuer.jwks_fetches(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_flood_fetches_at_most_once_per_interval() {
    let s = setup().await;
    verify(&s, "rsa").await.unwrap();
    assert_eq!(s.issuer.jwks_fetches(), 1);
    let forger = TestKey::rsa("forged", 1);
    for round in 0..3 {
        s.clock.advance(Duration::seconds(16));
        let before = s.issuer.jwks_fetches();
        let mut calls = Vec::new();
        for i in 0..50 {
            let verifier = s.verifier.clone();
            let trusted = s.trusted.clone();
            let forger = TestKey::rsa(&format!("forged-{round}-{i}"), 1);
            let token = forger.sign(&k8s(&s));
            calls.push(tokio::spawn(async move {
                verifier.verify(&trusted, &token).await
            }));
        }
        for call in calls {
            assert_eq!(call.await.unwrap(), Err(VerifyError::UnknownKey));
        }
        assert_eq!(
            s.issuer.jwks_fetches() - before,
            1,
            "round {round}: 50 concurrent unknown kids, one fetch"
        );
        // More within the same interval: none.
        assert_eq!(
            s.verifier.verify(&s.trusted, &forger.sign(&k8s(&s))).await,
            Err(VerifyError::UnknownKey)
        );
        assert_eq!(s.issuer.jwks_fetches() - before, 1);
        // Known keys keep working without fetches.
        verify(&s, "ec").await.unwrap();
        assert_eq!(s.issuer.jwks_fetches() - before, 1);
    }
}

#[tokio::test]
async fn an_issuer_that_is_down_is_served_from_the_warm_cache() {
    let s = setup().await;
    verify(&s, "rsa").await.unwrap();
    s.issuer.set_down(true);
    // Stale (default freshness 5 min without Cache-Control): the refetch fails (503),
    // the held keys are used.
    s.clock.advance(Duration::minutes(6));
    verify(&s, "rsa").await.unwrap();
    assert_eq!(s.issuer.jwks_fetches(), 2);
    // Unknown kids are still refused, and the refetch is still rate-limited.
    let forger = TestKey::es256("forged");
    assert_eq!(
        s.verifier.verify(&s.trusted, &forger.sign(&k8s(&s))).await,
        Err(VerifyError::UnknownKey)
    );
    assert_eq!(s.issuer.jwks_fetches(), 2);
    verify(&s, "ec").await.unwrap();
    // Back up: the next refetch (after the interval) refreshes.
    s.issuer.set_down(false);
    s.clock.advance(Duration::seconds(16));
    verify(&s, "ed").await.unwrap();
    assert_eq!(s.issuer.jwks_fetches(), 3);

    // Down for longer than max_stale (24 h) past freshness: refused as unavailable.
    s.issuer.set_down(true);
    s.clock.advance(Duration::hours(25));
    let e = verify(&s, "rsa").await.unwrap_err();
    assert_eq!(e, VerifyError::KeysUnavailable(KeySetError::Status(503)));
}

#[tokio::test]
async fn a_cold_cache_with_the_issuer_down_is_unavailable_and_retried_later() {
    let s = setup().await;
    s.issuer.set_down(true);
    assert_eq!(
        verify(&s, "rsa").await,
        Err(VerifyError::KeysUnavailable(KeySetError::Status(503)))
    );
    assert_eq!(s.issuer.discovery_fetches(), 1);
    assert_eq!(
        verify(&s, "rsa").await,
        Err(VerifyError::KeysUnavailable(KeySetError::RetryLater))
    );
    assert_eq!(
        s.issuer.discovery_fetches(),
        1,
        "no fetch within the interval"
    );
    s.issuer.set_down(false);
    s.clock.advance(Duration::seconds(15));
    verify(&s, "rsa").await.unwrap();
}

/// Fetches after the first verification, then after `wait`, for `cache_control`.
async fn refetched_after(cache_control: Option<&str>, wait: Duration) -> bool {
    let s = setup().await;
    s.issuer.set_cache_control(cache_control);
    verify(&s, "rsa").await.unwrap();
    assert_eq!(s.issuer.jwks_fetches(), 1);
    s.clock.advance(wait);
    verify(&s, "rsa").await.unwrap();
    s.issuer.jwks_fetches() == 2
}

#[tokio::test]
async fn cache_control_is_honoured_and_clamped() {
    // Honoured within the bounds.
    assert!(!refetched_after(Some("public, max-age=120"), Duration::seconds(119)).await);
    assert!(refetched_after(Some("public, max-age=120"), Duration::seconds(120)).await);
    // Clamped up to the least freshness (60 s).
    assert!(!refetched_after(Some("max-age=1"), Duration::seconds(59)).await);
    assert!(refetched_after(Some("max-age=1"), Duration::seconds(60)).await);
    assert!(!refetched_after(Some("no-store"), Duration::seconds(59)).await);
    // Clamped down to the greatest (1 h).
    assert!(!refetched_after(Some("max-age=86400"), Duration::seconds(3599)).await);
    assert!(refetched_after(Some("max-age=86400"), Duration::seconds(3600)).await);
    // None: the default (5 min).
    assert!(!refetched_after(None, Duration::seconds(299)).await);
    assert!(refetched_after(None, Duration::seconds(300)).await);
}

#[tokio::test]
async fn forgetting_an_issuer_refetches_its_keys() {
    let s = setup().await;
    verify(&s, "rsa").await.unwrap();
    s.verifier.forget(s.iss());
    verify(&s, "rsa").await.unwrap();
    assert_eq!(s.issuer.jwks_fetches(), 2);
    assert_eq!(s.issuer.discovery_fetches(), 2);
}
