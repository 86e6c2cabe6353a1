//! `mayfly admin …`: a client of the running server's admin API, like `kubectl`. The
//! server comes from `--server` / `MAYFLY_SERVER` / the profile (default: the local
//! listen address), the credentials from the profile `mayfly admin login` wrote. The
//! CLI holds no database: only `admin bootstrap`, which creates the first admin client
//! before any exists, opens it (and never creates it without `--create`).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::api::{self, Api};
use super::output::{ClientCreatedOut, Format, print, show};
use super::profile::{self, Credentials, Profile};
use super::{DatabaseArgs, now, open_store};
use crate::api::{ClientCreated, ListParams};
use crate::service::{Actor, CreatedClient};

/// Where `mayfly admin` finds the server and its credentials, and how it prints.
#[derive(Debug, clap::Args)]
pub struct Connection {
    /// The server's URL [default: the profile's, else http://$MAYFLY_LISTEN]
    #[arg(long, env = "MAYFLY_SERVER", global = true)]
    pub server: Option<String>,
    /// The profile `admin login` writes [default: ~/.config/mayfly/profile.json]
    #[arg(long, env = "MAYFLY_PROFILE", global = true)]
    pub profile: Option<PathBuf>,
    /// Output: table (default on a terminal) or json (default when piped).
    #[arg(
        short = 'o',
        long,
        value_enum,
        global = true,
        hide_possible_values = true
    )]
    pub output: Option<Format>,
}

/// `mayfly admin`.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// Server, profile and output.
    #[command(flatten)]
    pub connection: Connection,
    /// What to do.
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// `mayfly admin …`
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create the first admin client in the database (before any admin exists) and
    /// print its credentials once, as JSON.
    #[command(
        after_help = "Example (where `mayfly serve` keeps its database):\n  mayfly admin bootstrap > admin.json"
    )]
    Bootstrap(Box<DatabaseArgs>),
    /// Store the server and the credentials the other admin commands use: a client's
    /// id and secret (the secret from --client-secret-file, else asked for without echo,
    /// or one line of standard input), or a person's `mayfly login` token file.
    #[command(
        after_help = "Example:\n  jq -r .client_secret admin.json | mayfly admin login --client-id \"$(jq -r .client_id admin.json)\""
    )]
    Login(LoginArgs),
    /// Delete the profile.
    Logout,
    /// Audiences (resource servers).
    Audience {
        /// Action.
        #[command(subcommand)]
        command: super::audiences::AudienceCommand,
    },
    /// Scopes of an audience.
    Scope {
        /// Action.
        #[command(subcommand)]
        command: super::audiences::ScopeCommand,
    },
    /// Clients (workloads), their secrets, public keys and federated identities.
    Client {
        /// Action.
        #[command(subcommand)]
        command: super::clients::ClientCommand,
    },
    /// People who log in with a password, and their federated identities.
    User {
        /// Action.
        #[command(subcommand)]
        command: super::users::UserCommand,
    },
    /// External issuers whose tokens clients and users may present (workload
    /// identity federation).
    TrustedIssuer {
        /// Action.
        #[command(subcommand)]
        command: super::trusted_issuers::TrustedIssuerCommand,
    },
    /// Grants of scopes to clients and users.
    Grant {
        /// Action.
        #[command(subcommand)]
        command: super::grants::GrantCommand,
    },
    /// Just-in-time access policies.
    AccessPolicy {
        /// Action.
        #[command(subcommand)]
        command: super::policies::PolicyCommand,
    },
    /// Just-in-time access requests: the approvers' queue, approve, deny.
    Access {
        /// Action.
        #[command(subcommand)]
        command: super::policies::RequestCommand,
    },
    /// Revocations: list them.
    Revocation {
        /// Action.
        #[command(subcommand)]
        command: super::revocations::RevocationCommand,
    },
    /// Revoke a token, or every token of a subject, client, grant, key or login.
    #[command(
        after_help = "Example:\n  mayfly admin revoke --kind client \"$CLIENT_ID\" --reason \"secret leaked\""
    )]
    Revoke(super::revocations::RevokeArgs),
    /// Ask the server whether a token is active (RFC 7662), as the profile's client.
    #[command(after_help = "Example:\n  mayfly token | mayfly admin introspect")]
    Introspect(super::revocations::IntrospectArgs),
    /// Signing keys: list, rotate.
    Keys {
        /// Action.
        #[command(subcommand)]
        command: super::keys::AdminKeysCommand,
    },
    /// The audit log.
    Audit {
        /// Action.
        #[command(subcommand)]
        command: super::audit::AuditCommand,
    },
}

