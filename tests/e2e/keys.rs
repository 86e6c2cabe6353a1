//! Signing-key rotation end to end: a key's whole lifecycle as the key set publishes it,
//! tokens across rotations, emergency rotation, and the key set's cache headers. Time is
//! the service's `ManualClock`; the lifecycle tests drive the rotation task round by round,
//! and one shows the schedule itself runs in the tested service as in production.

use mayfly_core::token::peek_key_id;
use mayfly_sdk::{OfflineVerifier, VerifyError};
use mayfly_server::keys::rotation::{RotateOptions, RotateOutcome, Rotator};
use mayfly_server::keys::{Keyring, MasterKey};
use mayfly_store::{Backend, KeyChange, KeyState};
use time::Duration;

use crate::helpers::{Auth, TestApp, TestClient, spawn_app_with};

const ORDERS: &str = "https://api.example.com/orders";

crate::both_stores!(
    manual_rotation;
    a_key_walks_its_whole_lifecycle_through_the_key_set,
    requested_rotation_waits_for_the_publication_lead,
    emergency_rotation_from_another_process_revokes_old_tokens,
);
crate::both_stores!(key_set_cache_headers);

/// A client granted `orders:read`.
async fn setup(app: &TestApp) -> TestClient {
    app.audience(ORDERS, &["orders:read"]).await;
    let client = app.client().await;
    app.grant(&client, ORDERS, &["orders:read"]).await;
    client
}

async fn token(app: &TestApp, client: &TestClient) -> String {
    app.token_ok(
        Auth::Basic(client),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "orders:read"),
        ],
    )
    .await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn kid(token: &str) -> String {
    peek_key_id(token).unwrap().to_string()
}

/// The kids the key set publishes, in its order (newest first).
async fn published(app: &TestApp) -> Vec<String> {
    app.jwks().await.keys.into_iter().map(|k| k.kid).collect()
}

fn moves(changes: &[KeyChange]) -> Vec<(String, Option<KeyState>, KeyState)> {
    changes
        .iter()
        .map(|c| (c.id.clone(), c.from, c.to))
        .collect()
}

fn verify(verifier: &OfflineVerifier, token: &str, app: &TestApp) -> Result<(), VerifyError> {
    verifier
        .verify(token, &["orders:read"], app.now())
        .map(|_| ())
}

/// Default periods: a key signs for 24 h, its successor is published 1 h before, and a
/// retired key stays published for the maximum token TTL (1 h) + 5 min.
async fn a_key_walks_its_whole_lifecycle_through_the_key_set(app: TestApp) {
    use KeyState::*;
    let client = setup(&app).await;
    let k0 = kid(&token(&app, &client).await);
    assert_eq!(published(&app).await, [k0.as_str()]);

    // Most of its life nothing happens.
    app.clock
        .advance(Duration::hours(23) - Duration::seconds(1));
    assert!(app.rotation_tick().await.is_empty());
    assert_eq!(published(&app).await, [k0.as_str()]);

    // One lead time before its end, the successor is published but does not sign.
    app.clock.advance(Duration::seconds(1));
    let changes = app.rotation_tick().await;
    assert_eq!(changes.len(), 1);
    let k1 = changes[0].id.clone();
    assert_eq!(moves(&changes), [(k1.clone(), None, Next)]);
    assert_eq!(published(&app).await, [k1.as_str(), k0.as_str()]);
    assert_eq!(
        kid(&token(&app, &client).await),
        k0,
        "a next key does not sign"
    );
    // A resource server caches the key set now (and keeps it for its max-age).
    let cached = app.verifier(ORDERS).await;
    assert!(app.rotation_tick().await.is_empty(), "nothing more to do");

    // Just before the switch, a token from the old key.
    app.clock.advance(Duration::minutes(59));
    let before = token(&app, &client).await;
    assert_eq!(kid(&before), k0);

    // At the end of its life the successor signs; the old key is retired, still published.
    app.clock.advance(Duration::minutes(1));
    let changes = app.rotation_tick().await;
    assert_eq!(
        moves(&changes),
        [
            (k0.clone(), Some(Active), Retired),
            (k1.clone(), Some(Next), Active)
        ]
    );
    assert_eq!(published(&app).await, [k1.as_str(), k0.as_str()]);
    let after = token(&app, &client).await;
    assert_eq!(kid(&after), k1, "only the active key signs");
    let fresh = app.verifier(ORDERS).await;
    verify(&fresh, &before, &app).expect("a retired key's token still verifies");
    verify(&fresh, &after, &app).unwrap();
    verify(&cached, &after, &app).expect("a cache from before the switch knows the new key");

    // The retired key stays published until every token it signed has expired.
    app.clock
        .advance(Duration::minutes(65) - Duration::seconds(1));
    assert!(app.rotation_tick().await.is_empty());
    assert_eq!(published(&app).await, [k1.as_str(), k0.as_str()]);
    app.clock.advance(Duration::seconds(1));
    let changes = app.rotation_tick().await;
    assert_eq!(moves(&changes), [(k0.clone(), Some(Retired), Gone)]);
    assert_eq!(published(&app).await, [k1.as_str()]);
    assert_eq!(
        verify(&app.verifier(ORDERS).await, &before, &app).unwrap_err(),
        VerifyError::Token(mayfly_core::VerifyError::UnknownKey)
    );
    let gone = app
        .state
        .store
        .all_signing_keys()
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.id == k0)
        .unwrap();
    assert!(gone.private_key_enc.is_empty(), "private key wiped");
    assert!(gone.revoked_at.is_none());

    // Every transition is audited, by the scheduler, without key material.
    let events = app.audit("key.change").await;
    let mut seen: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            assert_eq!(e.actor.as_deref(), Some("scheduler"));
            (
                e.detail["kid"].as_str().unwrap().to_owned(),
                e.detail["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    let mut expected = vec![
        (k1.clone(), "publish".to_owned()),
        (k0.clone(), "retire".to_owned()),
        (k1.clone(), "activate".to_owned()),
        (k0.clone(), "remove".to_owned()),
    ];
    expected.sort();
    assert_eq!(seen, expected);
    let dump = format!("{events:?}");
    for key in app.state.store.all_signing_keys().await.unwrap() {
        let hex: String = key
            .private_key_enc
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(hex.is_empty() || !dump.contains(&hex));
    }
}

