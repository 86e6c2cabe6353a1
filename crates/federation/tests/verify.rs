//! Verification of external tokens against a real test issuer over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{AUDIENCE, setup, t0, with_config};
use mayfly_federation::testing::{
    TestIssuer, TestKey, compact, github_actions_claims, kubernetes_claims, spiffe_claims,
};
use mayfly_federation::{
    Algorithm, ConfigError, ErrorClass, KeySetError, KeySource, MAX_TOKEN_LEN, ReplayKey,
    TrustedIssuer, TrustedIssuerConfig, VerifyError, unverified_issuer,
};
use serde_json::{Value, json};
use time::Duration;

fn k8s(s: &common::Setup) -> Value {
    kubernetes_claims(s.iss(), AUDIENCE, s.now(), "pay", "api", "api-7d9f")
}

#[tokio::test]
async fn accepts_a_kubernetes_shaped_rs256_token() {
    let s = setup().await;
    let token = s.issuer.mint("rsa", &k8s(&s));
    assert_eq!(unverified_issuer(&token).as_deref(), Some(s.iss()));
    let v = s.verifier.verify(&s.trusted, &token).await.unwrap();
    assert_eq!(v.issuer(), s.iss());
    assert_eq!(v.subject(), "system:serviceaccount:pay:api");
    assert_eq!(v.algorithm(), Algorithm::Rs256);
    assert_eq!(v.kid(), Some("rsa"));
    assert!(v.jti().is_some());
    assert_eq!(v.issued_at(), t0());
    assert_eq!(v.expires_at(), t0() + Duration::hours(1));
    assert_eq!(v.claims()["kubernetes.io"]["namespace"], "pay");
    // Replay window: iat + max age (5 min) + skew (30 s), sooner than exp.
    assert_eq!(v.replay_until(), t0() + Duration::seconds(330));
    assert_eq!(s.issuer.discovery_fetches(), 1);
    assert_eq!(s.issuer.jwks_fetches(), 1);
}

#[tokio::test]
async fn accepts_a_github_shaped_es256_token() {
    let s = setup().await;
    let claims =
        github_actions_claims(s.iss(), AUDIENCE, s.now(), "acme/deploy", "refs/heads/main");
    let v = s
        .verifier
        .verify(&s.trusted, &s.issuer.mint("ec", &claims))
        .await
        .unwrap();
    assert_eq!(v.subject(), "repo:acme/deploy:ref:refs/heads/main");
    assert_eq!(v.algorithm(), Algorithm::Es256);
    assert_eq!(v.claims()["repository"], "acme/deploy");
    assert_eq!(v.expires_at(), t0() + Duration::minutes(5));
}

#[tokio::test]
async fn accepts_an_eddsa_token() {
    let s = setup().await;
    let claims = spiffe_claims(s.iss(), AUDIENCE, s.now(), "spiffe://td/ns/pay/sa/api");
    let v = s
        .verifier
        .verify(&s.trusted, &s.issuer.mint("ed", &claims))
        .await
        .unwrap();
    assert_eq!(v.algorithm(), Algorithm::EdDsa);
    assert_eq!(v.jti(), None);
    assert_eq!(
        v.replay_key(),
        ReplayKey::Issuance {
            issuer: s.iss().to_owned(),
            subject: "spiffe://td/ns/pay/sa/api".to_owned(),
            issued_at: t0().unix_timestamp(),
        }
    );
}

async fn refused(s: &common::Setup, token: &str) -> VerifyError {
    s.verifier.verify(&s.trusted, token).await.unwrap_err()
}

#[tokio::test]
async fn refuses_another_issuer() {
    let s = setup().await;
    let mut claims = k8s(&s);
    claims["iss"] = "https://evil.example".into();
    let e = refused(&s, &s.issuer.mint("rsa", &claims)).await;
    assert_eq!(e, VerifyError::WrongIssuer);
    assert_eq!(e.class(), ErrorClass::InvalidGrant);
    // A trailing slash is another issuer: `iss` is compared exactly.
    claims["iss"] = format!("{}/", s.iss()).into();
    assert_eq!(
        refused(&s, &s.issuer.mint("rsa", &claims)).await,
        VerifyError::WrongIssuer
    );
}

