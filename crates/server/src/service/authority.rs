//! The ceiling: an admin hands out only what it holds, and changes a privileged subject
//! only when it holds everything that subject holds.
//!
//! The route table (`http::auth`) decides which *family* a caller may touch;
//! this module decides, per object, whether the change could lift someone above the
//! caller. Scopes of the issuer's own audience (`mayfly:*`) are the only ones that
//! confer power over Mayfly, so they are what the checks count:
//!
//! - **Ceiling.** Creating, changing or deleting a grant, an access policy or a scope on
//!   the issuer audience needs each of its scopes; naming actors in `may_act` and giving
//!   a client the token-exchange grant type need `mayfly:admin`.
//! - **Privileged subjects.** A client or user holding any issuer-audience scope,
//!   directly (a grant) or through a non-`deny` access policy that selects it (by id,
//!   group or label, before or after the change), is changed (credentials, grant types,
//!   `enabled`, labels, anything else) or deleted only by a caller holding all of them.
//!   Its federated identities, and the settings of the trusted issuers they name, are
//!   credentials of it: changed under the same rule.
//!
//! Refusals are [`AdminError::InsufficientScope`], naming the first scope missing.
//! The CLI and background tasks act with [`Authority::Trusted`] (they run with the
//! master key and the database already).

use mayfly_store::{Store, Subject};
use time::OffsetDateTime;
use uuid::Uuid;

use super::access::covers_subject;
use super::{ADMIN_SCOPE, Actor, AdminError};
use crate::audit::RequestContext;

/// What the caller of an admin operation may hand out.
#[derive(Debug, Clone)]
pub enum Authority {
    /// The operator: the CLI and background tasks, no ceiling.
    Trusted,
    /// A caller of the HTTP API, holding `scopes` on the issuer audience `issuer`.
    Token {
        /// The issuer, whose audience's scopes confer power over Mayfly.
        issuer: String,
        /// The scopes of the caller's token.
        scopes: Vec<String>,
    },
}

/// Who calls the service layer: the authority it holds and where the request came from
/// (for the audit log).
#[derive(Debug, Clone)]
pub struct Caller {
    /// What it may hand out.
    pub authority: Authority,
    /// The HTTP request, if any.
    pub request: RequestContext,
}

impl Authority {
    /// Whether the caller holds `scope` (`mayfly:admin` holds every scope).
    pub fn holds(&self, scope: &str) -> bool {
        match self {
            Self::Trusted => true,
            Self::Token { scopes, .. } => scopes.iter().any(|s| s == scope || s == ADMIN_SCOPE),
        }
    }

    /// The first of `scopes` the caller does not hold.
    fn missing<'s>(&self, scopes: impl IntoIterator<Item = &'s String>) -> Option<&'s String> {
        scopes.into_iter().find(|s| !self.holds(s))
    }
}

impl<'a> Actor<'a> {
    /// Mayfly acting as itself: the CLI, a background task, or a rule applied on behalf
    /// of a request already authorized. No ceiling; `request` is where the audit log says
    /// it came from.
    pub fn trusted(
        store: &'a dyn Store,
        id: impl Into<String>,
        now: OffsetDateTime,
        request: RequestContext,
    ) -> Self {
        Self {
            store,
            id: id.into(),
            now,
            caller: Caller {
                authority: Authority::Trusted,
                request,
            },
        }
    }

    /// Refuses unless the caller holds `scope`.
    pub(super) fn need(&self, scope: &str, why: &str) -> Result<(), AdminError> {
        if self.caller.authority.holds(scope) {
            Ok(())
        } else {
            Err(AdminError::InsufficientScope {
                scope: scope.to_owned(),
                why: why.to_owned(),
            })
        }
    }

    /// The issuer audience's URI when the ceiling applies (`None` for the operator).
    fn ceiling_issuer(&self) -> Option<&str> {
        match &self.caller.authority {
            Authority::Trusted => None,
            Authority::Token { issuer, .. } => Some(issuer),
        }
    }

    /// Whether `audience_uri` is the issuer's own audience under a ceiling.
    pub(super) fn is_issuer(&self, audience_uri: &str) -> bool {
        self.ceiling_issuer().is_some_and(|i| i == audience_uri)
    }

