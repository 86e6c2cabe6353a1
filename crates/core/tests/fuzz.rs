//! Property-based fuzzing of every parser that reads request bytes (`cargo fuzz` needs a
//! nightly toolchain; these run on stable in every `cargo test`): the scope parser,
//! untrusted text, CIDR lists, forwarding headers, PASETO tokens, compact JWS and JWKs,
//! and DPoP proofs. Each target starts from its seed corpus in `tests/corpus/` and runs
//! `fuzz_support::cases()` generated inputs (256 unless `PROPTEST_CASES` says more).
//! Properties: nothing panics, and nothing that was tampered with verifies.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fuzz_support;

use std::net::IpAddr;

use fuzz_support::{config, inputs, seeds};
use mayfly_core::jose::{Jws, JwsKey, PublicJwk};
use mayfly_core::net::{self, ForwardedHeader};
use mayfly_core::{Claims, ScopeSet, SigningKey, UntrustedText, VerifyOptions, dpop, token};
use proptest::prelude::*;
use time::{Duration, OffsetDateTime};

const NOW: OffsetDateTime = time::macros::datetime!(2026-01-01 12:00 UTC);

fn corpus(name: &str) -> Vec<String> {
    let path = format!("{}/tests/corpus/{name}.txt", env!("CARGO_MANIFEST_DIR"));
    seeds(&std::fs::read_to_string(path).unwrap())
}

/// Flips one bit of one byte of `text`, keeping it a string (ASCII stays ASCII).
fn flip(text: &str, at: proptest::sample::Index, bit: u8) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let i = at.index(bytes.len());
    bytes[i] ^= 1 << (bit % 7);
    String::from_utf8_lossy(&bytes).into_owned()
}

fn claims() -> Claims {
    Claims {
        iss: "https://sts.example".into(),
        sub: "client-1".into(),
        aud: "https://api.example/orders".into(),
        iat: NOW,
        nbf: NOW,
        exp: NOW + Duration::seconds(300),
        jti: "jti-1".into(),
        scope: "orders:read".into(),
        client_id: "client-1".into(),
        gid: vec![],
        cnf: None,
        cidr: vec![],
        act: None,
        fam: None,
        orig: Vec::new(),
    }
}

fn verify_token(key: &SigningKey, token: &str) -> Result<Claims, mayfly_core::VerifyError> {
    let public = key.public();
    let options = VerifyOptions {
        issuer: "https://sts.example",
        audience: Some("https://api.example/orders"),
        leeway: Duration::seconds(30),
    };
    token::verify(
        token,
        |kid| (kid == public.id()).then_some(public),
        &options,
        NOW,
    )
}

fn dpop_expect() -> dpop::Expect<'static> {
    dpop::Expect {
        htm: "POST",
        htu: "https://sts.example/oauth2/token",
        access_token: None,
        jkt: None,
        max_age: dpop::MAX_AGE,
        now: NOW,
    }
}

fn dpop_proof() -> String {
    dpop::sign(
        &JwsKey::ed25519_from_seed(&[7; 32]),
        &dpop::ProofRequest {
            htm: "POST",
            htu: "https://sts.example/oauth2/token",
            access_token: None,
            nonce: None,
            jti: "proof-1",
            now: NOW,
        },
    )
}

