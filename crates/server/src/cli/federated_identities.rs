//! `mayfly admin client federated-identity …` and `mayfly admin user federated-identity
//! …`, over `/admin/v1/{clients,users}/{id}/federated-identities`: which external tokens
//! (of a trusted issuer) speak for a client or user (issue #20).

use clap::Subcommand;
use mayfly_federation::{ClaimPath, SpiffeIdPrefix};
use reqwest::Method;
use uuid::Uuid;

use super::admin::Ctx;
use crate::api::{ConditionIn, NewFederatedIdentityIn};

const COLUMNS: &[&str] = &["id", "issuer", "subject", "conditions", "created_at"];

/// Which tokens of the issuer match: an exact subject, or conditions that must all hold.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = true)]
pub struct RuleArgs {
    /// The exact `sub`, e.g. system:serviceaccount:pay:worker.
    #[arg(long, conflicts_with_all = ["claims", "spiffe_prefix"])]
    pub subject: Option<String>,
    /// A claim that must equal a string (repeatable): a JSON Pointer or a top-level
    /// name, e.g. repository=acme/api or kubernetes.io/namespace=pay.
    #[arg(long = "claim", value_name = "PATH=VALUE", value_parser = parse_claim)]
    pub claims: Vec<(ClaimPath, String)>,
    /// `sub` must be this SPIFFE ID or one below it, e.g. spiffe://acme.com/ns/pay.
    #[arg(long, value_parser = parse_spiffe_prefix)]
    pub spiffe_prefix: Option<SpiffeIdPrefix>,
}

/// `mayfly admin {client,user} federated-identity …`
#[derive(Debug, Subcommand)]
pub enum FederatedIdentityCommand {
    /// List the identities.
    List {
        /// The client's or user's id.
        id: Uuid,
    },
    /// Let tokens of a trusted issuer that match a subject or conditions get Mayfly
    /// tokens as this client or user, with no secret.
    #[command(
        alias = "create",
        after_help = "Example:\n  mayfly admin client federated-identity add \"$CLIENT_ID\" \\\n    --issuer https://token.actions.githubusercontent.com \\\n    --claim repository=acme/api --claim ref=refs/heads/main"
    )]
    Add {
        /// The client's or user's id.
        id: Uuid,
        /// The trusted issuer's URL.
        #[arg(long)]
        issuer: String,
        /// What its tokens must carry.
        #[command(flatten)]
        rule: RuleArgs,
    },
    /// Remove an identity.
    #[command(alias = "delete")]
    Remove {
        /// The client's or user's id.
        id: Uuid,
        /// The identity's id (the listing's `id`).
        identity_id: Uuid,
    },
}

/// `PATH=VALUE`, the path a JSON Pointer (a bare name is a top-level claim).
fn parse_claim(text: &str) -> Result<(ClaimPath, String), String> {
    let (path, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not PATH=VALUE"))?;
    let pointer = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let path = ClaimPath::parse(&pointer).map_err(|e| format!("{path:?}: {e}"))?;
    Ok((path, value.to_owned()))
}

fn parse_spiffe_prefix(text: &str) -> Result<SpiffeIdPrefix, String> {
    SpiffeIdPrefix::parse(text).map_err(|e| format!("{text:?}: {e}"))
}

/// Runs the command for the owner at `base` (`/admin/v1/clients` or `/admin/v1/users`).
///
/// # Errors
/// The server refused.
pub async fn run(
    ctx: &mut Ctx,
    base: &str,
    command: FederatedIdentityCommand,
) -> anyhow::Result<()> {
    let answer = match command {
        FederatedIdentityCommand::List { id } => {
            ctx.api
                .read(&format!("{base}/{id}/federated-identities"))
                .await?
        }
        FederatedIdentityCommand::Add { id, issuer, rule } => {
            let mut conditions: Vec<ConditionIn> = rule
                .claims
                .into_iter()
                .map(|(claim, value)| ConditionIn::Equals {
                    claim,
                    value: value.into(),
                })
                .collect();
            if let Some(prefix) = rule.spiffe_prefix {
                conditions.push(ConditionIn::SpiffePrefix { prefix });
            }
            let body = NewFederatedIdentityIn {
                issuer,
                subject: rule.subject,
                conditions: (!conditions.is_empty()).then_some(conditions),
            };
            ctx.api
                .call(
                    Method::POST,
                    &format!("{base}/{id}/federated-identities"),
                    Some(&body),
                )
                .await?
        }
        FederatedIdentityCommand::Remove { id, identity_id } => {
            ctx.api
                .delete(&format!("{base}/{id}/federated-identities/{identity_id}"))
                .await?;
            serde_json::json!({ "deleted": identity_id })
        }
    };
    ctx.show(&answer, COLUMNS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Result<(&str, &str), &str>) {
        let got = parse_claim(text);
        match (got, expected) {
            (Ok((path, value)), Ok((want_path, want_value))) => {
                assert_eq!(
                    (path.as_str(), value.as_str()),
                    (want_path, want_value),
                    "{text}"
                );
            }
            (Err(e), Err(want)) => assert!(e.contains(want), "{text}: {e}"),
            (got, want) => panic!("{text}: {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn claims_are_pointers_with_a_string_value() {
        check("repository=acme/api", Ok(("/repository", "acme/api")));
        check("/ref=refs/heads/main", Ok(("/ref", "refs/heads/main")));
        check(
            "kubernetes.io/serviceaccount/name=worker",
            Ok(("/kubernetes.io/serviceaccount/name", "worker")),
        );
        // Only the first `=` splits; an empty value is a value.
        check("a=b=c", Ok(("/a", "b=c")));
        check("a=", Ok(("/a", "")));
        check("repository", Err("PATH=VALUE"));
        check("=x", Err("empty segment"));
        check("/a//b=x", Err("empty segment"));
        check("a~2=x", Err("~"));
    }
}
