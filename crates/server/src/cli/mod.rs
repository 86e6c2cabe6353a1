//! The `mayfly` command line: `serve`, `migrate`, `openapi`, `admin …`, `keys …`,
//! `audit …`, and for people `login`, `token`, `logout` and `access` (which speak HTTP to
//! a running server). One file per command family, each with its arguments and its
//! handler; [`run`] dispatches. What they print are the admin API's output types
//! ([`output`]), so the CLI and REST agree.

pub mod access;
pub mod admin;
pub mod audit;
pub mod keys;
pub mod login;
pub mod output;
pub mod serve;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use time::OffsetDateTime;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;

pub use access::AccessCommand;
pub use admin::{
    AccessPolicyCommand, AdminCommand, AudienceCommand, ClientCommand, GrantCommand, ScopeCommand,
    UserCommand,
};
pub use audit::AuditCommand;
pub use keys::KeysCommand;
pub use login::{LoginArgs, TokenArgs};

/// Mayfly: short-lived, narrowly scoped tokens instead of static API keys.
#[derive(Debug, Parser)]
#[command(name = "mayfly", version, about)]
pub struct Cli {
    /// Settings shared by every subcommand.
    #[command(flatten)]
    pub config: Config,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (migrates the database first).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print the OpenAPI document.
    Openapi,
    /// Administer audiences, clients and grants directly in the database.
    Admin {
        /// What to administer.
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Inspect and rotate the signing keys.
    Keys {
        /// What to do.
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Search the audit log.
    Audit {
        /// What to do.
        #[command(subcommand)]
        command: AuditCommand,
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
    Gateway(crate::gateway::cli::GatewayArgs),
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
    let config = cli.config;
    match cli.command {
        Command::Serve => serve::serve(config).await,
        Command::Migrate => serve::migrate(&config).await,
        Command::Openapi => {
            print!("{}", crate::http::ops::openapi::document());
            Ok(())
        }
        Command::Admin { command } => admin::run(&config, command).await,
        Command::Keys { command } => keys::run(&config, command).await,
        Command::Audit { command } => audit::run(&config, command).await,
        Command::Login(args) => login::login(&config, args).await,
        Command::Token(args) => login::token(args).await,
        Command::Gateway(args) => crate::gateway::cli::run(&config, args, serve::shutdown_signal())
            .await
            .context("mayfly gateway"),
        Command::Access {
            token_file,
            command,
        } => access::run(token_file, command).await,
        Command::Logout { token_file } => login::logout(token_file).await,
    }
}

/// Opens and migrates the database the configuration names.
async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn mayfly_store::Store>> {
    let store = mayfly_store::connect(&config.database_url)
        .await
        .context("opening the database")?;
    store.migrate().await.context("migrating the database")?;
    Ok(store)
}

/// The time a command acts at.
fn now() -> OffsetDateTime {
    SystemClock.now()
}
