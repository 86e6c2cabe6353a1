//! Revocations: one token, or every token of a subject, client, grant or signing key
//! issued before a time.

use mayfly_core::revocation::RevocationKind;
use mayfly_store::{NewRevocation, RevocationRecord};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::{Actor, AdminError, invalid};
use crate::audit::{self, kind, outcome};
use crate::config::TTL_CEILING;

/// Clock-skew allowance added to how long a revocation is kept.
pub const REVOCATION_SKEW: Duration = Duration::seconds(60);

/// How far past "now" a subject, client, grant or family cutoff reaches by default.
/// Another replica may sign a token for the target until it sees the change (its
/// directory is up to 100 ms stale, a request may be in flight), and token `iat`s are
/// whole seconds, so a token signed 100 ms after a cutoff at x.95 s says x+1: the
/// margin is the propagation bound plus a second, rounded up. The cost: a token the
/// target obtains in the next 2 s is revoked too (ask again after).
pub const REVOCATION_MARGIN: Duration = Duration::seconds(2);

/// When a key rule would be pruned: never in practice (see `Actor::revocation`).
const KEY_RULE_KEPT_UNTIL: OffsetDateTime = time::macros::datetime!(9999-12-31 0:00 UTC);

/// A revocation to make.
#[derive(Debug, Clone)]
pub struct RevokeSpec {
    /// What it targets.
    pub kind: RevocationKind,
    /// The jti, subject, client, grant or key id.
    pub value: String,
    /// Tokens issued before this are revoked (default: now, plus [`REVOCATION_MARGIN`]
    /// for subjects, clients, grants and families). Not in the future.
    pub issued_before: Option<OffsetDateTime>,
    /// For one token: its `exp`, so the revocation is kept no longer than needed.
    pub token_exp: Option<OffsetDateTime>,
    /// Why.
    pub reason: String,
}

impl RevokeSpec {
    /// Revokes every token of `kind` = `value` issued until now.
    pub fn now(kind: RevocationKind, value: impl Into<String>, reason: &str) -> Self {
        Self {
            kind,
            value: value.into(),
            issued_before: None,
            token_exp: None,
            reason: reason.to_owned(),
        }
    }
}

impl Actor<'_> {
    /// Records a revocation and audits it, in one transaction. It takes effect in this process once the
    /// revocation cache catches up (callers in the server trigger that at once), and on
    /// other replicas through the store's signal.
    ///
    /// # Errors
    /// [`AdminError`] for an empty value, a future cutoff, or a store failure.
    pub async fn create_revocation(
        &self,
        spec: RevokeSpec,
    ) -> Result<RevocationRecord, AdminError> {
        let (revocation, event) = self.revocation(&spec)?;
        // Recorded and audited together (the event names kind, value and cutoff; the
        // feed cursor is not known before the insert).
        Ok(self
            .store
            .insert_audited_revocation(revocation, &[event])
            .await?)
    }

    /// A revocation to record, validated, and its `token.revoked` audit event.
    pub(super) fn revocation(
        &self,
        spec: &RevokeSpec,
    ) -> Result<(NewRevocation, mayfly_store::AuditEvent), AdminError> {
        let value = spec.value.trim();
        if value.is_empty() || value.len() > 256 {
            return Err(invalid("value", "must be 1 to 256 characters"));
        }
        super::free_text("value", value, 256)?;
        super::free_text("reason", &spec.reason, 1000)?;
        if spec.issued_before.is_some_and(|t| t > self.now) {
            return Err(invalid("issued_before", "must not be in the future"));
        }
        let issued_before = spec.issued_before.unwrap_or(match spec.kind {
            // One token, or a key (no cutoff): nothing is signed "later".
            RevocationKind::Jti | RevocationKind::Key => self.now,
            RevocationKind::Subject
            | RevocationKind::Client
            | RevocationKind::Grant
            | RevocationKind::Family => self.now.saturating_add(REVOCATION_MARGIN),
        });
        // Kept until every token it can match has expired. No token this service signs
        // outlives its issue by more than the ceiling, so a reported `exp` beyond that
        // (even the end of time) is cut there rather than trusted or overflowed. A key
        // rule is the exception: whoever holds a leaked key signs any `iat` and `exp`,
        // so that rule never lapses.
        let ceiling = issued_before.saturating_add(TTL_CEILING);
        let expires_at = match spec.kind {
            RevocationKind::Key => KEY_RULE_KEPT_UNTIL,
            _ => spec
                .token_exp
                .map_or(ceiling, |exp| exp.min(ceiling))
                .saturating_add(REVOCATION_SKEW),
        };
        let revocation = NewRevocation {
            kind: spec.kind.as_str().to_owned(),
            value: value.to_owned(),
            issued_before,
            expires_at,
            reason: spec.reason.clone(),
            created_by: self.id.clone(),
            now: self.now,
        };
        let event = self.revocation_event(spec, value, issued_before);
        Ok((revocation, event))
    }

    fn revocation_event(
        &self,
        spec: &RevokeSpec,
        value: &str,
        issued_before: OffsetDateTime,
    ) -> mayfly_store::AuditEvent {
        let mut event = mayfly_store::AuditEvent {
            actor: Some(self.id.clone()),
            subject: (spec.kind != RevocationKind::Jti).then(|| value.to_owned()),
            jti: (spec.kind == RevocationKind::Jti).then(|| value.to_owned()),
            detail: json!({
                "kind": spec.kind, "value": value, "reason": spec.reason,
                "issued_before": issued_before.unix_timestamp(),
            }),
            ..audit::event(
                kind::TOKEN_REVOKED,
                outcome::SUCCESS,
                self.now,
                &self.caller.request,
            )
        };
        audit::sanitize(&mut event);
        event
    }
}
