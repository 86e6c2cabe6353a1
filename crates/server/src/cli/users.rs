//! `mayfly admin user …`, over `/admin/v1/users`. Passwords are asked for without echo
//! (or read as one line of standard input), never taken as arguments.

use clap::Subcommand;
use reqwest::Method;
use uuid::Uuid;

use super::admin::{Ctx, ListArgs};
use crate::api::{NewUserIn, UserPatch};

const COLUMNS: &[&str] = &["id", "username", "enabled", "locked_until", "labels"];

/// `mayfly admin user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// List users.
    List(ListArgs),
    /// Show one user.
    Get {
        /// User id.
        id: Uuid,
    },
    /// Create a user; the password is asked for without echo (or read as one line of
    /// standard input).
    #[command(
        after_help = "Example:\n  printf '%s\\n' \"$PASSWORD\" | mayfly admin user create --username alice -o json | jq -r .id"
    )]
    Create {
        /// Login name: 1–64 of A-Z a-z 0-9 . _ - @.
        #[arg(long)]
        username: String,
        /// A label access policies select them by (repeatable).
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Create them disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// Change a user: only the options given.
    Update {
        /// User id.
        id: Uuid,
        /// Set a new password (asked for; also ends a lockout).
        #[arg(long)]
        password: bool,
        /// Enable (true) or disable (false).
        #[arg(long)]
        enabled: Option<bool>,
        /// New labels, replacing the old ones (repeatable).
        #[arg(long = "label")]
        labels: Vec<String>,
    },
    /// Delete a user.
    Delete {
        /// User id.
        id: Uuid,
    },
    /// A user's federated identities (external ID tokens that speak for them, for
    /// token exchange): list, add, remove.
    FederatedIdentity {
        /// Action.
        #[command(subcommand)]
        command: super::federated_identities::FederatedIdentityCommand,
    },
}

/// Runs `mayfly admin user …`.
///
/// # Errors
/// No password could be read, or the server refused.
pub async fn run(ctx: &mut Ctx, command: UserCommand) -> anyhow::Result<()> {
    let answer = match command {
        UserCommand::List(paging) => {
            return ctx
                .list("/admin/v1/users", &paging, |c| paging.params(c), COLUMNS)
                .await;
        }
        UserCommand::Get { id } => ctx.api.read(&format!("/admin/v1/users/{id}")).await?,
        UserCommand::Create {
            username,
            labels,
            disabled,
        } => {
            let password = crate::login::read_secret("Password: ")?;
            let body = NewUserIn {
                username,
                password: password.to_string(),
                enabled: !disabled,
                labels,
            };
            ctx.api
                .call(Method::POST, "/admin/v1/users", Some(&body))
                .await?
        }
        UserCommand::Update {
            id,
            password,
            enabled,
            labels,
        } => {
            let password = if password {
                Some(crate::login::read_secret("New password: ")?.to_string())
            } else {
                None
            };
            let patch = UserPatch {
                password,
                enabled,
                labels: (!labels.is_empty()).then_some(labels),
            };
            ctx.api
                .call(
                    Method::PATCH,
                    &format!("/admin/v1/users/{id}"),
                    Some(&patch),
                )
                .await?
        }
        UserCommand::FederatedIdentity { command } => {
            return super::federated_identities::run(ctx, "/admin/v1/users", command).await;
        }
        UserCommand::Delete { id } => {
            ctx.api.delete(&format!("/admin/v1/users/{id}")).await?;
            serde_json::json!({ "deleted": id })
        }
    };
    ctx.show(&answer, COLUMNS)
}
