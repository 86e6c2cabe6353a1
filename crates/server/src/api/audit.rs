//! Audit events as the API, the CLI and the webhook show them.

use mayfly_store::AuditEvent;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::Time;

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
    /// Workload identity federation: only events about an external token of this
    /// trusted issuer (`detail.external.issuer`, exact), e.g.
    /// `https://token.actions.githubusercontent.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_issuer: Option<String>,
    /// Workload identity federation: only events about this external subject
    /// (`detail.external.subject`, exact), e.g. `system:serviceaccount:pay:worker`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_subject: Option<String>,
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
