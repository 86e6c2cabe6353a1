//! The `mayfly` command line: `serve`, `migrate`, `openapi`, `keys rewrap`, `admin …`
//! (a client of the running server's admin API, like `kubectl`), and for people
//! `login`, `token`, `logout` and `access`. Only `serve`, `migrate`, `admin bootstrap`
//! and `keys rewrap` open the database; only they take the server settings
//! ([`Config`]). One file per command family, each with its arguments and its handler;
//! [`run`] dispatches. What `admin` prints is the admin API's own JSON, or a table of
//! it ([`output`]).

pub mod access;
pub mod admin;
pub mod api;
pub mod audiences;
pub mod audit;
pub mod clients;
pub mod federated_identities;
pub mod grants;
pub mod keys;
pub mod login;
pub mod output;
pub mod policies;
pub mod profile;
pub mod revocations;
pub mod serve;
pub mod trusted_issuers;
pub mod users;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use time::OffsetDateTime;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;

pub use access::AccessCommand;
pub use admin::{AdminArgs, AdminCommand};
pub use keys::KeysCommand;
pub use login::{LoginArgs, TokenArgs};

/// Mayfly: short-lived, narrowly scoped tokens instead of static API keys.
#[derive(Debug, Parser)]
#[command(name = "mayfly", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The log format: the server's setting for the commands that take server
    /// settings, plain text for the others.
    pub fn log_format(&self) -> crate::config::LogFormat {
        match &self.command {
            Command::Serve(server) => server.config.log_format,
            Command::Migrate(db) => db.config.log_format,
            _ => crate::config::LogFormat::Text,
        }
    }

    /// How many threads the async runtime runs: `serve`'s setting, else the default (one
    /// per core).
    pub fn workers(&self) -> Option<usize> {
        match &self.command {
            Command::Serve(server) => server.config.workers.map(usize::from),
            _ => None,
        }
    }
}

/// The server settings, for the commands that run the service or open its database.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// The settings.
    #[command(flatten)]
    pub config: Config,
}

/// The settings of a command that opens the database itself.
#[derive(Debug, clap::Args)]
pub struct DatabaseArgs {
    /// Create the SQLite database file when it does not exist (by default only
    /// `mayfly serve` creates it, so a command run in the wrong directory cannot
    /// silently start a second, empty database).
    #[arg(long)]
    pub create: bool,
    /// The settings.
    #[command(flatten)]
    pub config: Config,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (creates and migrates the database first).
    #[command(after_help = "Example:\n  MAYFLY_LISTEN=127.0.0.1:8080 mayfly serve")]
    Serve(ServerArgs),
    /// Apply database migrations and exit.
    #[command(
        after_help = "Example:\n  MAYFLY_DATABASE_URL=postgres://mayfly@db/mayfly mayfly migrate"
    )]
    Migrate(DatabaseArgs),
    /// Print the OpenAPI document.
    Openapi,
    /// Administer a running server over its admin API (audiences, scopes, clients,
    /// users, grants, access policies, revocations, keys, audit), as the profile
    /// `mayfly admin login` wrote. Only `admin bootstrap` opens the database itself.
    Admin(admin::AdminArgs),
    /// Re-encrypt the signing keys under a new master key, in the database (list and
    /// rotate them with `mayfly admin keys`).
    Keys {
        /// What to do.
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Log in as a person (password grant against the server at --issuer): asks for
    /// the password without echo (or reads one line from standard input when it is not
    /// a terminal) and stores the tokens in a 0600 file for `mayfly token`, or prints
    /// the access token with --print.
    Login(LoginArgs),
    /// Print a valid access token from the file `mayfly login` wrote, refreshing it
    /// (and rotating the refresh token) when it is about to expire.
    Token(TokenArgs),
    /// Just-in-time access over HTTP, as the person (or client) `mayfly login` stored:
    /// request access for yourself, list and cancel your requests; approvers list the
    /// queue and approve or deny. The stored login must be for the issuer audience
    /// (`mayfly login --scope "mayfly:access" --resource <issuer>`; approvers:
    /// `mayfly:approve`).
    Access {
        /// The file `mayfly login` wrote (same default).
        #[arg(long, env = "MAYFLY_TOKEN_FILE", global = true)]
        token_file: Option<PathBuf>,
        /// What to do.
        #[command(subcommand)]
        command: AccessCommand,
    },
    /// A verifying sidecar for nginx `auth_request`, Traefik `ForwardAuth` and Envoy
    /// `ext_authz`: verdicts by the SDK's checks and a route file; `check` validates
    /// the route file.
    Gateway {
        /// The issuer whose tokens it verifies.
        #[arg(long, env = "MAYFLY_ISSUER", global = true)]
        issuer: Option<String>,
        /// The one header the proxies write the forwarding chain in: x-forwarded-for or
        /// forwarded (RFC 7239).
        #[arg(long, env = "MAYFLY_FORWARDED_HEADER", default_value = "x-forwarded-for", value_parser = crate::config::parse_forwarded_header)]
        forwarded_header: mayfly_core::net::ForwardedHeader,
        /// The gateway's options.
        #[command(flatten)]
        args: crate::gateway::cli::GatewayArgs,
    },
    /// End the stored login at the server (RFC 7009: its refresh token and every access
    /// token issued from it) and delete the token file.
    Logout {
        /// The file `mayfly login` wrote (same default).
        #[arg(long, env = "MAYFLY_TOKEN_FILE")]
        token_file: Option<PathBuf>,
    },
}

