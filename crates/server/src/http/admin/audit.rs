//! `/admin/v1/audit-events`: search the audit log, newest first.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mayfly_store::{AuditEvent, AuditQuery};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Admin, AdminErrors, Params, Time};
use crate::admin::AdminError;
use crate::http::error::Problem;
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/admin/v1/audit-events", get(search))
}

/// Audit search filters; all optional, combined with AND.
#[derive(Debug, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Event type, e.g. `token.issued`, `token.denied`, `client.auth_failed`,
    /// `token.introspected`, `token.revoked`, `admin.change`, `key.change`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub event_type: Option<String>,
    /// `success`, `denied` or `failure`.
    pub outcome: Option<String>,
    /// The client involved.
    pub client_id: Option<String>,
    /// The subject involved.
    pub subject: Option<String>,
    /// The token involved.
    pub jti: Option<String>,
    /// The audience involved.
    pub audience: Option<String>,
    /// Source address or network (`10.0.0.0/8`, `192.0.2.7`, `2001:db8::/32`).
    pub ip: Option<String>,
    /// At or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<Time>,
    /// Before this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<Time>,
    /// Events per page, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One audit event. Never holds a token, secret or password.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventOut {
    /// Id (UUIDv7).
    pub id: Uuid,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// `success`, `denied` or `failure`.
    pub outcome: String,
    /// Who acted.
    pub actor: Option<String>,
    /// Whom it concerns.
    pub subject: Option<String>,
    /// The client involved.
    pub client_id: Option<String>,
    /// The token involved.
    pub jti: Option<String>,
    /// The audience involved.
    pub audience: Option<String>,
    /// Scopes involved.
    pub scopes: Option<String>,
    /// Source address.
    pub source_ip: Option<String>,
    /// User agent.
    pub user_agent: Option<String>,
    /// Request id.
    pub request_id: Option<String>,
    /// Anything else.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

impl From<AuditEvent> for AuditEventOut {
    fn from(e: AuditEvent) -> Self {
        Self {
            id: e.id,
            occurred_at: e.occurred_at,
            event_type: e.event_type,
            outcome: e.outcome,
            actor: e.actor,
            subject: e.subject,
            client_id: e.client_id,
            jti: e.jti,
            audience: e.audience,
            scopes: e.scopes,
            source_ip: e.source_ip,
            user_agent: e.user_agent,
            request_id: e.request_id,
            detail: e.detail,
        }
    }
}

/// A page of audit events, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// The events.
    pub items: Vec<AuditEventOut>,
    /// Pass as `cursor` for older events; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Parses an `ip` filter: a network, or one address.
pub fn network(text: &str) -> Result<ipnet::IpNet, Problem> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map(|n| n.trunc())
        .map_err(|_| Problem::field("ip", "not an IP address or CIDR network"))
}

fn cursor(text: &str) -> Result<(OffsetDateTime, Uuid), Problem> {
    let bad = || Problem::field("cursor", "not a cursor from a previous page");
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
    if bytes.len() != 32 {
        return Err(bad());
    }
    let (nanos, id) = bytes.split_at(16);
    let nanos = i128::from_be_bytes(nanos.try_into().map_err(|_| bad())?);
    let at = OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| bad())?;
    Ok((at, Uuid::from_slice(id).map_err(|_| bad())?))
}

fn next_cursor(e: &AuditEvent) -> String {
    let mut bytes = e.occurred_at.unix_timestamp_nanos().to_be_bytes().to_vec();
    bytes.extend_from_slice(e.id.as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Search the audit log.
#[utoipa::path(get, operation_id = "search_audit_events", path = "/admin/v1/audit-events", tag = "admin", security(("bearer" = [])),
    params(AuditParams),
    responses((status = 200, description = "A page, newest first", body = AuditPage), AdminErrors))]
pub async fn search(
    State(state): State<AppState>,
    _: Admin,
    Params(q): Params<AuditParams>,
) -> Result<Json<AuditPage>, Problem> {
    let limit = q.limit.unwrap_or(super::DEFAULT_LIMIT);
    if !(1..=super::MAX_LIMIT).contains(&limit) {
        return Err(Problem::field(
            "limit",
            format!("must be between 1 and {}", super::MAX_LIMIT),
        ));
    }
    let query = AuditQuery {
        event_type: q.event_type,
        client_id: q.client_id,
        outcome: q.outcome,
        subject: q.subject,
        jti: q.jti,
        audience: q.audience,
        network: q
            .ip
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(network)
            .transpose()?,
        since: q.since.map(|t| t.0),
        until: q.until.map(|t| t.0),
        before: q
            .cursor
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(cursor)
            .transpose()?,
        limit: limit + 1,
    };
    let mut events = state
        .store
        .audit_events(&query)
        .await
        .map_err(AdminError::from)?;
    let more = events.len() > limit as usize;
    events.truncate(limit as usize);
    let next_cursor = if more {
        events.last().map(next_cursor)
    } else {
        None
    };
    Ok(Json(AuditPage {
        items: events.into_iter().map(AuditEventOut::from).collect(),
        next_cursor,
    }))
}
