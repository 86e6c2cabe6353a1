//! `mayfly admin …`: audiences, scopes, clients, users, grants and access policies,
//! straight in the database through the service layer, acting as `cli`. Prints the
//! admin API's own output types (see [`super::output`]).

use anyhow::Context as _;
use clap::Subcommand;
use mayfly_store::Subject;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::output::{
    AudienceCreated, ClientCreatedOut, ClientEnabled, GrantCreated, ScopesAdded, SecretAdded, print,
};
use super::{now, open_store};
use crate::api::AccessPolicyOut;
use crate::api::{AudienceOut, ClientCreated, GrantOut, SecretCreated, UserOut};
use crate::config::{Config, parse_duration};
use crate::service::access::{AccessPolicySpec, Decision};
use crate::service::{Actor, Caller, ClientSpec, CreatedClient, GrantSpec};

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

/// Runs `mayfly admin …`.
///
/// # Errors
/// The store or the service layer refused, or the output could not be written.
pub async fn run(config: &Config, command: AdminCommand) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    let actor = Actor {
        store: store.as_ref(),
        id: "cli".into(),
        now: now(),
        caller: Caller::trusted(),
    };
    match command {
        AdminCommand::Bootstrap => {
            let created = actor.bootstrap(&config.issuer()?).await?;
            print(&ClientCreatedOut::from(created))
        }
        AdminCommand::Audience {
            command:
                AudienceCommand::Create {
                    uri,
                    description,
                    scopes,
                },
        } => {
            let (audience, scopes) = actor.create_audience(&uri, &description, &scopes).await?;
            print(&AudienceCreated {
                audience: AudienceOut::from(audience),
                scopes: scopes.into_iter().map(|s| s.name).collect(),
            })
        }
        AdminCommand::Scope {
            command: ScopeCommand::Add { audience, names },
        } => {
            let scopes = actor.create_scopes(&audience, &names).await?;
            print(&ScopesAdded {
                audience,
                scopes: scopes.into_iter().map(|s| s.name).collect(),
            })
        }
        AdminCommand::Client { command } => client(&actor, command).await,
        AdminCommand::User {
            command: UserCommand::Create { username },
        } => {
            let password = crate::login::read_secret("Password: ")?;
            let hash = crate::password::Passwords::default().hash(password).await?;
            let user = actor.create_user(&username, hash, true, &[]).await?;
            print(&UserOut::from(user))
        }
        AdminCommand::Grant {
            command:
                GrantCommand::Create {
                    client,
                    user,
                    audience,
                    scopes,
                    not_before,
                    expires_at,
                    max_ttl,
                    reason,
                },
        } => {
            let subject = match (client, user) {
                (Some(id), _) => Subject::Client(id),
                (None, Some(id)) => Subject::User(id),
                (None, None) => anyhow::bail!("name a --client or a --user"),
            };
            let grant = actor
                .create_grant(GrantSpec {
                    subject,
                    audience,
                    scopes,
                    not_before,
                    expires_at,
                    allowed_cidrs: Vec::new(),
                    max_ttl,
                    may_act: Vec::new(),
                    reason,
                })
                .await?;
            print(&GrantCreated {
                grant: GrantOut::from(grant),
                client_id: client,
                user_id: user,
            })
        }
        AdminCommand::AccessPolicy {
            command:
                AccessPolicyCommand::Create {
                    name,
                    audience,
                    scopes,
                    subjects,
                    max_duration,
                    decision,
                    approvals,
                    break_glass,
                },
        } => {
            let decision = Decision::parse(&decision)
                .ok_or_else(|| anyhow::anyhow!("--decision is auto, approval or deny"))?;
            let policy = actor
                .create_access_policy(AccessPolicySpec {
                    name,
                    audience,
                    scopes,
                    subjects,
                    max_duration,
                    decision,
                    approvals_required: approvals,
                    break_glass,
                })
                .await?;
            print(&AccessPolicyOut::from(policy))
        }
    }
}

async fn client(actor: &Actor<'_>, command: ClientCommand) -> anyhow::Result<()> {
    match command {
        ClientCommand::Create {
            name,
            ttl,
            max_ttl,
            public_keys,
            allowed_cidrs,
            require_dpop,
            grant_types,
        } => {
            let defaults = ClientSpec::named(&name);
            let spec = ClientSpec {
                default_ttl: ttl,
                max_ttl,
                allowed_cidrs,
                require_dpop,
                grant_types: if grant_types.is_empty() {
                    defaults.grant_types.clone()
                } else {
                    grant_types
                },
                ..defaults
            };
            if public_keys.is_empty() {
                let created = actor.create_client(spec).await?;
                return print(&ClientCreatedOut::from(created));
            }
            use base64::Engine as _;
            let keys = public_keys
                .iter()
                .map(|x| {
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(x.trim())
                        .ok()
                        .and_then(|b| <[u8; 32]>::try_from(b).ok())
                        .map(|k| (None, k))
                        .context("--public-key must be the base64url of 32 bytes")
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let (client, keys) = actor.create_keyed_client(spec, &keys).await?;
            print(&ClientCreatedOut::new(ClientCreated {
                client: client.into(),
                client_secret: None,
                public_keys: keys.into_iter().map(Into::into).collect(),
            }))
        }
        ClientCommand::AddSecret { id, expires_in } => {
            let added = actor
                .create_client_secret(id, expires_in.map(|d| actor.now + d))
                .await?;
            print(&SecretAdded {
                client_id: id,
                secret_id: added.record.id,
                secret: SecretCreated {
                    id: added.record.id,
                    client_secret: added.secret.expose().to_owned(),
                    expires_at: added.record.expires_at,
                },
            })
        }
        ClientCommand::Disable { id } => {
            actor.update_client_enabled(id, false).await?;
            print(&ClientEnabled {
                client_id: id,
                enabled: false,
            })
        }
        ClientCommand::Enable { id } => {
            actor.update_client_enabled(id, true).await?;
            print(&ClientEnabled {
                client_id: id,
                enabled: true,
            })
        }
    }
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

fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("{text:?} is not an RFC 3339 time: {e}"))
}