#[tokio::test]
async fn refuses_another_audience() {
    let s = setup().await;
    let mut claims = k8s(&s);
    claims["aud"] = json!(["https://kubernetes.default.svc", "other"]);
    assert_eq!(
        refused(&s, &s.issuer.mint("rsa", &claims)).await,
        VerifyError::WrongAudience
    );
    claims["aud"] = json!("https://kubernetes.default.svc");
    assert_eq!(
        refused(&s, &s.issuer.mint("rsa", &claims)).await,
        VerifyError::WrongAudience
    );
    claims.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        refused(&s, &s.issuer.mint("rsa", &claims)).await,
        VerifyError::WrongAudience
    );
}

#[tokio::test]
async fn refuses_expired_tokens() {
    let s = setup().await;
    let claims = spiffe_claims(s.iss(), AUDIENCE, s.now(), "spiffe://td/x");
    let token = s.issuer.mint("ed", &claims);
    // Within skew (30 s) past exp: still accepted.
    s.clock.advance(Duration::seconds(300 + 29));
    s.verifier.verify(&s.trusted, &token).await.unwrap();
    s.clock.advance(Duration::seconds(2));
    assert_eq!(refused(&s, &token).await, VerifyError::Expired);
}

#[tokio::test]
async fn refuses_tokens_older_than_the_maximum_age() {
    let s = setup().await;
    let token = s.issuer.mint("rsa", &k8s(&s));
    s.clock.advance(Duration::minutes(5));
    s.verifier.verify(&s.trusted, &token).await.unwrap();
    s.clock.advance(Duration::seconds(31));
    assert_eq!(refused(&s, &token).await, VerifyError::TooOld);
}

#[tokio::test]
async fn refuses_tokens_not_yet_valid_or_issued_in_the_future() {
    let s = setup().await;
    let mut claims = k8s(&s);
    claims["nbf"] = (t0().unix_timestamp() + 31).into();
    assert_eq!(
        refused(&s, &s.issuer.mint("rsa", &claims)).await,
        VerifyError::NotYetValid
    );
    let future = kubernetes_claims(
        s.iss(),
        AUDIENCE,
        t0() + Duration::seconds(31),
        "pay",
        "api",
        "p",
    );
    let mut future = future;
    future.as_object_mut().unwrap().remove("nbf");
    assert_eq!(
        refused(&s, &s.issuer.mint("rsa", &future)).await,
        VerifyError::IssuedInFuture
    );
}

#[tokio::test]
async fn refuses_alg_none_before_fetching_keys() {
    let s = setup().await;
    for alg in ["none", "None", "NONE"] {
        let token = compact(&json!({"alg": alg, "kid": "rsa"}), &k8s(&s), b"");
        // The issuer can still be named (to load its settings, or to log the refusal).
        assert_eq!(unverified_issuer(&token).as_deref(), Some(s.iss()));
        let e = refused(&s, &token).await;
        assert_eq!(e, VerifyError::UnsupportedAlgorithm, "{alg}");
    }
    let no_alg = compact(&json!({"kid": "rsa"}), &k8s(&s), b"");
    assert_eq!(
        refused(&s, &no_alg).await,
        VerifyError::UnsupportedAlgorithm
    );
    assert_eq!(
        s.issuer.jwks_fetches(),
        0,
        "refused before any key is looked at"
    );
}

