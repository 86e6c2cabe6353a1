//! `mayfly admin client …`, over `/admin/v1/clients`: the clients, their secrets
//! (shown once, when added), their public keys and their federated identities.

use anyhow::Context as _;
use clap::Subcommand;
use reqwest::Method;
use time::Duration;
use uuid::Uuid;

use super::admin::{Ctx, ListArgs};
use crate::api::{ClientPatch, NewClientIn, NewSecretIn, OkpJwk, Policy, Time};
use crate::config::parse_duration;

const COLUMNS: &[&str] = &[
    "id",
    "name",
    "enabled",
    "grant_types",
    "labels",
    "created_at",
];
const SECRET_COLUMNS: &[&str] = &["id", "created_at", "expires_at"];
const KEY_COLUMNS: &[&str] = &["id", "kid", "created_at"];

/// What a client may be: `create` sets these, `update` changes those given.
#[derive(Debug, clap::Args)]
pub struct ClientSettings {
    /// Default token lifetime, e.g. 5m.
    #[arg(long, value_parser = parse_duration)]
    pub ttl: Option<Duration>,
    /// Longest token lifetime, e.g. 15m.
    #[arg(long, value_parser = parse_duration)]
    pub max_ttl: Option<Duration>,
    /// A network it may call from (CIDR; repeatable).
    #[arg(long = "allowed-cidr")]
    pub allowed_cidrs: Vec<String>,
    /// A grant type it may use (repeatable; default client_credentials): password,
    /// refresh_token, urn:ietf:params:oauth:grant-type:token-exchange.
    #[arg(long = "grant-type")]
    pub grant_types: Vec<String>,
    /// A label access policies select it by (repeatable).
    #[arg(long = "label")]
    pub labels: Vec<String>,
}

/// `mayfly admin client …`
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// List clients.
    List(ListArgs),
    /// Show one client.
    Get {
        /// Client id.
        id: Uuid,
    },
    /// Create a client; prints it with its first secret, shown this once. With
    /// `--public-key` it authenticates with private_key_jwt only and gets no secret;
    /// with `--no-secret` it gets no credential (for a federated identity).
    #[command(
        after_help = "Example:\n  CLIENT_ID=$(mayfly admin client create --name billing -o json | jq -r .id)"
    )]
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
        /// Limits and grant types.
        #[command(flatten)]
        settings: ClientSettings,
        /// An Ed25519 public key (the base64url `x` of its JWK), at most twice; the
        /// client then has no secret.
        #[arg(long = "public-key")]
        public_keys: Vec<String>,
        /// No secret: the client will authenticate with a federated identity.
        #[arg(long, conflicts_with = "public_keys")]
        no_secret: bool,
        /// Its tokens must be DPoP-bound.
        #[arg(long)]
        require_dpop: bool,
        /// What an anomaly triggers: alert (default) or revoke.
        #[arg(long, value_parser = parse_policy)]
        anomaly_policy: Option<Policy>,
    },
    /// Change a client: only the options given.
    #[command(after_help = "Example:\n  mayfly admin client update \"$CLIENT_ID\" --max-ttl 10m")]
    Update {
        /// Client id.
        id: Uuid,
        /// New display name.
        #[arg(long)]
        name: Option<String>,
        /// New limits, networks, grant types or labels (lists replace the old ones).
        #[command(flatten)]
        settings: ClientSettings,
        /// Require DPoP (true) or not (false).
        #[arg(long)]
        require_dpop: Option<bool>,
        /// What an anomaly triggers: alert or revoke.
        #[arg(long, value_parser = parse_policy)]
        anomaly_policy: Option<Policy>,
    },
    /// Delete a client (its tokens stop working).
    Delete {
        /// Client id.
        id: Uuid,
    },
    /// Enable a client again.
    Enable {
        /// Client id.
        id: Uuid,
    },
    /// Disable a client: it gets no more tokens, and those it holds are revoked.
    Disable {
        /// Client id.
        id: Uuid,
    },
    /// A client's secrets: list, add (shown once), delete.
    Secret {
        /// Action.
        #[command(subcommand)]
        command: SecretCommand,
    },
    /// A client's public keys (private_key_jwt): list, add, delete.
    Key {
        /// Action.
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// A client's federated identities (external tokens that speak for it): list,
    /// add, remove.
    FederatedIdentity {
        /// Action.
        #[command(subcommand)]
        command: super::federated_identities::FederatedIdentityCommand,
    },
}

/// `mayfly admin client secret …`
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// List a client's secrets (never the secrets themselves).
    List {
        /// Client id.
        id: Uuid,
    },
    /// Add a secret (at most two valid at once); prints it this once.
    Add {
        /// Client id.
        id: Uuid,
        /// Expire it after this long, e.g. 30d.
        #[arg(long, value_parser = parse_duration)]
        expires_in: Option<Duration>,
    },
    /// Delete a secret.
    Delete {
        /// Client id.
        id: Uuid,
        /// Secret id.
        secret_id: Uuid,
    },
}

/// `mayfly admin client key …`
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// List a client's public keys.
    List {
        /// Client id.
        id: Uuid,
    },
    /// Add an Ed25519 public key.
    Add {
        /// Client id.
        id: Uuid,
        /// The base64url of the 32-byte key (the JWK's `x`).
        #[arg(long)]
        x: String,
        /// Key id (default: the RFC 7638 thumbprint).
        #[arg(long)]
        kid: Option<String>,
    },
    /// Delete a public key.
    Delete {
        /// Client id.
        id: Uuid,
        /// Key id (the listing's `id`).
        key_id: Uuid,
    },
}