/// `mayfly admin login`.
#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The admin client's id.
    #[arg(long, required_unless_present = "token_file")]
    pub client_id: Option<String>,
    /// A file holding the client's secret (else asked for, or read from standard input).
    #[arg(long, conflicts_with = "token_file")]
    pub client_secret_file: Option<PathBuf>,
    /// The scopes to ask for, space-separated.
    #[arg(long, default_value = crate::vocab::ADMIN_SCOPE, conflicts_with = "token_file")]
    pub scope: String,
    /// Use a person's `mayfly login` token file (logged in for the issuer's audience).
    #[arg(long, conflicts_with = "client_id")]
    pub token_file: Option<PathBuf>,
}

/// Paging of a listing.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Items per page (1 to 500; the server's default is 100).
    #[arg(long)]
    pub limit: Option<u32>,
    /// Start after the page that answered this `next_cursor`.
    #[arg(long)]
    pub cursor: Option<String>,
    /// Follow every page.
    #[arg(long, conflicts_with = "cursor")]
    pub all: bool,
}

impl ListArgs {
    /// The API's paging parameters, at `cursor`.
    pub fn params(&self, cursor: Option<String>) -> ListParams {
        ListParams {
            limit: self.limit,
            cursor,
        }
    }
}

/// An API client and the output format: what every resource command works with.
#[derive(Debug)]
pub struct Ctx {
    /// The admin API.
    pub api: Api,
    /// How to print.
    pub format: Format,
}

impl Ctx {
    /// Prints one answer with `columns` for listings.
    ///
    /// # Errors
    /// It could not be written.
    pub fn show(&self, value: &Value, columns: &[&str]) -> anyhow::Result<()> {
        show(self.format, value, columns)
    }

    /// Lists `path`: one page (at `paging.cursor`), or with `--all` every page as one
    /// `items` array. `query` makes the query for a cursor.
    ///
    /// # Errors
    /// The server refused.
    pub async fn list<Q: Serialize>(
        &mut self,
        path: &str,
        paging: &ListArgs,
        query: impl Fn(Option<String>) -> Q,
        columns: &[&str],
    ) -> anyhow::Result<()> {
        let page = self.api.get(path, &query(paging.cursor.clone())).await?;
        if !paging.all {
            return self.show(&page, columns);
        }
        let mut items = page["items"].as_array().cloned().unwrap_or_default();
        let mut next = page["next_cursor"].as_str().map(str::to_owned);
        while let Some(cursor) = next {
            let page = self.api.get(path, &query(Some(cursor))).await?;
            items.extend(page["items"].as_array().cloned().unwrap_or_default());
            next = page["next_cursor"].as_str().map(str::to_owned);
        }
        self.show(&serde_json::json!({ "items": items }), columns)
    }

    /// The id of an audience given by id or URI.
    ///
    /// # Errors
    /// No audience has that URI, or the server refused.
    pub async fn audience_id(&mut self, audience: &str) -> anyhow::Result<Uuid> {
        self.id_by("/admin/v1/audiences", "uri", audience, "audience")
            .await
    }

    /// The id of a resource of `path` given by id, or by the value of its unique `field`
    /// (`what` names the resource in errors).
    ///
    /// # Errors
    /// None of them has that value, or the server refused.
    pub async fn id_by(
        &mut self,
        path: &str,
        field: &str,
        value: &str,
        what: &str,
    ) -> anyhow::Result<Uuid> {
        if let Ok(id) = Uuid::parse_str(value) {
            return Ok(id);
        }
        let mut cursor = None;
        loop {
            let page = self
                .api
                .get(
                    path,
                    &ListParams {
                        limit: Some(crate::http::admin::MAX_LIMIT),
                        cursor,
                    },
                )
                .await?;
            if let Some(found) = page["items"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a[field] == value)
            {
                return found["id"]
                    .as_str()
                    .and_then(|id| Uuid::parse_str(id).ok())
                    .with_context(|| format!("the server answered a {what} without an id"));
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => anyhow::bail!("no {what} {value}"),
            }
        }
    }
}

