//! Where a federated workload's external identity token comes from (workload identity
//! federation, issue #20): the JWT its platform hands it, which [`crate::TokenSource`]
//! sends as an RFC 7523 `client_assertion` instead of a stored secret.
//!
//! - A file, read again for every token request: Kubernetes rewrites projected
//!   service-account tokens in place before they expire, so a token read once goes stale.
//! - GitHub Actions' token request endpoint (`ACTIONS_ID_TOKEN_REQUEST_URL`, with the
//!   job's `ACTIONS_ID_TOKEN_REQUEST_TOKEN` as bearer), asked for a fresh token with the
//!   issuer's audience each time.
//!
//! The external token is a credential: it never appears in `Debug` output, logs or error
//! messages, and neither does the GitHub request token.

use std::fmt;
use std::path::{Path, PathBuf};

use tokio::io::AsyncReadExt as _;

use crate::Error;
use crate::retry::{self, RetryPolicy};

/// Largest external token read or accepted. Real ones are 1–2 KiB; a larger file is a
/// misconfiguration, not a token.
pub const MAX_EXTERNAL_TOKEN: usize = 64 * 1024;

/// The environment variable GitHub Actions sets to the token request URL (with
/// `permissions: id-token: write`).
pub const GITHUB_REQUEST_URL: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
/// The environment variable holding the bearer token for [`GITHUB_REQUEST_URL`].
pub const GITHUB_REQUEST_TOKEN: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";

/// Where the external identity token comes from.
#[derive(Clone)]
pub struct ExternalToken(Source);

#[derive(Clone)]
enum Source {
    File(PathBuf),
    GithubActions { url: reqwest::Url, bearer: String },
}

impl fmt::Debug for ExternalToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Source::File(path) => f.debug_tuple("ExternalToken::File").field(path).finish(),
            Source::GithubActions { url, .. } => f
                .debug_struct("ExternalToken::GithubActions")
                .field("url", &url.as_str())
                .field("bearer", &"<redacted>")
                .finish(),
        }
    }
}

impl ExternalToken {
    /// A token kept in a file (e.g. a Kubernetes projected service-account token at
    /// `/var/run/secrets/mayfly/token`), read again for every token request.
    ///
    /// Mayfly spends each external token at its first use, so a refresh succeeds only
    /// once the platform has written a new one: give the client a token lifetime whose
    /// refresh point (75–80 % of it) comes after the platform's rotation (the kubelet
    /// rotates at 80 % of `expirationSeconds`; 15 minutes suits 10-minute tokens).
    /// Until then a failed refresh keeps serving the still-valid token.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self(Source::File(path.into()))
    }

    /// A GitHub Actions OIDC token for `audience` (the `aud` the trusted issuer expects,
    /// by default Mayfly's issuer URL), from the endpoint the runner names in
    /// `ACTIONS_ID_TOKEN_REQUEST_URL` with `ACTIONS_ID_TOKEN_REQUEST_TOKEN`.
    ///
    /// # Errors
    /// [`Error::Config`] when either variable is unset or empty (the workflow or job
    /// lacks `permissions: id-token: write`) or the URL is not a URL.
    pub fn github_actions(audience: &str) -> Result<Self, Error> {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| {
                    Error::Config(format!(
                        "{name} is not set: GitHub Actions sets it for jobs with `permissions: id-token: write`"
                    ))
                })
        };
        Self::github_actions_with(
            &var(GITHUB_REQUEST_URL)?,
            &var(GITHUB_REQUEST_TOKEN)?,
            audience,
        )
    }

    /// As [`ExternalToken::github_actions`], with the request URL and token given
    /// (tests, or runners that pass them differently). `audience` is added to the URL's
    /// query as `audience=…`, URL-encoded.
    ///
    /// # Errors
    /// [`Error::Config`] when the URL is not an `http(s)` URL, or the token or audience
    /// is empty.
    pub fn github_actions_with(
        request_url: &str,
        request_token: &str,
        audience: &str,
    ) -> Result<Self, Error> {
        let mut url = reqwest::Url::parse(request_url.trim())
            .map_err(|e| Error::Config(format!("{GITHUB_REQUEST_URL} is not a URL: {e}")))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(Error::Config(format!(
                "{GITHUB_REQUEST_URL} must be an https URL"
            )));
        }
        let bearer = request_token.trim();
        if bearer.is_empty() {
            return Err(Error::Config(format!("{GITHUB_REQUEST_TOKEN} is empty")));
        }
        if audience.is_empty() {
            return Err(Error::Config(
                "the audience of the GitHub Actions token is empty".into(),
            ));
        }
        url.query_pairs_mut().append_pair("audience", audience);
        Ok(Self(Source::GithubActions {
            url,
            bearer: bearer.to_owned(),
        }))
    }

    /// The current external token.
    ///
    /// # Errors
    /// [`Error::ExternalToken`] when it cannot be read or fetched, or is empty or
    /// oversized; the message names the file or endpoint, never the token.
    pub(crate) async fn fetch(
        &self,
        http: &reqwest::Client,
        policy: &RetryPolicy,
    ) -> Result<String, Error> {
        let token = match &self.0 {
            Source::File(path) => read_file(path).await?,
            Source::GithubActions { url, bearer } => {
                request_github(http, policy, url, bearer).await?
            }
        };
        check(&token, &self.0)?;
        Ok(token)
    }
}

