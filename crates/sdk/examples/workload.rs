//! A workload calling the orders API with a `TokenSource`: one token, reused and
//! refreshed before it expires, attached with `.mayfly_auth(&source)`.
//!
//! ```sh
//! MAYFLY_ISSUER=http://127.0.0.1:8080 MAYFLY_CLIENT_ID=… MAYFLY_CLIENT_SECRET=mfy_cs_… \
//! ORDERS_AUDIENCE=https://api.example.com/orders ORDERS_URL=http://127.0.0.1:3000/orders \
//! WORKLOAD_SCOPES=orders:read cargo run -p mayfly-sdk --example workload
//! ```

use std::env;

use mayfly_sdk::{ClientSecret, RequestBuilderExt, TokenSource};

fn var(name: &str, default: &str) -> String {
    env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let issuer = var("MAYFLY_ISSUER", "http://127.0.0.1:8080");
    let client_id = env::var("MAYFLY_CLIENT_ID").map_err(|_| "MAYFLY_CLIENT_ID is required")?;
    let secret =
        env::var("MAYFLY_CLIENT_SECRET").map_err(|_| "MAYFLY_CLIENT_SECRET is required")?;
    let audience = var("ORDERS_AUDIENCE", "https://api.example.com/orders");
    let url = var("ORDERS_URL", "http://127.0.0.1:3000/orders");
    let scopes = var("WORKLOAD_SCOPES", "orders:read");
    let rounds: u32 = var("WORKLOAD_ROUNDS", "3").parse()?;

    let source = TokenSource::builder(issuer)
        .client_secret(client_id, ClientSecret::new(secret))
        .audience(audience)
        .scopes(scopes.split(' '))
        .build()?;
    let http = reqwest::Client::new();
    for round in 1..=rounds {
        let token = source.token().await?;
        println!("round {round}: token {token:?}");
        let get = http.get(&url).mayfly_auth(&source).await?.send().await?;
        println!("  GET  /orders -> {} {}", get.status(), get.text().await?);
        let post = http.post(&url).mayfly_auth(&source).await?.send().await?;
        let challenge = post
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        println!("  POST /orders -> {} {challenge}", post.status());
        if round < rounds {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
    Ok(())
}
