//! `mayfly access …`: just-in-time access from the command line, over HTTP, as the
//! person (or client) whose login `mayfly login` stored: the issuer and a valid token
//! (refreshed when needed) come from the token file, so nobody handles a token by hand.
//!
//! Speaks JSON to `/v1/access-requests` and `/admin/v1/access-requests`; a refusal is
//! an error carrying the problem's `detail` (RFC 7807), never the token.

use std::path::{Path, PathBuf};

use serde_json::Value;
use time::{Duration, OffsetDateTime};

use crate::login::{self, LoginError};

/// The token must stay valid at least this long for a call.
const MIN_VALID: Duration = Duration::seconds(30);

/// The API as the stored login.
#[derive(Debug, Clone)]
pub struct Api {
    token_file: PathBuf,
}

impl Api {
    /// Calls as the login stored in `token_file`.
    pub fn new(token_file: &Path) -> Self {
        Self {
            token_file: token_file.to_owned(),
        }
    }

    /// `GET path`.
    ///
    /// # Errors
    /// [`LoginError`] when the login cannot be used, the server cannot be reached, or it
    /// refuses (the problem's detail).
    pub async fn get(&self, path: &str, now: OffsetDateTime) -> Result<Value, LoginError> {
        self.call(reqwest::Method::GET, path, None, now).await
    }

    /// `POST path` with a JSON body.
    ///
    /// # Errors
    /// As [`Api::get`].
    pub async fn post(
        &self,
        path: &str,
        body: &Value,
        now: OffsetDateTime,
    ) -> Result<Value, LoginError> {
        self.call(reqwest::Method::POST, path, Some(body), now)
            .await
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        now: OffsetDateTime,
    ) -> Result<Value, LoginError> {
        let token = login::current_token(&self.token_file, MIN_VALID, now).await?;
        let issuer = login::load(&self.token_file)?.issuer;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| LoginError::Http(format!("building the HTTP client: {e}")))?;
        let url = format!("{}{path}", issuer.trim_end_matches('/'));
        let mut request = http.request(method, &url).bearer_auth(token.as_str());
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| LoginError::Http(format!("calling {url}: {e}")))?;
        let status = response.status();
        let answer: Value = response
            .json()
            .await
            .map_err(|e| LoginError::Http(format!("reading the answer of {url}: {e}")))?;
        if status.is_success() {
            return Ok(answer);
        }
        let detail = answer["detail"].as_str().unwrap_or("refused");
        let fields: Vec<String> = answer["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| {
                        format!(
                            "{}: {}",
                            e["field"].as_str().unwrap_or("?"),
                            e["message"]
                                .as_str()
                                .or(e["detail"].as_str())
                                .unwrap_or("?")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Err(LoginError::Http(if fields.is_empty() {
            format!("{url} answered {status}: {detail}")
        } else {
            format!("{url} answered {status}: {detail} ({})", fields.join("; "))
        }))
    }
}
