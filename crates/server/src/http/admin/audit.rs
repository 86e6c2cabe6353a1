//! `/admin/v1/audit-events`: search the audit log, newest first.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mayfly_store::{AuditEvent, AuditQuery, ExternalIdentityFilter};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Admin, AdminErrors, Params};
use crate::api::audit::*;
use crate::http::error::Problem;
use crate::runtime::AppState;
use crate::service::AdminError;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/admin/v1/audit-events", get(search))
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
    // Compared with the audit log's form of the token's text (escaped, capped).
    let present = |text: Option<String>| {
        text.filter(|s| !s.is_empty())
            .map(|s| crate::client_auth::federated::audited_text(&s))
    };
    let external = ExternalIdentityFilter {
        issuer: present(q.external_issuer),
        subject: present(q.external_subject),
    };
    let mut events = if external == ExternalIdentityFilter::default() {
        state.store.audit_events(&query).await
    } else {
        state
            .store
            .audit_events_by_external(&query, &external)
            .await
    }
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
