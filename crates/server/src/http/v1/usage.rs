//! `POST /v1/usage`: resource servers report the tokens they accepted, so that use, not
//! only issuance, is in the audit log and watched for anomalies.

use std::net::IpAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::post;
use axum::{Json, Router};
use mayfly_store::AuditEvent;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::anomaly::{self, Observation, SeenIn};
use crate::api::Time;
use crate::audit::{self, kind, outcome};
use crate::config::TTL_CEILING;
use crate::http::auth::Admin;
use crate::http::error::Problem;
use crate::http::extract::{AdminErrors, Body};
use crate::runtime::AppState;
use crate::service::{AdminError, invalid};

/// Most events in one report.
pub const MAX_EVENTS: usize = 1000;
/// How far in the past a reported use may lie (older reports are refused: the audit
/// log is not a place to backfill).
const MAX_AGE: Duration = Duration::hours(1);
/// Clock skew allowed for reported times in the future.
const SKEW: Duration = Duration::seconds(60);

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/usage", post(report))
}

/// A batch of token uses.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageReport {
    /// 1 to 1000 uses.
    pub events: Vec<TokenUse>,
}

/// One accepted request, as the resource server saw it. The claims are copied from the
/// verified token; the token itself is never sent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenUse {
    /// The token's `jti`.
    pub jti: String,
    /// The token's `client_id`.
    pub client_id: Uuid,
    /// The token's `sub`.
    pub sub: String,
    /// The token's `aud`.
    pub aud: String,
    /// The token's `exp` (bounds how long a revocation is kept); within an hour of now.
    pub exp: Option<Time>,
    /// HTTP method of the request.
    pub method: String,
    /// Path of the request (no query string).
    pub path: String,
    /// The caller's address as the resource server saw it.
    pub client_ip: Option<String>,
    /// When (default: now).
    pub at: Option<Time>,
}

/// What became of a report.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageAccepted {
    /// Events recorded.
    pub accepted: usize,
    /// Anomalies raised by them (names, e.g. `token_new_network`).
    pub anomalies: Vec<String>,
}

/// Records token uses reported by a resource server (needs `mayfly:usage:write`). The
/// answer comes once every event is durable and every anomaly has been responded to,
/// so a token revoked by a `revoke` policy is already inactive.
#[utoipa::path(post, operation_id = "report_usage", path = "/v1/usage", tag = "resource servers",
    security(("bearer" = [])),
    request_body = UsageReport,
    responses((status = 202, description = "Recorded", body = UsageAccepted), AdminErrors))]
pub async fn report(
    State(state): State<AppState>,
    caller: Admin,
    parts: Parts,
    Body(body): Body<UsageReport>,
) -> Result<(StatusCode, Json<UsageAccepted>), Problem> {
    let now = state.clock.now();
    let uses = check(body, now)?;
    let ctx = crate::http::request_context(&state, &parts.headers, &parts.extensions);
    let reporter = caller.client_id().to_owned();
    let events: Vec<AuditEvent> = uses
        .iter()
        .map(|u| AuditEvent {
            actor: Some(reporter.clone()),
            subject: Some(u.sub.clone()),
            client_id: Some(u.client_id.to_string()),
            jti: Some(u.jti.clone()),
            audience: Some(u.aud.clone()),
            source_ip: u.client_ip.map(|ip| ip.to_string()),
            user_agent: None,
            detail: serde_json::json!({ "method": u.method, "path": u.path }),
            ..audit::event(kind::TOKEN_USED, outcome::SUCCESS, u.at, &ctx)
        })
        .collect();
    let recorded =
        futures_util::future::join_all(events.into_iter().map(|e| state.audit.record(e))).await;
    if let Some(Err(e)) = recorded.into_iter().find(Result::is_err) {
        tracing::error!(error = %e, "audit unavailable; usage report refused");
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the audit log is unavailable; retry later",
        ));
    }
    metrics::counter!("mayfly_token_uses_total").increment(uses.len() as u64);
    let mut anomalies = Vec::new();
    for u in &uses {
        let obs = Observation {
            seen_in: SeenIn::Usage,
            client_id: u.client_id,
            subject: Some(u.sub.clone()),
            jti: Some(u.jti.clone()),
            token_exp: u.exp,
            address: u.client_ip,
            audience: Some(u.aud.clone()),
            endpoint: Some(format!("{} {}", u.method, u.path)),
            request: ctx.clone(),
        };
        anomalies.extend(
            anomaly::inspect(&state, obs)
                .await
                .into_iter()
                .map(str::to_owned),
        );
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(UsageAccepted {
            accepted: uses.len(),
            anomalies,
        }),
    ))
}

/// A use, checked.
struct Use {
    jti: String,
    client_id: Uuid,
    sub: String,
    aud: String,
    exp: Option<OffsetDateTime>,
    method: String,
    path: String,
    client_ip: Option<IpAddr>,
    at: OffsetDateTime,
}

fn check(report: UsageReport, now: OffsetDateTime) -> Result<Vec<Use>, AdminError> {
    if report.events.is_empty() || report.events.len() > MAX_EVENTS {
        return Err(invalid("events", format!("1 to {MAX_EVENTS} events")));
    }
    let text = |field: &'static str, value: String, max: usize| {
        if value.is_empty() || value.len() > max || value.chars().any(char::is_control) {
            Err(invalid(field, format!("1 to {max} printable characters")))
        } else {
            Ok(value)
        }
    };
    report
        .events
        .into_iter()
        .map(|e| {
            let method = text("method", e.method, 16)?;
            if !method.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(invalid("method", "an HTTP method"));
            }
            let path = text("path", e.path, 512)?;
            if !path.starts_with('/') {
                return Err(invalid("path", "must start with /"));
            }
            // Never keep a query string: it may carry secrets.
            let path = path.split(['?', '#']).next().unwrap_or("/").to_owned();
            let client_ip = e
                .client_ip
                .map(|ip| {
                    ip.parse::<IpAddr>()
                        .map_err(|_| invalid("client_ip", "an IP address"))
                })
                .transpose()?;
            let at = e.at.map_or(now, |t| t.0);
            if at > now.saturating_add(SKEW) || at < now.saturating_sub(MAX_AGE) {
                return Err(invalid("at", "within the last hour"));
            }
            // A token accepted within the last hour expires within its lifetime ceiling
            // of now; anything else is not a Mayfly token's `exp`.
            let exp = e.exp.map(|t| t.0);
            if exp.is_some_and(|exp| {
                exp > now.saturating_add(TTL_CEILING + SKEW)
                    || exp < now.saturating_sub(MAX_AGE + SKEW)
            }) {
                return Err(invalid("exp", "within an hour of now"));
            }
            Ok(Use {
                jti: text("jti", e.jti, 128)?,
                client_id: e.client_id,
                sub: text("sub", e.sub, 256)?,
                aud: text("aud", e.aud, 2048)?,
                exp,
                method: method.to_ascii_uppercase(),
                path,
                client_ip,
                at: at.min(now),
            })
        })
        .collect()
}
