//! The admin API as `mayfly admin` calls it: the server from `--server` /
//! `MAYFLY_SERVER` / the profile, a token from the profile obtained and renewed before
//! it expires (and once more if the server still answers 401), and refusals turned into
//! one line: the problem's title and detail, the field errors, and the scope a 403
//! names.

use std::path::PathBuf;

use anyhow::Context as _;
use mayfly_core::wire::{ErrorResponse, ServerMetadata, TokenResponse};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde_json::Value;
use time::Duration;
use zeroize::Zeroizing;

use super::now;
use super::profile::{self, Credentials, Profile};

/// A token is renewed when it has less than this left.
const MIN_VALID: Duration = Duration::seconds(30);

/// How long one call may take.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// An HTTP client (TLS through rustls).
///
/// # Errors
/// The client could not be built.
pub fn http() -> anyhow::Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .context("building the HTTP client")
}

/// The server's RFC 8414 metadata.
///
/// # Errors
/// The server could not be reached or answered something else.
pub async fn metadata(http: &reqwest::Client, server: &str) -> anyhow::Result<ServerMetadata> {
    let url = format!(
        "{}/.well-known/oauth-authorization-server",
        server.trim_end_matches('/')
    );
    http.get(&url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("no Mayfly server answers at {server} (reading {url})"))?
        .json()
        .await
        .with_context(|| format!("reading {url}"))
}

/// The client credentials grant: a token for `scope` on `resource`.
///
/// # Errors
/// The token endpoint could not be reached or refused (its error code and description).
pub async fn client_credentials(
    http: &reqwest::Client,
    token_endpoint: &str,
    client_id: &str,
    client_secret: &str,
    scope: &str,
    resource: &str,
) -> anyhow::Result<TokenResponse> {
    let response = http
        .post(token_endpoint)
        .basic_auth(client_id, Some(client_secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", scope),
            ("resource", resource),
        ])
        .send()
        .await
        .with_context(|| format!("calling {token_endpoint}"))?;
    let status = response.status();
    if status.is_success() {
        return response.json().await.context("reading the token response");
    }
    match response.json::<ErrorResponse>().await {
        Ok(e) => anyhow::bail!(
            "the server refused a token for client {client_id}: {}{}",
            e.error.as_str(),
            e.error_description
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ),
        Err(_) => anyhow::bail!("{token_endpoint} answered {status}"),
    }
}

/// The admin API of one server, as one profile.
#[derive(Debug)]
pub struct Api {
    http: reqwest::Client,
    server: String,
    path: PathBuf,
    profile: Profile,
}

impl Api {
    /// Calls the profile's server as the profile at `path`.
    ///
    /// # Errors
    /// There is no usable profile, or `server` (`--server` / `MAYFLY_SERVER`) names
    /// another server than the profile's: its token and secret are for that server
    /// only, and a stale variable must not hand them to another host.
    pub fn open(server: Option<&str>, path: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let path = profile::path(path)?;
        let profile = profile::load(&path)?;
        let own = profile.server.trim_end_matches('/').to_owned();
        if let Some(other) = server.map(|s| s.trim_end_matches('/'))
            && other != own
        {
            anyhow::bail!(
                "the profile {} holds credentials for {own}, not for {other} (--server / \
                 MAYFLY_SERVER); sign in there with `mayfly admin login` and another --profile",
                path.display()
            );
        }
        let server = own;
        Ok(Self {
            http: http()?,
            server,
            path,
            profile,
        })
    }

    /// The profile in use.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The server's base URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// `GET path?query`.
    ///
    /// # Errors
    /// As [`Api::call`].
    pub async fn get(&mut self, path: &str, query: &impl Serialize) -> anyhow::Result<Value> {
        self.request(Method::GET, path, Some(query), None::<&()>)
            .await
    }

    /// `GET path`.
    ///
    /// # Errors
    /// As [`Api::call`].
    pub async fn read(&mut self, path: &str) -> anyhow::Result<Value> {
        self.request(Method::GET, path, None::<&()>, None::<&()>)
            .await
    }

    /// `DELETE path` (the answer has no body).
    ///
    /// # Errors
    /// As [`Api::call`].
    pub async fn delete(&mut self, path: &str) -> anyhow::Result<()> {
        self.request(Method::DELETE, path, None::<&()>, None::<&()>)
            .await
            .map(drop)
    }

