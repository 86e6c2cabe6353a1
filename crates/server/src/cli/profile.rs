//! The admin profile: which server `mayfly admin` talks to and as whom, written by
//! `mayfly admin login` to `$XDG_CONFIG_HOME/mayfly/profile.json` (mode 0600 in a 0700
//! directory), like a kubeconfig. It holds either a client's credentials (the access
//! token is cached beside them and renewed before it expires) or the path of a person's
//! `mayfly login` token file (renewed with its refresh token).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::login::{self, LoginError};

/// What `mayfly admin login` stores.
#[derive(Clone, Serialize, Deserialize)]
pub struct Profile {
    /// The server's base URL, e.g. `http://127.0.0.1:8080`.
    pub server: String,
    /// The issuer the server names in its metadata: the audience of admin tokens.
    pub issuer: String,
    /// Who calls.
    #[serde(flatten)]
    pub credentials: Credentials,
    /// The last access token obtained with client credentials, reused until shortly
    /// before it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// When that token expires.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<OffsetDateTime>,
}

/// Who calls the admin API.
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Credentials {
    /// A client with a secret: client credentials grant for `scope` on the issuer.
    Client {
        /// The client id.
        client_id: String,
        /// Its secret.
        client_secret: String,
        /// The scopes to ask for, space-separated.
        scope: String,
    },
    /// A person's `mayfly login` token file (its token must be for the issuer).
    Login {
        /// The token file.
        token_file: PathBuf,
    },
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("server", &self.server)
            .field("issuer", &self.issuer)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The profile given, else `$XDG_CONFIG_HOME/mayfly/profile.json` (or
/// `~/.config/mayfly/profile.json`).
///
/// # Errors
/// [`LoginError::Usage`] when no default can be found.
pub fn path(given: Option<&Path>) -> Result<PathBuf, LoginError> {
    match given {
        Some(path) => Ok(path.to_owned()),
        None => Ok(login::default_token_file()?.with_file_name("profile.json")),
    }
}

/// Reads the profile (refusing one others may read).
///
/// # Errors
/// [`LoginError::Usage`] naming `mayfly admin login` when there is none.
pub fn load(path: &Path) -> Result<Profile, LoginError> {
    login::load_private(
        path,
        "admin profile",
        "run `mayfly admin login --client-id <id>` first (or pass --profile)",
    )
}

/// Writes the profile, mode 0600.
///
/// # Errors
/// [`LoginError::Io`].
pub fn save(path: &Path, profile: &Profile) -> Result<(), LoginError> {
    login::save(path, profile)
}
