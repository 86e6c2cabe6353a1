//! Discovery of the issuer's endpoints from its RFC 8414 metadata.

use mayfly_core::wire::ServerMetadata;

use crate::Error;
use crate::retry::{self, RetryPolicy};

/// Fetches `{issuer}/.well-known/oauth-authorization-server` and checks that it speaks
/// for `issuer` (RFC 8414 §3.3: the `issuer` member must equal the one asked about).
pub(crate) async fn discover(
    http: &reqwest::Client,
    issuer: &str,
    policy: &RetryPolicy,
) -> Result<ServerMetadata, Error> {
    let url = format!(
        "{}/.well-known/oauth-authorization-server",
        issuer.trim_end_matches('/')
    );
    let response = retry::send(policy, || http.get(&url)).await?;
    if !response.status().is_success() {
        return Err(Error::rejected(response).await);
    }
    let metadata: ServerMetadata = response
        .json()
        .await
        .map_err(|e| Error::InvalidResponse(format!("metadata: {e}")))?;
    if metadata.issuer != issuer {
        return Err(Error::InvalidResponse(format!(
            "metadata names issuer {:?}, expected {issuer:?}",
            metadata.issuer
        )));
    }
    Ok(metadata)
}

/// The HTTP client used when none is given: rustls with ring, short timeouts.
pub(crate) fn default_http() -> Result<reqwest::Client, Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .build()
        .map_err(|e| Error::Config(format!("HTTP client: {e}")))
}
