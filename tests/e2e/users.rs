//! People: the password grant (success, failure, lockout, disabled, equal timing) and
//! refresh tokens (rotation, narrowing, binding, timeouts, reuse detection).

use std::time::Instant;

use mayfly_server::service::UserChanges;
use serde_json::Value;
use time::Duration;

use crate::helpers::{TestApp, TestClient, assert_oauth_error};

const ORDERS: &str = "https://api.example.com/orders";
const PASSWORD: &str = "correct horse battery staple";

crate::both_stores!(
    password_success_failure_lockout_and_disabled,
    unknown_user_and_wrong_password_take_the_same_time,
    refresh_tokens_rotate_and_only_narrow,
    refresh_token_reuse_revokes_the_family_and_its_tokens,
    a_forged_secret_under_a_real_selector_is_unknown_and_ends_nothing,
    concurrent_uses_of_one_refresh_token_issue_once,
    a_token_minted_here_is_checked_again_when_used_here,
    revoking_a_refresh_token_ends_the_login,
    admin_api_sets_grant_types_and_may_act,
);

async fn setup(app: &TestApp) -> (uuid::Uuid, TestClient) {
    app.audience(ORDERS, &["orders:read", "orders:write"]).await;
    let alice = app.user("alice", PASSWORD).await;
    app.grant_user(alice, ORDERS, &["orders:read"]).await;
    let cli = app.client_for(&["password", "refresh_token"]).await;
    (alice, cli)
}

/// Disables `user` through `app`'s admin service.
async fn disable(app: &TestApp, user: uuid::Uuid) {
    app.admin()
        .update_user(
            user,
            UserChanges {
                enabled: Some(false),
                ..UserChanges::default()
            },
        )
        .await
        .unwrap();
}

async fn ok(response: reqwest::Response) -> Value {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

fn s<'a>(body: &'a Value, field: &str) -> &'a str {
    body[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {body}"))
}

