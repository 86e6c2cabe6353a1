//! The audit log: batches, filters, retention.

use super::*;

/// An event of `event_type` by `client_id` at `at`.
pub(crate) fn event(event_type: &str, client_id: &str, at: OffsetDateTime) -> AuditEvent {
    AuditEvent {
        id: Uuid::now_v7(),
        occurred_at: at,
        event_type: event_type.into(),
        outcome: "success".into(),
        actor: Some(client_id.into()),
        subject: Some(client_id.into()),
        client_id: Some(client_id.into()),
        jti: Some(Uuid::new_v4().to_string()),
        audience: Some("https://api.example/orders".into()),
        scopes: Some("orders:read".into()),
        source_ip: Some("127.0.0.1".into()),
        user_agent: None,
        request_id: Some("req-1".into()),
        detail: serde_json::json!({"ttl": 300}),
    }
}

/// `n` events a millisecond apart from `t`: every third denied, the rest issued;
/// clients "a" and "b" by turns.
pub(crate) fn mixed_events(n: i64, t: OffsetDateTime) -> Vec<AuditEvent> {
    (0..n)
        .map(|i| {
            event(
                if i % 3 == 0 {
                    "token.denied"
                } else {
                    "token.issued"
                },
                if i % 2 == 0 { "a" } else { "b" },
                t + Duration::milliseconds(i),
            )
        })
        .collect()
}

