//! `mayfly admin grant …`, over `/admin/v1/grants`.

use clap::Subcommand;
use reqwest::Method;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::admin::{Ctx, ListArgs, parse_time};
use crate::api::{GrantParams, GrantPatch, NewGrantIn, SubjectKind, SubjectRef, Time};
use crate::config::parse_duration;

const COLUMNS: &[&str] = &[
    "id",
    "subject",
    "audience_id",
    "scopes",
    "expires_at",
    "reason",
];

/// Whom a grant is for: a client or a user.
#[derive(Debug, clap::Args)]
#[group(required = false, multiple = false)]
pub struct SubjectArgs {
    /// A client id.
    #[arg(long)]
    pub client: Option<Uuid>,
    /// A user id.
    #[arg(long)]
    pub user: Option<Uuid>,
}

impl SubjectArgs {
    fn subject(&self) -> Option<SubjectRef> {
        match (self.client, self.user) {
            (Some(id), _) => Some(SubjectRef {
                kind: SubjectKind::Client,
                id,
            }),
            (None, Some(id)) => Some(SubjectRef {
                kind: SubjectKind::User,
                id,
            }),
            (None, None) => None,
        }
    }
}

/// `mayfly admin grant …`
#[derive(Debug, Subcommand)]
pub enum GrantCommand {
    /// List grants, optionally of one client or user, or on one audience.
    List {
        /// Whose.
        #[command(flatten)]
        subject: SubjectArgs,
        /// Only on this audience (id or URI).
        #[arg(long)]
        audience: Option<String>,
        /// Paging.
        #[command(flatten)]
        paging: ListArgs,
    },
    /// Show one grant.
    Get {
        /// Grant id.
        id: Uuid,
    },
    /// Grant a client or a user scopes on an audience.
    #[command(
        after_help = "Example:\n  mayfly admin grant create --client \"$CLIENT_ID\" --audience https://api.example.com/orders --scope orders:read --reason \"billing reads orders\""
    )]
    Create {
        /// Whom (one of --client, --user).
        #[command(flatten)]
        subject: SubjectArgs,
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
        /// A network its tokens may be used from (CIDR; repeatable).
        #[arg(long = "allowed-cidr")]
        allowed_cidrs: Vec<String>,
        /// A client or user that may act for the subject (token exchange; repeatable).
        #[arg(long = "may-act")]
        may_act: Vec<Uuid>,
        /// Why this grant exists.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Change a grant: only the options given.
    Update {
        /// Grant id.
        id: Uuid,
        /// New start of the window (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        not_before: Option<OffsetDateTime>,
        /// New end of the window (RFC 3339; now ends it at once).
        #[arg(long, value_parser = parse_time)]
        expires_at: Option<OffsetDateTime>,
        /// New longest token lifetime, e.g. 5m.
        #[arg(long, value_parser = parse_duration)]
        max_ttl: Option<Duration>,
        /// New networks (repeatable; replace the old ones).
        #[arg(long = "allowed-cidr")]
        allowed_cidrs: Vec<String>,
        /// New reason.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Delete a grant (its tokens are revoked).
    Delete {
        /// Grant id.
        id: Uuid,
    },
}

/// Runs `mayfly admin grant …`.
///
/// # Errors
/// The server refused.
pub async fn run(ctx: &mut Ctx, command: GrantCommand) -> anyhow::Result<()> {
    let answer = match command {
        GrantCommand::List {
            subject,
            audience,
            paging,
        } => {
            let audience_id = match audience {
                Some(a) => Some(ctx.audience_id(&a).await?),
                None => None,
            };
            let subject = subject.subject();
            return ctx
                .list(
                    "/admin/v1/grants",
                    &paging,
                    |cursor| GrantParams {
                        subject_kind: subject.map(|s| s.kind),
                        subject_id: subject.map(|s| s.id),
                        audience_id,
                        limit: paging.limit,
                        cursor,
                    },
                    COLUMNS,
                )
                .await;
        }
        GrantCommand::Get { id } => ctx.api.read(&format!("/admin/v1/grants/{id}")).await?,
        GrantCommand::Create {
            subject,
            audience,
            scopes,
            not_before,
            expires_at,
            max_ttl,
            allowed_cidrs,
            may_act,
            reason,
        } => {
            let subject = subject
                .subject()
                .ok_or_else(|| anyhow::anyhow!("name a --client or a --user"))?;
            let body = NewGrantIn {
                subject,
                audience,
                scopes,
                not_before: not_before.map(Time),
                expires_at: expires_at.map(Time),
                allowed_cidrs,
                max_ttl_secs: max_ttl.map(|d| d.whole_seconds()),
                may_act,
                reason,
            };
            ctx.api
                .call(Method::POST, "/admin/v1/grants", Some(&body))
                .await?
        }
        GrantCommand::Update {
            id,
            not_before,
            expires_at,
            max_ttl,
            allowed_cidrs,
            reason,
        } => {
            let patch = GrantPatch {
                not_before: not_before.map(|t| Some(Time(t))),
                expires_at: expires_at.map(|t| Some(Time(t))),
                allowed_cidrs: (!allowed_cidrs.is_empty()).then_some(allowed_cidrs),
                max_ttl_secs: max_ttl.map(|d| Some(d.whole_seconds())),
                reason,
                may_act: None,
            };
            ctx.api
                .call(
                    Method::PATCH,
                    &format!("/admin/v1/grants/{id}"),
                    Some(&patch),
                )
                .await?
        }
        GrantCommand::Delete { id } => {
            ctx.api.delete(&format!("/admin/v1/grants/{id}")).await?;
            serde_json::json!({ "deleted": id })
        }
    };
    ctx.show(&answer, COLUMNS)
}
