//! Shared setup: a test issuer over real HTTP, a verifier on a manual clock.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use mayfly_federation::testing::{TestIssuer, TestKey};
use mayfly_federation::{ManualClock, TrustedIssuer, TrustedIssuerConfig, Verifier};
use time::OffsetDateTime;

/// Where every test's clock starts.
pub fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

pub const AUDIENCE: &str = "https://mayfly.example";

pub struct Setup {
    pub issuer: TestIssuer,
    pub clock: Arc<ManualClock>,
    pub verifier: Verifier,
    pub trusted: TrustedIssuer,
}

impl Setup {
    pub fn now(&self) -> OffsetDateTime {
        use mayfly_federation::Clock as _;
        self.clock.now()
    }

    pub fn iss(&self) -> &str {
        self.issuer.issuer()
    }
}

/// An issuer publishing an RSA key `rsa`, a P-256 key `ec` and an Ed25519 key `ed`,
/// trusted through discovery with the default settings.
pub async fn setup() -> Setup {
    let issuer = TestIssuer::start(vec![
        TestKey::rsa("rsa", 0),
        TestKey::es256("ec"),
        TestKey::ed25519("ed"),
    ])
    .await;
    let config = issuer.config(AUDIENCE);
    with_config(issuer, config)
}

pub fn with_config(issuer: TestIssuer, config: TrustedIssuerConfig) -> Setup {
    let clock = Arc::new(ManualClock::new(t0()));
    let verifier = Verifier::builder().clock(clock.clone()).build().unwrap();
    let trusted = TrustedIssuer::new(config).unwrap();
    Setup {
        issuer,
        clock,
        verifier,
        trusted,
    }
}
