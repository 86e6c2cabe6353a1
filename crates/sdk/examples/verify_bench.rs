//! Offline verification throughput on one core: raw Ed25519 verification (the ceiling),
//! distinct tokens through `Verifier::verify_offline` (warm key set: signature, claims,
//! revocation check, cache insertion), and one token seen again and again (the
//! verified-token cache: expiry, revocation and scope still checked).
//!
//! ```sh
//! cargo run --release -p mayfly-sdk --example verify_bench
//! ```

use std::hint::black_box;
use std::time::Instant;

use ed25519_dalek::{Signer as _, Verifier as _};
use mayfly_core::SigningKey;
use mayfly_core::token::{self, Claims};
use mayfly_core::wire::{Jwk, JwkSet};
use mayfly_sdk::{Clock as _, SystemClock, Verifier};
use time::Duration;

const ISSUER: &str = "https://sts.example";
const AUDIENCE: &str = "https://api.example.com/orders";
const DISTINCT: usize = 20_000;
const REPEATS: usize = 3_000_000;

fn rate(n: usize, started: Instant) -> f64 {
    n as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key = SigningKey::from_seed(&[7; 32]);
    let now = SystemClock.now();
    let tokens: Vec<String> = (0..DISTINCT)
        .map(|i| {
            token::mint(
                &key,
                &Claims {
                    iss: ISSUER.into(),
                    sub: "0193a5b2-7c1d-7e4f-8a9b-0c1d2e3f4a5b".into(),
                    aud: AUDIENCE.into(),
                    iat: now,
                    nbf: now,
                    exp: now + Duration::minutes(5),
                    jti: format!("0193a5b2-7c1d-7e4f-8a9b-{i:012}"),
                    scope: "orders:read orders:write".into(),
                    client_id: "0193a5b2-7c1d-7e4f-8a9b-0c1d2e3f4a5b".into(),
                    gid: vec!["0193a5b2-0000-7e4f-8a9b-0c1d2e3f4a5b".into()],
                    cnf: None,
                    cidr: vec![],
                    act: None,
                    fam: None,
                    orig: Vec::new(),
                },
            )
        })
        .collect::<Result<_, _>>()?;
    let token_len = tokens.first().map_or(0, String::len);

    // The ceiling: ed25519-dalek verifying a message of the token's payload size.
    let raw = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let message = vec![0x5a_u8; token_len * 3 / 4];
    let signature = raw.sign(&message);
    let public = raw.verifying_key();
    let started = Instant::now();
    for _ in 0..DISTINCT {
        public.verify(black_box(&message), black_box(&signature))?;
    }
    let raw_rate = rate(DISTINCT, started);

    let verifier = Verifier::builder(ISSUER, AUDIENCE)
        .key_set(JwkSet {
            keys: vec![Jwk::from_public(key.public())],
        })
        .cache_capacity(DISTINCT * 2)
        .build()
        .await?;

    let started = Instant::now();
    for t in &tokens {
        black_box(verifier.verify_offline(black_box(t), &["orders:read"])?);
    }
    let distinct_rate = rate(DISTINCT, started);

    let seen = tokens.first().ok_or("no tokens")?.clone();
    let started = Instant::now();
    for _ in 0..REPEATS {
        black_box(verifier.verify_offline(black_box(&seen), &["orders:read"])?);
    }
    let cached_rate = rate(REPEATS, started);

    println!("token length: {token_len} bytes; one thread");
    println!("raw Ed25519 verify:              {raw_rate:>12.0} /s");
    println!(
        "distinct tokens (warm key set):  {distinct_rate:>12.0} /s  ({:.0} % of raw)",
        100.0 * distinct_rate / raw_rate
    );
    println!("repeated token (verified cache): {cached_rate:>12.0} /s");
    Ok(())
}
