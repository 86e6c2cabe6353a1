//! RFC 8693 token exchange: down-scoping, audiences, lifetime, delegation with and
//! without permission, and revocation cascading from the original.

use mayfly_core::dpop::{self, ProofRequest};
use mayfly_core::jose::JwsKey;
use mayfly_core::revocation::RevocationKind;
use mayfly_server::service::{GrantChanges, RevokeSpec, UserChanges};
use serde_json::Value;
use time::Duration;
use uuid::Uuid;

use crate::helpers::{Auth, TestApp, TestClient, assert_oauth_error};

const ORDERS: &str = "https://api.example.com/orders";
/// A narrower resource server that also understands `orders:read`.
const REPORTS: &str = "https://api.example.com/orders/reports";
const BILLING: &str = "https://api.example.com/billing";
const PASSWORD: &str = "correct horse battery staple";
const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

crate::both_stores!(
    exchange_narrows_scopes_audience_and_lifetime,
    delegation_needs_a_grant_naming_the_actor,
    revoking_the_original_revokes_what_was_exchanged,
    exchange_keeps_sender_constraints,
    delegated_tokens_end_with_their_actor,
);

struct Setup {
    alice: Uuid,
    alice_grant: Uuid,
    cli: TestClient,
    service: TestClient,
}

async fn setup(app: &TestApp) -> Setup {
    app.audience(ORDERS, &["orders:read", "orders:write"]).await;
    app.audience(REPORTS, &["orders:read"]).await;
    app.audience(BILLING, &["billing:read"]).await;
    let alice = app.user("alice", PASSWORD).await;
    let alice_grant = app
        .grant_user(alice, ORDERS, &["orders:read", "orders:write"])
        .await;
    app.grant_user(alice, REPORTS, &["orders:read"]).await;
    // The login client trades its own tokens; the service acts for alice only by
    // delegation (an actor token and a grant naming it).
    let cli = app
        .client_for(&["password", "refresh_token", EXCHANGE])
        .await;
    let service = app.client_for(&["client_credentials", EXCHANGE]).await;
    Setup {
        alice,
        alice_grant,
        cli,
        service,
    }
}

async fn ok(response: reqwest::Response) -> Value {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

fn access_token(body: &Value) -> String {
    body["access_token"].as_str().unwrap().to_owned()
}

async fn login(app: &TestApp, s: &Setup, scope: &str) -> String {
    let response = app
        .token_request(
            Auth::Basic(&s.cli),
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", PASSWORD),
                ("scope", scope),
                ("resource", ORDERS),
            ],
        )
        .await;
    access_token(&ok(response).await)
}

async fn exchange(
    app: &TestApp,
    caller: &TestClient,
    subject_token: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut params = vec![
        ("grant_type", EXCHANGE),
        ("subject_token", subject_token),
        ("subject_token_type", ACCESS_TOKEN),
    ];
    params.extend_from_slice(extra);
    app.token_request(Auth::Basic(caller), &params).await
}

async fn exchange_narrows_scopes_audience_and_lifetime(app: TestApp) {
    let s = setup(&app).await;
    let original = login(&app, &s, "orders:read orders:write").await;
    let before = app.claims_of(&original);

    // A subset of the scopes, same audience by default.
    let body = ok(exchange(&app, &s.cli, &original, &[("scope", "orders:read")]).await).await;
    assert_eq!(body["scope"], "orders:read");
    assert_eq!(body["issued_token_type"], ACCESS_TOKEN);
    assert!(body.get("refresh_token").is_none());
    let narrowed = app.claims_of(&access_token(&body));
    assert_eq!(narrowed.sub, s.alice.to_string(), "still alice's token");
    assert_eq!(narrowed.aud, ORDERS);
    assert_eq!(narrowed.client_id, s.cli.id.to_string());
    assert!(narrowed.exp <= before.exp);
    assert_eq!(narrowed.orig[0].jti, before.jti);
    assert!(narrowed.act.is_none());
    // No scope asked: the same scopes.
    let same = ok(exchange(&app, &s.cli, &original, &[]).await).await;
    assert_eq!(same["scope"], "orders:read orders:write");

    // More than the subject token holds: invalid_scope, even if alice is granted it.
    let read_only = login(&app, &s, "orders:read").await;
    assert_oauth_error(
        exchange(
            &app,
            &s.cli,
            &read_only,
            &[("scope", "orders:read orders:write")],
        )
        .await,
        400,
        "invalid_scope",
    )
    .await;

    // Another audience alice is granted: fine (resource or audience parameter).
    for param in ["resource", "audience"] {
        let body = ok(exchange(
            &app,
            &s.cli,
            &original,
            &[("scope", "orders:read"), (param, REPORTS)],
        )
        .await)
        .await;
        assert_eq!(app.claims_of(&access_token(&body)).aud, REPORTS);
    }
    // One she is not granted, or that does not exist: invalid_target.
    for target in [BILLING, "https://nowhere.example"] {
        assert_oauth_error(
            exchange(&app, &s.cli, &original, &[("resource", target)]).await,
            400,
            "invalid_target",
        )
        .await;
    }

    // Never longer than the original's remaining life.
    app.clock.advance(Duration::seconds(200));
    let late = ok(exchange(&app, &s.cli, &original, &[]).await).await;
    assert!(late["expires_in"].as_u64().unwrap() <= 100, "{late}");
    assert_eq!(app.claims_of(&access_token(&late)).exp, before.exp);

    // What is refused before anything is issued.
    assert_oauth_error(
        app.token_request(
            Auth::Basic(&s.cli),
            &[("grant_type", EXCHANGE), ("subject_token", &original)],
        )
        .await,
        400,
        "invalid_request",
    )
    .await;
    assert_oauth_error(
        exchange(&app, &s.cli, "v4.public.garbage", &[]).await,
        400,
        "invalid_request",
    )
    .await;
    let plain = app.client().await;
    assert_oauth_error(
        exchange(&app, &plain, &original, &[]).await,
        400,
        "unauthorized_client",
    )
    .await;
    // Another client's token, without an actor token: not this client's to trade.
    assert_oauth_error(
        exchange(&app, &s.service, &original, &[]).await,
        400,
        "invalid_grant",
    )
    .await;
    // An expired subject token is not a valid one (RFC 8693 §2.2.2).
    app.clock.advance(Duration::seconds(200));
    assert_oauth_error(
        exchange(&app, &s.cli, &original, &[]).await,
        400,
        "invalid_request",
    )
    .await;
}