async fn password_success_failure_lockout_and_disabled(app: TestApp) {
    let (alice, cli) = setup(&app).await;

    // Success: a token for alice, obtained by the client, under alice's grants.
    let body = ok(app.login(&cli, "alice", PASSWORD, "orders:read").await).await;
    assert_eq!(body["scope"], "orders:read");
    let claims = app.claims_of(s(&body, "access_token"));
    assert_eq!(claims.sub, alice.to_string());
    assert_eq!(claims.client_id, cli.id.to_string());
    assert_eq!(claims.aud, ORDERS);
    let first_refresh = s(&body, "refresh_token").to_owned();
    assert!(first_refresh.starts_with("mfy_rt_"));
    assert!(claims.fam.is_some(), "tokens of a login carry its family");
    // Alice's scopes are alice's grants, not the client's.
    assert_oauth_error(
        app.login(&cli, "alice", PASSWORD, "orders:write").await,
        400,
        "invalid_scope",
    )
    .await;
    // Without a refresh_token grant type, no refresh token.
    let no_refresh = app.client_for(&["password"]).await;
    let body = ok(app
        .login(&no_refresh, "alice", PASSWORD, "orders:read")
        .await)
    .await;
    assert!(body.get("refresh_token").is_none(), "{body}");
    // Clients that may not use the grant; existing clients keep client_credentials.
    let workload = app.client().await;
    assert_oauth_error(
        app.login(&workload, "alice", PASSWORD, "orders:read").await,
        400,
        "unauthorized_client",
    )
    .await;
    assert_oauth_error(
        app.token_request(
            crate::helpers::Auth::Basic(&cli),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "orders:read"),
            ],
        )
        .await,
        400,
        "unauthorized_client",
    )
    .await;
    // Bad client credentials fail before any password check.
    let wrong_client = TestClient {
        secret: "mfy_cs_wrong".into(),
        ..cli.clone()
    };
    assert_oauth_error(
        app.login(&wrong_client, "alice", PASSWORD, "orders:read")
            .await,
        401,
        "invalid_client",
    )
    .await;

    // Failures look alike, whatever the cause.
    let wrong = assert_oauth_error(
        app.login(&cli, "alice", "not the password at all", "orders:read")
            .await,
        400,
        "invalid_grant",
    )
    .await;
    let unknown = assert_oauth_error(
        app.login(&cli, "mallory", PASSWORD, "orders:read").await,
        400,
        "invalid_grant",
    )
    .await;
    assert_eq!(wrong, unknown);
    assert_oauth_error(
        app.token_request(
            crate::helpers::Auth::Basic(&cli),
            &[("grant_type", "password"), ("username", "alice")],
        )
        .await,
        400,
        "invalid_request",
    )
    .await;

    // Lockout: 5 consecutive failures (one so far), then even the password fails.
    for _ in 0..4 {
        assert_oauth_error(
            app.login(&cli, "alice", "still the wrong one", "orders:read")
                .await,
            400,
            "invalid_grant",
        )
        .await;
    }
    let locked = app.state.store.user(alice).await.unwrap().unwrap();
    assert_eq!(locked.locked_until, Some(app.now() + Duration::minutes(15)));
    let refused = assert_oauth_error(
        app.login(&cli, "alice", PASSWORD, "orders:read").await,
        400,
        "invalid_grant",
    )
    .await;
    assert_eq!(
        refused, unknown,
        "a lockout does not reveal the user exists"
    );
    // Attempts during the lockout do not extend it.
    app.login(&cli, "alice", "wrong again", "orders:read").await;
    assert_eq!(
        app.state
            .store
            .user(alice)
            .await
            .unwrap()
            .unwrap()
            .locked_until,
        locked.locked_until
    );
    app.clock.advance(Duration::minutes(15));
    let body = ok(app.login(&cli, "alice", PASSWORD, "orders:read").await).await;
    assert!(body["access_token"].is_string());
    let cleared = app.state.store.user(alice).await.unwrap().unwrap();
    assert_eq!((cleared.failed_logins, cleared.locked_until), (0, None));

    // Audited, never with the password.
    let failures = app.audit("user.auth_failed").await;
    let reasons: Vec<&str> = failures
        .iter()
        .map(|e| e.detail["reason"].as_str().unwrap())
        .collect();
    for expected in [
        "unknown user",
        "wrong password",
        "wrong password; now locked out",
        "locked out",
    ] {
        assert!(reasons.contains(&expected), "{expected}: {reasons:?}");
    }
    assert!(
        failures
            .iter()
            .filter(|e| e.detail["reason"] != "unknown user")
            .all(|e| e.subject.as_deref() == Some(alice.to_string().as_str()))
    );
    let everything = format!("{:?}", app.audit("user.auth_failed").await)
        + &format!("{:?}", app.audit("token.issued").await);
    for secret in [PASSWORD, "not the password at all", "still the wrong one"] {
        assert!(!everything.contains(secret), "{secret} in the audit log");
    }

    // A disabled user gets nothing, right password or not.
    disable(&app, alice).await;
    assert_oauth_error(
        app.login(&cli, "alice", PASSWORD, "orders:read").await,
        400,
        "invalid_grant",
    )
    .await;
    let last = &app.audit("user.auth_failed").await[0];
    assert_eq!(last.detail["reason"], "user disabled");
    // Nor does a refresh of an earlier login: disabling ended it (by a revocation,
    // which this process knows at once).
    assert_oauth_error(
        app.refresh(&cli, &first_refresh, &[]).await,
        400,
        "invalid_grant",
    )
    .await;
    assert_eq!(
        app.audit("token.denied").await[0].detail["reason"],
        "a revocation covers this login"
    );
}

