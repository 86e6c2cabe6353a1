//! Abuse resistance (issue #15): hostile bytes, hostile times, hostile headers and a
//! database that went away must not take issuance down for anyone else.

use crate::helpers::{Auth, TestApp, TestClient};

const ORDERS: &str = "https://api.example.com/orders";

crate::both_stores!(
    nul_bytes_never_fail_another_requests_audit,
    a_refused_audit_event_fails_only_itself,
);

async fn orders_client(app: &TestApp) -> TestClient {
    app.audience(ORDERS, &["orders:read"]).await;
    let worker = app.client().await;
    app.grant(&worker, ORDERS, &["orders:read"]).await;
    worker
}

/// Postgres `text` and `jsonb` refuse NUL: a NUL that reached the audit batch failed the
/// whole group commit, and every legitimate request sharing it got 503.
async fn nul_bytes_never_fail_another_requests_audit(app: TestApp) {
    let worker = orders_client(&app).await;
    let attacker = app.client().await;
    let app = std::sync::Arc::new(app);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flood = Vec::new();
    for i in 0..8 {
        let (app, attacker, stop) = (app.clone(), attacker.clone(), stop.clone());
        flood.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (auth, params): (Auth<'_>, Vec<(&str, &str)>) = match i % 3 {
                    0 => (
                        Auth::Basic(&attacker),
                        vec![("grant_type", "client_credentials"), ("scope", "\0")],
                    ),
                    1 => (
                        Auth::Basic(&attacker),
                        vec![
                            ("grant_type", "client_credentials"),
                            ("scope", "orders:read"),
                            ("resource", "https://x\0\u{1b}[31m"),
                        ],
                    ),
                    _ => (Auth::None, vec![("grant_type", "\0\u{7f}\u{202e}")]),
                };
                statuses.push(app.token_request(auth, &params).await.status().as_u16());
            }
            statuses
        }));
    }
    let ask = [
        ("grant_type", "client_credentials"),
        ("scope", "orders:read"),
        ("resource", ORDERS),
    ];
    let legit: Vec<_> = (0..50)
        .map(|_| {
            let (app, worker) = (app.clone(), worker.clone());
            tokio::spawn(async move {
                app.token_request(Auth::Basic(&worker), &ask)
                    .await
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut ok = 0;
    for task in legit {
        if task.await.unwrap() == 200 {
            ok += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut refused = Vec::new();
    for task in flood {
        refused.extend(task.await.unwrap());
    }
    assert!(ok >= 49, "only {ok} of 50 legitimate requests succeeded");
    assert!(!refused.is_empty());
    assert!(
        refused.iter().all(|s| (400..500).contains(s)),
        "hostile requests are the client's mistake: {refused:?}"
    );

    // Their audit events were written, with the bytes escaped rather than dropped.
    let denied = app.audit("token.denied").await;
    let scope = denied
        .iter()
        .find_map(|e| e.scopes.as_deref().filter(|s| s.contains("\\u{0}")))
        .expect("the NUL scope is audited, escaped");
    assert_eq!(scope, "\\u{0}");
    assert!(
        denied
            .iter()
            .any(|e| e.audience.as_deref() == Some("https://x\\u{0}\\u{1b}[31m"))
    );
    assert!(
        denied
            .iter()
            .any(|e| e.detail["grant_type"] == "\\u{0}\\u{7f}\\u{202e}")
    );
    for e in &denied {
        let all = format!("{:?}{:?}{}", e.scopes, e.audience, e.detail);
        assert!(!all.chars().any(|c| c.is_control() && c != '\n'), "{all}");
    }
}

/// A group commit the store refuses is retried event by event: only the event at fault
/// fails (here one whose id already exists), never the others that shared its batch.
async fn a_refused_audit_event_fails_only_itself(app: TestApp) {
    use mayfly_server::audit::{self, RequestContext};
    let event = |n: usize| mayfly_store::AuditEvent {
        subject: Some(format!("event {n}")),
        ..audit::event(
            "test.event",
            "success",
            app.now(),
            &RequestContext::default(),
        )
    };
    let taken = event(0);
    app.state.audit.record(taken.clone()).await.unwrap();
    let mut batch = vec![mayfly_store::AuditEvent {
        subject: Some("duplicate".into()),
        ..taken
    }];
    batch.extend((1..40).map(event));
    let results =
        futures_util::future::join_all(batch.into_iter().map(|e| app.state.audit.record(e))).await;
    assert!(results[0].is_err(), "the duplicate is refused");
    assert!(
        results[1..].iter().all(Result::is_ok),
        "{:?}",
        results.iter().filter(|r| r.is_err()).count()
    );
    assert_eq!(app.audit("test.event").await.len(), 40);
}