    /// `method path` with an optional JSON body; `null` for an answer without one
    /// (204).
    ///
    /// # Errors
    /// The server could not be reached, no token could be had, or the server refused:
    /// one line with the problem's title, detail and field errors, and for a 403 the
    /// scope it names.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> anyhow::Result<Value> {
        self.request(method, path, None::<&()>, body).await
    }

    async fn request(
        &mut self,
        method: Method,
        path: &str,
        query: Option<&impl Serialize>,
        body: Option<&impl Serialize>,
    ) -> anyhow::Result<Value> {
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.server))
            .with_context(|| format!("{} is not a URL", self.server))?;
        if let Some(query) = query {
            append_query(&mut url, query)?;
        }
        let mut renewed = false;
        loop {
            let token = self.token(renewed).await?;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.as_str());
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request
                .send()
                .await
                .with_context(|| format!("calling {url}"))?;
            let status = response.status();
            // A token the server no longer takes (expired early, revoked, keys
            // rotated): renew it once and try again.
            if status == StatusCode::UNAUTHORIZED && !renewed {
                renewed = true;
                continue;
            }
            let challenge = response
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let bytes = response
                .bytes()
                .await
                .with_context(|| format!("reading the answer of {url}"))?;
            if status.is_success() {
                if bytes.is_empty() {
                    return Ok(Value::Null);
                }
                return serde_json::from_slice(&bytes)
                    .with_context(|| format!("{url} answered something other than JSON"));
            }
            let problem: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            anyhow::bail!(
                "{}",
                refusal(&method, path, status, &problem, challenge.as_deref())
            );
        }
    }

    /// A valid access token: the cached one while it has [`MIN_VALID`] left (unless
    /// `renew`), else a fresh one, cached in the profile.
    async fn token(&mut self, renew: bool) -> anyhow::Result<Zeroizing<String>> {
        let now = now();
        match &self.profile.credentials {
            Credentials::Login { token_file } => {
                let min_valid = if renew { Duration::hours(2) } else { MIN_VALID };
                Ok(crate::login::current_token(token_file, min_valid, now).await?)
            }
            Credentials::Client {
                client_id,
                client_secret,
                scope,
            } => {
                if !renew
                    && let (Some(token), Some(expires_at)) =
                        (&self.profile.access_token, self.profile.expires_at)
                    && expires_at - now >= MIN_VALID
                {
                    return Ok(Zeroizing::new(token.clone()));
                }
                let meta = metadata(&self.http, &self.server).await?;
                let response = client_credentials(
                    &self.http,
                    &meta.token_endpoint,
                    client_id,
                    client_secret,
                    scope,
                    &self.profile.issuer,
                )
                .await?;
                let lifetime = i64::try_from(response.expires_in).unwrap_or(0);
                self.profile.access_token = Some(response.access_token.clone());
                self.profile.expires_at = Some(now + Duration::seconds(lifetime));
                // A profile that cannot be rewritten still works for this call.
                if let Err(e) = profile::save(&self.path, &self.profile) {
                    tracing::warn!(error = %e, "could not cache the access token in the profile");
                }
                Ok(Zeroizing::new(response.access_token))
            }
        }
    }
}

/// Appends a query struct's set fields (as the API's `Params` read them).
fn append_query(url: &mut reqwest::Url, query: &impl Serialize) -> anyhow::Result<()> {
    let value = serde_json::to_value(query).context("encoding the query")?;
    let Value::Object(fields) = value else {
        return Ok(());
    };
    let mut pairs = url.query_pairs_mut();
    for (name, value) in fields {
        match value {
            Value::Null => {}
            Value::String(text) => {
                pairs.append_pair(&name, &text);
            }
            other => {
                pairs.append_pair(&name, &other.to_string());
            }
        }
    }
    drop(pairs);
    if url.query() == Some("") {
        url.set_query(None);
    }
    Ok(())
}

/// One line for a refusal: `GET /admin/v1/clients: 403 Forbidden: <detail> (needs the
/// scope …)`.
fn refusal(
    method: &Method,
    path: &str,
    status: StatusCode,
    problem: &Value,
    challenge: Option<&str>,
) -> String {
    let path = path.split('?').next().unwrap_or(path);
    let title = problem["title"]
        .as_str()
        .or(status.canonical_reason())
        .unwrap_or("refused");
    let mut line = format!("{method} {path}: {} {title}", status.as_u16());
    let description = challenge.and_then(|c| param(c, "error_description"));
    if let Some(detail) = problem["detail"].as_str().or(description.as_deref()) {
        line.push_str(": ");
        line.push_str(detail);
    }
    let fields: Vec<String> = problem["errors"]
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
    if !fields.is_empty() {
        line.push_str(&format!(" ({})", fields.join("; ")));
    }
    if status == StatusCode::FORBIDDEN
        && let Some(scope) = challenge.and_then(|c| param(c, "scope"))
        && !line.contains(&scope)
    {
        line.push_str(&format!(" (needs the scope {scope})"));
    }
    line
}

/// A quoted parameter of a `WWW-Authenticate` challenge.
fn param(challenge: &str, name: &str) -> Option<String> {
    let start = challenge.find(&format!("{name}=\""))? + name.len() + 2;
    let rest = &challenge[start..];
    Some(rest[..rest.find('"')?].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_scope_and_the_fields() {
        let problem = serde_json::json!({"title": "Forbidden", "detail": "this needs the scope mayfly:admin:clients (or mayfly:admin)"});
        let line = refusal(
            &Method::GET,
            "/admin/v1/clients?limit=5",
            StatusCode::FORBIDDEN,
            &problem,
            Some(
                r#"Bearer realm="mayfly", error="insufficient_scope", scope="mayfly:admin:clients""#,
            ),
        );
        assert_eq!(
            line,
            "GET /admin/v1/clients: 403 Forbidden: this needs the scope mayfly:admin:clients (or mayfly:admin)"
        );
        let line = refusal(
            &Method::POST,
            "/admin/v1/grants",
            StatusCode::FORBIDDEN,
            &serde_json::json!({"title": "Forbidden"}),
            Some(r#"Bearer error="insufficient_scope", scope="mayfly:admin:grants""#),
        );
        assert!(
            line.ends_with("(needs the scope mayfly:admin:grants)"),
            "{line}"
        );
        let line = refusal(
            &Method::POST,
            "/admin/v1/audiences",
            StatusCode::UNPROCESSABLE_ENTITY,
            &serde_json::json!({"title": "Unprocessable Entity", "detail": "invalid", "errors": [{"field": "uri", "message": "invalid uri"}]}),
            None,
        );
        assert!(line.contains("(uri: invalid uri)"), "{line}");
    }
}
