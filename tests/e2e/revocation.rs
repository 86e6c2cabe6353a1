//! Continuous verification: revocation of every kind, introspection, the feed and its
//! stream, restarts and replicas.

use std::time::{Duration as StdDuration, Instant};

use serde_json::{Value, json};
use time::Duration;

use crate::helpers::{AdminApi, Auth, TestApp, TestClient, answer, assert_oauth_error};

const ORDERS: &str = "https://api.example.com/orders";

crate::both_stores!(
    every_kind_revokes_and_reaches_the_feed,
    introspection_checks_everything,
    clients_revoke_their_own_tokens,
    a_remembered_signature_check_answers_only_for_the_exact_token,
    the_stream_resumes_without_gaps_or_duplicates,
    revocations_survive_a_restart,
    replicas_learn_of_revocations,
    emergency_rotation_over_the_admin_api,
    cutoffs_cover_tokens_signed_before_the_change_propagates,
    a_change_and_its_revocation_commit_together,
    a_create_commits_with_its_audit_event,
    audience_and_scope_changes_commit_with_their_audit_events,
    a_key_rule_never_lapses,
);

/// A service client allowed to introspect and read the feed.
async fn resource_server(app: &TestApp) -> (TestClient, String) {
    let rs = app.client().await;
    app.grant(
        &rs,
        &app.issuer(),
        &["mayfly:introspect", "mayfly:revocations:read"],
    )
    .await;
    let body = app
        .token_ok(
            Auth::Basic(&rs),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "mayfly:revocations:read"),
                ("resource", &app.issuer()),
            ],
        )
        .await;
    (rs, body["access_token"].as_str().unwrap().to_owned())
}

async fn introspect(app: &TestApp, caller: &TestClient, token: &str) -> Value {
    let response = app
        .http
        .post(format!("{}/oauth2/introspect", app.base))
        .basic_auth(caller.id, Some(&caller.secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

async fn active(app: &TestApp, caller: &TestClient, token: &str) -> bool {
    let answer = introspect(app, caller, token).await;
    if answer["active"] == false {
        assert_eq!(
            answer,
            json!({ "active": false }),
            "inactive answers carry nothing else"
        );
    }
    answer["active"] == true
}

async fn token(app: &TestApp, client: &TestClient) -> String {
    let body = app
        .token_ok(
            Auth::Basic(client),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "orders:read"),
                ("resource", ORDERS),
            ],
        )
        .await;
    body["access_token"].as_str().unwrap().to_owned()
}

async fn feed(app: &TestApp, reader: &str, after: &str) -> Value {
    let response = app
        .http
        .get(format!("{}/v1/revocations?after={after}", app.base))
        .bearer_auth(reader)
        .send()
        .await
        .unwrap();
    let answer = answer(response).await;
    answer.ok(200).clone()
}

fn in_feed(page: &Value, kind: &str, value: &str) -> bool {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == kind && e["value"] == value)
}

fn claims(app: &TestApp, token: &str) -> mayfly_core::Claims {
    let keys = app.state.keyring.current();
    let options = mayfly_core::VerifyOptions {
        issuer: &app.state.issuer,
        audience: None,
        leeway: Duration::ZERO,
    };
    mayfly_core::token::verify(token, |kid| keys.public_key(kid), &options, app.now()).unwrap()
}

async fn setup(app: &TestApp) -> (AdminApi<'_>, TestClient, String, TestClient) {
    let api = app.bootstrap_admin().await;
    app.audience(ORDERS, &["orders:read"]).await;
    let worker = app.client().await;
    app.grant(&worker, ORDERS, &["orders:read"]).await;
    let (rs, reader) = resource_server(app).await;
    (api, rs, reader, worker)
}