#[tokio::test]
async fn refuses_hs256_signed_with_the_issuers_public_key() {
    let s = setup().await;
    let claims = k8s(&s);
    let public = s.issuer.key("rsa").unwrap().public_jwk();
    let header = json!({"alg": "HS256", "kid": "rsa", "typ": "JWT"});
    // Key confusion: the public key's text (JWK, or the bare modulus) as the HMAC secret.
    let secrets = [
        public.to_string().into_bytes(),
        public["n"].as_str().unwrap().as_bytes().to_vec(),
    ];
    for secret in secrets {
        let unsigned = compact(&header, &claims, b"");
        let input = unsigned.trim_end_matches('.');
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
        let tag = ring::hmac::sign(&key, input.as_bytes());
        let token = compact(&header, &claims, tag.as_ref());
        assert_eq!(refused(&s, &token).await, VerifyError::UnsupportedAlgorithm);
    }
    for alg in ["HS384", "HS512", "PS256", "RS512", "ES384", "Ed25519"] {
        let token = s
            .issuer
            .key("rsa")
            .unwrap()
            .sign_with_header(&json!({"alg": alg, "kid": "rsa"}), &claims);
        assert_eq!(
            refused(&s, &token).await,
            VerifyError::UnsupportedAlgorithm,
            "{alg}"
        );
    }
}

#[tokio::test]
async fn refuses_an_algorithm_the_issuer_does_not_allow() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa", 0), TestKey::es256("ec")]).await;
    let config = TrustedIssuerConfig {
        algorithms: vec!["ES256".into()],
        ..issuer.config(AUDIENCE)
    };
    let s = with_config(issuer, config);
    let token = s.issuer.mint("rsa", &k8s(&s));
    assert_eq!(refused(&s, &token).await, VerifyError::AlgorithmNotAllowed);
    s.verifier
        .verify(&s.trusted, &s.issuer.mint("ec", &k8s(&s)))
        .await
        .unwrap();
}

#[tokio::test]
async fn refuses_an_unknown_kid() {
    let s = setup().await;
    let stranger = TestKey::rsa("not-published", 1);
    assert_eq!(
        refused(&s, &stranger.sign(&k8s(&s))).await,
        VerifyError::UnknownKey
    );
}

#[tokio::test]
async fn refuses_a_tampered_payload() {
    let s = setup().await;
    let token = s.issuer.mint("rsa", &k8s(&s));
    let mut claims = k8s(&s);
    claims["kubernetes.io"]["namespace"] = "kube-system".into();
    let forged_payload = compact(&json!({}), &claims, b"");
    let parts: Vec<&str> = token.split('.').collect();
    let forged_parts: Vec<&str> = forged_payload.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], forged_parts[1], parts[2]);
    assert_eq!(refused(&s, &tampered).await, VerifyError::BadSignature);
}

#[tokio::test]
async fn refuses_a_bad_signature() {
    let s = setup().await;
    for kid in ["rsa", "ec", "ed"] {
        let token = s.issuer.mint(kid, &k8s(&s));
        let (input, sig) = token.rsplit_once('.').unwrap();
        // A different (valid base64url) signature of the same length.
        let mut sig: Vec<u8> = sig.bytes().collect();
        sig[2] = if sig[2] == b'A' { b'B' } else { b'A' };
        let bad = format!("{input}.{}", String::from_utf8(sig).unwrap());
        assert_eq!(refused(&s, &bad).await, VerifyError::BadSignature, "{kid}");
    }
    // Signed by another key under a published kid.
    let impostor = TestKey::rsa("rsa", 2);
    assert_eq!(
        refused(&s, &impostor.sign(&k8s(&s))).await,
        VerifyError::BadSignature
    );
    // No signature at all.
    let token = s.issuer.mint("ec", &k8s(&s));
    let (input, _) = token.rsplit_once('.').unwrap();
    assert_eq!(
        refused(&s, &format!("{input}.")).await,
        VerifyError::BadSignature
    );
}