/// Runs one command to its end.
///
/// # Errors
/// Whatever the command failed on, with context for the one-line message.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(server) => serve::serve(server.config).await,
        Command::Migrate(db) => serve::migrate(&db.config, db.create).await,
        Command::Openapi => {
            print!("{}", crate::http::ops::openapi::document());
            Ok(())
        }
        Command::Admin(args) => admin::run(args).await,
        Command::Keys { command } => keys::run(command).await,
        Command::Login(args) => login::login(args).await,
        Command::Token(args) => login::token(args).await,
        Command::Gateway {
            issuer,
            forwarded_header,
            args,
        } => {
            let mut config = gateway_config(issuer)?;
            config.forwarded_header = forwarded_header;
            crate::gateway::cli::run(&config, args, serve::shutdown_signal())
                .await
                .context("mayfly gateway")
        }
        Command::Access {
            token_file,
            command,
        } => access::run(token_file, command).await,
        Command::Logout { token_file } => login::logout(token_file).await,
    }
}

/// The server settings `mayfly gateway` passes on: from the environment, with its own
/// `--issuer`.
fn gateway_config(issuer: Option<String>) -> anyhow::Result<Config> {
    #[derive(Parser)]
    struct FromEnvironment {
        #[command(flatten)]
        config: Config,
    }
    let mut config = FromEnvironment::try_parse_from(["mayfly"])
        .map_err(|e| anyhow::anyhow!("{}", e.to_string().trim()))?
        .config;
    if issuer.is_some() {
        config.issuer = issuer;
    }
    Ok(config)
}

/// The server's address as a URL when nothing names it: `http://` + `MAYFLY_LISTEN`
/// (default 127.0.0.1:8080), as `mayfly serve` listens.
pub fn default_server() -> String {
    let listen = std::env::var("MAYFLY_LISTEN")
        .ok()
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    format!("http://{listen}")
}

/// Opens and migrates the database the configuration names. A missing SQLite file is
/// created only when `create` is set; a missing Postgres database is named with the
/// `createdb` command that makes it.
async fn open_store(config: &Config, create: bool) -> anyhow::Result<Arc<dyn mayfly_store::Store>> {
    config.check_database_url()?;
    if let Some(file) = config.sqlite_file()
        && !create
        && !file.exists()
    {
        anyhow::bail!(
            "no database at {} (in {}): run this where `mayfly serve` keeps its database, set MAYFLY_DATABASE_URL, or pass --create to make a new one",
            file.display(),
            std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_default()
        );
    }
    let store = serve::connect(&config.database_url).await?;
    store.migrate().await.context("migrating the database")?;
    Ok(store)
}

/// The time a command acts at.
fn now() -> OffsetDateTime {
    SystemClock.now()
}
