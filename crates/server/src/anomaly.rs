//! Anomaly detection on issuance, introspection and reported use.
//!
//! Each client has a baseline in the store: the networks (/24 or /64) it was seen from,
//! the audiences its tokens were used at, and the endpoints they called. A sighting
//! outside the baseline is an anomaly, except while the client is young (the learning
//! period) or when it is the first of its kind. Each token also remembers the network it
//! was issued to: use from another network is an anomaly at once. Bursts of failed
//! client authentication (the throttle's limit reached) are anomalies too.
//!
//! An anomaly is an `anomaly` audit event and a webhook notice; when the client's policy
//! is `revoke`, the token used (for anomalies in use) or every live token of the client
//! (for anomalies in token requests) is revoked. Failure bursts revoke nothing whatever
//! the policy: anyone who knows a client id can cause one. The hot paths stay cheap:
//! what this process has seen already is answered from memory, and issuance never waits
//! for the store.

use mayfly_core::revocation::RevocationKind;
use mayfly_store::{AnomalyPolicy, AuditEvent, Sighting, SightingKind};
use time::OffsetDateTime;

use crate::audit::{self, RequestContext, kind, outcome};
use crate::client_auth::throttle::{self, Key};
use crate::runtime::AppState;
use crate::service::Actor;
use crate::service::RevokeSpec;

/// Who revocations made by a `revoke` policy are attributed to.
pub const ACTOR: &str = crate::vocab::ANOMALY_ACTOR;

pub use crate::runtime::sightings::{Detector, Found, Observation, SeenIn, network};

/// Checks `obs` against the baseline and responds to what stands out. Returns the
/// anomalies raised. Store failures are logged: detection never fails the request.
pub async fn inspect(state: &AppState, obs: Observation) -> Vec<&'static str> {
    let now = state.clock.now();
    let mut found: Vec<Found> = state.anomalies.moved(&obs).into_iter().collect();
    let unknown = state.anomalies.unknown(&obs);
    if !unknown.is_empty() {
        let view = match state.directory.client(obs.client_id).await {
            Ok(view) => view,
            Err(e) => {
                tracing::warn!(error = %e, "anomaly check: client lookup failed");
                None
            }
        };
        let learning = view
            .as_ref()
            .is_some_and(|v| v.client.created_at + state.config.anomaly_learning_period > now);
        let client = obs.client_id.to_string();
        for (kind, value) in unknown {
            match state
                .store
                .record_sighting(&client, kind, &value, now)
                .await
            {
                Ok(sighting) => {
                    state.anomalies.learn(obs.client_id, kind, value.clone());
                    if sighting == Sighting::New && !learning {
                        found.push(Found {
                            name: match kind {
                                SightingKind::Network => "new_network",
                                SightingKind::Audience => "new_audience",
                                SightingKind::Endpoint => "new_endpoint",
                            },
                            detail: serde_json::json!({ "value": value }),
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "anomaly check: sighting not recorded"),
            }
        }
    }
    if found.is_empty() {
        return Vec::new();
    }
    let policy = match state.directory.client(obs.client_id).await {
        Ok(Some(view)) => view.client.anomaly_policy,
        _ => AnomalyPolicy::Alert,
    };
    // A surprising token request puts the client's credentials in doubt: all its live
    // tokens go. For a person (a login or a refresh through a shared login client) it is
    // that person's sessions, not every user's of the client. A surprising use puts
    // that one token in doubt.
    let client = obs.client_id.to_string();
    let target = match (&obs.jti, obs.seen_in, &obs.subject) {
        (Some(jti), SeenIn::Usage | SeenIn::Introspection, _) => Target::Token {
            jti: jti.clone(),
            exp: obs.token_exp,
        },
        (_, _, Some(subject)) if *subject != client => Target::Subject(subject.clone()),
        _ => Target::Client(client),
    };
    let names = found.iter().map(|f| f.name).collect();
    let event = AuditEvent {
        actor: Some(ACTOR.to_owned()),
        subject: obs.subject.clone(),
        client_id: Some(obs.client_id.to_string()),
        jti: obs.jti.clone(),
        audience: obs.audience.clone(),
        source_ip: obs.address.map(|a| a.to_string()),
        ..audit::event(kind::ANOMALY, outcome::DETECTED, now, &obs.request)
    };
    respond(state, event, &found, obs.seen_in, policy, target).await;
    names
}

/// Runs [`inspect`] off the request path when there is anything to check: the hot path
/// pays one memory lookup when the client and token are behaving as before.
pub fn inspect_later(state: &AppState, obs: Observation) {
    if state.anomalies.unknown(&obs).is_empty() && state.anomalies.moved(&obs).is_none() {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        inspect(&state, obs).await;
    });
}

/// Reports bursts of failed client authentication the throttle just detected. Anyone
/// who knows a client id can cause one, so a burst is only reported: whatever the
/// client's policy, it revokes nothing.
pub fn bursts(state: &AppState, tripped: Vec<Key>, ctx: &RequestContext) {
    let now = state.clock.now();
    for key in tripped {
        if !state.anomalies.burst_is_new(&key, now) {
            continue;
        }
        let state = state.clone();
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let (client, detail) = match &key {
                Key::Client { id, network } => (
                    Some(*id),
                    serde_json::json!({
                        "client_id": id,
                        "network": network.map(|n| n.to_string()),
                        "limit": throttle::PER_CLIENT,
                    }),
                ),
                Key::Address(net) => (
                    None,
                    serde_json::json!({ "address": net.to_string(), "limit": throttle::PER_ADDRESS }),
                ),
            };
            // The policy is recorded as configured; the action is always none.
            let policy = match client {
                Some(id) => state.directory.client(id).await.ok().flatten(),
                None => None,
            }
            .map_or(AnomalyPolicy::Alert, |v| v.client.anomaly_policy);
            let event = AuditEvent {
                actor: Some(ACTOR.to_owned()),
                client_id: client.map(|id| id.to_string()),
                ..audit::event(kind::ANOMALY, outcome::DETECTED, now, &ctx)
            };
            let found = [Found {
                name: "auth_failure_burst",
                detail,
            }];
            respond(
                &state,
                event,
                &found,
                SeenIn::Issuance,
                policy,
                Target::Nothing,
            )
            .await;
        });
    }
}