pub(super) async fn audit_batches_and_filters(store: Arc<dyn Store>) {
    let t = now();
    let batch = mixed_events(150, t);
    store.append_audit_events(&batch).await.unwrap();
    store.append_audit_events(&[]).await.unwrap();

    let all = store
        .audit_events(&AuditQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 150);
    assert_eq!(all[0], batch[149], "newest first, every field kept");
    let denied = store
        .audit_events(&AuditQuery {
            event_type: Some("token.denied".into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(denied.len(), 50);
    let denied_a = store
        .audit_events(&AuditQuery {
            event_type: Some("token.denied".into()),
            client_id: Some("a".into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(denied_a.len(), 25);
    assert!(
        denied_a
            .iter()
            .all(|e| e.event_type == "token.denied" && e.client_id.as_deref() == Some("a"))
    );
    let limited = store
        .audit_events(&AuditQuery {
            limit: 7,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(limited.len(), 7);
}

pub(super) async fn audit_search_filters_and_retention(store: Arc<dyn Store>) {
    let t = now();
    let ips = [
        "10.1.2.3",
        "10.9.9.9",
        "192.168.1.5",
        "2001:db8::7",
        "127.0.0.1",
    ];
    let mut all = Vec::new();
    for i in 0..40i64 {
        let mut e = event(
            if i % 4 == 0 {
                "token.denied"
            } else {
                "token.issued"
            },
            &format!("c{}", i % 3),
            t + Duration::seconds(i),
        );
        e.outcome = if i % 4 == 0 {
            "denied".into()
        } else {
            "success".into()
        };
        e.subject = Some(format!("s{}", i % 2));
        e.jti = Some(format!("jti-{i}"));
        e.audience = Some(format!("https://api.example/{}", i % 5));
        e.source_ip = Some(ips[(i % 5) as usize].into());
        all.push(e);
    }
    store.append_audit_events(&all).await.unwrap();
    let q = |f: &dyn Fn(&mut AuditQuery)| {
        let mut query = AuditQuery {
            limit: 1000,
            ..Default::default()
        };
        f(&mut query);
        query
    };
    let ids = |events: Vec<AuditEvent>| {
        events
            .into_iter()
            .map(|e| e.jti.unwrap())
            .collect::<Vec<_>>()
    };
    let expect = |pred: &dyn Fn(&AuditEvent) -> bool| {
        all.iter()
            .rev()
            .filter(|e| pred(e))
            .map(|e| e.jti.clone().unwrap())
            .collect::<Vec<_>>()
    };
    let run = |query: AuditQuery| {
        let store = store.clone();
        async move { store.audit_events(&query).await.unwrap() }
    };

    assert_eq!(
        ids(run(q(&|q| q.outcome = Some("denied".into()))).await),
        expect(&|e| e.outcome == "denied")
    );
    assert_eq!(
        ids(run(q(&|q| q.subject = Some("s1".into()))).await),
        expect(&|e| e.subject.as_deref() == Some("s1"))
    );
    assert_eq!(
        ids(run(q(&|q| q.jti = Some("jti-7".into()))).await),
        ["jti-7"]
    );
    assert_eq!(
        ids(run(q(&|q| q.audience = Some("https://api.example/3".into()))).await),
        expect(&|e| e.audience.as_deref() == Some("https://api.example/3"))
    );
    assert_eq!(
        ids(run(q(&|q| q.client_id = Some("c2".into()))).await),
        expect(&|e| e.client_id.as_deref() == Some("c2"))
    );
    let ten: ipnet::IpNet = "10.0.0.0/8".parse().unwrap();
    assert_eq!(
        ids(run(q(&|q| q.network = Some(ten))).await),
        expect(&|e| e
            .source_ip
            .as_deref()
            .is_some_and(|ip| ip.starts_with("10.")))
    );
    let one: ipnet::IpNet = "192.168.1.5/32".parse().unwrap();
    assert_eq!(
        ids(run(q(&|q| q.network = Some(one))).await),
        expect(&|e| e.source_ip.as_deref() == Some("192.168.1.5"))
    );
    let v6: ipnet::IpNet = "2001:db8::/32".parse().unwrap();
    assert_eq!(run(q(&|q| q.network = Some(v6))).await.len(), 8);
    assert_eq!(
        ids(run(q(&|q| {
            q.since = Some(t + Duration::seconds(10));
            q.until = Some(t + Duration::seconds(20));
        }))
        .await),
        expect(&|e| e.occurred_at >= t + Duration::seconds(10)
            && e.occurred_at < t + Duration::seconds(20))
    );
    // Combined filters.
    assert_eq!(
        ids(run(q(&|q| {
            q.event_type = Some("token.issued".into());
            q.network = Some(ten);
            q.subject = Some("s0".into());
        }))
        .await),
        expect(&|e| e.event_type == "token.issued"
            && e.subject.as_deref() == Some("s0")
            && e.source_ip
                .as_deref()
                .is_some_and(|ip| ip.starts_with("10.")))
    );

    // Newest first, page by page, with no gap and no duplicate.
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = run(AuditQuery {
            limit: 7,
            before,
            network: Some(ten),
            ..Default::default()
        })
        .await;
        if page.is_empty() {
            break;
        }
        before = page.last().map(|e| (e.occurred_at, e.id));
        paged.extend(ids(page));
    }
    assert_eq!(
        paged,
        expect(&|e| e
            .source_ip
            .as_deref()
            .is_some_and(|ip| ip.starts_with("10.")))
    );

    // Retention.
    assert_eq!(
        store
            .prune_audit_events(t + Duration::seconds(30))
            .await
            .unwrap(),
        30
    );
    assert_eq!(run(q(&|_| {})).await.len(), 10);
}

/// A batch larger than one INSERT may bind (Postgres: 65,535 parameters) is written
/// whole.
pub(super) async fn audit_batch_larger_than_one_statement(store: Arc<dyn Store>) {
    let t = now();
    let batch: Vec<_> = (0..5000)
        .map(|i| event("token.used", "c", t + Duration::microseconds(i)))
        .collect();
    store.append_audit_events(&batch).await.unwrap();
    let newest = store
        .audit_events(&AuditQuery {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(newest, vec![batch[4999].clone()]);
    // A failing batch writes nothing: the same ids again collide.
    assert!(store.append_audit_events(&batch).await.is_err());
    let mut count = 0;
    let mut before = None;
    loop {
        let page = store
            .audit_events(&AuditQuery {
                limit: 1000,
                before,
                ..Default::default()
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        before = Some((last.occurred_at, last.id));
        count += page.len();
    }
    assert_eq!(count, 5000);
}
