//! `mayfly login`, `mayfly token` and `mayfly logout`: a person's OAuth client of a
//! running server (see [`crate::login`]).

use std::path::PathBuf;

use anyhow::Context as _;
use time::Duration;

use super::now;
use crate::config::parse_duration;
use crate::login::{self, Client};

/// `mayfly login`: the first-party client comes from MAYFLY_CLIENT_ID and
/// MAYFLY_CLIENT_SECRET (or --client-secret-file), never from a secret on the command
/// line, where shell history would keep it.
#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The server's issuer URL. Default: http:// + MAYFLY_LISTEN (127.0.0.1:8080).
    #[arg(long, env = "MAYFLY_ISSUER")]
    pub issuer: Option<String>,
    /// Login name; asked for when absent.
    #[arg(long)]
    pub username: Option<String>,
    /// Scopes to ask for (space-separated).
    #[arg(long)]
    pub scope: String,
    /// The audience URI, when the user is granted several.
    #[arg(long)]
    pub resource: Option<String>,
    /// The first-party client's id.
    #[arg(long, env = "MAYFLY_CLIENT_ID")]
    pub client_id: String,
    /// File holding the client's secret (else MAYFLY_CLIENT_SECRET).
    #[arg(long)]
    pub client_secret_file: Option<PathBuf>,
    /// Print the access token and store nothing.
    #[arg(long)]
    pub print: bool,
    /// Where to store the tokens. Default: $XDG_CONFIG_HOME/mayfly/token.json, else
    /// ~/.config/mayfly/token.json.
    #[arg(long, env = "MAYFLY_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

/// `mayfly token`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// The file `mayfly login` wrote (same default).
    #[arg(long, env = "MAYFLY_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Refresh unless the token stays valid at least this long, e.g. 30s, 10m.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub min_valid: Duration,
}

/// Runs `mayfly login`.
///
/// # Errors
/// No client secret, no terminal for the password, or the server refused.
pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let issuer = args.issuer.clone().unwrap_or_else(super::default_server);
    let secret = match &args.client_secret_file {
        Some(path) => zeroize::Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?
                .trim()
                .to_owned(),
        ),
        None => zeroize::Zeroizing::new(std::env::var("MAYFLY_CLIENT_SECRET").map_err(|_| {
            anyhow::anyhow!("set MAYFLY_CLIENT_SECRET or --client-secret-file for the client")
        })?),
    };
    let path = token_file(args.token_file)?;
    let username = match args.username {
        Some(name) => name,
        None => login::read_visible("Username: ")?,
    };
    let password = login::read_secret("Password: ")?;
    let client = Client::new(&issuer, &args.client_id, secret)?;
    let response = client
        .login(&username, &password, &args.scope, args.resource.as_deref())
        .await?;
    if args.print {
        println!("{}", response.access_token);
        return Ok(());
    }
    let file = client.file(&response, args.resource.as_deref(), now());
    login::save(&path, &file)?;
    eprintln!(
        "mayfly: logged in as {username}; tokens stored in {} ({}); `mayfly token` prints one",
        path.display(),
        if file.refresh_token.is_some() {
            "refreshable"
        } else {
            "not refreshable: log in again when it expires"
        }
    );
    Ok(())
}

/// Runs `mayfly token`.
///
/// # Errors
/// No usable login stored, or the refresh was refused.
pub async fn token(args: TokenArgs) -> anyhow::Result<()> {
    let path = token_file(args.token_file)?;
    let token = login::current_token(&path, args.min_valid, now()).await?;
    println!("{}", token.as_str());
    Ok(())
}

/// Runs `mayfly logout`.
///
/// # Errors
/// The token file could not be read or deleted.
pub async fn logout(token_file_arg: Option<PathBuf>) -> anyhow::Result<()> {
    let path = token_file(token_file_arg)?;
    login::logout(&path).await?;
    eprintln!("mayfly: logged out; {} deleted", path.display());
    Ok(())
}

/// The token file given, else the default one.
pub(super) fn token_file(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    Ok(match given {
        Some(path) => path,
        None => login::default_token_file()?,
    })
}
