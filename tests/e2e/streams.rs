//! The revocation stream's own lifetime: it ends when its token expires or is revoked,
//! or its client is disabled; a client holds a bounded number of streams; shutting
//! down closes them.

use std::time::{Duration as StdDuration, Instant};

use mayfly_server::service::ClientChanges;
use time::Duration;

use crate::helpers::{Auth, TestApp, TestClient};

crate::both_stores!(
    stream_ends_when_its_client_is_disabled,
    stream_ends_when_its_token_is_revoked,
    stream_ends_when_its_token_expires,
    streams_per_client_are_limited,
    shutdown_closes_streams,
    sdk_follows_the_feed_again_after_its_stream_is_ended,
    a_replica_that_cannot_read_revocations_ends_its_streams,
);

/// How long a stream may outlive what ended it.
const WITHIN: StdDuration = StdDuration::from_secs(5);

async fn reader(app: &TestApp) -> (TestClient, String) {
    app.admin().bootstrap(&app.issuer()).await.unwrap();
    let client = app.client().await;
    app.grant(&client, &app.issuer(), &["mayfly:revocations:read"])
        .await;
    let body = app
        .token_ok(
            Auth::Basic(&client),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "mayfly:revocations:read"),
                ("resource", &app.issuer()),
            ],
        )
        .await;
    (client, body["access_token"].as_str().unwrap().to_owned())
}

