//! A resource server protected by mayfly-sdk: `GET /orders` needs `orders:read`,
//! `POST /orders` needs `orders:write`.
//!
//! ```sh
//! MAYFLY_ISSUER=http://127.0.0.1:8080 ORDERS_AUDIENCE=https://api.example.com/orders \
//! ORDERS_LISTEN=127.0.0.1:3000 ORDERS_FEED_CLIENT_ID=… ORDERS_FEED_CLIENT_SECRET=mfy_cs_… \
//!   cargo run -p mayfly-sdk --example orders_api
//! ```
//!
//! The feed client (granted `mayfly:revocations:read` on the issuer's audience) lets it
//! learn of revocations within a second; without it, revoked tokens stay valid here
//! until they expire.

use std::env;

use axum::Json;
use axum::http::StatusCode;
use axum::routing::{get, post};
use mayfly_sdk::{ClientSecret, VerifiedToken, Verifier};
use serde_json::{Value, json};

fn var(name: &str, default: &str) -> String {
    env::var(name).unwrap_or_else(|_| default.to_owned())
}

async fn list(token: VerifiedToken) -> Json<Value> {
    let claims = token.claims();
    Json(json!({ "caller": claims.client_id, "scope": claims.scope, "orders": [] }))
}

async fn create(token: VerifiedToken) -> (StatusCode, Json<Value>) {
    (
        StatusCode::CREATED,
        Json(json!({ "created_by": token.claims().client_id })),
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let issuer = var("MAYFLY_ISSUER", "http://127.0.0.1:8080");
    let audience = var("ORDERS_AUDIENCE", "https://api.example.com/orders");
    let listen = var("ORDERS_LISTEN", "127.0.0.1:3000");

    // The origin clients address (DPoP proofs name it); never taken from `Host`.
    let public = var("ORDERS_PUBLIC_URL", &format!("http://{listen}"));
    let mut builder = Verifier::builder(&issuer, &audience).resource_base(public);
    match (
        env::var("ORDERS_FEED_CLIENT_ID"),
        env::var("ORDERS_FEED_CLIENT_SECRET"),
    ) {
        (Ok(id), Ok(secret)) => builder = builder.revocation_feed(id, ClientSecret::new(secret)),
        _ => eprintln!(
            "warning: no ORDERS_FEED_CLIENT_ID/ORDERS_FEED_CLIENT_SECRET: revocations are not followed"
        ),
    }
    let verifier = builder.build().await?;

    let app = axum::Router::new()
        .route(
            "/orders",
            get(list).route_layer(verifier.require(["orders:read"])),
        )
        .route(
            "/orders",
            post(create).route_layer(verifier.require(["orders:write"])),
        );
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("orders API for {audience} on http://{listen}/orders (issuer {issuer})");
    axum::serve(listener, app).await?;
    Ok(())
}
