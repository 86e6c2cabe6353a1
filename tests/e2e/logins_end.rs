//! Whatever ends a login ends every path to it: refresh families end on subject,
//! client and family revocations, on a password change, on disabling (re-enabling
//! does not revive them) and on deletion.

use serde_json::{Value, json};
use time::Duration;
use uuid::Uuid;

use crate::helpers::{AdminApi, TestApp, TestClient, assert_oauth_error};

const ORDERS: &str = "https://api.example.com/orders";
const PASSWORD: &str = "correct horse battery staple";

crate::both_stores!(
    subject_revocation_ends_refresh_families,
    client_revocation_ends_refresh_families,
    family_revocation_ends_the_family,
    password_change_ends_logins,
    disabling_ends_logins_and_reenabling_does_not_revive_them,
    deleting_the_user_ends_logins,
    ending_the_users_grant_ends_what_it_covered,
);

struct Login {
    alice: Uuid,
    cli: TestClient,
    access: String,
    refresh: String,
}

async fn login(app: &TestApp) -> Login {
    login_granted(app).await.0
}

/// A login, and the id of the grant behind it.
async fn login_granted(app: &TestApp) -> (Login, Uuid) {
    app.audience(ORDERS, &["orders:read"]).await;
    let alice = app.user("alice", PASSWORD).await;
    let grant = app.grant_user(alice, ORDERS, &["orders:read"]).await;
    let cli = app.client_for(&["password", "refresh_token"]).await;
    let response = app.login(&cli, "alice", PASSWORD, "orders:read").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let login = Login {
        alice,
        cli,
        access: body["access_token"].as_str().unwrap().to_owned(),
        refresh: body["refresh_token"].as_str().unwrap().to_owned(),
    };
    (login, grant)
}

/// Users' grants are kept in memory for refresh and introspection: ending one must
/// still end, at once, every refresh and every token it covered.
async fn ending_the_users_grant_ends_what_it_covered(app: TestApp) {
    let (login, grant) = login_granted(&app).await;
    let (rs, _) = app.introspector().await;
    // Both paths have read (and kept) the user's grants.
    assert!(app.is_active(&rs, &login.access).await);
    let response = app.refresh(&login.cli, &login.refresh, &[]).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap().to_owned();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    assert!(app.is_active(&rs, &access).await);

    app.admin().delete_grant(grant).await.unwrap();
    for token in [&login.access, &access] {
        assert!(!app.is_active(&rs, token).await);
    }
    assert_oauth_error(
        app.refresh(&login.cli, &refresh, &[]).await,
        400,
        "invalid_scope",
    )
    .await;
}

/// The login's refresh token is refused, a second later (its successor's `iat` would be
/// past any cutoff, so only the family's end can stop it).
async fn refresh_refused(app: &TestApp, login: &Login) {
    app.clock.advance(Duration::seconds(1));
    assert_oauth_error(
        app.refresh(&login.cli, &login.refresh, &[]).await,
        400,
        "invalid_grant",
    )
    .await;
}

async fn revoke(admin: &AdminApi<'_>, kind: &str, value: &str) {
    admin
        .post(
            "/admin/v1/revocations",
            json!({"kind": kind, "value": value, "reason": "test"}),
        )
        .await
        .ok(201);
}

async fn subject_revocation_ends_refresh_families(app: TestApp) {
    let admin = app.bootstrap_admin().await;
    let login = login(&app).await;
    app.clock.advance(Duration::seconds(1));
    revoke(&admin, "subject", &login.alice.to_string()).await;
    refresh_refused(&app, &login).await;
    // A new login after the revocation works.
    app.clock.advance(Duration::seconds(10));
    assert_eq!(
        app.login(&login.cli, "alice", PASSWORD, "orders:read")
            .await
            .status(),
        200
    );
}

async fn client_revocation_ends_refresh_families(app: TestApp) {
    let admin = app.bootstrap_admin().await;
    let login = login(&app).await;
    app.clock.advance(Duration::seconds(1));
    revoke(&admin, "client", &login.cli.id.to_string()).await;
    refresh_refused(&app, &login).await;
}

async fn family_revocation_ends_the_family(app: TestApp) {
    let admin = app.bootstrap_admin().await;
    let login = login(&app).await;
    let (rs, _) = app.introspector().await;
    let family = app.claims_of(&login.access).fam.unwrap();
    app.clock.advance(Duration::seconds(1));
    revoke(&admin, "family", &family).await;
    assert!(!app.is_active(&rs, &login.access).await);
    refresh_refused(&app, &login).await;
}

async fn password_change_ends_logins(app: TestApp) {
    let admin = app.bootstrap_admin().await;
    let login = login(&app).await;
    let (rs, _) = app.introspector().await;
    app.clock.advance(Duration::seconds(1));
    admin
        .patch(
            &format!("/admin/v1/users/{}", login.alice),
            json!({"password": "another correct horse battery"}),
        )
        .await
        .ok(200);
    assert!(
        !app.is_active(&rs, &login.access).await,
        "access tokens of the old password end too"
    );
    refresh_refused(&app, &login).await;
}

async fn disabling_ends_logins_and_reenabling_does_not_revive_them(app: TestApp) {
    let admin = app.bootstrap_admin().await;
    let login = login(&app).await;
    let user = format!("/admin/v1/users/{}", login.alice);
    app.clock.advance(Duration::seconds(1));
    admin.patch(&user, json!({"enabled": false})).await.ok(200);
    app.clock.advance(Duration::seconds(1));
    admin.patch(&user, json!({"enabled": true})).await.ok(200);
    refresh_refused(&app, &login).await;
}

async fn deleting_the_user_ends_logins(app: TestApp) {
    let admin = app.bootstrap_admin().await;
    let login = login(&app).await;
    app.clock.advance(Duration::seconds(1));
    admin
        .delete(&format!("/admin/v1/users/{}", login.alice))
        .await
        .ok(204);
    refresh_refused(&app, &login).await;
}