/// What a `revoke` policy revokes.
enum Target {
    Token {
        jti: String,
        exp: Option<OffsetDateTime>,
    },
    Client(String),
    /// A user: their tokens and logins, through any client.
    Subject(String),
    Nothing,
}

/// Applies the policy, records the event, and notifies the webhook.
async fn respond(
    state: &AppState,
    mut event: AuditEvent,
    found: &[Found],
    seen_in: SeenIn,
    policy: AnomalyPolicy,
    target: Target,
) {
    let names: Vec<&str> = found.iter().map(|f| f.name).collect();
    let reason = format!("anomaly: {}", names.join(", "));
    let action = match (policy, target) {
        (AnomalyPolicy::Revoke, Target::Token { jti, exp }) => {
            let spec = RevokeSpec {
                token_exp: exp,
                ..RevokeSpec::now(RevocationKind::Jti, jti, &reason)
            };
            revoke(state, spec).await.then_some("revoked_token")
        }
        (AnomalyPolicy::Revoke, Target::Client(id)) => {
            let spec = RevokeSpec::now(RevocationKind::Client, id, &reason);
            revoke(state, spec).await.then_some("revoked_client_tokens")
        }
        (AnomalyPolicy::Revoke, Target::Subject(id)) => {
            let spec = RevokeSpec::now(RevocationKind::Subject, id, &reason);
            revoke(state, spec)
                .await
                .then_some("revoked_subject_tokens")
        }
        _ => None,
    };
    let details: Vec<_> = found
        .iter()
        .map(|f| serde_json::json!({ "anomaly": f.name, "detail": f.detail }))
        .collect();
    event.detail = serde_json::json!({
        "anomaly": names.first(),
        "anomalies": details,
        "seen_in": seen_in.as_str(),
        "policy": policy.as_str(),
        "action": action.unwrap_or("none"),
    });
    for name in &names {
        metrics::counter!("mayfly_anomalies_total", "anomaly" => *name).increment(1);
    }
    tracing::warn!(anomalies = ?names, client_id = ?event.client_id, action = action.unwrap_or("none"), "anomaly detected");
    if let Some(webhook) = &state.webhook {
        let body = serde_json::to_value(crate::api::AuditEventOut::from(event.clone()))
            .unwrap_or_default();
        webhook.notify(event.id.to_string(), &body);
    }
    if let Err(e) = state.audit.record(event).await {
        tracing::error!(error = %e, "anomaly event not recorded");
    }
}

/// Revokes as the anomaly responder and makes it effective in this process at once.
async fn revoke(state: &AppState, spec: RevokeSpec) -> bool {
    let actor = Actor::trusted(
        state.store.as_ref(),
        ACTOR,
        state.clock.now(),
        RequestContext::default(),
    );
    match actor.create_revocation(spec).await {
        Ok(_) => {
            if let Err(e) = state.revocations.catch_up().await {
                tracing::warn!(error = %e, "revocation recorded; cache catch-up failed");
            }
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "anomaly policy: revocation failed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_slash_24_and_slash_64() {
        assert_eq!(network("203.0.113.77".parse().unwrap()), "203.0.113.0/24");
        assert_eq!(
            network("::ffff:203.0.113.77".parse().unwrap()),
            "203.0.113.0/24"
        );
        assert_eq!(
            network("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
    }
}