async fn open(app: &TestApp, token: &str) -> reqwest::Response {
    app.http
        .get(format!("{}/v1/revocations/stream", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// Reads until the server ends the stream; panics if it is still open after [`WITHIN`].
async fn ends_within(mut stream: reqwest::Response, what: &str) {
    let started = Instant::now();
    let ended = tokio::time::timeout(WITHIN, async {
        loop {
            match stream.chunk().await {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "{what}: stream still open after {WITHIN:?}");
    assert!(started.elapsed() <= WITHIN);
}

async fn stream_ends_when_its_client_is_disabled(app: TestApp) {
    let (client, token) = reader(&app).await;
    let stream = open(&app, &token).await;
    assert_eq!(stream.status(), 200);
    app.admin()
        .update_client(
            client.id,
            ClientChanges {
                enabled: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    ends_within(stream, "client disabled").await;
}

async fn stream_ends_when_its_token_is_revoked(app: TestApp) {
    let (_, token) = reader(&app).await;
    let stream = open(&app, &token).await;
    assert_eq!(stream.status(), 200);
    let jti = app.claims_of(&token).jti;
    app.admin()
        .create_revocation(mayfly_server::service::RevokeSpec::now(
            mayfly_core::revocation::RevocationKind::Jti,
            jti,
            "test",
        ))
        .await
        .unwrap();
    app.state.revocations.catch_up().await.unwrap();
    ends_within(stream, "token revoked").await;
    assert_eq!(open(&app, &token).await.status(), 401);
}

async fn stream_ends_when_its_token_expires(app: TestApp) {
    let (_, token) = reader(&app).await;
    let stream = open(&app, &token).await;
    assert_eq!(stream.status(), 200);
    app.clock.advance(Duration::seconds(301));
    ends_within(stream, "token expired").await;
}

async fn streams_per_client_are_limited(app: TestApp) {
    let (_, token) = reader(&app).await;
    let mut held = Vec::new();
    for _ in 0..mayfly_server::http::v1::feed::MAX_STREAMS_PER_CLIENT {
        let stream = open(&app, &token).await;
        assert_eq!(stream.status(), 200);
        held.push(stream);
    }
    let refused = open(&app, &token).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["status"], 429, "{body}");
    // Another client is not affected; closing one frees a slot.
    let (_, other) = reader_again(&app).await;
    assert_eq!(open(&app, &other).await.status(), 200);
    drop(held.pop());
    let started = Instant::now();
    loop {
        let retry = open(&app, &token).await;
        if retry.status() == 200 {
            break;
        }
        assert!(started.elapsed() < WITHIN, "slot never freed");
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
}

/// A second feed reader (the issuer audience exists already).
async fn reader_again(app: &TestApp) -> (TestClient, String) {
    let client = app.client().await;
    app.grant(&client, &app.issuer(), &["mayfly:revocations:read"])
        .await;
    let body = app
        .token_ok(
            Auth::Basic(&client),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "mayfly:revocations:read"),
                ("resource", &app.issuer()),
            ],
        )
        .await;
    (client, body["access_token"].as_str().unwrap().to_owned())
}

async fn shutdown_closes_streams(mut app: TestApp) {
    let (_, token) = reader(&app).await;
    let stream = open(&app, &token).await;
    assert_eq!(stream.status(), 200);
    app.shut_down();
    ends_within(stream, "shutdown").await;
}

/// The SDK's feed follower, its stream ended because its token was revoked, reconnects
/// with a fresh token and goes on receiving revocations.
async fn sdk_follows_the_feed_again_after_its_stream_is_ended(app: TestApp) {
    use std::sync::Arc;

    use mayfly_core::revocation::RevocationKind;
    use mayfly_server::service::RevokeSpec;

    let (client, _) = reader(&app).await;
    app.audience("https://api.example.com/orders", &["orders:read"])
        .await;
    let verifier = mayfly_sdk::Verifier::builder(app.issuer(), "https://api.example.com/orders")
        .http_client(crate::helpers::issuer_http(&app))
        .clock(Arc::new(crate::helpers::AppClock(app.clock.clone())))
        .revocation_feed(
            client.id.to_string(),
            mayfly_sdk::ClientSecret::new(client.secret.clone()),
        )
        .build()
        .await
        .unwrap();
    let reaches = |n: usize| {
        let verifier = &verifier;
        async move {
            let started = Instant::now();
            while verifier.revocation_count() < n {
                assert!(
                    started.elapsed() < StdDuration::from_secs(15),
                    "the feed never delivered revocation {n}"
                );
                tokio::time::sleep(StdDuration::from_millis(50)).await;
            }
        }
    };
    let revoke = |kind: RevocationKind, value: String| {
        let app = &app;
        async move {
            app.admin()
                .create_revocation(RevokeSpec::now(kind, value, "test"))
                .await
                .unwrap();
            app.state.revocations.catch_up().await.unwrap();
        }
    };
    revoke(RevocationKind::Jti, "first".into()).await;
    reaches(1).await;
    // Every token the feed reader held is revoked: its stream ends.
    revoke(RevocationKind::Client, client.id.to_string()).await;
    reaches(2).await;
    // Past the margin, a fresh token of the reader is good again; the old stream ends
    // within a second or two and the SDK reconnects.
    app.clock.advance(Duration::seconds(3));
    tokio::time::sleep(StdDuration::from_secs(3)).await;
    revoke(RevocationKind::Jti, "after the reconnect".into()).await;
    reaches(3).await;
}

/// Renames the revocations table from outside the app: this replica can no longer read
/// what other replicas revoke.
async fn hide_revocations(app: &TestApp, hidden: bool) {
    use sqlx::Connection as _;
    let sql = if hidden {
        "ALTER TABLE revocations RENAME TO revocations_hidden"
    } else {
        "ALTER TABLE revocations_hidden RENAME TO revocations"
    };
    match app.state.store.backend() {
        mayfly_store::Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&app.db_url).await.unwrap();
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
        mayfly_store::Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&app.db_url).await.unwrap();
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
    }
}

/// A replica that cannot read the store's revocations does not keep its streams alive
/// with keep-alives while revocations made elsewhere never reach them: within
/// `STALE_AFTER` (5 s) and a check they end (`revocations unavailable`), and new ones
/// are refused with 503 until it reads the store again.
async fn a_replica_that_cannot_read_revocations_ends_its_streams(app: TestApp) {
    let (_, token) = reader(&app).await;
    let mut stream = open(&app, &token).await;
    assert_eq!(stream.status(), 200);
    hide_revocations(&app, true).await;
    let started = Instant::now();
    let mut seen = Vec::new();
    let ended = tokio::time::timeout(StdDuration::from_secs(10), async {
        while let Ok(Some(chunk)) = stream.chunk().await {
            seen.extend_from_slice(&chunk);
        }
    })
    .await;
    assert!(ended.is_ok(), "stream still open after 10 s");
    let text = String::from_utf8_lossy(&seen);
    assert!(text.contains("revocations unavailable"), "{text}");
    assert!(started.elapsed() >= StdDuration::from_secs(4), "{text}");
    let refused = open(&app, &token).await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));

    hide_revocations(&app, false).await;
    let reopened = tokio::time::timeout(StdDuration::from_secs(5), async {
        loop {
            let response = open(&app, &token).await;
            if response.status() == 200 {
                return;
            }
            tokio::time::sleep(StdDuration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        reopened.is_ok(),
        "streams open again once the store is readable"
    );
}
