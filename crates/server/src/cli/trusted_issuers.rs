//! `mayfly admin trusted-issuer …`, over `/admin/v1/trusted-issuers`: the external
//! issuers (Kubernetes clusters, GitHub Actions, SPIFFE, OIDC providers) whose tokens
//! workloads and people may present instead of a stored secret (issue #20).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;
use time::Duration;
use uuid::Uuid;

use super::admin::{Ctx, ListArgs};
use crate::api::{KeySourceIn, NewTrustedIssuerIn, TrustedIssuerPatch};
use crate::config::parse_duration;

const COLUMNS: &[&str] = &["id", "issuer", "description", "created_at"];
const PATH: &str = "/admin/v1/trusted-issuers";

/// Where the issuer's keys come from; none of them: OIDC discovery.
#[derive(Debug, clap::Args)]
#[group(multiple = false)]
pub struct KeySourceArgs {
    /// Fetch the keys from this JWK Set URL instead of discovering it.
    #[arg(long)]
    pub jwks_uri: Option<String>,
    /// Use this JWK Set (a file, `-` for standard input) for an issuer the server
    /// cannot reach, e.g. the output of `kubectl get --raw /openid/v1/jwks`.
    #[arg(long)]
    pub jwks_file: Option<PathBuf>,
    /// Find the keys by OIDC discovery (the default at creation).
    #[arg(long)]
    pub discovery: bool,
}

impl KeySourceArgs {
    /// The key source asked for, if any.
    fn source(&self) -> anyhow::Result<Option<KeySourceIn>> {
        if let Some(jwks_uri) = &self.jwks_uri {
            return Ok(Some(KeySourceIn::JwksUri {
                jwks_uri: jwks_uri.clone(),
            }));
        }
        if let Some(file) = &self.jwks_file {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading standard input")?
            } else {
                std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let jwks: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a JSON JWK Set", file.display()))?;
            return Ok(Some(KeySourceIn::Inline { jwks }));
        }
        Ok(self.discovery.then_some(KeySourceIn::Discovery))
    }
}

/// How external tokens are checked: `create` sets these, `update` changes those given.
#[derive(Debug, clap::Args)]
pub struct IssuerSettings {
    /// The `aud` its tokens must carry [create default: this server's issuer URL].
    #[arg(long)]
    pub audience: Option<String>,
    /// An accepted algorithm, RS256, ES256 or EdDSA (repeatable) [create default: all].
    #[arg(long = "algorithm")]
    pub algorithms: Vec<String>,
    /// Oldest accepted token (from its `iat`), e.g. 15m for Kubernetes [default: 5m].
    #[arg(long, value_parser = parse_duration)]
    pub max_age: Option<Duration>,
    /// Clock-skew allowance, e.g. 30s [default: 30s].
    #[arg(long, value_parser = parse_duration)]
    pub clock_skew: Option<Duration>,
    /// Longest accepted token lifetime (`exp - iat`), e.g. 1h [default: none].
    #[arg(long, value_parser = parse_duration)]
    pub max_lifetime: Option<Duration>,
    /// Free text.
    #[arg(long)]
    pub description: Option<String>,
    /// Key source.
    #[command(flatten)]
    pub keys: KeySourceArgs,
}

/// `mayfly admin trusted-issuer …`
#[derive(Debug, Subcommand)]
pub enum TrustedIssuerCommand {
    /// List trusted issuers.
    List(ListArgs),
    /// Show one trusted issuer, with its settings.
    Get {
        /// Its id or issuer URL.
        issuer: String,
    },
    /// Trust an external issuer's tokens (keys by OIDC discovery unless --jwks-uri or
    /// --jwks-file).
    #[command(
        after_help = "Example:\n  mayfly admin trusted-issuer create --issuer https://token.actions.githubusercontent.com --algorithm RS256"
    )]
    Create {
        /// The issuer, exactly the tokens' `iss` (https; http only on a loopback host).
        #[arg(long)]
        issuer: String,
        /// Audience, algorithms, ages, keys.
        #[command(flatten)]
        settings: IssuerSettings,
    },
    /// Change a trusted issuer: only the options given (not its issuer URL).
    #[command(
        after_help = "Example:\n  kubectl get --raw /openid/v1/jwks | mayfly admin trusted-issuer update \"$K8S_ISSUER\" --jwks-file -"
    )]
    Update {
        /// Its id or issuer URL.
        issuer: String,
        /// New settings.
        #[command(flatten)]
        settings: IssuerSettings,
    },
    /// Stop trusting an issuer (refused while federated identities use it).
    Delete {
        /// Its id or issuer URL.
        issuer: String,
    },
}

fn seconds(d: Option<Duration>) -> Option<i64> {
    d.map(|d| d.whole_seconds())
}

/// Runs `mayfly admin trusted-issuer …`.
///
/// # Errors
/// A JWK Set file could not be read, or the server refused.
pub async fn run(ctx: &mut Ctx, command: TrustedIssuerCommand) -> anyhow::Result<()> {
    let answer = match command {
        TrustedIssuerCommand::List(paging) => {
            return ctx.list(PATH, &paging, |c| paging.params(c), COLUMNS).await;
        }
        TrustedIssuerCommand::Get { issuer } => {
            let id = issuer_id(ctx, &issuer).await?;
            ctx.api.read(&format!("{PATH}/{id}")).await?
        }
        TrustedIssuerCommand::Create { issuer, settings } => {
            let body = NewTrustedIssuerIn {
                issuer,
                key_source: settings.keys.source()?.unwrap_or(KeySourceIn::Discovery),
                algorithms: if settings.algorithms.is_empty() {
                    mayfly_federation::TrustedIssuerConfig::new("", "").algorithms
                } else {
                    settings.algorithms
                },
                audience: settings
                    .audience
                    .unwrap_or_else(|| ctx.api.profile().issuer.clone()),
                max_age_seconds: seconds(settings.max_age),
                clock_skew_seconds: seconds(settings.clock_skew),
                max_lifetime_seconds: seconds(settings.max_lifetime),
                description: settings.description.unwrap_or_default(),
            };
            ctx.api.call(Method::POST, PATH, Some(&body)).await?
        }
        TrustedIssuerCommand::Update { issuer, settings } => {
            let id = issuer_id(ctx, &issuer).await?;
            let patch = TrustedIssuerPatch {
                description: settings.description,
                key_source: settings.keys.source()?,
                algorithms: (!settings.algorithms.is_empty()).then_some(settings.algorithms),
                audience: settings.audience,
                max_age_seconds: seconds(settings.max_age).map(Some),
                clock_skew_seconds: seconds(settings.clock_skew).map(Some),
                max_lifetime_seconds: seconds(settings.max_lifetime).map(Some),
            };
            ctx.api
                .call(Method::PATCH, &format!("{PATH}/{id}"), Some(&patch))
                .await?
        }
        TrustedIssuerCommand::Delete { issuer } => {
            let id = issuer_id(ctx, &issuer).await?;
            ctx.api.delete(&format!("{PATH}/{id}")).await?;
            serde_json::json!({ "deleted": id })
        }
    };
    ctx.show(&answer, COLUMNS)
}

/// The id of a trusted issuer given by id or issuer URL.
///
/// # Errors
/// No trusted issuer has that URL, or the server refused.
pub async fn issuer_id(ctx: &mut Ctx, issuer: &str) -> anyhow::Result<Uuid> {
    ctx.id_by(PATH, "issuer", issuer, "trusted issuer").await
}