#[tokio::test]
async fn refuses_a_key_of_the_wrong_type_for_the_algorithm() {
    let s = setup().await;
    let ec = s.issuer.key("ec").unwrap();
    // ES256 header naming the RSA key.
    let token = ec.sign_with_header(&json!({"alg": "ES256", "kid": "rsa"}), &k8s(&s));
    assert_eq!(refused(&s, &token).await, VerifyError::KeyAlgorithmMismatch);
    // RS256 header naming the Ed25519 key.
    let rsa = s.issuer.key("rsa").unwrap();
    let token = rsa.sign_with_header(&json!({"alg": "RS256", "kid": "ed"}), &k8s(&s));
    assert_eq!(refused(&s, &token).await, VerifyError::KeyAlgorithmMismatch);
}

#[tokio::test]
async fn refuses_oversized_tokens_and_key_sets() {
    let s = setup().await;
    let mut claims = k8s(&s);
    claims["padding"] = "x".repeat(MAX_TOKEN_LEN).into();
    assert_eq!(
        refused(&s, &s.issuer.mint("rsa", &claims)).await,
        VerifyError::TooLarge { max: MAX_TOKEN_LEN }
    );
    assert_eq!(s.issuer.jwks_fetches(), 0);

    let padding = "x".repeat(70 * 1024);
    s.issuer
        .set_jwks_body(Some(format!(r#"{{"keys": [], "pad": "{padding}"}}"#)));
    let e = refused(&s, &s.issuer.mint("rsa", &k8s(&s))).await;
    assert_eq!(
        e,
        VerifyError::KeysUnavailable(KeySetError::TooLarge { max: 64 * 1024 })
    );
    assert_eq!(e.class(), ErrorClass::Unavailable);

    let keys: Vec<Value> = (0..33)
        .map(|_| s.issuer.key("rsa").unwrap().public_jwk())
        .collect();
    s.issuer
        .set_jwks_body(Some(json!({ "keys": keys }).to_string()));
    s.clock.advance(Duration::seconds(16));
    assert_eq!(
        refused(&s, &s.issuer.mint("rsa", &k8s(&s))).await,
        VerifyError::KeysUnavailable(KeySetError::TooManyKeys { max: 32 })
    );
}

#[tokio::test]
async fn refuses_garbage() {
    let s = setup().await;
    for garbage in [
        "",
        ".",
        "..",
        "a.b.c",
        "a.b.c.d",
        "eyJhbGciOiJSUzI1NiJ9",
        "eyJhbGciOiJSUzI1NiJ9..",
        "e30.e30.",
        "!!!.???.***",
        "\u{0}\u{1}.\u{2}.\u{3}",
    ] {
        let e = refused(&s, garbage).await;
        assert!(
            matches!(
                e,
                VerifyError::Malformed
                    | VerifyError::UnsupportedAlgorithm
                    | VerifyError::BadSignature
            ),
            "{garbage:?}: {e:?}"
        );
    }
    // A signed payload that is not an object.
    let token = s
        .issuer
        .key("ed")
        .unwrap()
        .sign_with_header(&json!({"alg": "EdDSA", "kid": "ed"}), &json!([1, 2]));
    assert!(matches!(
        refused(&s, &token).await,
        VerifyError::InvalidClaims(_)
    ));
    // crit headers are refused.
    let token = s.issuer.key("ed").unwrap().sign_with_header(
        &json!({"alg": "EdDSA", "kid": "ed", "crit": ["b64"], "b64": false}),
        &k8s(&s),
    );
    assert_eq!(refused(&s, &token).await, VerifyError::CriticalHeader);
}

#[tokio::test]
async fn refuses_missing_or_malformed_claims() {
    let s = setup().await;
    for (claim, value) in [
        ("sub", Value::Null),
        ("sub", json!("")),
        ("iat", Value::Null),
        ("exp", Value::Null),
        ("exp", json!("soon")),
        ("jti", json!(7)),
        ("jti", json!("j".repeat(257))),
    ] {
        let mut claims = k8s(&s);
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(claim);
        } else {
            claims[claim] = value;
        }
        let e = refused(&s, &s.issuer.mint("rsa", &claims)).await;
        assert!(matches!(e, VerifyError::InvalidClaims(_)), "{claim}: {e:?}");
    }
}

#[tokio::test]
async fn a_lifetime_bound_applies_when_set() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa", 0)]).await;
    let config = TrustedIssuerConfig {
        max_lifetime_seconds: Some(600),
        ..issuer.config(AUDIENCE)
    };
    let s = with_config(issuer, config);
    assert_eq!(
        refused(&s, &s.issuer.mint("rsa", &k8s(&s))).await,
        VerifyError::LifetimeTooLong
    );
}

#[tokio::test]
async fn explicit_jwks_uri_and_inline_keys() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa", 0)]).await;
    let config = issuer.config_with_jwks_uri(AUDIENCE);
    let s = with_config(issuer, config);
    s.verifier
        .verify(&s.trusted, &s.issuer.mint("rsa", &k8s(&s)))
        .await
        .unwrap();
    assert_eq!(s.issuer.discovery_fetches(), 0);
    assert_eq!(s.issuer.jwks_fetches(), 1);

    // Inline: the issuer is never asked (air-gapped), even when down.
    let inline = TrustedIssuerConfig {
        key_source: KeySource::Inline {
            jwks: s.issuer.jwks(),
        },
        ..s.issuer.config(AUDIENCE)
    };
    let trusted = TrustedIssuer::new(inline).unwrap();
    s.issuer.set_down(true);
    s.verifier
        .verify(&trusted, &s.issuer.mint("rsa", &k8s(&s)))
        .await
        .unwrap();
    let stranger = TestKey::rsa("other", 1);
    assert_eq!(
        s.verifier.verify(&trusted, &stranger.sign(&k8s(&s))).await,
        Err(VerifyError::UnknownKey)
    );
    assert_eq!(s.issuer.jwks_fetches(), 1);
}

