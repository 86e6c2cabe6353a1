//! Verification never panics, whatever the bytes (inline keys: no network needed).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, LazyLock};

use mayfly_federation::testing::{TestKey, kubernetes_claims};
use mayfly_federation::{KeySource, ManualClock, TrustedIssuer, TrustedIssuerConfig, Verifier};
use proptest::prelude::*;
use time::OffsetDateTime;

const ISS: &str = "https://issuer.example";

struct Fixture {
    rt: tokio::runtime::Runtime,
    verifier: Verifier,
    issuer: TrustedIssuer,
    token: String,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(fixture);

fn fixture() -> Fixture {
    let key = TestKey::rsa("rsa", 0);
    let ec = TestKey::es256("ec");
    let config = TrustedIssuerConfig {
        key_source: KeySource::Inline {
            jwks: serde_json::json!({"keys": [key.public_jwk(), ec.public_jwk()]}),
        },
        ..TrustedIssuerConfig::new(ISS, "aud")
    };
    let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
    let verifier = Verifier::builder()
        .clock(Arc::new(ManualClock::new(now)))
        .build()
        .unwrap();
    let token = key.sign(&kubernetes_claims(ISS, "aud", now, "ns", "sa", "pod"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    Fixture {
        rt: runtime,
        verifier,
        issuer: TrustedIssuer::new(config).unwrap(),
        token,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(text in ".{0,400}") {
        let Fixture { rt, verifier, issuer, .. } = &*FIXTURE;
        prop_assert!(rt.block_on(verifier.verify(issuer, &text)).is_err());
    }

    #[test]
    fn three_random_parts_never_panic(
        h in prop::collection::vec(any::<u8>(), 0..64),
        p in prop::collection::vec(any::<u8>(), 0..64),
        s in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        use base64::Engine as _;
        let b = |x: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(x);
        let Fixture { rt, verifier, issuer, .. } = &*FIXTURE;
        let token = format!("{}.{}.{}", b(&h), b(&p), b(&s));
        prop_assert!(rt.block_on(verifier.verify(issuer, &token)).is_err());
    }

    #[test]
    fn flipped_bits_of_a_valid_token_never_panic(at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let Fixture { rt, verifier, issuer, token } = &*FIXTURE;
        prop_assert!(rt.block_on(verifier.verify(issuer, token)).is_ok());
        let mut bytes = token.clone().into_bytes();
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        if let Ok(text) = String::from_utf8(bytes) {
            // Most flips break it; a flip inside base64 padding bits may not.
            let _ = rt.block_on(verifier.verify(issuer, &text));
        }
    }
}