/// The same work for a user that does not exist as for a wrong password: medians of a
/// few requests each, interleaved, within a small ratio.
async fn unknown_user_and_wrong_password_take_the_same_time(app: TestApp) {
    let (_, cli) = setup(&app).await;
    let mut unknown = Vec::new();
    let mut wrong = Vec::new();
    // Warm up connections and the caches once.
    app.login(&cli, "nobody", PASSWORD, "orders:read").await;
    for round in 0..16 {
        let start = Instant::now();
        let r = app.login(&cli, "nobody", PASSWORD, "orders:read").await;
        unknown.push(start.elapsed());
        assert_eq!(r.status(), 400);
        let start = Instant::now();
        let r = app
            .login(&cli, "alice", "wrong password!", "orders:read")
            .await;
        wrong.push(start.elapsed());
        assert_eq!(r.status(), 400);
        if round % 4 == 3 {
            // Stay below the lockout threshold.
            ok(app.login(&cli, "alice", PASSWORD, "orders:read").await).await;
        }
    }
    let median = |mut v: Vec<std::time::Duration>| {
        v.sort();
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2
    };
    let (u, w) = (median(unknown), median(wrong));
    let ratio = u.as_secs_f64().max(w.as_secs_f64()) / u.as_secs_f64().min(w.as_secs_f64());
    println!("password timing: unknown user {u:?}, wrong password {w:?}, ratio {ratio:.3}");
    assert!(ratio < 1.5, "unknown {u:?} vs wrong {w:?}");
}

async fn refresh_tokens_rotate_and_only_narrow(app: TestApp) {
    let (alice, cli) = setup(&app).await;
    app.grant_user(alice, ORDERS, &["orders:write"]).await;
    let login = ok(app
        .login(&cli, "alice", PASSWORD, "orders:read orders:write")
        .await)
    .await;
    let rt1 = s(&login, "refresh_token").to_owned();
    let family = app.claims_of(s(&login, "access_token")).fam.unwrap();

    // Rotation: a new access token and a new refresh token each time.
    let second = ok(app.refresh(&cli, &rt1, &[]).await).await;
    let rt2 = s(&second, "refresh_token").to_owned();
    assert_ne!(rt2, rt1);
    assert_eq!(second["scope"], "orders:read orders:write");
    let claims = app.claims_of(s(&second, "access_token"));
    assert_eq!(
        (
            claims.sub.as_str(),
            claims.aud.as_str(),
            claims.fam.as_deref()
        ),
        (alice.to_string().as_str(), ORDERS, Some(family.as_str()))
    );
    // Fewer scopes: fine. More: never.
    let third = ok(app.refresh(&cli, &rt2, &[("scope", "orders:read")]).await).await;
    assert_eq!(third["scope"], "orders:read");
    let rt3 = s(&third, "refresh_token").to_owned();
    app.audience("https://api.example.com/admin", &["orders:delete"])
        .await;
    assert_oauth_error(
        app.refresh(&cli, &rt3, &[("scope", "orders:read orders:delete")])
            .await,
        400,
        "invalid_scope",
    )
    .await;
    // Only for the login's audience.
    assert_oauth_error(
        app.refresh(&cli, &rt3, &[("resource", "https://api.example.com/admin")])
            .await,
        400,
        "invalid_target",
    )
    .await;
    // Bound to its client: another client gets nothing (and does not consume it).
    let other = app.client_for(&["password", "refresh_token"]).await;
    assert_oauth_error(app.refresh(&other, &rt3, &[]).await, 400, "invalid_grant").await;
    // A client that may not refresh cannot even try.
    let no_refresh = app.client_for(&["password"]).await;
    assert_oauth_error(
        app.refresh(&no_refresh, &rt3, &[]).await,
        400,
        "unauthorized_client",
    )
    .await;
    assert_oauth_error(
        app.refresh(&cli, "mfy_rt_not-a-real-one", &[]).await,
        400,
        "invalid_grant",
    )
    .await;
    // Refused requests above did not consume rt3; the grants are checked each time.
    let fourth = ok(app.refresh(&cli, &rt3, &[]).await).await;
    assert_eq!(
        fourth["scope"], "orders:read orders:write",
        "the login's scopes"
    );
    let rt4 = s(&fourth, "refresh_token").to_owned();

    // Idle timeout (24 h): unused that long, it is dead.
    app.clock.advance(Duration::hours(24));
    assert_oauth_error(app.refresh(&cli, &rt4, &[]).await, 400, "invalid_grant").await;

    // Absolute lifetime (7 d): however often it is refreshed.
    let login = ok(app.login(&cli, "alice", PASSWORD, "orders:read").await).await;
    let mut rt = s(&login, "refresh_token").to_owned();
    for _ in 0..7 {
        app.clock.advance(Duration::hours(23));
        let body = ok(app.refresh(&cli, &rt, &[]).await).await;
        rt = s(&body, "refresh_token").to_owned();
    }
    app.clock.advance(Duration::hours(23));
    assert_oauth_error(app.refresh(&cli, &rt, &[]).await, 400, "invalid_grant").await;
    let denied = app.audit("token.denied").await;
    let reasons: Vec<&str> = denied
        .iter()
        .filter_map(|e| e.detail["reason"].as_str())
        .collect();
    for expected in [
        "refresh token idle too long",
        "refresh family past its lifetime",
        "refresh token bound to another client",
        "unknown refresh token",
    ] {
        assert!(reasons.contains(&expected), "{expected}: {reasons:?}");
    }
    let log = format!("{denied:?}") + &format!("{:?}", app.audit("token.issued").await);
    assert!(
        !log.contains(&rt1[7..]),
        "refresh tokens never reach the audit log"
    );
}