/// "Rotate now" publishes a successor at once but activates it only once it has been
/// published for the lead time; the background task then activates it, whatever the
/// active key's age.
async fn requested_rotation_waits_for_the_publication_lead(app: TestApp) {
    let client = setup(&app).await;
    let k0 = kid(&token(&app, &client).await);
    app.clock.advance(Duration::hours(2));
    let outcome = app
        .rotator("admin-1")
        .rotate_now(app.now(), RotateOptions::default())
        .await
        .unwrap();
    let RotateOutcome::Pending {
        next: k1,
        activates_at,
        ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(activates_at, app.now() + Duration::hours(1));
    assert_eq!(published(&app).await, [k1.as_str(), k0.as_str()]);
    assert_eq!(kid(&token(&app, &client).await), k0);

    // Asking again changes nothing: still the same successor, still pending.
    let again = app
        .rotator("admin-1")
        .rotate_now(app.now(), RotateOptions::default())
        .await
        .unwrap();
    assert!(
        matches!(&again, RotateOutcome::Pending { next, changes, .. } if *next == k1 && changes.is_empty()),
        "{again:?}"
    );

    app.clock.advance(Duration::minutes(59));
    assert!(app.rotation_tick().await.is_empty());
    let before = token(&app, &client).await;
    assert_eq!(kid(&before), k0);
    app.clock.advance(Duration::minutes(1));
    assert_eq!(app.rotation_tick().await.len(), 2);
    assert_eq!(kid(&token(&app, &client).await), k1);
    verify(&app.verifier(ORDERS).await, &before, &app).unwrap();

    let events = app.audit("key.change").await;
    assert!(
        events
            .iter()
            .any(|e| e.actor.as_deref() == Some("admin-1") && e.detail["action"] == "publish")
    );
}

/// The key leaked: an operator runs the emergency rotation from another process (the
/// CLI). The service picks the change up on its next round; the old key is gone from
/// the key set, so a resource server that refetches it rejects the old key's tokens.
async fn emergency_rotation_from_another_process_revokes_old_tokens(app: TestApp) {
    let client = setup(&app).await;
    let leaked = token(&app, &client).await;
    let k0 = kid(&leaked);
    let cached = app.verifier(ORDERS).await;
    verify(&cached, &leaked, &app).unwrap();

    // The CLI's view: its own store connection and keyring, the same master key.
    let cli_store = mayfly_store::connect(&app.db_url).await.unwrap();
    let cli_keys = Keyring::load(
        cli_store.as_ref(),
        MasterKey::from_bytes([0x7f; 32]),
        app.now(),
    )
    .await
    .unwrap();
    let outcome = Rotator::new(
        cli_store.as_ref(),
        &cli_keys,
        app.state.config.key_policy(),
        "cli",
    )
    .rotate_now(app.now(), RotateOptions { emergency: true })
    .await
    .unwrap();
    let RotateOutcome::Activated {
        active: k1,
        changes,
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_ne!(k1, k0);
    assert!(
        changes
            .iter()
            .any(|c| c.id == k0 && c.to == KeyState::Gone && c.revoked)
    );

    // The service reloads within one round (no waiting for a lead time).
    app.rotation_tick().await;
    assert_eq!(published(&app).await, [k1.as_str()]);
    let fresh_token = token(&app, &client).await;
    assert_eq!(kid(&fresh_token), k1);

    let refetched = app.verifier(ORDERS).await;
    assert_eq!(
        verify(&refetched, &leaked, &app).unwrap_err(),
        VerifyError::Token(mayfly_core::VerifyError::UnknownKey),
        "the revoked key's tokens are rejected"
    );
    verify(&refetched, &fresh_token, &app).unwrap();
    // A resource server still holding the old set meets an unknown kid and refetches.
    assert_eq!(
        verify(&cached, &fresh_token, &app).unwrap_err(),
        VerifyError::Token(mayfly_core::VerifyError::UnknownKey)
    );

    let revoked = app
        .state
        .store
        .all_signing_keys()
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.id == k0)
        .unwrap();
    assert_eq!(revoked.revoked_at, Some(app.now()));
    assert!(revoked.private_key_enc.is_empty());
    let events = app.audit("key.change").await;
    let revoke = events
        .iter()
        .find(|e| e.detail["action"] == "revoke")
        .unwrap();
    assert_eq!(
        (revoke.actor.as_deref(), revoke.subject.as_deref()),
        (Some("cli"), Some(k0.as_str()))
    );
    assert_eq!(revoke.detail["reason"], "emergency");
}

async fn key_set_cache_headers(app: TestApp) {
    check_cache_headers(&app, 300).await;
}

/// `Cache-Control: public, max-age=N` with N the configured age less up to 10 %, varying
/// per response; a stable ETag, 304 for it, and a new one once the key set changes.
async fn check_cache_headers(app: &TestApp, configured: i64) {
    let url = format!("{}/.well-known/jwks.json", app.base);
    let mut ages = std::collections::BTreeSet::new();
    let mut etags = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let response = app.http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let cache = response.headers()["cache-control"]
            .to_str()
            .unwrap()
            .to_owned();
        let age: i64 = cache
            .strip_prefix("public, max-age=")
            .unwrap_or_else(|| panic!("{cache}"))
            .parse()
            .unwrap();
        assert!(
            (configured - configured / 10..=configured).contains(&age),
            "{age} for {configured}"
        );
        ages.insert(age);
        etags.insert(response.headers()["etag"].to_str().unwrap().to_owned());
    }
    assert!(ages.len() > 1, "jittered per response: {ages:?}");
    assert_eq!(etags.len(), 1);
    let etag = etags.pop_first().unwrap();
    let cached = app
        .http
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 304);
    assert!(
        cached.headers()["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("public, max-age=")
    );

    // Publishing a successor changes the document and its ETag.
    app.rotator("test")
        .rotate_now(app.now(), RotateOptions::default())
        .await
        .unwrap();
    let changed = app
        .http
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    assert_ne!(changed.headers()["etag"].to_str().unwrap(), etag);
}