    /// The ceiling: scopes of the issuer audience are handed out (granted, made
    /// requestable, created, changed or removed) only by a caller holding each.
    ///
    /// # Errors
    /// [`AdminError::InsufficientScope`] naming the first scope the caller lacks.
    pub(super) fn may_hand_out(
        &self,
        audience_uri: &str,
        scopes: &[String],
        what: &str,
    ) -> Result<(), AdminError> {
        if !self.is_issuer(audience_uri) {
            return Ok(());
        }
        match self.caller.authority.missing(scopes) {
            None => Ok(()),
            Some(scope) => Err(AdminError::InsufficientScope {
                scope: scope.clone(),
                why: format!(
                    "{what} on the issuer audience: an admin hands out only scopes it holds"
                ),
            }),
        }
    }

    /// The issuer audience itself is created, changed or deleted only by `mayfly:admin`.
    ///
    /// # Errors
    /// [`AdminError::InsufficientScope`].
    pub(super) fn may_change_issuer_audience(&self, uri: &str) -> Result<(), AdminError> {
        if self.is_issuer(uri) {
            self.need(
                ADMIN_SCOPE,
                "the issuer audience holds the scopes that confer power over Mayfly",
            )
        } else {
            Ok(())
        }
    }

    /// [`Actor::may_hand_out`] for an audience known by id.
    ///
    /// # Errors
    /// As [`Actor::may_hand_out`]; the store's.
    pub(super) async fn may_hand_out_on(
        &self,
        audience_id: Uuid,
        scopes: &[String],
        what: &str,
    ) -> Result<(), AdminError> {
        if self.ceiling_issuer().is_none() {
            return Ok(());
        }
        match self.store.audience(audience_id).await? {
            Some(audience) => self.may_hand_out(&audience.uri, scopes, what),
            None => Ok(()),
        }
    }

    /// The privileged-subject rule for a subject about to be created: what access
    /// policies would give it (by group or by `labels`).
    ///
    /// # Errors
    /// As [`Actor::may_change_subject`].
    pub(super) async fn may_create_subject(
        &self,
        subject: Subject,
        labels: &[String],
    ) -> Result<(), AdminError> {
        self.may_change_subject(subject, labels, labels).await
    }

    /// The privileged-subject rule: `subject` (carrying `labels` now, and `new_labels`
    /// after the change) may be changed only by a caller holding every issuer-audience
    /// scope it holds, through grants or access policies.
    ///
    /// # Errors
    /// [`AdminError::InsufficientScope`] naming the first scope the caller lacks; the
    /// store's.
    pub(super) async fn may_change_subject(
        &self,
        subject: Subject,
        labels: &[String],
        new_labels: &[String],
    ) -> Result<(), AdminError> {
        let Some(issuer) = self.ceiling_issuer() else {
            return Ok(());
        };
        let Some(audience) = self.store.audience_by_uri(issuer).await? else {
            return Ok(());
        };
        let mut held: Vec<String> = self
            .store
            .subject_grants(subject)
            .await?
            .into_iter()
            .filter(|g| g.grant.audience_id == audience.id)
            .flat_map(|g| g.grant.scopes)
            .collect();
        let policies = self.all_access_policies(audience.id).await?;
        for policy in policies.into_iter().filter(|p| p.decision != "deny") {
            if covers_subject(&policy, subject, labels)
                || covers_subject(&policy, subject, new_labels)
            {
                held.extend(policy.scopes);
            }
        }
        match self.caller.authority.missing(&held) {
            None => Ok(()),
            Some(scope) => Err(AdminError::InsufficientScope {
                scope: scope.clone(),
                why: "the subject holds it (directly or through an access policy); only a caller holding every scope a subject holds may change it".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Authority;

    #[test]
    fn full_admin_holds_everything_narrow_only_its_own() {
        let token = |scopes: &[&str]| Authority::Token {
            issuer: "http://mayfly.test".into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        };
        assert!(token(&["mayfly:admin"]).holds("mayfly:access"));
        assert!(token(&["mayfly:admin:grants"]).holds("mayfly:admin:grants"));
        assert!(!token(&["mayfly:admin:grants"]).holds("mayfly:admin"));
        assert!(!token(&["mayfly:admin:read"]).holds("mayfly:admin:users"));
        assert!(Authority::Trusted.holds("mayfly:admin"));
    }
}