/// `token` with the last byte of its secret changed: its selector (the lookup key, no
/// secret) is that of a real token.
fn forged(token: &str) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let body = token.strip_prefix("mfy_rt_").unwrap();
    let mut bytes = URL_SAFE_NO_PAD.decode(body).unwrap();
    assert_eq!(bytes.len(), 48, "selector and secret");
    bytes[47] ^= 1;
    format!("mfy_rt_{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The selector finds a row; only the secret proves the token. A forged secret under
/// the selector of a used token must not pass for reuse (which would let anyone who
/// saw a selector end a login), nor consume the live one.
async fn a_forged_secret_under_a_real_selector_is_unknown_and_ends_nothing(app: TestApp) {
    let (_, cli) = setup(&app).await;
    let login = ok(app.login(&cli, "alice", PASSWORD, "orders:read").await).await;
    let rt1 = s(&login, "refresh_token").to_owned();
    let second = ok(app.refresh(&cli, &rt1, &[]).await).await;
    let rt2 = s(&second, "refresh_token").to_owned();

    for fake in [forged(&rt1), forged(&rt2)] {
        assert_oauth_error(app.refresh(&cli, &fake, &[]).await, 400, "invalid_grant").await;
    }
    // RFC 7009 with a forged token: ignored, as for any unknown token.
    let revoked = app
        .http
        .post(format!("{}/oauth2/revoke", app.base))
        .basic_auth(cli.id, Some(&cli.secret))
        .form(&[("token", forged(&rt2).as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let third = ok(app.refresh(&cli, &rt2, &[]).await).await;
    assert_eq!(third["scope"], "orders:read");
    let anomalies = app.audit("anomaly").await;
    assert!(anomalies.is_empty(), "{anomalies:?}");
}

async fn refresh_token_reuse_revokes_the_family_and_its_tokens(app: TestApp) {
    let (_, cli) = setup(&app).await;
    // The login client trades one of its own tokens (exchange is not impersonation).
    app.admin()
        .update_client(
            cli.id,
            mayfly_server::service::ClientChanges {
                grant_types: Some(vec![
                    "password".into(),
                    "refresh_token".into(),
                    "urn:ietf:params:oauth:grant-type:token-exchange".into(),
                ]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let exchanger = cli.clone();
    let (rs, reader) = app.introspector().await;
    let login = ok(app.login(&cli, "alice", PASSWORD, "orders:read").await).await;
    let at1 = s(&login, "access_token").to_owned();
    let rt1 = s(&login, "refresh_token").to_owned();
    let second = ok(app.refresh(&cli, &rt1, &[]).await).await;
    let at2 = s(&second, "access_token").to_owned();
    let rt2 = s(&second, "refresh_token").to_owned();
    let third = ok(app.refresh(&cli, &rt2, &[]).await).await;
    let at3 = s(&third, "access_token").to_owned();
    let rt3 = s(&third, "refresh_token").to_owned();
    // A token exchanged from one of the family's.
    let exchanged = ok(app
        .token_request(
            crate::helpers::Auth::Basic(&exchanger),
            &[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("subject_token", &at2),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                ),
            ],
        )
        .await)
    .await;
    let ex = s(&exchanged, "access_token").to_owned();
    // Another login of the same user: a separate family.
    let other = ok(app.login(&cli, "alice", PASSWORD, "orders:read").await).await;
    let other_at = s(&other, "access_token").to_owned();
    for token in [&at1, &at2, &at3, &ex, &other_at] {
        assert!(app.is_active(&rs, token).await);
    }

    // Reuse of rt1 (already rotated): refused, the family is revoked.
    app.clock.advance(Duration::seconds(1));
    assert_oauth_error(app.refresh(&cli, &rt1, &[]).await, 400, "invalid_grant").await;
    let anomaly = &app.audit("anomaly").await[0];
    assert_eq!(anomaly.detail["anomaly"], "refresh_token_reuse");
    assert_eq!(
        anomaly.client_id.as_deref(),
        Some(cli.id.to_string().as_str())
    );
    let family = app.claims_of(&at1).fam.unwrap();
    assert_eq!(anomaly.detail["family"], family.as_str());
    // Even the newest refresh token of the family is dead now.
    assert_oauth_error(app.refresh(&cli, &rt3, &[]).await, 400, "invalid_grant").await;
    // Every access token issued from the family, and what was exchanged from one, is
    // revoked: for introspection and for offline verifiers following the feed.
    for token in [&at1, &at2, &at3, &ex] {
        assert!(!app.is_active(&rs, token).await);
        assert!(app.feed_revokes(&reader, token).await);
    }
    assert!(app.is_active(&rs, &other_at).await, "other logins live on");
    assert!(!app.feed_revokes(&reader, &other_at).await);
    let other_rt = s(&other, "refresh_token");
    ok(app.refresh(&cli, other_rt, &[]).await).await;
    // Reusing again is refused and audited again, without a second revocation.
    assert_oauth_error(app.refresh(&cli, &rt2, &[]).await, 400, "invalid_grant").await;
    let anomalies = app.audit("anomaly").await;
    assert_eq!(anomalies.len(), 2);
    assert_eq!(anomalies[0].detail["family_already_revoked"], true);
}

/// A stolen refresh token raced against its holder: concurrent uses of one token. One
/// wins; every other is reuse, refused and audited, with no token issued for it; and
/// the reuse revokes the family, the winner's tokens with it.
async fn concurrent_uses_of_one_refresh_token_issue_once(app: TestApp) {
    let (_, cli) = setup(&app).await;
    let (rs, _) = app.introspector().await;
    let login = ok(app.login(&cli, "alice", PASSWORD, "orders:read").await).await;
    let rt = s(&login, "refresh_token").to_owned();
    let issued_before = app.audit("token.issued").await.len();
    let attempts =
        futures_util::future::join_all((0..8).map(|_| app.refresh(&cli, &rt, &[]))).await;
    let mut winners = Vec::new();
    for response in attempts {
        if response.status() == 200 {
            winners.push(ok(response).await);
        } else {
            assert_oauth_error(response, 400, "invalid_grant").await;
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let issued = app.audit("token.issued").await;
    assert_eq!(
        issued.len(),
        issued_before + 1,
        "only the winner's token is audited as issued"
    );
    let winner = &winners[0];
    assert_eq!(
        issued[0].jti.as_deref(),
        Some(app.claims_of(s(winner, "access_token")).jti.as_str())
    );
    let reuses = app.audit("anomaly").await;
    assert!(!reuses.is_empty());
    assert!(
        reuses
            .iter()
            .all(|e| e.detail["anomaly"] == "refresh_token_reuse")
    );
    assert!(!app.is_active(&rs, s(winner, "access_token")).await);
    assert_oauth_error(
        app.refresh(&cli, s(winner, "refresh_token"), &[]).await,
        400,
        "invalid_grant",
    )
    .await;
}

/// The replica that minted a refresh token keeps it, so that its next refresh there
/// skips the read; whatever happened to the token elsewhere is still found when the
/// rotation commits. Used at another replica, its use here is reuse; its login ended or
/// its user deleted elsewhere, it is refused here without an anomaly.
async fn a_token_minted_here_is_checked_again_when_used_here(app: TestApp) {
    let (alice, cli) = setup(&app).await;
    let other = app.replica().await;
    let refresh_token = |login: &Value| s(login, "refresh_token").to_owned();

    let login = ok(app.login(&cli, "alice", PASSWORD, "orders:read").await).await;
    let elsewhere = ok(other.refresh(&cli, &refresh_token(&login), &[]).await).await;
    let issued = app.audit("token.issued").await.len();
    assert_oauth_error(
        app.refresh(&cli, &refresh_token(&login), &[]).await,
        400,
        "invalid_grant",
    )
    .await;
    let anomalies = app.audit("anomaly").await;
    assert_eq!(anomalies.len(), 1, "{anomalies:?}");
    assert_eq!(anomalies[0].detail["anomaly"], "refresh_token_reuse");
    assert!(anomalies[0].detail["used_at"].is_number(), "{anomalies:?}");
    assert_eq!(
        app.audit("token.issued").await.len(),
        issued,
        "no token issued for the reuse"
    );
    // The family is revoked: the token the other replica handed out is dead too.
    assert_oauth_error(
        other.refresh(&cli, &refresh_token(&elsewhere), &[]).await,
        400,
        "invalid_grant",
    )
    .await;

    // The login ended elsewhere (its user disabled there).
    let login = ok(app.login(&cli, "alice", PASSWORD, "orders:read").await).await;
    disable(&other, alice).await;
    assert_oauth_error(
        app.refresh(&cli, &refresh_token(&login), &[]).await,
        400,
        "invalid_grant",
    )
    .await;
    let reason = &app.audit("token.denied").await[0].detail["reason"];
    assert!(
        reason == "refresh family revoked" || reason == "a revocation covers this login",
        "{reason}"
    );

    // Its user deleted elsewhere. Which check refuses depends on what this replica has
    // heard of the deletion yet: the revocation it made, the grants it removed, or at
    // commit the token gone.
    let bob = app.user("bob", PASSWORD).await;
    app.grant_user(bob, ORDERS, &["orders:read"]).await;
    let login = ok(app.login(&cli, "bob", PASSWORD, "orders:read").await).await;
    other.admin().delete_user(bob).await.unwrap();
    let issued = app.audit("token.issued").await.len();
    let refused = app.refresh(&cli, &refresh_token(&login), &[]).await;
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert!(
        matches!(
            body["error"].as_str(),
            Some("invalid_grant" | "invalid_scope")
        ),
        "{body}"
    );
    assert_eq!(app.audit("token.issued").await.len(), issued);
    assert_eq!(app.audit("anomaly").await.len(), 1, "no anomaly for either");
}

/// RFC 7009 for refresh tokens: the client ends the login, access tokens included;
/// another client's attempt changes nothing.
async fn revoking_a_refresh_token_ends_the_login(app: TestApp) {
    let (_, cli) = setup(&app).await;
    let (rs, reader) = app.introspector().await;
    let login = ok(app.login(&cli, "alice", PASSWORD, "orders:read").await).await;
    let at = s(&login, "access_token").to_owned();
    let rt = s(&login, "refresh_token").to_owned();
    let revoke = |client: TestClient, token: String| {
        let app = &app;
        async move {
            app.http
                .post(format!("{}/oauth2/revoke", app.base))
                .basic_auth(client.id, Some(&client.secret))
                .form(&[
                    ("token", token.as_str()),
                    ("token_type_hint", "refresh_token"),
                ])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let other = app.client_for(&["password", "refresh_token"]).await;
    assert_eq!(revoke(other, rt.clone()).await, 200);
    assert!(
        app.is_active(&rs, &at).await,
        "another client cannot end it"
    );
    app.clock.advance(Duration::seconds(1));
    assert_eq!(revoke(cli.clone(), rt.clone()).await, 200);
    assert!(!app.is_active(&rs, &at).await);
    assert!(app.feed_revokes(&reader, &at).await);
    assert_oauth_error(app.refresh(&cli, &rt, &[]).await, 400, "invalid_grant").await;
    assert_eq!(revoke(cli.clone(), "mfy_rt_unknown".into()).await, 200);
    let revoked = app.audit("token.revoked").await;
    assert!(revoked.iter().any(|e| e.detail["kind"] == "family"));
    assert!(!format!("{revoked:?}").contains(&rt[7..]));
}

/// The admin REST API: clients' `grant_types` (default client_credentials, validated)
/// and grants' `may_act` (existing clients or users only).
async fn admin_api_sets_grant_types_and_may_act(app: TestApp) {
    let api = app.bootstrap_admin().await;
    app.audience(ORDERS, &["orders:read"]).await;
    let plain = api
        .post(
            "/admin/v1/clients",
            serde_json::json!({ "name": "workload" }),
        )
        .await;
    assert_eq!(
        plain.ok(201)["grant_types"],
        serde_json::json!(["client_credentials"])
    );
    let cli = api
        .post(
            "/admin/v1/clients",
            serde_json::json!({ "name": "cli", "grant_types": ["password", "refresh_token"] }),
        )
        .await;
    let cli_id = cli.ok(201)["id"].as_str().unwrap().to_owned();
    let bad = api
        .patch(
            &format!("/admin/v1/clients/{cli_id}"),
            serde_json::json!({ "grant_types": ["implicit"] }),
        )
        .await;
    assert_eq!(
        bad.problem(422)["errors"][0]["field"],
        "grant_types",
        "{}",
        bad.body
    );
    let changed = api
        .patch(
            &format!("/admin/v1/clients/{cli_id}"),
            serde_json::json!({ "grant_types": ["password"] }),
        )
        .await;
    assert_eq!(
        changed.ok(200)["grant_types"],
        serde_json::json!(["password"])
    );

    let user = api
        .post(
            "/admin/v1/users",
            serde_json::json!({ "username": "alice", "password": PASSWORD }),
        )
        .await;
    let user_id = user.ok(201)["id"].as_str().unwrap().to_owned();
    let grant = api
        .post(
            "/admin/v1/grants",
            serde_json::json!({
                "subject": { "kind": "user", "id": user_id },
                "audience": ORDERS, "scopes": ["orders:read"], "may_act": [cli_id],
            }),
        )
        .await;
    let grant_id = grant.ok(201)["id"].as_str().unwrap().to_owned();
    assert_eq!(grant.body["may_act"], serde_json::json!([cli_id]));
    let unknown = api
        .patch(
            &format!("/admin/v1/grants/{grant_id}"),
            serde_json::json!({ "may_act": [uuid::Uuid::now_v7()] }),
        )
        .await;
    assert_eq!(
        unknown.problem(422)["errors"][0]["field"],
        "may_act",
        "{}",
        unknown.body
    );
    let cleared = api
        .patch(
            &format!("/admin/v1/grants/{grant_id}"),
            serde_json::json!({ "may_act": [] }),
        )
        .await;
    assert_eq!(cleared.ok(200)["may_act"], serde_json::json!([]));
}