async fn delegation_needs_a_grant_naming_the_actor(app: TestApp) {
    let s = setup(&app).await;
    let (rs, _) = app.introspector().await;
    // The service's own token, to present as the actor.
    app.grant(&s.service, BILLING, &["billing:read"]).await;
    let actor = access_token(
        &app.token_ok(
            Auth::Basic(&s.service),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "billing:read"),
            ],
        )
        .await,
    );
    let actor_params = [
        ("actor_token", actor.as_str()),
        ("actor_token_type", ACCESS_TOKEN),
    ];
    let user_token = login(&app, &s, "orders:read orders:write").await;

    // No grant of alice names the service: no delegation.
    assert_oauth_error(
        exchange(&app, &s.service, &user_token, &actor_params).await,
        400,
        "invalid_grant",
    )
    .await;

    // Alice's orders grant lets the service act for her.
    app.admin()
        .update_grant(
            s.alice_grant,
            GrantChanges {
                may_act: Some(vec![s.service.id]),
                ..GrantChanges::default()
            },
        )
        .await
        .unwrap();
    let user_token = login(&app, &s, "orders:read orders:write").await;
    let mut params = actor_params.to_vec();
    params.push(("scope", "orders:write"));
    let body = ok(exchange(&app, &s.service, &user_token, &params).await).await;
    let delegated = access_token(&body);
    let claims = app.claims_of(&delegated);
    assert_eq!(claims.sub, s.alice.to_string());
    assert_eq!(claims.act.as_ref().unwrap().sub, s.service.id.to_string());
    assert_eq!(claims.scope, "orders:write");
    let answer = app.introspect(&rs, &delegated).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["act"]["sub"], s.service.id.to_string());
    // Only where the permitting grant reaches: alice's REPORTS grant names nobody.
    assert_oauth_error(
        exchange(
            &app,
            &s.service,
            &user_token,
            &[
                actor_params[0],
                actor_params[1],
                ("scope", "orders:read"),
                ("resource", REPORTS),
            ],
        )
        .await,
        400,
        "invalid_target",
    )
    .await;
    // An actor token issued to another client is not the caller's to present.
    let other = app.client_for(&["client_credentials", EXCHANGE]).await;
    assert_oauth_error(
        exchange(&app, &other, &user_token, &actor_params).await,
        400,
        "invalid_grant",
    )
    .await;
    // An actor token type is required with the actor token.
    assert_oauth_error(
        exchange(
            &app,
            &s.service,
            &user_token,
            &[("actor_token", actor.as_str())],
        )
        .await,
        400,
        "invalid_request",
    )
    .await;

    // Withdrawing the permission ends the delegated tokens at once.
    app.clock.advance(Duration::seconds(1));
    app.admin()
        .update_grant(
            s.alice_grant,
            GrantChanges {
                may_act: Some(vec![]),
                ..GrantChanges::default()
            },
        )
        .await
        .unwrap();
    app.state.revocations.catch_up().await.unwrap();
    assert!(!app.is_active(&rs, &delegated).await);
    // A token issued after that revocation: active, but no grant lets the service act.
    app.clock.advance(Duration::seconds(5));
    let user_token = login(&app, &s, "orders:read").await;
    assert_oauth_error(
        exchange(&app, &s.service, &user_token, &actor_params).await,
        400,
        "invalid_grant",
    )
    .await;
}