async fn key_set_max_age_follows_the_configuration(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.key_set_max_age = Duration::seconds(100);
        c.key_publish_lead = Duration::minutes(10);
    })
    .await;
    check_cache_headers(&app, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_key_set_max_age_follows_the_configuration() {
    key_set_max_age_follows_the_configuration(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_key_set_max_age_follows_the_configuration() {
    key_set_max_age_follows_the_configuration(Backend::Postgres).await;
}

/// The tested service runs the background work `mayfly serve` runs (one composition
/// root, `App::build`): nobody ticks here, yet the successor is published once due.
async fn scheduled_rotation_runs_as_in_production(backend: Backend) {
    // A short key set max age: the schedule then runs every second.
    let app = spawn_app_with(backend, |c| c.key_set_max_age = Duration::seconds(4)).await;
    for task in [
        "metrics upkeep",
        "key rotation",
        "audit retention",
        "one-time id pruning",
        "refresh family pruning",
        "access request expiry",
    ] {
        assert!(
            app.tasks.contains(&task),
            "{task} not running: {:?}",
            app.tasks
        );
    }
    assert_eq!(published(&app).await.len(), 1);
    app.clock.advance(Duration::hours(23));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while published(&app).await.len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no successor published"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_scheduled_rotation_runs_as_in_production() {
    scheduled_rotation_runs_as_in_production(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_scheduled_rotation_runs_as_in_production() {
    scheduled_rotation_runs_as_in_production(Backend::Postgres).await;
}
