//! mayfly-sdk: what workloads and resource servers need to use Mayfly tokens.
//!
//! - Workloads: [`TokenSource`] obtains tokens with the client credentials grant,
//!   discovering the token endpoint from the issuer's RFC 8414 metadata, caches them,
//!   refreshes them at about 80 % of their lifetime, shares one in-flight request among
//!   concurrent callers and retries transient failures. [`RequestBuilderExt::mayfly_auth`]
//!   attaches the token to a `reqwest` request. The client may authenticate with a
//!   private key instead of a secret (`private_key_jwt`) and bind its tokens to a DPoP
//!   key ([`TokenSourceBuilder::dpop_key`]); `mayfly_auth` then signs a proof per request.
//!   A workload with no credential of its own sends the identity token its platform
//!   gives it ([`TokenSourceBuilder::federated`] with an [`ExternalToken`]: a Kubernetes
//!   service-account token file, GitHub Actions' OIDC token).
//! - Resource servers: [`Verifier`] checks tokens offline against the issuer's key set
//!   (fetched, cached per `Cache-Control`/`ETag`, refetched on an unknown `kid`, rate
//!   limited), follows the revocation feed, and keeps a bounded verified-token cache; or
//!   asks the issuer's introspection endpoint. With the default `axum` feature,
//!   [`Verifier::require`] is a tower layer that answers RFC 6750 401/403 challenges and
//!   hands handlers the [`VerifiedToken`]; with [`RequireScopesLayer::report_usage`] it
//!   also reports each accepted request to the issuer ([`UsageReporter`]).
//!   DPoP-bound tokens pass only with a valid proof by their key, network-restricted
//!   ones only from inside their networks.
//!
//! Time is an input ([`Clock`]), so refresh and expiry can be tested without sleeping.
//!
//! ```no_run
//! use axum::{Json, Router, routing::get};
//! use mayfly_sdk::{ClientSecret, RequestBuilderExt, TokenSource, VerifiedToken, Verifier};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let issuer = "http://127.0.0.1:8080";
//! let orders = "https://api.example.com/orders";
//!
//! // A resource server: GET /orders needs orders:read, POST /orders orders:write.
//! let verifier = Verifier::builder(issuer, orders)
//!     .revocation_feed("feed-reader-id", ClientSecret::new("mfy_cs_…"))
//!     .build()
//!     .await?;
//! async fn list(token: VerifiedToken) -> Json<serde_json::Value> {
//!     Json(serde_json::json!({ "caller": token.claims().sub, "orders": [] }))
//! }
//! async fn create(token: VerifiedToken) -> String {
//!     format!("created for {}", token.claims().client_id)
//! }
//! let app: Router = Router::new()
//!     .route("/orders", get(list).route_layer(verifier.require(["orders:read"])))
//!     .route("/orders", axum::routing::post(create).route_layer(verifier.require(["orders:write"])));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! tokio::spawn(async move { axum::serve(listener, app).await });
//!
//! // A workload calling it.
//! let source = TokenSource::builder(issuer)
//!     .client_secret("workload-id", ClientSecret::new("mfy_cs_…"))
//!     .audience(orders)
//!     .scopes(["orders:read"])
//!     .build()?;
//! let response = reqwest::Client::new()
//!     .get("http://127.0.0.1:3000/orders")
//!     .mayfly_auth(&source)
//!     .await?
//!     .send()
//!     .await?;
//! assert_eq!(response.status(), 200);
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod clock;
mod discovery;
mod error;
mod external;
mod feed;
mod keyset;
#[cfg(feature = "axum")]
mod layer;
mod offline;
mod retry;
mod token_source;
mod usage;
mod verifier;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, RejectionCode};
pub use external::{ExternalToken, GITHUB_REQUEST_TOKEN, GITHUB_REQUEST_URL, MAX_EXTERNAL_TOKEN};
#[cfg(feature = "axum")]
pub use layer::{
    Credentials, RequireScopes, RequireScopesLayer, client_address, credentials, refusal,
};
pub use mayfly_core::jose::JwsKey;
pub use offline::OfflineVerifier;
pub use retry::RetryPolicy;
pub use token_source::{
    AccessToken, ClientSecret, REFRESH_AT, REFRESH_JITTER, RequestBuilderExt, TokenSource,
    TokenSourceBuilder,
};
pub use usage::{
    DEFAULT_INTERVAL, MAX_BATCH, MAX_PENDING, USAGE_WRITE_SCOPE, UsageReporter,
    UsageReporterBuilder,
};
pub use verifier::{
    DEFAULT_CACHE_CAPACITY, DEFAULT_LEEWAY, DEFAULT_UNKNOWN_KEY_REFETCH, MAX_LEEWAY, Presentation,
    REVOCATIONS_READ_SCOPE, VerifiedToken, Verifier, VerifierBuilder, VerifierMode, VerifyError,
};
