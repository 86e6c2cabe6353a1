//! `mayfly admin audience …` and `mayfly admin scope …`, over `/admin/v1/audiences`
//! and `/admin/v1/scopes`.

use clap::Subcommand;
use reqwest::Method;
use uuid::Uuid;

use super::admin::{Ctx, ListArgs};
use crate::api::{DescriptionPatch, NewAudienceIn, NewScopeIn, ScopeParams};

const AUDIENCE_COLUMNS: &[&str] = &["id", "uri", "description", "created_at"];
const SCOPE_COLUMNS: &[&str] = &["id", "audience_id", "name", "description"];

/// `mayfly admin audience …`
#[derive(Debug, Subcommand)]
pub enum AudienceCommand {
    /// List audiences.
    List(ListArgs),
    /// Show one audience.
    Get {
        /// Its id or URI.
        audience: String,
    },
    /// Create an audience, optionally with scopes.
    #[command(
        after_help = "Example:\n  mayfly admin audience create --uri https://api.example.com/orders --scope orders:read"
    )]
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
    /// Change an audience's description.
    Update {
        /// Its id or URI.
        audience: String,
        /// The new description.
        #[arg(long)]
        description: String,
    },
    /// Delete an audience (refused while grants use it).
    Delete {
        /// Its id or URI.
        audience: String,
    },
}

/// `mayfly admin scope …`
#[derive(Debug, Subcommand)]
pub enum ScopeCommand {
    /// List scopes.
    List {
        /// Only those of this audience (id or URI).
        #[arg(long)]
        audience: Option<String>,
        /// Paging.
        #[command(flatten)]
        paging: ListArgs,
    },
    /// Show one scope.
    Get {
        /// Its id.
        id: Uuid,
    },
    /// Add a scope to an audience.
    #[command(
        alias = "add",
        after_help = "Example:\n  mayfly admin scope create --audience https://api.example.com/orders orders:write"
    )]
    Create {
        /// The audience (id or URI).
        #[arg(long)]
        audience: String,
        /// The scope's name, `resource:action`.
        name: String,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Change a scope's description.
    Update {
        /// Its id.
        id: Uuid,
        /// The new description.
        #[arg(long)]
        description: String,
    },
    /// Delete a scope.
    Delete {
        /// Its id.
        id: Uuid,
    },
}

/// Runs `mayfly admin audience …`.
///
/// # Errors
/// The server refused.
pub async fn audience(ctx: &mut Ctx, command: AudienceCommand) -> anyhow::Result<()> {
    let answer = match command {
        AudienceCommand::List(paging) => {
            return ctx
                .list(
                    "/admin/v1/audiences",
                    &paging,
                    |c| paging.params(c),
                    AUDIENCE_COLUMNS,
                )
                .await;
        }
        AudienceCommand::Get { audience } => {
            let id = ctx.audience_id(&audience).await?;
            ctx.api.read(&format!("/admin/v1/audiences/{id}")).await?
        }
        AudienceCommand::Create {
            uri,
            description,
            scopes,
        } => {
            let body = NewAudienceIn {
                uri,
                description,
                scopes,
            };
            ctx.api
                .call(Method::POST, "/admin/v1/audiences", Some(&body))
                .await?
        }
        AudienceCommand::Update {
            audience,
            description,
        } => {
            let id = ctx.audience_id(&audience).await?;
            ctx.api
                .call(
                    Method::PATCH,
                    &format!("/admin/v1/audiences/{id}"),
                    Some(&DescriptionPatch { description }),
                )
                .await?
        }
        AudienceCommand::Delete { audience } => {
            let id = ctx.audience_id(&audience).await?;
            ctx.api.delete(&format!("/admin/v1/audiences/{id}")).await?;
            serde_json::json!({ "deleted": id })
        }
    };
    ctx.show(&answer, AUDIENCE_COLUMNS)
}

/// Runs `mayfly admin scope …`.
///
/// # Errors
/// The server refused.
pub async fn scope(ctx: &mut Ctx, command: ScopeCommand) -> anyhow::Result<()> {
    let answer = match command {
        ScopeCommand::List { audience, paging } => {
            let audience_id = match audience {
                Some(a) => Some(ctx.audience_id(&a).await?),
                None => None,
            };
            return ctx
                .list(
                    "/admin/v1/scopes",
                    &paging,
                    |cursor| ScopeParams {
                        audience_id,
                        limit: paging.limit,
                        cursor,
                    },
                    SCOPE_COLUMNS,
                )
                .await;
        }
        ScopeCommand::Get { id } => ctx.api.read(&format!("/admin/v1/scopes/{id}")).await?,
        ScopeCommand::Create {
            audience,
            name,
            description,
        } => {
            let body = NewScopeIn {
                audience_id: ctx.audience_id(&audience).await?,
                name,
                description,
            };
            ctx.api
                .call(Method::POST, "/admin/v1/scopes", Some(&body))
                .await?
        }
        ScopeCommand::Update { id, description } => {
            ctx.api
                .call(
                    Method::PATCH,
                    &format!("/admin/v1/scopes/{id}"),
                    Some(&DescriptionPatch { description }),
                )
                .await?
        }
        ScopeCommand::Delete { id } => {
            ctx.api.delete(&format!("/admin/v1/scopes/{id}")).await?;
            serde_json::json!({ "deleted": id })
        }
    };
    ctx.show(&answer, SCOPE_COLUMNS)
}