proptest! {
    #![proptest_config(config())]

    /// Scope lists: a parsed set re-parses to itself from its own names.
    #[test]
    fn scope_parser(list in inputs(corpus("scope"))) {
        if let Ok(set) = ScopeSet::parse(&list) {
            let names: Vec<&str> = set.iter().map(|s| s.as_str()).collect();
            prop_assert_eq!(&ScopeSet::parse(&names.join(" ")).unwrap(), &set);
            prop_assert!(names.iter().all(|n| !n.chars().any(char::is_control)));
        }
    }

    /// Untrusted text: never a control character, never over the cap, stable.
    #[test]
    fn untrusted_text(raw in inputs(corpus("text")), cap in 1usize..300) {
        let text = UntrustedText::capped(&raw, cap);
        prop_assert!(text.as_str().chars().count() <= cap);
        prop_assert!(UntrustedText::is_clean(text.as_str(), cap));
        prop_assert!(!text.as_str().contains('\0'));
        if UntrustedText::is_clean(&raw, cap) && !raw.contains('\\') {
            prop_assert_eq!(text.as_str(), raw.as_str());
        }
    }

    /// CIDR lists: a parsed network contains its own address.
    #[test]
    fn cidr_parser(text in inputs(corpus("cidr"))) {
        if let Ok(nets) = net::parse_networks(&[text.as_str()]) {
            for n in &nets {
                prop_assert!(net::allows(&nets, n.network()));
            }
        }
    }

    /// Forwarding headers: an untrusted peer is always itself; from a trusted one the
    /// answer is an address of the chain that is not trusted, the last trusted hop when
    /// all are, or a refusal; never a panic.
    #[test]
    fn forwarded_header(chain in inputs(corpus("forwarded")), forwarded in any::<bool>(), peer_trusted in any::<bool>()) {
        let header = if forwarded { ForwardedHeader::Forwarded } else { ForwardedHeader::XForwardedFor };
        let trusted = net::parse_networks(&["10.0.0.0/8"]).unwrap();
        let peer: IpAddr = if peer_trusted { "10.0.0.1" } else { "203.0.113.9" }.parse().unwrap();
        let result = net::source_address(peer, header, Some(&chain), &trusted);
        if !peer_trusted {
            prop_assert_eq!(result, Ok(peer));
        } else if let Ok(ip) = result {
            prop_assert!(ip != peer || chain.contains("10.0.0.1"), "{ip} from {chain:?}");
        }
    }

    /// PASETO: arbitrary strings never verify; neither does any one-bit change of a
    /// valid token.
    #[test]
    fn paseto_verify(text in inputs(corpus("paseto")), at in any::<proptest::sample::Index>(), bit in any::<u8>()) {
        let key = SigningKey::from_seed(&[3; 32]);
        prop_assert!(verify_token(&key, &text).is_err());
        let valid = token::mint(&key, &claims()).unwrap();
        let tampered = flip(&valid, at, bit);
        prop_assume!(tampered != valid);
        prop_assert!(verify_token(&key, &tampered).is_err());
    }

    /// Compact JWS and JWKs: parsing never panics, nothing arbitrary verifies, and any
    /// one-bit change of a signed JWS fails verification.
    #[test]
    fn jws_and_jwk(text in inputs(corpus("jws")), at in any::<proptest::sample::Index>(), bit in any::<u8>()) {
        let key = JwsKey::ed25519_from_seed(&[5; 32]);
        if let Ok(jws) = Jws::parse(&text) {
            prop_assert!(jws.verify(&key.public()).is_err());
        }
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(&text)
            && let Ok(jwk) = PublicJwk::from_json(&value)
        {
            let _ = jwk.thumbprint();
        }
        let mut header = serde_json::Map::new();
        header.insert("typ".into(), "JWT".into());
        let valid = key.sign(header, &serde_json::json!({"sub": "client-1"}));
        prop_assert!(Jws::parse(&valid).unwrap().verify(&key.public()).is_ok());
        let tampered = flip(&valid, at, bit);
        prop_assume!(tampered != valid);
        let verified = Jws::parse(&tampered).and_then(|jws| jws.verify(&key.public()).map(|()| jws));
        // Base64url has spare bits in its last character: a flip there may decode to
        // the same bytes, which is the same JWS, not a forgery.
        if let Ok(jws) = verified {
            prop_assert_eq!(jws.payload, Jws::parse(&valid).unwrap().payload);
        }
    }

    /// DPoP proofs: nothing arbitrary passes; a one-bit change of a valid proof passes
    /// only if it decodes to the same proof.
    #[test]
    fn dpop_proof_check(text in inputs(corpus("dpop")), at in any::<proptest::sample::Index>(), bit in any::<u8>()) {
        prop_assert!(dpop::verify(&text, &dpop_expect()).is_err());
        let valid = dpop_proof();
        let good = dpop::verify(&valid, &dpop_expect()).unwrap();
        let tampered = flip(&valid, at, bit);
        if let Ok(verified) = dpop::verify(&tampered, &dpop_expect()) {
            prop_assert_eq!(verified, good);
        }
    }
}
