//! `mayfly audit …`: search the audit log straight in the database; one event per line,
//! as the admin API shows it.

use std::io::Write as _;

use anyhow::Context as _;
use clap::Subcommand;
use time::Duration;

use super::{now, open_store};
use crate::api::AuditEventOut;
use crate::config::{Config, parse_duration};

/// `mayfly audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print matching events, newest first, one JSON object per line.
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
        ip: Option<ipnet::IpNet>,
        /// Only events of the last so long, e.g. 15m, 24h.
        #[arg(long, value_parser = parse_duration)]
        since: Option<Duration>,
        /// At most this many (up to 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

/// Runs `mayfly audit …`.
///
/// # Errors
/// The store failed.
pub async fn run(config: &Config, command: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::Search {
        event_type,
        outcome,
        client_id,
        subject,
        jti,
        audience,
        ip,
        since,
        limit,
    } = command;
    let store = open_store(config).await?;
    let query = mayfly_store::AuditQuery {
        event_type,
        client_id,
        outcome,
        subject,
        jti,
        audience,
        network: ip.map(|n| n.trunc()),
        since: since.map(|d| now() - d),
        until: None,
        before: None,
        limit: limit.min(1000),
    };
    let mut stdout = std::io::stdout().lock();
    for event in store
        .audit_events(&query)
        .await
        .context("searching the audit log")?
    {
        let out = AuditEventOut::from(event);
        // A closed pipe (`| head`) ends the listing quietly.
        if writeln!(stdout, "{}", serde_json::to_string(&out)?).is_err() {
            break;
        }
    }
    Ok(())
}