async fn revoking_the_original_revokes_what_was_exchanged(app: TestApp) {
    let s = setup(&app).await;
    let (rs, reader) = app.introspector().await;
    let original = login(&app, &s, "orders:read orders:write").await;
    let first = access_token(
        &ok(exchange(&app, &s.cli, &original, &[("scope", "orders:read")]).await).await,
    );
    // An exchange of an exchange.
    let second =
        access_token(&ok(exchange(&app, &s.cli, &first, &[("resource", REPORTS)]).await).await);
    assert_eq!(app.claims_of(&second).orig.len(), 2);
    // An unrelated token of alice's.
    let unrelated = login(&app, &s, "orders:read").await;
    for token in [&original, &first, &second, &unrelated] {
        assert!(app.is_active(&rs, token).await);
        assert!(!app.feed_revokes(&reader, token).await);
    }

    // The login client revokes the original (RFC 7009).
    let response = app
        .http
        .post(format!("{}/oauth2/revoke", app.base))
        .basic_auth(s.cli.id, Some(&s.cli.secret))
        .form(&[("token", original.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    for token in [&original, &first, &second] {
        assert!(!app.is_active(&rs, token).await, "introspection");
        assert!(app.feed_revokes(&reader, token).await, "offline verifiers");
    }
    assert!(app.is_active(&rs, &unrelated).await);
    // A revoked token cannot be exchanged either.
    assert_oauth_error(
        exchange(&app, &s.cli, &original, &[]).await,
        400,
        "invalid_request",
    )
    .await;

    // Revoking by the original's client (every token it obtained) cascades too, judged
    // by the original's issue time.
    let original = login(&app, &s, "orders:read").await;
    let exchanged = access_token(&ok(exchange(&app, &s.cli, &original, &[]).await).await);
    app.clock.advance(Duration::seconds(1));
    let api = app.admin_with(&["mayfly:admin:revocations"]).await;
    api.post(
        "/admin/v1/revocations",
        serde_json::json!({ "kind": "client", "value": s.cli.id.to_string() }),
    )
    .await
    .ok(201);
    assert!(!app.is_active(&rs, &exchanged).await);
    assert!(app.feed_revokes(&reader, &exchanged).await);
}

fn proof(app: &TestApp, key: &JwsKey) -> String {
    dpop::sign(
        key,
        &ProofRequest {
            htm: "POST",
            htu: &app.token_endpoint(),
            access_token: None,
            nonce: None,
            jti: &Uuid::new_v4().to_string(),
            now: app.now(),
        },
    )
}

/// A DPoP-bound or network-restricted token may be traded only by the holder of its key,
/// from its networks, and what it is traded for is no less constrained.
async fn exchange_keeps_sender_constraints(app: TestApp) {
    let s = setup(&app).await;
    let alices_key = JwsKey::ed25519_from_seed(&[21; 32]);
    let bound = ok(app
        .http
        .post(format!("{}/oauth2/token", app.base))
        .basic_auth(s.cli.id, Some(&s.cli.secret))
        .header("DPoP", proof(&app, &alices_key))
        .form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
            ("scope", "orders:read"),
            ("resource", ORDERS),
        ])
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(bound["token_type"], "DPoP");
    let bound = access_token(&bound);
    let jkt = app.claims_of(&bound).cnf.unwrap().jkt;

    // Without a proof, or with a proof by another key: refused.
    assert_oauth_error(
        exchange(&app, &s.cli, &bound, &[]).await,
        400,
        "invalid_grant",
    )
    .await;
    let params = [
        ("grant_type", EXCHANGE),
        ("subject_token", bound.as_str()),
        ("subject_token_type", ACCESS_TOKEN),
    ];
    let with_proof = |key: &JwsKey| {
        app.http
            .post(format!("{}/oauth2/token", app.base))
            .basic_auth(s.cli.id, Some(&s.cli.secret))
            .header("DPoP", proof(&app, key))
            .form(&params)
            .send()
    };
    let stranger = JwsKey::ed25519_from_seed(&[22; 32]);
    assert_oauth_error(with_proof(&stranger).await.unwrap(), 400, "invalid_grant").await;
    // By the key holder: the new token is bound to the same key.
    let traded = ok(with_proof(&alices_key).await.unwrap()).await;
    assert_eq!(traded["token_type"], "DPoP");
    assert_eq!(app.claims_of(&access_token(&traded)).cnf.unwrap().jkt, jkt);

    // A token for 127.0.0.1 only: traded from there, the new one is as narrow; from
    // another address, refused.
    app.admin()
        .update_grant(
            s.alice_grant,
            GrantChanges {
                allowed_cidrs: Some(vec!["127.0.0.1/32".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // Changing a grant's networks revokes its tokens issued until now + the margin.
    app.clock.advance(Duration::seconds(3));
    let narrow = login(&app, &s, "orders:read").await;
    assert_eq!(app.claims_of(&narrow).cidr, vec!["127.0.0.1/32"]);
    let traded = ok(exchange(&app, &s.cli, &narrow, &[]).await).await;
    assert_eq!(
        app.claims_of(&access_token(&traded)).cidr,
        vec!["127.0.0.1/32"],
        "the exchange keeps the narrower networks"
    );
    let elsewhere = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
        .post(format!("{}/oauth2/token", app.base))
        .basic_auth(s.cli.id, Some(&s.cli.secret))
        .form(&[
            ("grant_type", EXCHANGE),
            ("subject_token", narrow.as_str()),
            ("subject_token_type", ACCESS_TOKEN),
        ])
        .send()
        .await
        .unwrap();
    assert_oauth_error(elsewhere, 400, "invalid_grant").await;
}

/// A delegated token dies with its actor: the actor's login revoked, the actor
/// disabled or deleted, through nested exchanges too; at introspection and for offline
/// verifiers following the feed.
async fn delegated_tokens_end_with_their_actor(app: TestApp) {
    let s = setup(&app).await;
    let (rs, reader) = app.introspector().await;
    let bob = app.user("bob", PASSWORD).await;
    app.grant_user(bob, BILLING, &["billing:read"]).await;
    let desk = app
        .client_for(&["password", "refresh_token", EXCHANGE])
        .await;
    app.admin()
        .update_grant(
            s.alice_grant,
            GrantChanges {
                may_act: Some(vec![bob]),
                ..GrantChanges::default()
            },
        )
        .await
        .unwrap();
    let bob_login = || async {
        access_token(
            &ok(app
                .token_request(
                    Auth::Basic(&desk),
                    &[
                        ("grant_type", "password"),
                        ("username", "bob"),
                        ("password", PASSWORD),
                        ("scope", "billing:read"),
                    ],
                )
                .await)
            .await,
        )
    };
    // alice's token, traded by the desk with bob acting; and that one traded again.
    let delegated = || async {
        let user_token = login(&app, &s, "orders:read").await;
        let actor = bob_login().await;
        let body = ok(exchange(
            &app,
            &desk,
            &user_token,
            &[
                ("actor_token", actor.as_str()),
                ("actor_token_type", ACCESS_TOKEN),
            ],
        )
        .await)
        .await;
        let delegated = access_token(&body);
        assert_eq!(app.claims_of(&delegated).act.unwrap().sub, bob.to_string());
        let nested = access_token(&ok(exchange(&app, &desk, &delegated, &[]).await).await);
        assert_eq!(
            app.claims_of(&nested).act.unwrap().sub,
            bob.to_string(),
            "the nested token keeps the actor"
        );
        (actor, delegated, nested)
    };
    let ended = |tokens: [String; 2], what: &'static str| {
        let (app, rs, reader) = (&app, &rs, &reader);
        async move {
            app.state.revocations.catch_up().await.unwrap();
            for token in &tokens {
                assert!(!app.is_active(rs, token).await, "{what}: introspection");
                assert!(app.feed_revokes(reader, token).await, "{what}: offline");
            }
        }
    };

    // bob's login revoked.
    let (actor, d, n) = delegated().await;
    assert!(app.is_active(&rs, &d).await && app.is_active(&rs, &n).await);
    assert!(!app.feed_revokes(&reader, &d).await);
    let family = app.claims_of(&actor).fam.unwrap();
    app.clock.advance(Duration::seconds(1));
    app.admin()
        .create_revocation(RevokeSpec::now(RevocationKind::Family, family, "test"))
        .await
        .unwrap();
    ended([d, n], "actor's login revoked").await;

    // bob disabled (re-enabling later does not revive what was issued before).
    app.clock.advance(Duration::seconds(30));
    let (_, d, n) = delegated().await;
    app.clock.advance(Duration::seconds(1));
    let toggle = |enabled: bool| UserChanges {
        enabled: Some(enabled),
        ..UserChanges::default()
    };
    app.admin().update_user(bob, toggle(false)).await.unwrap();
    ended([d, n], "actor disabled").await;

    // bob deleted.
    app.admin().update_user(bob, toggle(true)).await.unwrap();
    app.clock.advance(Duration::seconds(30));
    let (_, d, n) = delegated().await;
    app.clock.advance(Duration::seconds(1));
    app.admin().delete_user(bob).await.unwrap();
    ended([d, n], "actor deleted").await;
}