fn parse_policy(text: &str) -> Result<Policy, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| format!("{text:?} is alert or revoke"))
}

fn jwk(x: &str, kid: Option<String>) -> OkpJwk {
    OkpJwk {
        kty: "OKP".into(),
        crv: "Ed25519".into(),
        x: x.trim().to_owned(),
        kid,
    }
}

/// Runs `mayfly admin client …`.
///
/// # Errors
/// The server refused.
pub async fn run(ctx: &mut Ctx, command: ClientCommand) -> anyhow::Result<()> {
    let answer = match command {
        ClientCommand::List(paging) => {
            return ctx
                .list("/admin/v1/clients", &paging, |c| paging.params(c), COLUMNS)
                .await;
        }
        ClientCommand::Get { id } => ctx.api.read(&format!("/admin/v1/clients/{id}")).await?,
        ClientCommand::Create {
            name,
            settings,
            public_keys,
            no_secret,
            require_dpop,
            anomaly_policy,
        } => {
            let body = NewClientIn {
                name,
                enabled: true,
                default_ttl_secs: settings.ttl.map(|d| d.whole_seconds()),
                max_ttl_secs: settings.max_ttl.map(|d| d.whole_seconds()),
                allowed_cidrs: settings.allowed_cidrs,
                require_dpop,
                anomaly_policy: anomaly_policy.unwrap_or_default(),
                public_keys: public_keys.iter().map(|x| jwk(x, None)).collect(),
                secret: no_secret.then_some(false),
                grant_types: if settings.grant_types.is_empty() {
                    vec!["client_credentials".to_owned()]
                } else {
                    settings.grant_types
                },
                labels: settings.labels,
            };
            ctx.api
                .call(Method::POST, "/admin/v1/clients", Some(&body))
                .await?
        }
        ClientCommand::Update {
            id,
            name,
            settings,
            require_dpop,
            anomaly_policy,
        } => {
            let list = |v: Vec<String>| (!v.is_empty()).then_some(v);
            let patch = ClientPatch {
                name,
                enabled: None,
                default_ttl_secs: settings.ttl.map(|d| Some(d.whole_seconds())),
                max_ttl_secs: settings.max_ttl.map(|d| Some(d.whole_seconds())),
                allowed_cidrs: list(settings.allowed_cidrs),
                require_dpop,
                anomaly_policy,
                grant_types: list(settings.grant_types),
                labels: list(settings.labels),
            };
            patch_client(ctx, id, &patch).await?
        }
        ClientCommand::Delete { id } => {
            ctx.api.delete(&format!("/admin/v1/clients/{id}")).await?;
            serde_json::json!({ "deleted": id })
        }
        ClientCommand::Enable { id } | ClientCommand::Disable { id } => {
            let enabled = matches!(command, ClientCommand::Enable { .. });
            let patch = ClientPatch {
                name: None,
                enabled: Some(enabled),
                default_ttl_secs: None,
                max_ttl_secs: None,
                allowed_cidrs: None,
                require_dpop: None,
                anomaly_policy: None,
                grant_types: None,
                labels: None,
            };
            patch_client(ctx, id, &patch).await?
        }
        ClientCommand::Secret { command } => return secret(ctx, command).await,
        ClientCommand::Key { command } => return key(ctx, command).await,
        ClientCommand::FederatedIdentity { command } => {
            return super::federated_identities::run(ctx, "/admin/v1/clients", command).await;
        }
    };
    ctx.show(&answer, COLUMNS)
}

async fn patch_client(
    ctx: &mut Ctx,
    id: Uuid,
    patch: &ClientPatch,
) -> anyhow::Result<serde_json::Value> {
    ctx.api
        .call(
            Method::PATCH,
            &format!("/admin/v1/clients/{id}"),
            Some(patch),
        )
        .await
}

async fn secret(ctx: &mut Ctx, command: SecretCommand) -> anyhow::Result<()> {
    let answer = match command {
        SecretCommand::List { id } => {
            ctx.api
                .read(&format!("/admin/v1/clients/{id}/secrets"))
                .await?
        }
        SecretCommand::Add { id, expires_in } => {
            let expires_at = expires_in
                .map(|d| {
                    super::now()
                        .checked_add(d)
                        .map(Time)
                        .context("--expires-in is too long")
                })
                .transpose()?;
            ctx.api
                .call(
                    Method::POST,
                    &format!("/admin/v1/clients/{id}/secrets"),
                    Some(&NewSecretIn { expires_at }),
                )
                .await?
        }
        SecretCommand::Delete { id, secret_id } => {
            ctx.api
                .delete(&format!("/admin/v1/clients/{id}/secrets/{secret_id}"))
                .await?;
            serde_json::json!({ "deleted": secret_id })
        }
    };
    ctx.show(&answer, SECRET_COLUMNS)
}

async fn key(ctx: &mut Ctx, command: KeyCommand) -> anyhow::Result<()> {
    let answer = match command {
        KeyCommand::List { id } => {
            ctx.api
                .read(&format!("/admin/v1/clients/{id}/public-keys"))
                .await?
        }
        KeyCommand::Add { id, x, kid } => {
            ctx.api
                .call(
                    Method::POST,
                    &format!("/admin/v1/clients/{id}/public-keys"),
                    Some(&jwk(&x, kid)),
                )
                .await?
        }
        KeyCommand::Delete { id, key_id } => {
            ctx.api
                .delete(&format!("/admin/v1/clients/{id}/public-keys/{key_id}"))
                .await?;
            serde_json::json!({ "deleted": key_id })
        }
    };
    ctx.show(&answer, KEY_COLUMNS)
}
