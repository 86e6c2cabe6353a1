//! Identity matching on tokens verified against a real test issuer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{AUDIENCE, setup};
use mayfly_federation::testing::{github_actions_claims, kubernetes_claims, spiffe_claims};
use mayfly_federation::{
    ClaimPath, Condition, ErrorClass, FederatedIdentity, IdentityRule, MatchError, MatchedClaim,
    SpiffeIdPrefix, VerifiedToken, match_identity,
};
use serde_json::{Value, json};

async fn verified(s: &common::Setup, kid: &str, claims: &Value) -> VerifiedToken {
    s.verifier
        .verify(&s.trusted, &s.issuer.mint(kid, claims))
        .await
        .unwrap()
}

fn subject(iss: &str, sub: &str) -> FederatedIdentity {
    FederatedIdentity::new(
        iss,
        IdentityRule::Subject {
            subject: sub.to_owned(),
        },
    )
    .unwrap()
}

fn claims(iss: &str, conditions: &[(&str, &str)]) -> FederatedIdentity {
    FederatedIdentity::new(
        iss,
        IdentityRule::Claims {
            conditions: conditions
                .iter()
                .map(|(path, value)| Condition::Equals {
                    claim: ClaimPath::parse(path).unwrap(),
                    value: json!(value),
                })
                .collect(),
        },
    )
    .unwrap()
}

fn spiffe(iss: &str, prefix: &str) -> FederatedIdentity {
    FederatedIdentity::new(
        iss,
        IdentityRule::Claims {
            conditions: vec![Condition::SpiffePrefix {
                prefix: SpiffeIdPrefix::parse(prefix).unwrap(),
            }],
        },
    )
    .unwrap()
}

#[tokio::test]
async fn exact_subject() {
    let s = setup().await;
    let token = verified(
        &s,
        "rsa",
        &kubernetes_claims(s.iss(), AUDIENCE, s.now(), "pay", "api", "p"),
    )
    .await;
    let candidates = [
        subject(s.iss(), "system:serviceaccount:pay:web"),
        subject(s.iss(), "system:serviceaccount:pay:api"),
        // Same subject, another issuer: not a candidate for this token.
        subject("https://other.example", "system:serviceaccount:pay:api"),
    ];
    let m = match_identity(&candidates, &token).unwrap();
    assert!(std::ptr::eq(m.identity, &candidates[1]));
    assert_eq!(
        m.matched,
        vec![MatchedClaim {
            claim: "/sub".into(),
            value: json!("system:serviceaccount:pay:api"),
        }]
    );
}

#[tokio::test]
async fn github_repository_and_ref() {
    let s = setup().await;
    let main = verified(
        &s,
        "ec",
        &github_actions_claims(s.iss(), AUDIENCE, s.now(), "acme/deploy", "refs/heads/main"),
    )
    .await;
    let branch = verified(
        &s,
        "ec",
        &github_actions_claims(
            s.iss(),
            AUDIENCE,
            s.now(),
            "acme/deploy",
            "refs/heads/feature",
        ),
    )
    .await;
    let fork = verified(
        &s,
        "ec",
        &github_actions_claims(s.iss(), AUDIENCE, s.now(), "evil/deploy", "refs/heads/main"),
    )
    .await;
    let candidates = [claims(
        s.iss(),
        &[("/repository", "acme/deploy"), ("/ref", "refs/heads/main")],
    )];
    let m = match_identity(&candidates, &main).unwrap();
    assert_eq!(
        m.matched,
        vec![
            MatchedClaim {
                claim: "/repository".into(),
                value: json!("acme/deploy")
            },
            MatchedClaim {
                claim: "/ref".into(),
                value: json!("refs/heads/main")
            },
        ]
    );
    assert_eq!(
        match_identity(&candidates, &branch).unwrap_err(),
        MatchError::NoMatch
    );
    assert_eq!(
        match_identity(&candidates, &fork).unwrap_err(),
        MatchError::NoMatch
    );
}

