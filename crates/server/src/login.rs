//! `mayfly login` and `mayfly token`: a person's command-line OAuth client of a running
//! Mayfly, so people stop keeping long-lived keys in their shell history.
//!
//! `login` asks for the password without echo (from the terminal; one line of standard
//! input when that is not a terminal, so scripts and tests can drive it), runs the
//! password grant as a first-party client, and stores the access token, the refresh
//! token and what is needed to refresh (issuer, client id and secret) in a file created
//! with mode 0600. `token` prints a valid access token from that file, refreshing it
//! with the refresh token (which rotates) when it is about to expire. Tokens and
//! secrets never reach `Debug` output or error messages.
//!
//! It speaks to the server over HTTP only: endpoints come from the RFC 8414 metadata.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use mayfly_core::wire::{ErrorResponse, ServerMetadata, TokenResponse};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

/// Why a login or a token refresh failed (never carries a secret).
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Reading the terminal or a file, or writing the token file.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The server could not be reached or answered garbage.
    #[error("{0}")]
    Http(String),
    /// The server refused (RFC 6749 §5.2 error).
    #[error("the server refused: {code}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        /// The OAuth error code.
        code: String,
        /// Its description.
        description: Option<String>,
    },
    /// Missing input or a stored file that cannot be used.
    #[error("{0}")]
    Usage(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LoginError {
    let what = what.into();
    move |source| LoginError::Io { what, source }
}

/// What `mayfly login` stores.
#[derive(Clone, Serialize, Deserialize)]
pub struct TokenFile {
    /// The server.
    pub issuer: String,
    /// The first-party client.
    pub client_id: String,
    /// Its secret (a first-party client needs a user's password or refresh token to get
    /// anything).
    pub client_secret: String,
    /// The scopes asked for.
    pub scope: String,
    /// The audience asked for, if any.
    pub resource: Option<String>,
    /// The access token.
    pub access_token: String,
    /// When it expires.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// The refresh token, when the client may refresh.
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for TokenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenFile")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The token file's default place: `$XDG_CONFIG_HOME/mayfly/token.json`, else
/// `~/.config/mayfly/token.json`.
///
/// # Errors
/// [`LoginError::Usage`] when neither variable is set.
pub fn default_token_file() -> Result<PathBuf, LoginError> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .ok_or_else(|| LoginError::Usage("set HOME or use --token-file".into()))?;
    Ok(base.join("mayfly").join("token.json"))
}

/// Reads a secret: without echo from the terminal, else one line of standard input.
///
/// # Errors
/// [`LoginError::Io`] when nothing can be read.
pub fn read_secret(prompt: &str) -> Result<Zeroizing<String>, LoginError> {
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(prompt)
            .map(Zeroizing::new)
            .map_err(io("reading the password"));
    }
    read_line_from_stdin().map_err(io("reading the password from standard input"))
}

/// Reads a line: prompting on the terminal, else from standard input.
///
/// # Errors
/// [`LoginError::Io`] when nothing can be read.
pub fn read_visible(prompt: &str) -> Result<String, LoginError> {
    if std::io::stdin().is_terminal() {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
    }
    read_line_from_stdin()
        .map(|line| line.to_string())
        .map_err(io("reading standard input"))
}

fn read_line_from_stdin() -> std::io::Result<Zeroizing<String>> {
    let mut line = Zeroizing::new(String::new());
    std::io::stdin().lock().read_line(&mut line)?;
    let trimmed = line.trim_end_matches(['\r', '\n']).len();
    line.truncate(trimmed);
    Ok(line)
}

