//! `mayfly admin revoke`, `mayfly admin revocation list` (over
//! `/admin/v1/revocations`) and `mayfly admin introspect` (RFC 7662, as the profile's
//! client).

use anyhow::Context as _;
use clap::Subcommand;
use mayfly_core::revocation::RevocationKind;
use reqwest::Method;
use time::OffsetDateTime;

use super::admin::{Ctx, parse_time};
use super::profile::Credentials;
use crate::api::{NewRevocationIn, Time};
use crate::http::v1::feed::FeedParams;

const COLUMNS: &[&str] = &["cursor", "kind", "value", "issued_before", "expires_at"];

fn parse_kind(text: &str) -> Result<RevocationKind, String> {
    RevocationKind::parse(text)
        .ok_or_else(|| format!("{text:?} is jti, subject, client, grant, key or family"))
}

/// `mayfly admin revoke`.
#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    /// What to revoke: jti (one token), or every token of a subject, client, grant,
    /// signing key or refresh-token family.
    #[arg(long, value_parser = parse_kind)]
    pub kind: RevocationKind,
    /// The jti, subject id, client id, grant id or key id.
    pub value: String,
    /// Revoke only tokens issued before this time (RFC 3339; default now).
    #[arg(long, value_parser = parse_time)]
    pub issued_before: Option<OffsetDateTime>,
    /// Why.
    #[arg(long, default_value = "")]
    pub reason: String,
}

/// `mayfly admin revocation …`
#[derive(Debug, Subcommand)]
pub enum RevocationCommand {
    /// List revocations in force, oldest first.
    List {
        /// Start after this cursor (a listed entry's `cursor`).
        #[arg(long)]
        after: Option<String>,
        /// Entries per page (1 to 1000).
        #[arg(long)]
        limit: Option<u32>,
    },
}

/// `mayfly admin introspect`.
#[derive(Debug, clap::Args)]
pub struct IntrospectArgs {
    /// The token; default: one line of standard input (keeps it out of shell history).
    pub token: Option<String>,
}

/// Runs `mayfly admin revoke`.
///
/// # Errors
/// The server refused.
pub async fn revoke(ctx: &mut Ctx, args: RevokeArgs) -> anyhow::Result<()> {
    let body = NewRevocationIn {
        kind: args.kind,
        value: args.value,
        issued_before: args.issued_before.map(Time),
        reason: args.reason,
    };
    let answer = ctx
        .api
        .call(Method::POST, "/admin/v1/revocations", Some(&body))
        .await?;
    ctx.show(&answer, COLUMNS)
}

/// Runs `mayfly admin revocation list`.
///
/// # Errors
/// The server refused.
pub async fn list(ctx: &mut Ctx, command: RevocationCommand) -> anyhow::Result<()> {
    let RevocationCommand::List { after, limit } = command;
    let answer = ctx
        .api
        .get("/admin/v1/revocations", &FeedParams { after, limit })
        .await?;
    ctx.show(&answer, COLUMNS)
}

/// Runs `mayfly admin introspect`: the introspection endpoint authenticates clients,
/// so this uses the profile's client (or the first-party client of a stored login).
///
/// # Errors
/// No token, no client credentials, or the server refused.
pub async fn introspect(ctx: &mut Ctx, args: IntrospectArgs) -> anyhow::Result<()> {
    let token = match args.token {
        Some(token) => zeroize::Zeroizing::new(token),
        None => crate::login::read_secret("Token: ")?,
    };
    let (client_id, client_secret) = match &ctx.api.profile().credentials {
        Credentials::Client {
            client_id,
            client_secret,
            ..
        } => (client_id.clone(), client_secret.clone()),
        Credentials::Login { token_file } => {
            let stored = crate::login::load(token_file)?;
            (stored.client_id.clone(), stored.client_secret.clone())
        }
    };
    let meta = super::api::metadata(ctx.api.http(), ctx.api.server()).await?;
    let endpoint = meta.introspection_endpoint;
    let response = ctx
        .api
        .http()
        .post(&endpoint)
        .basic_auth(&client_id, Some(&client_secret))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .with_context(|| format!("calling {endpoint}"))?;
    let status = response.status();
    let answer: serde_json::Value = response
        .json()
        .await
        .with_context(|| format!("reading the answer of {endpoint}"))?;
    if !status.is_success() {
        anyhow::bail!(
            "POST {endpoint}: {status}: {}{}",
            answer["error"].as_str().unwrap_or("refused"),
            answer["error_description"]
                .as_str()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        );
    }
    ctx.show(&answer, &[])
}
