//! `mayfly admin audit search`, over `/admin/v1/audit-events`: newest first, a page at
//! a time (or `--all`).

use clap::Subcommand;
use time::Duration;

use super::admin::{Ctx, ListArgs};
use crate::api::Time;
use crate::api::audit::AuditParams;
use crate::config::parse_duration;

const COLUMNS: &[&str] = &[
    "occurred_at",
    "type",
    "outcome",
    "actor",
    "subject",
    "audience",
    "source_ip",
];

/// `mayfly admin audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Matching events, newest first.
    #[command(after_help = "Example:\n  mayfly admin audit search --type token.denied --since 1h")]
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
        ip: Option<String>,
        /// Only events about external tokens of this trusted issuer (federation).
        #[arg(long)]
        external_issuer: Option<String>,
        /// Only events about this external subject, e.g.
        /// system:serviceaccount:pay:worker (federation).
        #[arg(long)]
        external_subject: Option<String>,
        /// Only events of the last so long, e.g. 15m, 24h.
        #[arg(long, value_parser = parse_duration)]
        since: Option<Duration>,
        /// Paging.
        #[command(flatten)]
        paging: ListArgs,
    },
}

/// Runs `mayfly admin audit …`.
///
/// # Errors
/// The server refused.
pub async fn run(ctx: &mut Ctx, command: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::Search {
        event_type,
        outcome,
        client_id,
        subject,
        jti,
        audience,
        ip,
        external_issuer,
        external_subject,
        since,
        paging,
    } = command;
    let since = since.map(|d| Time(super::now() - d));
    ctx.list(
        "/admin/v1/audit-events",
        &paging,
        |cursor| AuditParams {
            event_type: event_type.clone(),
            outcome: outcome.clone(),
            client_id: client_id.clone(),
            subject: subject.clone(),
            jti: jti.clone(),
            audience: audience.clone(),
            ip: ip.clone(),
            external_issuer: external_issuer.clone(),
            external_subject: external_subject.clone(),
            since,
            until: None,
            limit: paging.limit,
            cursor,
        },
        COLUMNS,
    )
    .await
}