fn origin(source: &Source) -> String {
    match source {
        Source::File(path) => path.display().to_string(),
        Source::GithubActions { .. } => "the GitHub Actions token endpoint".to_owned(),
    }
}

/// The token must be one non-empty line of printable ASCII (a compact JWS is).
fn check(token: &str, source: &Source) -> Result<(), Error> {
    let fail = |why: &str| Error::ExternalToken(format!("{}: {why}", origin(source)));
    if token.is_empty() {
        return Err(fail("the token is empty"));
    }
    if token.len() > MAX_EXTERNAL_TOKEN {
        return Err(fail("the token is larger than 64 KiB"));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(fail("the token is not one line of printable ASCII"));
    }
    Ok(())
}

async fn read_file(path: &Path) -> Result<String, Error> {
    let fail = |why: String| Error::ExternalToken(format!("{}: {why}", path.display()));
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| fail(format!("cannot open: {e}")))?;
    let mut bytes = Vec::new();
    // One byte more than allowed, to tell "too large" from "exactly at the cap".
    file.take(MAX_EXTERNAL_TOKEN as u64 + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| fail(format!("cannot read: {e}")))?;
    if bytes.len() > MAX_EXTERNAL_TOKEN {
        return Err(fail("larger than 64 KiB".into()));
    }
    let text = String::from_utf8(bytes).map_err(|_| fail("not UTF-8".into()))?;
    Ok(text.trim().to_owned())
}

/// GET the token request URL with the bearer token; the answer is `{"value": "<jwt>"}`.
async fn request_github(
    http: &reqwest::Client,
    policy: &RetryPolicy,
    url: &reqwest::Url,
    bearer: &str,
) -> Result<String, Error> {
    #[derive(serde::Deserialize)]
    struct Answer {
        value: String,
    }
    let fail = |why: String| Error::ExternalToken(format!("GitHub Actions token request: {why}"));
    let response = retry::send(policy, || {
        http.get(url.clone())
            .timeout(std::time::Duration::from_secs(10))
            .bearer_auth(bearer)
            .header(reqwest::header::ACCEPT, "application/json")
    })
    .await
    .map_err(|e| match e {
        Error::Transport(e) => fail(e.without_url().to_string()),
        Error::Unavailable { status, .. } => fail(format!("answered {status}")),
        other => fail(other.to_string()),
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(fail(format!("answered {}", status.as_u16())));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| fail(e.without_url().to_string()))?;
    if body.len() > MAX_EXTERNAL_TOKEN + 1024 {
        return Err(fail("the answer is larger than 64 KiB".into()));
    }
    let answer: Answer = serde_json::from_slice(&body)
        .map_err(|_| fail("the answer is not {\"value\": \"<token>\"}".into()))?;
    Ok(answer.value.trim().to_owned())
}
