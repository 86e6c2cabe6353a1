//! A workload with no secret: it proves who it is with the identity token its platform
//! writes to a file (a Kubernetes projected service-account token), which the
//! `TokenSource` reads again for every token request, so the rotated token is used.
//!
//! ```sh
//! MAYFLY_ISSUER=https://mayfly.example MAYFLY_IDENTITY_TOKEN_FILE=/var/run/secrets/mayfly/token \
//! ORDERS_AUDIENCE=https://api.example.com/orders WORKLOAD_SCOPES=orders:read \
//! cargo run -p mayfly-sdk --example federated
//! ```
//!
//! In GitHub Actions (`permissions: id-token: write`), use
//! `ExternalToken::github_actions(&issuer)?` instead of `ExternalToken::file(…)`.

use std::env;

use mayfly_sdk::{ExternalToken, TokenSource};

fn var(name: &str, default: &str) -> String {
    env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let issuer = var("MAYFLY_ISSUER", "http://127.0.0.1:8080");
    let token_file = var(
        "MAYFLY_IDENTITY_TOKEN_FILE",
        "/var/run/secrets/mayfly/token",
    );
    // Optional: the issuer finds the client by the token's claims; naming it as well
    // makes a mismatch an error rather than another client's token.
    let client_id = env::var("MAYFLY_CLIENT_ID").ok().filter(|c| !c.is_empty());
    let audience = var("ORDERS_AUDIENCE", "https://api.example.com/orders");
    let scopes = var("WORKLOAD_SCOPES", "orders:read");
    let rounds: u32 = var("WORKLOAD_ROUNDS", "3").parse()?;

    let source = TokenSource::builder(issuer)
        .federated(client_id, ExternalToken::file(token_file))
        .audience(audience)
        .scopes(scopes.split(' '))
        .build()?;
    for round in 1..=rounds {
        // Ask before every call: the token is cached until about 80 % of its lifetime,
        // then a new one is requested with whatever token the file holds by then. Each
        // platform token is spent at its first use, so a new Mayfly token is asked for
        // only when due (see `ExternalToken::file` on sizing lifetimes).
        let token = source.token().await?;
        println!("round {round}: token {token:?}");
        if round < rounds {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
    Ok(())
}