#[tokio::test]
async fn kubernetes_namespace_and_service_account() {
    let s = setup().await;
    let api = verified(
        &s,
        "rsa",
        &kubernetes_claims(s.iss(), AUDIENCE, s.now(), "pay", "api", "p"),
    )
    .await;
    let other_ns = verified(
        &s,
        "rsa",
        &kubernetes_claims(s.iss(), AUDIENCE, s.now(), "dev", "api", "p"),
    )
    .await;
    let candidates = [
        claims(
            s.iss(),
            &[
                ("/kubernetes.io/namespace", "pay"),
                ("/kubernetes.io/serviceaccount/name", "api"),
            ],
        ),
        claims(
            s.iss(),
            &[
                ("/kubernetes.io/namespace", "pay"),
                ("/kubernetes.io/serviceaccount/name", "web"),
            ],
        ),
    ];
    let m = match_identity(&candidates, &api).unwrap();
    assert!(std::ptr::eq(m.identity, &candidates[0]));
    assert_eq!(m.matched.len(), 2);
    assert_eq!(
        match_identity(&candidates, &other_ns).unwrap_err(),
        MatchError::NoMatch
    );
    // A dotted name is one member, not a path: `kubernetes.io.namespace` finds nothing.
    let dotted = [claims(s.iss(), &[("/kubernetes.io.namespace", "pay")])];
    assert_eq!(
        match_identity(&dotted, &api).unwrap_err(),
        MatchError::NoMatch
    );
}

#[tokio::test]
async fn spiffe_prefix_on_segment_boundaries() {
    let s = setup().await;
    let pay = verified(
        &s,
        "ed",
        &spiffe_claims(s.iss(), AUDIENCE, s.now(), "spiffe://td/ns/pay/sa/api"),
    )
    .await;
    let evil = verified(
        &s,
        "ed",
        &spiffe_claims(s.iss(), AUDIENCE, s.now(), "spiffe://td/ns/pay-evil"),
    )
    .await;
    let dots = verified(
        &s,
        "ed",
        &spiffe_claims(s.iss(), AUDIENCE, s.now(), "spiffe://td/ns/pay/../admin"),
    )
    .await;
    let candidates = [spiffe(s.iss(), "spiffe://td/ns/pay")];
    let m = match_identity(&candidates, &pay).unwrap();
    assert_eq!(m.matched[0].value, json!("spiffe://td/ns/pay/sa/api"));
    assert_eq!(
        match_identity(&candidates, &evil).unwrap_err(),
        MatchError::NoMatch
    );
    assert_eq!(
        match_identity(&candidates, &dots).unwrap_err(),
        MatchError::NoMatch
    );
    let slash = [spiffe(s.iss(), "spiffe://td/ns/pay/")];
    assert!(match_identity(&slash, &pay).is_ok());
    assert_eq!(
        match_identity(&slash, &evil).unwrap_err(),
        MatchError::NoMatch
    );
}

#[tokio::test]
async fn none_or_two_matches_are_refused() {
    let s = setup().await;
    let token = verified(
        &s,
        "rsa",
        &kubernetes_claims(s.iss(), AUDIENCE, s.now(), "pay", "api", "p"),
    )
    .await;
    let none: [FederatedIdentity; 0] = [];
    assert_eq!(
        match_identity(&none, &token).unwrap_err(),
        MatchError::NoMatch
    );
    let two = [
        subject(s.iss(), "system:serviceaccount:pay:api"),
        claims(s.iss(), &[("/kubernetes.io/namespace", "pay")]),
        claims(s.iss(), &[("/kubernetes.io/namespace", "dev")]),
    ];
    let e = match_identity(&two, &token).unwrap_err();
    assert_eq!(e, MatchError::Ambiguous { count: 2 });
    assert_eq!(e.class(), ErrorClass::InvalidClient);
    assert_eq!(e.class().oauth_error(), "invalid_client");
    // Write-time check: these two are not certainly overlapping (different claims),
    // so only token-time matching can see it.
    assert!(!two[0].overlaps(&two[1]));
    assert!(two[1].overlaps(&claims(s.iss(), &[("/kubernetes.io/namespace", "pay")])));
}

/// Candidates may be the caller's own records.
struct Row {
    id: u32,
    identity: FederatedIdentity,
}

impl AsRef<FederatedIdentity> for Row {
    fn as_ref(&self) -> &FederatedIdentity {
        &self.identity
    }
}

#[tokio::test]
async fn candidates_can_be_the_callers_records() {
    let s = setup().await;
    let token = verified(
        &s,
        "rsa",
        &kubernetes_claims(s.iss(), AUDIENCE, s.now(), "pay", "api", "p"),
    )
    .await;
    let rows = [
        Row {
            id: 1,
            identity: subject(s.iss(), "system:serviceaccount:pay:web"),
        },
        Row {
            id: 2,
            identity: subject(s.iss(), "system:serviceaccount:pay:api"),
        },
    ];
    assert_eq!(match_identity(&rows, &token).unwrap().identity.id, 2);
}