#[tokio::test]
async fn discovery_must_name_the_trusted_issuer() {
    let s = setup().await;
    s.issuer.set_discovery_issuer(Some("https://other.example"));
    assert_eq!(
        refused(&s, &s.issuer.mint("rsa", &k8s(&s))).await,
        VerifyError::KeysUnavailable(KeySetError::Discovery("issuer does not match"))
    );
    assert_eq!(s.issuer.jwks_fetches(), 0);
}

#[test]
fn settings_are_validated() {
    let ok = TrustedIssuerConfig::new("https://token.actions.githubusercontent.com", AUDIENCE);
    let issuer = TrustedIssuer::new(ok.clone()).unwrap();
    assert_eq!(issuer.max_age(), Duration::minutes(5));
    assert_eq!(issuer.clock_skew(), Duration::seconds(30));
    assert_eq!(issuer.algorithms(), Algorithm::ALL);
    for (what, url) in [
        ("plain http", "http://issuer.example"),
        ("http on a private address", "http://10.0.0.1"),
        ("query", "https://issuer.example/?a=b"),
        ("fragment", "https://issuer.example/#x"),
        ("user info", "https://u:p@issuer.example"),
        ("not a URL", "issuer.example"),
        ("other scheme", "ftp://issuer.example"),
    ] {
        let config = TrustedIssuerConfig::new(url, AUDIENCE);
        assert!(
            matches!(TrustedIssuer::new(config), Err(ConfigError::Url { .. })),
            "{what}"
        );
    }
    for loopback in [
        "http://127.0.0.1:8080",
        "http://localhost:1",
        "http://[::1]:9",
    ] {
        TrustedIssuer::new(TrustedIssuerConfig::new(loopback, AUDIENCE)).unwrap();
    }
    let jwks = TrustedIssuerConfig {
        key_source: KeySource::JwksUri {
            jwks_uri: "http://keys.example/jwks".into(),
        },
        ..ok.clone()
    };
    assert!(matches!(
        TrustedIssuer::new(jwks),
        Err(ConfigError::Url { .. })
    ));
    for alg in ["none", "HS256", "RS384", "PS256", "rs256"] {
        let config = TrustedIssuerConfig {
            algorithms: vec!["RS256".into(), alg.into()],
            ..ok.clone()
        };
        assert_eq!(
            TrustedIssuer::new(config).unwrap_err(),
            ConfigError::Algorithm(alg.into())
        );
    }
    let none = TrustedIssuerConfig {
        algorithms: vec![],
        ..ok.clone()
    };
    assert_eq!(
        TrustedIssuer::new(none).unwrap_err(),
        ConfigError::NoAlgorithm
    );
    let no_aud = TrustedIssuerConfig::new("https://issuer.example", "");
    assert!(matches!(
        TrustedIssuer::new(no_aud),
        Err(ConfigError::Audience(_))
    ));
    for (skew, age) in [
        (Some(301), None),
        (Some(-1), None),
        (None, Some(0)),
        (None, Some(86_401)),
    ] {
        let config = TrustedIssuerConfig {
            clock_skew_seconds: skew,
            max_age_seconds: age,
            ..ok.clone()
        };
        assert!(
            matches!(
                TrustedIssuer::new(config),
                Err(ConfigError::Duration { .. })
            ),
            "{skew:?} {age:?}"
        );
    }
    let inline = TrustedIssuerConfig {
        key_source: KeySource::Inline {
            jwks: json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}),
        },
        ..ok.clone()
    };
    assert_eq!(
        TrustedIssuer::new(inline).unwrap_err(),
        ConfigError::InlineKeys(KeySetError::NoUsableKey)
    );
    // Settings round-trip through JSON (what a store keeps).
    let text = serde_json::to_string(&ok).unwrap();
    let back: TrustedIssuerConfig = serde_json::from_str(&text).unwrap();
    assert_eq!(back, ok);
}