async fn every_kind_revokes_and_reaches_the_feed(app: TestApp) {
    let (api, rs, reader, worker) = setup(&app).await;

    // One token, by jti, through the admin API.
    let t = token(&app, &worker).await;
    let jti = claims(&app, &t).jti;
    assert!(active(&app, &rs, &t).await);
    api.post(
        "/admin/v1/revocations",
        json!({ "kind": "jti", "value": jti, "reason": "leaked in a log" }),
    )
    .await
    .ok(201);
    assert!(!active(&app, &rs, &t).await);
    assert!(in_feed(&feed(&app, &reader, "").await, "jti", &jti));

    // Every token of a subject. Tokens issued later (the next second on) are unaffected.
    let t = token(&app, &worker).await;
    assert!(active(&app, &rs, &t).await);
    api.post(
        "/admin/v1/revocations",
        json!({ "kind": "subject", "value": worker.id }),
    )
    .await
    .ok(201);
    assert!(!active(&app, &rs, &t).await);
    assert!(in_feed(
        &feed(&app, &reader, "").await,
        "subject",
        &worker.id.to_string()
    ));
    app.clock.advance(Duration::seconds(3)); // past the revocation margin

    // Every token of a grant.
    let t = token(&app, &worker).await;
    assert!(active(&app, &rs, &t).await);
    let gid = claims(&app, &t).gid[0].clone();
    api.post(
        "/admin/v1/revocations",
        json!({ "kind": "grant", "value": gid }),
    )
    .await
    .ok(201);
    assert!(!active(&app, &rs, &t).await);
    assert!(in_feed(&feed(&app, &reader, "").await, "grant", &gid));
    app.clock.advance(Duration::seconds(3)); // past the revocation margin

    // Every token of a client: disabling it revokes them (and is in the feed).
    let t = token(&app, &worker).await;
    assert!(active(&app, &rs, &t).await);
    api.patch(
        &format!("/admin/v1/clients/{}", worker.id),
        json!({ "enabled": false }),
    )
    .await
    .ok(200);
    assert!(!active(&app, &rs, &t).await);
    assert!(in_feed(
        &feed(&app, &reader, "").await,
        "client",
        &worker.id.to_string()
    ));
    // Re-enabled, its old tokens stay dead; new ones (a second later) live.
    api.patch(
        &format!("/admin/v1/clients/{}", worker.id),
        json!({ "enabled": true }),
    )
    .await
    .ok(200);
    assert!(!active(&app, &rs, &t).await);
    app.clock.advance(Duration::seconds(3)); // past the revocation margin
    let fresh = token(&app, &worker).await;
    assert!(active(&app, &rs, &fresh).await);

    // Deleting the grant revokes its tokens.
    let grants = api
        .get(&format!(
            "/admin/v1/grants?subject_kind=client&subject_id={}",
            worker.id
        ))
        .await;
    let grant_id = grants.ok(200)["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    api.delete(&format!("/admin/v1/grants/{grant_id}"))
        .await
        .ok(204);
    assert!(!active(&app, &rs, &fresh).await);

    // The feed is in order, pages by cursor, and the admin view lists the same.
    let page = feed(&app, &reader, "").await;
    let cursors: Vec<i64> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["cursor"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "{cursors:?}");
    let rest = feed(&app, &reader, &cursors[2].to_string()).await;
    assert_eq!(rest["items"].as_array().unwrap().len(), cursors.len() - 3);
    assert_eq!(rest["next_cursor"], page["next_cursor"]);
    let admin_view = api.get("/admin/v1/revocations").await;
    assert_eq!(
        admin_view.ok(200)["items"].as_array().unwrap().len(),
        cursors.len()
    );

    // Every revocation is audited.
    let revoked = app.audit("token.revoked").await;
    assert_eq!(
        revoked.len(),
        5,
        "jti, subject, grant, client (disable), grant (delete)"
    );
    let introspected = app.audit("token.introspected").await;
    assert!(
        introspected.iter().any(|e| e.detail["active"] == true)
            && introspected.iter().any(|e| e.detail["reason"] == "revoked")
    );

    // Validation.
    api.post(
        "/admin/v1/revocations",
        json!({ "kind": "everything", "value": "x" }),
    )
    .await
    .problem(422);
    api.post(
        "/admin/v1/revocations",
        json!({ "kind": "jti", "value": "" }),
    )
    .await
    .problem(422);
    api.post(
        "/admin/v1/revocations",
        json!({ "kind": "jti", "value": "x", "issued_before": "2999-01-01T00:00:00Z" }),
    )
    .await
    .problem(422);

    // Every token signed by a key: the emergency brake. Every token issued so far dies,
    // the admin's and the feed reader's included.
    app.grant(&worker, ORDERS, &["orders:read"]).await;
    app.clock.advance(Duration::seconds(1));
    let t = token(&app, &worker).await;
    assert!(active(&app, &rs, &t).await);
    let kid = mayfly_core::token::peek_key_id(&t).unwrap().to_string();
    api.post(
        "/admin/v1/revocations",
        json!({ "kind": "key", "value": kid }),
    )
    .await
    .ok(201);
    assert!(!active(&app, &rs, &t).await);
    api.get("/admin/v1/revocations").await.problem(401);
    let stale_reader = app
        .http
        .get(format!("{}/v1/revocations", app.base))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(stale_reader.status(), 401);
}

async fn introspection_checks_everything(app: TestApp) {
    let (api, rs, _, worker) = setup(&app).await;
    let t = token(&app, &worker).await;
    let answer_json = introspect(&app, &rs, &t).await;
    let c = claims(&app, &t);
    assert_eq!(answer_json["active"], true);
    assert_eq!(answer_json["client_id"], worker.id.to_string());
    assert_eq!(answer_json["aud"], ORDERS);
    assert_eq!(answer_json["scope"], "orders:read");
    assert_eq!(answer_json["jti"], c.jti);
    assert_eq!(answer_json["exp"], c.exp.unix_timestamp());
    assert_eq!(answer_json["iss"], app.issuer());
    assert_eq!(answer_json["token_type"], "Bearer");

    // Garbage, tampering, another issuer's key: inactive.
    assert!(!active(&app, &rs, "garbage").await);
    let mut tampered = t.clone().into_bytes();
    tampered[30] = if tampered[30] == b'A' { b'B' } else { b'A' };
    assert!(!active(&app, &rs, &String::from_utf8(tampered).unwrap()).await);
    let forged =
        mayfly_core::token::mint(&mayfly_core::SigningKey::from_seed(&[9; 32]), &c).unwrap();
    assert!(!active(&app, &rs, &forged).await);

    // The grant ending early makes it inactive (continuous verification), not only revocation.
    let grant_id = c.gid[0].clone();
    let now = app
        .now()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    api.patch(
        &format!("/admin/v1/grants/{grant_id}"),
        json!({ "expires_at": now }),
    )
    .await
    .ok(200);
    assert!(!active(&app, &rs, &t).await);

    // Expiry.
    api.patch(
        &format!("/admin/v1/grants/{grant_id}"),
        json!({ "expires_at": null }),
    )
    .await
    .ok(200);
    app.clock.advance(Duration::seconds(3)); // past the revocation margin
    let t2 = token(&app, &worker).await;
    assert!(active(&app, &rs, &t2).await);
    app.clock.advance(Duration::seconds(306));
    assert!(!active(&app, &rs, &t2).await);

    // Who may ask.
    let url = format!("{}/oauth2/introspect", app.base);
    let outsider = app
        .http
        .post(&url)
        .basic_auth(worker.id, Some(&worker.secret))
        .form(&[("token", t2.as_str())])
        .send()
        .await
        .unwrap();
    assert_oauth_error(outsider, 403, "unauthorized_client").await;
    let wrong = app
        .http
        .post(&url)
        .basic_auth(rs.id, Some("mfy_cs_wrong"))
        .form(&[("token", t2.as_str())])
        .send()
        .await
        .unwrap();
    assert_oauth_error(wrong, 401, "invalid_client").await;
    let nobody = app
        .http
        .post(&url)
        .form(&[("token", t2.as_str())])
        .send()
        .await
        .unwrap();
    assert_oauth_error(nobody, 401, "invalid_client").await;
    let no_token = app
        .http
        .post(&url)
        .basic_auth(rs.id, Some(&rs.secret))
        .form(&[("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_oauth_error(no_token, 400, "invalid_request").await;
}

async fn clients_revoke_their_own_tokens(app: TestApp) {
    let (_, rs, reader, worker) = setup(&app).await;
    let url = format!("{}/oauth2/revoke", app.base);
    let t = token(&app, &worker).await;

    // Another client cannot revoke it (and learns nothing: 200).
    let other = app.client().await;
    let response = app
        .http
        .post(&url)
        .basic_auth(other.id, Some(&other.secret))
        .form(&[("token", t.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(active(&app, &rs, &t).await);

    // Unknown tokens: 200 (RFC 7009 §2.2). Unsupported hints: 400.
    let response = app
        .http
        .post(&url)
        .basic_auth(worker.id, Some(&worker.secret))
        .form(&[("token", "not-a-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let hint = app
        .http
        .post(&url)
        .basic_auth(worker.id, Some(&worker.secret))
        .form(&[("token", t.as_str()), ("token_type_hint", "id_token")])
        .send()
        .await
        .unwrap();
    assert_oauth_error(hint, 400, "unsupported_token_type").await;
    let unauthenticated = app
        .http
        .post(&url)
        .form(&[("token", t.as_str())])
        .send()
        .await
        .unwrap();
    assert_oauth_error(unauthenticated, 401, "invalid_client").await;

    // Its own client revokes it.
    let response = app
        .http
        .post(&url)
        .basic_auth(worker.id, Some(&worker.secret))
        .form(&[("token", t.as_str()), ("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(!active(&app, &rs, &t).await);
    assert!(in_feed(
        &feed(&app, &reader, "").await,
        "jti",
        &claims(&app, &t).jti
    ));
    // Others of its tokens live on.
    let t2 = token(&app, &worker).await;
    assert!(active(&app, &rs, &t2).await);
}

/// Introspection and the admin API's bearer auth remember a token's signature check
/// (issue #18); what is remembered answers only for the exact token text that verified.
async fn a_remembered_signature_check_answers_only_for_the_exact_token(app: TestApp) {
    let (_, rs, reader, worker) = setup(&app).await;
    let t = token(&app, &worker).await;
    assert!(active(&app, &rs, &t).await);
    assert_eq!(feed_status(&app, &reader).await, 200);
    for (part, changed) in one_character_changed(&t) {
        assert!(
            !active(&app, &rs, &changed).await,
            "changed {part} accepted"
        );
    }
    for (part, changed) in one_character_changed(&reader) {
        assert_eq!(
            feed_status(&app, &changed).await,
            401,
            "changed {part} accepted"
        );
    }
    // The originals still verify (from the cache).
    assert!(active(&app, &rs, &t).await);
    assert_eq!(feed_status(&app, &reader).await, 200);
}

async fn feed_status(app: &TestApp, bearer: &str) -> u16 {
    app.http
        .get(format!("{}/v1/revocations?after=", app.base))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `token` with one character changed in its claims, in its signature and in its footer.
fn one_character_changed(token: &str) -> [(&'static str, String); 3] {
    let (body, footer) = token.rsplit_once('.').unwrap();
    // The body is "v4.public." + base64url(claims ‖ 64-byte signature): the signature is
    // its last 86 characters.
    let at = [
        ("claims", "v4.public.".len() + 20),
        ("signature", body.len() - 20),
        ("footer", body.len() + 1 + footer.len() / 2),
    ];
    at.map(|(part, i)| {
        let mut bytes = token.as_bytes().to_vec();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        (part, String::from_utf8(bytes).unwrap())
    })
}

/// Reads SSE events until `n` revocation events arrived; returns (id, value) pairs.
async fn read_events(response: reqwest::Response, n: usize) -> Vec<(String, String)> {
    let mut response = response;
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = Instant::now() + StdDuration::from_secs(10);
    while events.len() < n {
        let chunk = tokio::time::timeout_at(deadline.into(), response.chunk())
            .await
            .expect("events in time")
            .unwrap()
            .expect("stream open");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let id = block
                .lines()
                .find_map(|l| l.strip_prefix("id:"))
                .map(|s| s.trim().to_owned());
            let data = block
                .lines()
                .find_map(|l| l.strip_prefix("data:"))
                .map(|s| s.trim().to_owned());
            if let (Some(id), Some(data)) = (id, data) {
                let entry: Value = serde_json::from_str(&data).unwrap();
                assert_eq!(entry["cursor"].as_str(), Some(id.as_str()));
                events.push((id, entry["value"].as_str().unwrap().to_owned()));
            }
        }
    }
    events
}

async fn the_stream_resumes_without_gaps_or_duplicates(app: TestApp) {
    let (api, _, reader, _) = setup(&app).await;
    let url = format!("{}/v1/revocations/stream", app.base);
    let live = app
        .http
        .get(&url)
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    assert!(
        live.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    for n in 0..3 {
        api.post(
            "/admin/v1/revocations",
            json!({ "kind": "jti", "value": format!("jti-{n}") }),
        )
        .await
        .ok(201);
    }
    let seen = read_events(live, 3).await;
    assert_eq!(
        seen.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>(),
        ["jti-0", "jti-1", "jti-2"]
    );

    // Reconnect after the first: exactly the rest, then new ones as they come.
    let resumed = app
        .http
        .get(&url)
        .bearer_auth(&reader)
        .header("last-event-id", &seen[0].0)
        .send()
        .await
        .unwrap();
    api.post(
        "/admin/v1/revocations",
        json!({ "kind": "jti", "value": "jti-3" }),
    )
    .await
    .ok(201);
    let rest = read_events(resumed, 3).await;
    assert_eq!(
        rest.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>(),
        ["jti-1", "jti-2", "jti-3"]
    );

    // Authorization and bad cursors.
    assert_eq!(app.http.get(&url).send().await.unwrap().status(), 401);
    let admin_only = app.admin_with(&["mayfly:admin:read"]).await;
    assert_eq!(
        app.http
            .get(&url)
            .bearer_auth(&admin_only.token)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let bad = app
        .http
        .get(&url)
        .bearer_auth(&reader)
        .header("last-event-id", "not-a-cursor")
        .send()
        .await
        .unwrap();
    answer(bad).await.problem(422);
}

async fn revocations_survive_a_restart(app: TestApp) {
    let (api, rs, _, worker) = setup(&app).await;
    let t = token(&app, &worker).await;
    let jti = claims(&app, &t).jti;
    api.post(
        "/admin/v1/revocations",
        json!({ "kind": "jti", "value": jti }),
    )
    .await
    .ok(201);
    let restarted = app.replica().await;
    restarted.clock.advance(app.now() - restarted.now());
    assert!(
        !active(&restarted, &rs, &t).await,
        "loaded from the store at start"
    );
}

async fn replicas_learn_of_revocations(app: TestApp) {
    let (api, rs, reader, worker) = setup(&app).await;
    let b = app.replica().await;
    let stream = b
        .http
        .get(format!("{}/v1/revocations/stream", b.base))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    let t = token(&app, &worker).await;
    assert!(active(&b, &rs, &t).await);
    let jti = claims(&app, &t).jti;
    let start = Instant::now();
    api.post(
        "/admin/v1/revocations",
        json!({ "kind": "jti", "value": jti }),
    )
    .await
    .ok(201);
    // Replica B learns through Postgres NOTIFY (SQLite, being single-process, only
    // through the periodic catch-up).
    let limit = match app.state.store.backend() {
        mayfly_store::Backend::Postgres => StdDuration::from_millis(100),
        mayfly_store::Backend::Sqlite => StdDuration::from_secs(2),
    };
    while active(&b, &rs, &t).await {
        assert!(
            start.elapsed() < limit,
            "replica B still accepts the token after {:?}",
            start.elapsed()
        );
        tokio::time::sleep(StdDuration::from_millis(2)).await;
    }
    eprintln!("revocation reached replica B in {:?}", start.elapsed());
    let seen = read_events(stream, 1).await;
    assert_eq!(seen[0].1, jti);

    // B goes down; revocations continue on A meanwhile.
    drop(b);
    for n in 0..3 {
        api.post(
            "/admin/v1/revocations",
            json!({ "kind": "jti", "value": format!("while-down-{n}") }),
        )
        .await
        .ok(201);
    }
    // B comes back: the revocation is still enforced, and a subscriber resuming from
    // its last cursor gets exactly what it missed, then what comes next.
    let b = app.replica().await;
    b.clock.advance(app.now() - b.now());
    assert!(!active(&b, &rs, &t).await);
    let resumed = b
        .http
        .get(format!("{}/v1/revocations/stream", b.base))
        .bearer_auth(&reader)
        .header("last-event-id", &seen[0].0)
        .send()
        .await
        .unwrap();
    api.post(
        "/admin/v1/revocations",
        json!({ "kind": "jti", "value": "after-restart" }),
    )
    .await
    .ok(201);
    let rest = read_events(resumed, 4).await;
    assert_eq!(
        rest.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>(),
        [
            "while-down-0",
            "while-down-1",
            "while-down-2",
            "after-restart"
        ],
        "no gap, no duplicate"
    );
}

async fn emergency_rotation_over_the_admin_api(app: TestApp) {
    let (api, rs, reader, worker) = setup(&app).await;
    let before = token(&app, &worker).await;
    let old_kid = mayfly_core::token::peek_key_id(&before)
        .unwrap()
        .to_string();

    // A normal rotation waits for the successor's publication lead.
    let pending = api.post("/admin/v1/keys/rotate", json!({})).await;
    let body = pending.ok(200).clone();
    assert_eq!(body["outcome"], "pending");
    let next = body["next"].as_str().unwrap().to_owned();
    assert!(
        app.jwks().await.keys.iter().any(|k| k.kid == next),
        "the successor is published first"
    );
    assert!(active(&app, &rs, &before).await);
    api.post("/admin/v1/keys/rotate", json!({ "emergency": "yes" }))
        .await
        .problem(422);
    let reader_only = app.admin_with(&["mayfly:admin:read"]).await;
    reader_only
        .post("/admin/v1/keys/rotate", json!({ "emergency": true }))
        .await
        .problem(403);

    // The emergency brake: the published successor signs at once, the old key is gone.
    let rotated = api
        .post("/admin/v1/keys/rotate", json!({ "emergency": true }))
        .await;
    let body = rotated.ok(200).clone();
    assert_eq!(
        (body["outcome"].as_str(), body["active"].as_str()),
        (Some("activated"), Some(next.as_str()))
    );
    assert!(
        !active(&app, &rs, &before).await,
        "introspection rejects the old key's tokens"
    );
    assert!(
        app.jwks().await.keys.iter().all(|k| k.kid != old_kid),
        "the key set no longer lists it"
    );
    api.get("/admin/v1/keys").await.problem(401);

    // New tokens are signed by the new key and work; the feed told resource servers.
    let after = token(&app, &worker).await;
    assert_eq!(
        mayfly_core::token::peek_key_id(&after).unwrap().to_string(),
        next
    );
    assert!(active(&app, &rs, &after).await);
    let fresh_reader = app
        .token_ok(
            Auth::Basic(&rs),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "mayfly:revocations:read"),
                ("resource", &app.issuer()),
            ],
        )
        .await;
    let fresh_reader = fresh_reader["access_token"].as_str().unwrap();
    assert!(in_feed(
        &feed(&app, fresh_reader, "").await,
        "key",
        &old_kid
    ));
    let _ = reader;
}

/// A replica that has not yet seen a change (its directory is up to 100 ms stale) may
/// sign a token just after the cutoff; at a whole-second boundary its `iat` is past an
/// unpadded cutoff. Subject, client and grant cutoffs carry a margin for it.
async fn cutoffs_cover_tokens_signed_before_the_change_propagates(app: TestApp) {
    let admin = app.bootstrap_admin().await;
    app.audience(ORDERS, &["orders:read"]).await;
    let (rs, reader) = resource_server(&app).await;
    let client = app.client().await;
    let grant = app
        .admin()
        .create_grant(mayfly_server::service::GrantSpec::new(
            mayfly_store::Subject::Client(client.id),
            ORDERS,
            &["orders:read"],
        ))
        .await
        .unwrap()
        .id;
    for (kind, value) in [
        ("client", client.id.to_string()),
        ("subject", client.id.to_string()),
        ("grant", grant.to_string()),
    ] {
        // 1 ms before a whole second.
        app.clock.advance(Duration::seconds(5));
        let micros = i64::from(app.now().microsecond());
        app.clock
            .advance(Duration::microseconds(1_000_000 - micros - 1_000));
        admin
            .post(
                "/admin/v1/revocations",
                json!({"kind": kind, "value": value, "reason": "test"}),
            )
            .await
            .ok(201);
        // Signed 50 ms later, as a replica that had not seen the change would.
        app.clock.advance(Duration::milliseconds(50));
        let late = token(&app, &client).await;
        assert!(!active(&app, &rs, &late).await, "{kind}: introspection");
        assert!(app.feed_revokes(&reader, &late).await, "{kind}: offline");
        // Past the margin, tokens live.
        app.clock.advance(Duration::seconds(3));
        let fresh = token(&app, &client).await;
        assert!(active(&app, &rs, &fresh).await, "{kind}: after the margin");
    }
}

/// Makes the revocations table refuse inserts (or accept them again), from outside.
async fn block_revocations(app: &TestApp, blocked: bool) {
    use sqlx::Connection as _;
    match app.state.store.backend() {
        mayfly_store::Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&app.db_url).await.unwrap();
            let sql = if blocked {
                "ALTER TABLE revocations ADD CONSTRAINT revocations_blocked CHECK (false) NOT VALID"
            } else {
                "ALTER TABLE revocations DROP CONSTRAINT revocations_blocked"
            };
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
        mayfly_store::Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&app.db_url).await.unwrap();
            let sql = if blocked {
                "CREATE TRIGGER revocations_blocked BEFORE INSERT ON revocations BEGIN SELECT RAISE(ABORT, 'blocked'); END"
            } else {
                "DROP TRIGGER revocations_blocked"
            };
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
    }
}

/// A failure between an admin change and its revocation leaves neither: the API
/// answers an error, nothing changed, nothing was audited, and a retry does it all.
async fn a_change_and_its_revocation_commit_together(app: TestApp) {
    let (api, rs, _, worker) = setup(&app).await;
    let t = token(&app, &worker).await;
    assert!(active(&app, &rs, &t).await);
    let path = format!("/admin/v1/clients/{}", worker.id);
    let before = client_updates(&app).await;

    block_revocations(&app, true).await;
    let failed = api.patch(&path, json!({"enabled": false})).await;
    assert!(failed.status >= 500, "{}", failed.body);
    assert_eq!(
        api.get(&path).await.ok(200)["enabled"],
        true,
        "not disabled"
    );
    assert_eq!(
        client_updates(&app).await,
        before,
        "no audit event of a change that did not happen"
    );
    assert!(active(&app, &rs, &t).await);

    block_revocations(&app, false).await;
    app.clock.advance(Duration::seconds(1));
    api.patch(&path, json!({"enabled": false})).await.ok(200);
    assert_eq!(api.get(&path).await.ok(200)["enabled"], false);
    assert_eq!(client_updates(&app).await, before + 1);
    assert!(!active(&app, &rs, &t).await, "the retry revoked the tokens");
    let revoked = app.audit("token.revoked").await;
    assert!(
        revoked
            .iter()
            .any(|e| e.detail["kind"] == "client" && e.detail["value"] == worker.id.to_string())
    );

    // A revocation on its own is recorded with its audit event or not at all.
    let recorded = app
        .state
        .store
        .revocations_after(0, 1000)
        .await
        .unwrap()
        .len();
    block_audit(&app, true).await;
    let failed = api
        .post(
            "/admin/v1/revocations",
            json!({"kind": "jti", "value": "unaudited", "reason": "test"}),
        )
        .await;
    assert!(failed.status >= 500, "{}", failed.body);
    block_audit(&app, false).await;
    let after = app.state.store.revocations_after(0, 1000).await.unwrap();
    assert_eq!(after.len(), recorded, "no unaudited revocation");
}

/// A create whose audit event cannot be written fails whole: the API answers an error,
/// nothing was created, and a retry creates the record with its `admin.change` event.
async fn a_create_commits_with_its_audit_event(app: TestApp) {
    let api = app.bootstrap_admin().await;
    let users = "/admin/v1/users";
    let user = json!({ "username": "alice", "password": "correct horse battery staple" });
    let client = json!({ "name": "unaudited-worker" });
    let audience = json!({ "uri": ORDERS, "scopes": ["orders:read"] });
    let creates: [(&str, &str, &Value); 3] = [
        ("audience.create", "/admin/v1/audiences", &audience),
        ("client.create", "/admin/v1/clients", &client),
        ("user.create", users, &user),
    ];

    let mut ids = Vec::new();
    for (action, path, body) in creates {
        let (items, events) = (listed(&api, path).await, changes(&app, action).await);
        block_audit(&app, true).await;
        let failed = api.post(path, body.clone()).await;
        block_audit(&app, false).await;
        assert!(failed.status >= 500, "{action}: {}", failed.body);
        assert_eq!(listed(&api, path).await, items, "{action}: nothing created");
        assert_eq!(changes(&app, action).await, events, "{action}");

        let created = api.post(path, body.clone()).await.ok(201).clone();
        assert_eq!(
            listed(&api, path).await,
            items + 1,
            "{action}: the retry created it"
        );
        let audited = changes_of(&app, action).await;
        assert_eq!(audited.len(), events + 1, "{action}: audited once");
        assert_eq!(audited[0].detail["after"]["id"], created["id"], "{action}");
        ids.push(created["id"].clone());
    }

    let grant = json!({
        "subject": { "kind": "client", "id": ids[1] },
        "audience": ORDERS,
        "scopes": ["orders:read"],
        "reason": "batch export",
    });
    let grants = "/admin/v1/grants";
    let (items, events) = (
        listed(&api, grants).await,
        changes(&app, "grant.create").await,
    );
    block_audit(&app, true).await;
    let failed = api.post(grants, grant.clone()).await;
    block_audit(&app, false).await;
    assert!(failed.status >= 500, "{}", failed.body);
    assert_eq!(
        listed(&api, grants).await,
        items,
        "no grant without its audit event"
    );
    assert_eq!(changes(&app, "grant.create").await, events);
    let created = api.post(grants, grant).await.ok(201).clone();
    assert_eq!(listed(&api, grants).await, items + 1);
    let audited = changes_of(&app, "grant.create").await;
    assert_eq!(audited.len(), events + 1);
    assert_eq!(audited[0].detail["after"]["id"], created["id"]);
    assert_eq!(audited[0].detail["after"]["audience"], ORDERS);

    // A second secret: none without its event.
    let secrets = format!("/admin/v1/clients/{}/secrets", ids[1].as_str().unwrap());
    let count = |answer: Value| answer.as_array().map_or(0, Vec::len);
    let (held, events) = (
        count(api.get(&secrets).await.body),
        changes(&app, "client.secret.add").await,
    );
    block_audit(&app, true).await;
    let failed = api.post(&secrets, json!({})).await;
    block_audit(&app, false).await;
    assert!(failed.status >= 500, "{}", failed.body);
    assert_eq!(
        count(api.get(&secrets).await.body),
        held,
        "no unaudited secret"
    );
    assert_eq!(changes(&app, "client.secret.add").await, events);
    api.post(&secrets, json!({})).await.ok(201);
    assert_eq!(count(api.get(&secrets).await.body), held + 1);
    assert_eq!(changes(&app, "client.secret.add").await, events + 1);
}

/// Every audience and scope change fails whole while its audit event cannot be
/// written (the record reads as before), and a retry makes it with its event.
async fn audience_and_scope_changes_commit_with_their_audit_events(app: TestApp) {
    let api = app.bootstrap_admin().await;
    let audience = api
        .post("/admin/v1/audiences", json!({ "uri": ORDERS }))
        .await
        .ok(201)
        .clone();
    let aud = format!("/admin/v1/audiences/{}", audience["id"].as_str().unwrap());
    let scope_body = json!({ "audience_id": audience["id"], "name": "orders:read" });

    let patch = Some(json!({ "description": "Orders" }));
    step(&app, &api, "audience.update", &aud, patch).await;
    let scopes = "/admin/v1/scopes";
    let scope = step(&app, &api, "scope.create", scopes, Some(scope_body)).await;
    let sco = format!("{scopes}/{}", scope["id"].as_str().unwrap());
    let patch = Some(json!({ "description": "read" }));
    step(&app, &api, "scope.update", &sco, patch).await;
    step(&app, &api, "scope.delete", &sco, None).await;
    step(&app, &api, "audience.delete", &aud, None).await;
    api.get(&aud).await.problem(404);
}

/// One admin change (POST to a collection, PATCH with a body, DELETE without), first
/// with the audit table blocked: it fails and changes nothing, then it is done with its
/// event. Returns the retry's body.
async fn step(
    app: &TestApp,
    api: &AdminApi<'_>,
    action: &str,
    path: &str,
    body: Option<Value>,
) -> Value {
    let send = || async {
        match &body {
            Some(b) if path.ends_with("/scopes") => api.post(path, b.clone()).await,
            Some(b) => api.patch(path, b.clone()).await,
            None => api.delete(path).await,
        }
    };
    let seen = || async {
        let scopes = api.get("/admin/v1/scopes").await.body;
        let audiences = api.get("/admin/v1/audiences").await.body;
        (scopes, audiences)
    };
    let (before, events) = (seen().await, changes(app, action).await);
    block_audit(app, true).await;
    let failed = send().await;
    block_audit(app, false).await;
    assert!(failed.status >= 500, "{action}: {}", failed.body);
    assert_eq!(seen().await, before, "{action}: nothing changed");
    assert_eq!(changes(app, action).await, events, "{action}");
    let done = send().await;
    assert!(done.status < 300, "{action}: {}", done.body);
    assert_eq!(
        changes(app, action).await,
        events + 1,
        "{action}: audited once"
    );
    done.body
}

/// How many records a listing holds (its first page).
async fn listed(api: &AdminApi<'_>, path: &str) -> usize {
    api.get(path).await.ok(200)["items"]
        .as_array()
        .map_or(0, Vec::len)
}

/// The `admin.change` events of one action, newest first.
async fn changes_of(app: &TestApp, action: &str) -> Vec<mayfly_store::AuditEvent> {
    app.audit("admin.change")
        .await
        .into_iter()
        .filter(|e| e.detail["action"] == action)
        .collect()
}

/// How many `admin.change` events of one action were written.
async fn changes(app: &TestApp, action: &str) -> usize {
    changes_of(app, action).await.len()
}

/// Makes the audit table refuse inserts (or accept them again), from outside.
async fn block_audit(app: &TestApp, blocked: bool) {
    use sqlx::Connection as _;
    match app.state.store.backend() {
        mayfly_store::Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&app.db_url).await.unwrap();
            let sql = if blocked {
                "ALTER TABLE audit_events ADD CONSTRAINT audit_blocked CHECK (false) NOT VALID"
            } else {
                "ALTER TABLE audit_events DROP CONSTRAINT audit_blocked"
            };
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
        mayfly_store::Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&app.db_url).await.unwrap();
            let sql = if blocked {
                "CREATE TRIGGER audit_blocked BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'blocked'); END"
            } else {
                "DROP TRIGGER audit_blocked"
            };
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
    }
}

/// How many `client.update` changes were audited.
async fn client_updates(app: &TestApp) -> usize {
    app.audit("admin.change")
        .await
        .into_iter()
        .filter(|e| e.detail["action"] == "client.update")
        .count()
}

/// A key rule is not kept "until every token it matches has expired": a leaked key
/// signs any `iat` and `exp`, so its rule never lapses. Here the revoked key stays
/// published (revoked by rule, not rotated), and a token it signs two hours later,
/// after the hourly prune, is still refused.
async fn a_key_rule_never_lapses(app: TestApp) {
    let (api, rs, _, worker) = setup(&app).await;
    let t = token(&app, &worker).await;
    let kid = mayfly_core::token::peek_key_id(&t).unwrap().to_string();
    api.post(
        "/admin/v1/revocations",
        json!({ "kind": "key", "value": kid }),
    )
    .await
    .ok(201);
    assert!(!active(&app, &rs, &t).await);

    app.clock.advance(Duration::hours(2));
    app.state.revocations.prune().await.unwrap();
    let later = token(&app, &worker).await;
    assert_eq!(
        mayfly_core::token::peek_key_id(&later).unwrap().to_string(),
        kid
    );
    assert!(!active(&app, &rs, &later).await, "signed by a revoked key");
    let rules = app.state.store.revocations_after(0, 100).await.unwrap();
    assert!(
        rules.iter().any(|r| r.kind == "key" && r.value == kid),
        "{rules:?}"
    );
}