/// A first-party client of one server.
pub struct Client {
    http: reqwest::Client,
    issuer: String,
    client_id: String,
    client_secret: Zeroizing<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the server at `issuer`.
    ///
    /// # Errors
    /// [`LoginError::Http`] when no HTTP client can be built.
    pub fn new(
        issuer: &str,
        client_id: &str,
        client_secret: Zeroizing<String>,
    ) -> Result<Self, LoginError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| LoginError::Http(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            http,
            issuer: issuer.trim_end_matches('/').to_owned(),
            client_id: client_id.to_owned(),
            client_secret,
        })
    }

    async fn metadata(&self) -> Result<ServerMetadata, LoginError> {
        let url = format!("{}/.well-known/oauth-authorization-server", self.issuer);
        self.http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| LoginError::Http(format!("reading {url}: {e}")))?
            .json()
            .await
            .map_err(|e| LoginError::Http(format!("reading {url}: {e}")))
    }

    /// RFC 7009: revokes a token of this client (a refresh token ends the whole login).
    ///
    /// # Errors
    /// [`LoginError`] when the server cannot be reached or refuses.
    pub async fn revoke(&self, token: &str, hint: &str) -> Result<(), LoginError> {
        let endpoint = self.metadata().await?.revocation_endpoint;
        let response = self
            .http
            .post(&endpoint)
            .basic_auth(&self.client_id, Some(self.client_secret.as_str()))
            .form(&[("token", token), ("token_type_hint", hint)])
            .send()
            .await
            .map_err(|e| LoginError::Http(format!("calling {endpoint}: {e}")))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(LoginError::Http(format!(
                "{endpoint} answered {}",
                response.status()
            )))
        }
    }

    async fn token_endpoint(&self) -> Result<String, LoginError> {
        Ok(self.metadata().await?.token_endpoint)
    }

    async fn token(&self, form: &[(&str, &str)]) -> Result<TokenResponse, LoginError> {
        let endpoint = self.token_endpoint().await?;
        let response = self
            .http
            .post(&endpoint)
            .basic_auth(&self.client_id, Some(self.client_secret.as_str()))
            .form(form)
            .send()
            .await
            .map_err(|e| LoginError::Http(format!("calling {endpoint}: {e}")))?;
        if response.status().is_success() {
            return response
                .json()
                .await
                .map_err(|e| LoginError::Http(format!("reading the token response: {e}")));
        }
        let status = response.status();
        match response.json::<ErrorResponse>().await {
            Ok(e) => Err(LoginError::Refused {
                code: e.error.as_str().to_owned(),
                description: e.error_description,
            }),
            Err(_) => Err(LoginError::Http(format!("{endpoint} answered {status}"))),
        }
    }

    /// The password grant.
    ///
    /// # Errors
    /// [`LoginError`] when the server cannot be reached or refuses.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        scope: &str,
        resource: Option<&str>,
    ) -> Result<TokenResponse, LoginError> {
        let mut form = vec![
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
            ("scope", scope),
        ];
        if let Some(resource) = resource {
            form.push(("resource", resource));
        }
        self.token(&form).await
    }

    /// The refresh-token grant (the answer carries the next refresh token).
    ///
    /// # Errors
    /// [`LoginError`] when the server cannot be reached or refuses.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenResponse, LoginError> {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .await
    }

    /// What to store after a login.
    pub fn file(
        &self,
        response: &TokenResponse,
        resource: Option<&str>,
        now: OffsetDateTime,
    ) -> TokenFile {
        TokenFile {
            issuer: self.issuer.clone(),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.to_string(),
            scope: response.scope.clone(),
            resource: resource.map(str::to_owned),
            access_token: response.access_token.clone(),
            expires_at: now + expires_in(response),
            refresh_token: response.refresh_token.clone(),
        }
    }
}

fn expires_in(response: &TokenResponse) -> Duration {
    Duration::seconds(i64::try_from(response.expires_in).unwrap_or(0))
}

/// Writes the token file (or any file holding credentials, such as the admin profile)
/// with mode 0600 (its directory 0700), atomically.
///
/// # Errors
/// [`LoginError::Io`].
pub fn save(path: &Path, file: &impl Serialize) -> Result<(), LoginError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let shown = path.display().to_string();
    create_private_dir(dir).map_err(io(format!("creating {}", dir.display())))?;
    let json = Zeroizing::new(
        serde_json::to_vec_pretty(file)
            .map_err(|e| LoginError::Usage(format!("encoding the token file: {e}")))?,
    );
    let tmp = path.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut out = private_file(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
    out.write_all(&json)
        .and_then(|()| out.sync_all())
        .map_err(io(format!("writing {shown}")))?;
    std::fs::rename(&tmp, path).map_err(io(format!("writing {shown}")))
}