/// Runs `mayfly admin …`.
///
/// # Errors
/// No usable profile, the server could not be reached, or it refused.
pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let AdminArgs {
        connection,
        command,
    } = args;
    let command = match command {
        AdminCommand::Bootstrap(db) => return bootstrap(*db).await,
        AdminCommand::Login(login) => return self::login(&connection, login).await,
        AdminCommand::Logout => return logout(&connection),
        other => other,
    };
    let mut ctx = Ctx {
        api: Api::open(connection.server.as_deref(), connection.profile.as_deref())?,
        format: Format::chosen(connection.output),
    };
    match command {
        AdminCommand::Bootstrap(_) | AdminCommand::Login(_) | AdminCommand::Logout => Ok(()),
        AdminCommand::Audience { command } => super::audiences::audience(&mut ctx, command).await,
        AdminCommand::Scope { command } => super::audiences::scope(&mut ctx, command).await,
        AdminCommand::Client { command } => super::clients::run(&mut ctx, command).await,
        AdminCommand::User { command } => super::users::run(&mut ctx, command).await,
        AdminCommand::TrustedIssuer { command } => {
            super::trusted_issuers::run(&mut ctx, command).await
        }
        AdminCommand::Grant { command } => super::grants::run(&mut ctx, command).await,
        AdminCommand::AccessPolicy { command } => super::policies::policy(&mut ctx, command).await,
        AdminCommand::Access { command } => super::policies::request(&mut ctx, command).await,
        AdminCommand::Revocation { command } => super::revocations::list(&mut ctx, command).await,
        AdminCommand::Revoke(revoke) => super::revocations::revoke(&mut ctx, revoke).await,
        AdminCommand::Introspect(token) => super::revocations::introspect(&mut ctx, token).await,
        AdminCommand::Keys { command } => super::keys::admin(&mut ctx, command).await,
        AdminCommand::Audit { command } => super::audit::run(&mut ctx, command).await,
    }
}

/// `mayfly admin bootstrap`: straight in the database, acting as `cli`.
async fn bootstrap(db: DatabaseArgs) -> anyhow::Result<()> {
    let store = open_store(&db.config, db.create).await?;
    let actor = Actor::trusted(store.as_ref(), "cli", now(), Default::default());
    let created = actor.bootstrap(&db.config.issuer()?).await?;
    print(&ClientCreatedOut::from(created))
}

/// `mayfly admin login`: checks the credentials at the server, then writes the profile.
async fn login(connection: &Connection, args: LoginArgs) -> anyhow::Result<()> {
    let path = profile::path(connection.profile.as_deref())?;
    let http = api::http()?;
    let (profile, who) = match (args.token_file, args.client_id) {
        (Some(token_file), _) => {
            let stored = crate::login::load(&token_file)?;
            let server = connection.server.clone().unwrap_or(stored.issuer.clone());
            let meta = api::metadata(&http, &server).await?;
            let token_file = std::path::absolute(&token_file)
                .with_context(|| format!("resolving {}", token_file.display()))?;
            let who = format!("the login in {}", token_file.display());
            (
                Profile {
                    server,
                    issuer: meta.issuer,
                    credentials: Credentials::Login { token_file },
                    access_token: None,
                    expires_at: None,
                },
                who,
            )
        }
        (None, Some(client_id)) => {
            let secret = match &args.client_secret_file {
                Some(file) => zeroize::Zeroizing::new(
                    std::fs::read_to_string(file)
                        .with_context(|| format!("reading {}", file.display()))?
                        .trim()
                        .to_owned(),
                ),
                None => crate::login::read_secret("Client secret: ")?,
            };
            let server = connection
                .server
                .clone()
                .unwrap_or_else(super::default_server);
            let meta = api::metadata(&http, &server).await?;
            let token = api::client_credentials(
                &http,
                &meta.token_endpoint,
                &client_id,
                &secret,
                &args.scope,
                &meta.issuer,
            )
            .await?;
            let lifetime = i64::try_from(token.expires_in).unwrap_or(0);
            let who = format!("client {client_id} ({})", token.scope);
            (
                Profile {
                    server,
                    issuer: meta.issuer,
                    credentials: Credentials::Client {
                        client_id,
                        client_secret: secret.to_string(),
                        scope: args.scope,
                    },
                    access_token: Some(token.access_token),
                    expires_at: Some(now() + time::Duration::seconds(lifetime)),
                },
                who,
            )
        }
        (None, None) => anyhow::bail!("name a --client-id or a --token-file"),
    };
    profile::save(&path, &profile)?;
    eprintln!(
        "mayfly: admin of {} as {who}; profile stored in {}",
        profile.server,
        path.display()
    );
    Ok(())
}

/// `mayfly admin logout`: deletes the profile.
fn logout(connection: &Connection) -> anyhow::Result<()> {
    let path = profile::path(connection.profile.as_deref())?;
    match std::fs::remove_file(&path) {
        Ok(()) => eprintln!("mayfly: {} deleted", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("mayfly: no profile at {}", path.display());
        }
        Err(e) => return Err(e).with_context(|| format!("deleting {}", path.display())),
    }
    Ok(())
}

impl From<CreatedClient> for ClientCreatedOut {
    fn from(created: CreatedClient) -> Self {
        Self::new(ClientCreated {
            client: created.client.into(),
            client_secret: Some(created.secret.expose().to_owned()),
            public_keys: Vec::new(),
        })
    }
}

/// Parses an RFC 3339 time argument.
///
/// # Errors
/// A message naming the expected form.
pub fn parse_time(text: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{text:?} is not an RFC 3339 time: {e}"))
}