#[tokio::test]
async fn replay_keys_use_jti_else_the_issuance() {
    let s = setup().await;
    let a = s
        .verifier
        .verify(&s.trusted, &s.issuer.mint("rsa", &k8s(&s)))
        .await
        .unwrap();
    let b = s
        .verifier
        .verify(&s.trusted, &s.issuer.mint("rsa", &k8s(&s)))
        .await
        .unwrap();
    assert!(matches!(a.replay_key(), ReplayKey::Jti { .. }));
    assert_ne!(a.replay_key().storage_key(), b.replay_key().storage_key());
    assert_eq!(a.replay_key().storage_key(), a.replay_key().storage_key());
    assert_eq!(a.replay_key().storage_key().len(), 4 + 64);

    let mut old = k8s(&s);
    old.as_object_mut().unwrap().remove("jti");
    let c = s
        .verifier
        .verify(&s.trusted, &s.issuer.mint("rsa", &old))
        .await
        .unwrap();
    let d = s
        .verifier
        .verify(&s.trusted, &s.issuer.mint("ec", &old))
        .await
        .unwrap();
    assert!(matches!(c.replay_key(), ReplayKey::Issuance { .. }));
    // The same issuance signed twice is one use.
    assert_eq!(c.replay_key().storage_key(), d.replay_key().storage_key());
}

#[tokio::test]
async fn an_unreachable_key_set_is_a_transport_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let jwks_uri = format!("http://{}/jwks", closed.local_addr().unwrap());
    drop(closed);
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa", 0)]).await;
    let config = TrustedIssuerConfig {
        key_source: KeySource::JwksUri { jwks_uri },
        ..issuer.config(AUDIENCE)
    };
    let s = with_config(issuer, config);
    let e = refused(&s, &s.issuer.mint("rsa", &k8s(&s))).await;
    assert!(
        matches!(e, VerifyError::KeysUnavailable(KeySetError::Transport(_))),
        "{e:?}"
    );
    assert_eq!(e.class().oauth_error(), "temporarily_unavailable");
}
