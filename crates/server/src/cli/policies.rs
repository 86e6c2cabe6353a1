//! `mayfly admin access-policy …` (over `/admin/v1/access-policies`) and
//! `mayfly admin access …`, the approvers' side of just-in-time access (over
//! `/admin/v1/access-requests`).

use clap::Subcommand;
use reqwest::Method;
use time::Duration;
use uuid::Uuid;

use super::admin::{Ctx, ListArgs};
use crate::api::access::{
    AccessPolicyPatch, AccessRequestParams, AccessState, DecisionComment, DecisionIn,
    NewAccessPolicyIn, PolicyParams,
};
use crate::config::parse_duration;

const POLICY_COLUMNS: &[&str] = &[
    "id",
    "name",
    "audience_id",
    "scopes",
    "subjects",
    "decision",
    "approvals_required",
];
const REQUEST_COLUMNS: &[&str] = &[
    "id",
    "state",
    "subject",
    "audience",
    "scopes",
    "duration_secs",
    "reason",
];

fn parse_decision(text: &str) -> Result<DecisionIn, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| format!("{text:?} is auto, approval or deny"))
}

fn parse_state(text: &str) -> Result<AccessState, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| format!("{text:?} is pending, approved, denied, cancelled or expired"))
}

/// `mayfly admin access-policy …`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// List access policies.
    List {
        /// Only those of this audience (id or URI).
        #[arg(long)]
        audience: Option<String>,
        /// Paging.
        #[command(flatten)]
        paging: ListArgs,
    },
    /// Show one policy.
    Get {
        /// Policy id.
        id: Uuid,
    },
    /// Who may request which scopes of an audience, for how long, decided how.
    #[command(
        after_help = "Example:\n  mayfly admin access-policy create --name \"db on call\" --audience https://db.example.com --scope db:read --subject label:oncall --max-duration 1h --decision approval --approvals 1"
    )]
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
        #[arg(long, value_parser = parse_decision)]
        decision: DecisionIn,
        /// Distinct approvers needed (approval).
        #[arg(long, default_value_t = 0)]
        approvals: i64,
        /// Allow emergency self-approval (approval policies).
        #[arg(long)]
        break_glass: bool,
    },
    /// Change a policy: only the options given (lists replace the old ones).
    Update {
        /// Policy id.
        id: Uuid,
        /// New display name.
        #[arg(long)]
        name: Option<String>,
        /// New scopes (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// New subjects (repeatable).
        #[arg(long = "subject")]
        subjects: Vec<String>,
        /// New longest access.
        #[arg(long, value_parser = parse_duration)]
        max_duration: Option<Duration>,
        /// auto, approval or deny.
        #[arg(long, value_parser = parse_decision)]
        decision: Option<DecisionIn>,
        /// Distinct approvers needed.
        #[arg(long)]
        approvals: Option<i64>,
        /// Allow break-glass (true) or not (false).
        #[arg(long)]
        break_glass: Option<bool>,
    },
    /// Delete a policy.
    Delete {
        /// Policy id.
        id: Uuid,
    },
}

/// `mayfly admin access …`
#[derive(Debug, Subcommand)]
pub enum RequestCommand {
    /// The requests waiting for a decision (or in another state).
    Queue {
        /// pending, approved, denied, cancelled or expired.
        #[arg(long, default_value = "pending", value_parser = parse_state)]
        state: AccessState,
        /// Paging.
        #[command(flatten)]
        paging: ListArgs,
    },
    /// Show one request.
    Get {
        /// Request id.
        id: Uuid,
    },
    /// Approve a request (never your own).
    Approve {
        /// Request id.
        id: Uuid,
        /// Why.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Deny a request.
    Deny {
        /// Request id.
        id: Uuid,
        /// Why (required).
        #[arg(long)]
        comment: String,
    },
}

/// Runs `mayfly admin access-policy …`.
///
/// # Errors
/// The server refused.
pub async fn policy(ctx: &mut Ctx, command: PolicyCommand) -> anyhow::Result<()> {
    const PATH: &str = "/admin/v1/access-policies";
    let answer = match command {
        PolicyCommand::List { audience, paging } => {
            let audience_id = match audience {
                Some(a) => Some(ctx.audience_id(&a).await?),
                None => None,
            };
            return ctx
                .list(
                    PATH,
                    &paging,
                    |cursor| PolicyParams {
                        audience_id,
                        limit: paging.limit,
                        cursor,
                    },
                    POLICY_COLUMNS,
                )
                .await;
        }
        PolicyCommand::Get { id } => ctx.api.read(&format!("{PATH}/{id}")).await?,
        PolicyCommand::Create {
            name,
            audience,
            scopes,
            subjects,
            max_duration,
            decision,
            approvals,
            break_glass,
        } => {
            let body = NewAccessPolicyIn {
                name,
                audience,
                scopes,
                subjects,
                max_duration_secs: max_duration.whole_seconds(),
                decision,
                approvals_required: approvals,
                break_glass,
            };
            ctx.api.call(Method::POST, PATH, Some(&body)).await?
        }
        PolicyCommand::Update {
            id,
            name,
            scopes,
            subjects,
            max_duration,
            decision,
            approvals,
            break_glass,
        } => {
            let patch = AccessPolicyPatch {
                name,
                scopes: (!scopes.is_empty()).then_some(scopes),
                subjects: (!subjects.is_empty()).then_some(subjects),
                max_duration_secs: max_duration.map(|d| d.whole_seconds()),
                decision,
                approvals_required: approvals,
                break_glass,
            };
            ctx.api
                .call(Method::PATCH, &format!("{PATH}/{id}"), Some(&patch))
                .await?
        }
        PolicyCommand::Delete { id } => {
            ctx.api.delete(&format!("{PATH}/{id}")).await?;
            serde_json::json!({ "deleted": id })
        }
    };
    ctx.show(&answer, POLICY_COLUMNS)
}

/// Runs `mayfly admin access …`.
///
/// # Errors
/// The server refused.
pub async fn request(ctx: &mut Ctx, command: RequestCommand) -> anyhow::Result<()> {
    const PATH: &str = "/admin/v1/access-requests";
    let answer = match command {
        RequestCommand::Queue { state, paging } => {
            return ctx
                .list(
                    PATH,
                    &paging,
                    |cursor| AccessRequestParams {
                        state: Some(state),
                        needs_review: None,
                        limit: paging.limit,
                        cursor,
                    },
                    REQUEST_COLUMNS,
                )
                .await;
        }
        RequestCommand::Get { id } => ctx.api.read(&format!("{PATH}/{id}")).await?,
        RequestCommand::Approve { id, comment } => {
            ctx.api
                .call(
                    Method::POST,
                    &format!("{PATH}/{id}/approve"),
                    Some(&DecisionComment { comment }),
                )
                .await?
        }
        RequestCommand::Deny { id, comment } => {
            ctx.api
                .call(
                    Method::POST,
                    &format!("{PATH}/{id}/deny"),
                    Some(&DecisionComment { comment }),
                )
                .await?
        }
    };
    ctx.show(&answer, REQUEST_COLUMNS)
}
