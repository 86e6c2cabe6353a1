//! The `mayfly` command line: `serve`, `migrate`, `openapi`, `admin …`, `keys …`,
//! `audit …`, and for people `login` and `token` (which speak HTTP to a running server).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::config::{Config, parse_duration};

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

/// `mayfly login`: the first-party client comes from MAYFLY_CLIENT_ID and
/// MAYFLY_CLIENT_SECRET (or --client-secret-file), never from a secret on the command
/// line, where shell history would keep it.
#[derive(Debug, clap::Args)]
pub struct LoginArgs {
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

/// `mayfly access …`
#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// Ask for scopes on an audience for a while; prints the request as JSON (approved at
    /// once under an `auto` policy, else pending for approvers).
    Request {
        /// The audience URI.
        #[arg(long)]
        audience: String,
        /// A scope (repeatable).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// For how long from approval, e.g. 15m (at most what the policy allows).
        #[arg(long = "for", value_parser = parse_duration)]
        duration: Duration,
        /// Why (shown to approvers, kept in the audit log).
        #[arg(long)]
        reason: String,
        /// Emergency: approve it yourself, where a policy allows break-glass (always an
        /// anomaly, reviewed afterwards).
        #[arg(long)]
        break_glass: bool,
    },
    /// Your own requests.
    List {
        /// Only those in this state (pending, approved, denied, cancelled, expired).
        #[arg(long)]
        state: Option<String>,
    },
    /// One of your requests.
    Show {
        /// Request id.
        id: Uuid,
    },
    /// Withdraw your request; an approved one's access ends now (its tokens revoked).
    Cancel {
        /// Request id.
        id: Uuid,
        /// Why.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Approvers: the requests waiting for a decision.
    Queue {
        /// Which state to list.
        #[arg(long, default_value = "pending")]
        state: String,
    },
    /// Approvers: approve a request (never your own).
    Approve {
        /// Request id.
        id: Uuid,
        /// Why.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Approvers: deny a request.
    Deny {
        /// Request id.
        id: Uuid,
        /// Why (required).
        #[arg(long)]
        comment: String,
    },
}

/// `mayfly audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print matching events, newest first, one JSON object per line.
    Search {
        /// Event type, e.g. token.issued, token.denied, client.auth_failed.
        #[arg(long = "type")]
        event_type: Option<String>,
        /// success, denied or failure.
        #[arg(long)]
        outcome: Option<String>,
        /// The client involved.
        #[arg(long)]
        client_id: Option<String>,
        /// The subject involved.
        #[arg(long)]
        subject: Option<String>,
        /// The token involved.
        #[arg(long)]
        jti: Option<String>,
        /// The audience involved.
        #[arg(long)]
        audience: Option<String>,
        /// Source address or CIDR network.
        #[arg(long)]
        ip: Option<ipnet::IpNet>,
        /// Only events of the last so long, e.g. 15m, 24h.
        #[arg(long, value_parser = parse_duration)]
        since: Option<Duration>,
        /// At most this many (up to 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

/// `mayfly keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print every signing key (ids, states and times; no key material) as JSON.
    List,
    /// Rotate now: the `next` key (or a fresh one) signs once it has been published for
    /// the publish lead; until then the answer is `pending` and the running services
    /// activate it when the time comes.
    Rotate {
        /// The active key leaked: a successor signs at once and the old key is revoked
        /// (removed from the key set), so every token it signed is rejected by verifiers
        /// that refetch the key set.
        #[arg(long)]
        emergency: bool,
    },
    /// Re-encrypt every private key under a new master key, in one transaction. Stop
    /// every `mayfly serve` first, then start them with the new key file: the old one no
    /// longer opens the keys.
    Rewrap {
        /// File holding the new master key (64 hex characters; openssl rand -hex 32).
        #[arg(long)]
        new_master_key_file: PathBuf,
    },
}

/// `mayfly admin …`
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create the first admin client and print its credentials once, as JSON.
    Bootstrap,
    /// Audiences (resource servers).
    Audience {
        /// Action.
        #[command(subcommand)]
        command: AudienceCommand,
    },
    /// Scopes of an audience.
    Scope {
        /// Action.
        #[command(subcommand)]
        command: ScopeCommand,
    },
    /// Clients (workloads).
    Client {
        /// Action.
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// People who log in with a password.
    User {
        /// Action.
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Grants of scopes to clients and users.
    Grant {
        /// Action.
        #[command(subcommand)]
        command: GrantCommand,
    },
    /// Just-in-time access policies.
    AccessPolicy {
        /// Action.
        #[command(subcommand)]
        command: AccessPolicyCommand,
    },
}

/// `mayfly admin access-policy …`
#[derive(Debug, Subcommand)]
pub enum AccessPolicyCommand {
    /// Who may request which scopes of an audience, for how long, decided how.
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
        /// The audience URI.
        #[arg(long)]
        audience: String,
        /// A scope that may be requested (repeatable).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Who may request (repeatable): user:<id>, client:<id>, label:<name>, users,
        /// clients.
        #[arg(long = "subject", required = true)]
        subjects: Vec<String>,
        /// Longest access, e.g. 15m.
        #[arg(long, value_parser = parse_duration)]
        max_duration: Duration,
        /// auto, approval or deny.
        #[arg(long)]
        decision: String,
        /// Distinct approvers needed (approval).
        #[arg(long, default_value_t = 0)]
        approvals: i64,
        /// Allow emergency self-approval (approval policies).
        #[arg(long)]
        break_glass: bool,
    },
}

/// `mayfly admin audience …`
#[derive(Debug, Subcommand)]
pub enum AudienceCommand {
    /// Create an audience, optionally with scopes.
    Create {
        /// The audience URI, e.g. https://api.example.com/orders.
        #[arg(long)]
        uri: String,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
        /// A scope to create on it (repeatable), e.g. orders:read.
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
}

/// `mayfly admin scope …`
#[derive(Debug, Subcommand)]
pub enum ScopeCommand {
    /// Add scopes to an audience.
    Add {
        /// The audience URI.
        #[arg(long)]
        audience: String,
        /// Scope names.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// `mayfly admin client …`
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create a client; prints its id and first secret once, as JSON. With
    /// `--public-key` it authenticates with private_key_jwt only and gets no secret.
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
        /// Default token lifetime, e.g. 5m.
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
        /// Longest token lifetime, e.g. 15m.
        #[arg(long, value_parser = parse_duration)]
        max_ttl: Option<Duration>,
        /// An Ed25519 public key (the base64url `x` of its JWK) for private_key_jwt; at
        /// most twice. The client then has no secret.
        #[arg(long = "public-key")]
        public_keys: Vec<String>,
        /// Networks it may call from (CIDR), repeatable.
        #[arg(long = "allowed-cidr")]
        allowed_cidrs: Vec<String>,
        /// Its tokens must be DPoP-bound.
        #[arg(long)]
        require_dpop: bool,
        /// A grant type it may use (repeatable; default client_credentials):
        /// client_credentials, password, refresh_token,
        /// urn:ietf:params:oauth:grant-type:token-exchange.
        #[arg(long = "grant-type")]
        grant_types: Vec<String>,
    },
    /// Add a secret (at most two valid at once); prints it once, as JSON.
    AddSecret {
        /// Client id.
        id: Uuid,
        /// Expire it after this long, e.g. 30d.
        #[arg(long, value_parser = parse_duration)]
        expires_in: Option<Duration>,
    },
    /// Disable a client: it gets no more tokens.
    Disable {
        /// Client id.
        id: Uuid,
    },
    /// Enable a client again.
    Enable {
        /// Client id.
        id: Uuid,
    },
}

/// `mayfly admin user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is asked for without echo (or read as one line from
    /// standard input when it is not a terminal). Prints the id as JSON.
    Create {
        /// Login name: 1–64 of A-Z a-z 0-9 . _ - @.
        #[arg(long)]
        username: String,
    },
}

/// `mayfly admin grant …`
#[derive(Debug, Subcommand)]
pub enum GrantCommand {
    /// Grant a client or a user scopes on an audience.
    Create {
        /// Client id.
        #[arg(long, required_unless_present = "user", conflicts_with = "user")]
        client: Option<Uuid>,
        /// User id.
        #[arg(long)]
        user: Option<Uuid>,
        /// Audience URI.
        #[arg(long)]
        audience: String,
        /// Scope (repeatable).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Start of the window (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        not_before: Option<OffsetDateTime>,
        /// End of the window (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        expires_at: Option<OffsetDateTime>,
        /// Longest token lifetime under this grant, e.g. 5m.
        #[arg(long, value_parser = parse_duration)]
        max_ttl: Option<Duration>,
        /// Why this grant exists.
        #[arg(long, default_value = "")]
        reason: String,
    },
}

fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("{text:?} is not an RFC 3339 time: {e}"))
}