#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Reads the token file, refusing one that others may read (as ssh does with keys).
///
/// # Errors
/// [`LoginError`] when it is missing, unreadable, too open or malformed.
pub fn load(path: &Path) -> Result<TokenFile, LoginError> {
    load_private(path, "token file", "run `mayfly login` first")
}

/// Reads a credentials file written by [`save`], refusing one that others may read;
/// `what` names the file and `hint` says what to do when it is missing or malformed.
///
/// # Errors
/// [`LoginError`] when it is missing, unreadable, too open or malformed.
pub fn load_private<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &str,
    hint: &str,
) -> Result<T, LoginError> {
    let shown = path.display().to_string();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                LoginError::Usage(format!("no {what} at {shown}: {hint}"))
            }
            _ => LoginError::Io {
                what: format!("reading {shown}"),
                source: e,
            },
        })?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(LoginError::Usage(format!(
                "{shown} may be read by others: chmod 600 it, or log in again"
            )));
        }
    }
    let bytes = Zeroizing::new(std::fs::read(path).map_err(io(format!("reading {shown}")))?);
    serde_json::from_slice(&bytes)
        .map_err(|_| LoginError::Usage(format!("{shown} is not a {what}; {hint}")))
}

/// A token valid for at least `min_valid` from the file, refreshed (and the file
/// rewritten, with the rotated refresh token) when needed.
///
/// Concurrent calls take turns on a lock file beside it: two refreshes with the same
/// refresh token would look like theft to the server (reuse detection), which would end
/// the login.
///
/// # Errors
/// [`LoginError`] when the stored token cannot be refreshed (log in again).
pub async fn current_token(
    path: &Path,
    min_valid: Duration,
    now: OffsetDateTime,
) -> Result<Zeroizing<String>, LoginError> {
    let lock_path = path.with_extension("lock");
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(io(format!("opening {}", lock_path.display())))?;
    // Released when `lock` is dropped, after the file is rewritten.
    lock.lock()
        .map_err(io(format!("locking {}", lock_path.display())))?;
    let stored = load(path)?;
    if stored.expires_at - now >= min_valid {
        return Ok(Zeroizing::new(stored.access_token));
    }
    let Some(refresh_token) = stored.refresh_token.as_deref() else {
        return Err(LoginError::Usage(
            "the stored token expires and this client cannot refresh it: run `mayfly login`".into(),
        ));
    };
    let client = Client::new(
        &stored.issuer,
        &stored.client_id,
        Zeroizing::new(stored.client_secret.clone()),
    )?;
    let response = client.refresh(refresh_token).await.map_err(|e| match e {
        LoginError::Refused { .. } => LoginError::Usage(format!(
            "the refresh token no longer works ({e}): run `mayfly login`"
        )),
        other => other,
    })?;
    let renewed = TokenFile {
        access_token: response.access_token.clone(),
        expires_at: now + expires_in(&response),
        refresh_token: response
            .refresh_token
            .clone()
            .or(stored.refresh_token.clone()),
        scope: response.scope.clone(),
        ..stored
    };
    save(path, &renewed)?;
    Ok(Zeroizing::new(response.access_token))
}

/// `mayfly logout`: revokes the stored login at the server (the refresh token ends the
/// family and every access token issued from it; without one, the access token) and
/// deletes the file.
///
/// # Errors
/// [`LoginError`] when the file cannot be read or the server cannot be reached; the file
/// is kept then, so the logout can be retried.
pub async fn logout(path: &Path) -> Result<(), LoginError> {
    let stored = load(path)?;
    let client = Client::new(
        &stored.issuer,
        &stored.client_id,
        Zeroizing::new(stored.client_secret.clone()),
    )?;
    match stored.refresh_token.as_deref() {
        Some(refresh_token) => client.revoke(refresh_token, "refresh_token").await?,
        None => client.revoke(&stored.access_token, "access_token").await?,
    }
    std::fs::remove_file(path).map_err(io(format!("deleting {}", path.display())))
}
