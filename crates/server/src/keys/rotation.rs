//! Signing-key rotation: the background task every `mayfly serve` runs, and "rotate
//! now" for the CLI and the admin API.
//!
//! The lifecycle is `next → active → retired → gone`. A key is published as `next` the
//! publish lead before its predecessor's lifetime ends, signs once it has been published
//! that long, and after retirement stays published for the retire hold (longer than any
//! token it signed lives), then is removed and its private half wiped. An emergency
//! rotation activates the successor at once and removes the old key immediately, so
//! verifiers that refetch the key set reject every token it signed.
//!
//! Every replica runs the same task. The store performs each step in one locked
//! transaction that re-checks the rule, so exactly one replica performs it; every
//! replica reloads its keyring from the store each [`Config::key_reload_interval`] and
//! signs only with the key the store calls active.
//!
//! [`Config::key_reload_interval`]: crate::config::Config::key_reload_interval

use std::sync::Arc;

use mayfly_core::revocation::RevocationKind;
use mayfly_store::{
    AuditEvent, KeyChange, KeyPolicy, KeyState, KeyStep, Store, StoreError, next_key,
};
use serde_json::json;
use time::OffsetDateTime;
use tokio::task::JoinHandle;

use super::{Keyring, KeyringError};

use crate::audit::{self, RequestContext, kind, outcome};
use crate::clock::Clock;

/// The actor named in the audit events of scheduled changes.
pub const SCHEDULER: &str = "scheduler";

/// Why a rotation step failed.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// The store failed; the step did not happen (or happened whole: see the store).
    #[error("signing key rotation")]
    Store(#[from] StoreError),
    /// The keyring could not be reloaded after the change.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    /// The revoked key could not be put in the revocation feed.
    #[error("recording the key revocation: {0}")]
    Revocation(String),
}

/// Options of "rotate now".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RotateOptions {
    /// Activate a successor at once, without waiting for the publish lead, and revoke
    /// the active key: it leaves the key set immediately, so every token it signed is
    /// rejected by verifiers that refetch the key set. Use it when the key leaked.
    pub emergency: bool,
}

/// What "rotate now" achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    /// A new key signs now.
    Activated {
        /// Its id.
        active: String,
        /// Every change made.
        changes: Vec<KeyChange>,
    },
    /// A successor is published but has not been published for the lead time yet; the
    /// background task of whichever replica comes first activates it at `activates_at`.
    Pending {
        /// The successor's id.
        next: String,
        /// When it starts signing.
        activates_at: OffsetDateTime,
        /// Every change made (the successor's publication, if it is new).
        changes: Vec<KeyChange>,
    },
}

/// Performs lifecycle steps as one actor and keeps a keyring in step with the store.
pub struct Rotator<'a> {
    store: &'a dyn Store,
    keyring: &'a Keyring,
    policy: KeyPolicy,
    actor: String,
    context: RequestContext,
}

impl std::fmt::Debug for Rotator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotator")
            .field("policy", &self.policy)
            .field("actor", &self.actor)
            .finish_non_exhaustive()
    }
}

impl<'a> Rotator<'a> {
    /// A rotator acting as `actor` (`scheduler`, `cli`, an admin client id).
    pub fn new(
        store: &'a dyn Store,
        keyring: &'a Keyring,
        policy: KeyPolicy,
        actor: impl Into<String>,
    ) -> Self {
        Self {
            store,
            keyring,
            policy,
            actor: actor.into(),
            context: RequestContext::default(),
        }
    }

    /// Records where the request came from in the audit events (admin API).
    #[must_use]
    pub fn with_context(mut self, context: RequestContext) -> Self {
        self.context = context;
        self
    }

    /// One round of the background task at `now`: publishes a successor, activates it,
    /// removes expired keys, each only when due, then reloads the keyring. Returns the
    /// changes this process made (none when another replica was first).
    ///
    /// # Errors
    /// [`RotationError`]; the keyring keeps its current key set.
    pub async fn tick(&self, now: OffsetDateTime) -> Result<Vec<KeyChange>, RotationError> {
        // An unlocked look first: most rounds have nothing to do and take no lock.
        let keys = self.store.signing_keys().await?;
        let audit = |c: &KeyChange| self.audit_event(c, "scheduled");
        let step = self.step(now, &audit);
        let mut changes = Vec::new();
        if self.policy.next_key_due(&keys, now) {
            changes.extend(
                self.store
                    .publish_next_key(self.keyring.new_key(), &step)
                    .await?,
            );
        }
        if self.policy.activation_due(&keys, now).is_some() {
            changes.extend(self.store.activate_next_key(&step).await?);
        }
        if keys.iter().any(|k| self.policy.removal_due(k, now)) {
            changes.extend(self.store.remove_retired_keys(&step).await?);
        }
        if changes.is_empty() {
            self.keyring.install(&keys)?;
        } else {
            self.keyring.reload(self.store).await?;
        }
        Ok(changes)
    }

    /// Rotates now. Normally the `next` key (or a fresh one, published now) becomes
    /// active only once it has been published for the lead time: if that time has not
    /// come, the outcome is [`RotateOutcome::Pending`] and the background task activates
    /// it when it comes. With [`RotateOptions::emergency`] a successor signs at once and
    /// the active key is revoked.
    ///
    /// # Errors
    /// [`RotationError`].
    pub async fn rotate_now(
        &self,
        now: OffsetDateTime,
        options: RotateOptions,
    ) -> Result<RotateOutcome, RotationError> {
        let reason = if options.emergency {
            "emergency"
        } else {
            "requested"
        };
        let audit = |c: &KeyChange| self.audit_event(c, reason);
        let step = self.step(now, &audit);
        let changes = if options.emergency {
            self.store
                .emergency_rotate(self.keyring.new_key(), &step)
                .await?
        } else {
            let mut changes = self
                .store
                .request_rotation(self.keyring.new_key(), &step)
                .await?;
            changes.extend(self.store.activate_next_key(&step).await?);
            changes
        };
        // A revoked key also goes into the revocation feed, so verifiers that follow the
        // feed reject its tokens before they next refetch the key set.
        for revoked in changes.iter().filter(|c| c.revoked) {
            let actor = crate::service::Actor::trusted(
                self.store,
                self.actor.clone(),
                now,
                self.context.clone(),
            );
            let spec = crate::service::RevokeSpec::now(
                RevocationKind::Key,
                revoked.id.clone(),
                "emergency key rotation",
            );
            actor.create_revocation(spec).await.map_err(|e| match e {
                crate::service::AdminError::Store(e) => RotationError::Store(e),
                other => RotationError::Revocation(other.to_string()),
            })?;
        }
        self.keyring.reload(self.store).await?;
        if let Some(active) = changes.iter().find(|c| c.to == KeyState::Active) {
            return Ok(RotateOutcome::Activated {
                active: active.id.clone(),
                changes,
            });
        }
        let keys = self.store.signing_keys().await?;
        match next_key(&keys) {
            Some(next) => Ok(RotateOutcome::Pending {
                next: next.id.clone(),
                activates_at: self.policy.ready_at(next),
                changes,
            }),
            // Another process activated the successor between our steps.
            None => Ok(RotateOutcome::Activated {
                active: self.keyring.current().active.id().to_string(),
                changes,
            }),
        }
    }

    fn step<'s>(
        &self,
        now: OffsetDateTime,
        audit: &'s (dyn Fn(&KeyChange) -> AuditEvent + Send + Sync),
    ) -> KeyStep<'s> {
        KeyStep {
            now,
            policy: self.policy,
            audit,
        }
    }

    /// The `key.change` event of one change: ids and states, never key material.
    fn audit_event(&self, change: &KeyChange, reason: &str) -> AuditEvent {
        AuditEvent {
            actor: Some(self.actor.clone()),
            subject: Some(change.id.clone()),
            detail: json!({
                "action": action(change),
                "kid": change.id,
                "from": change.from.map(KeyState::as_str),
                "to": change.to.as_str(),
                "revoked": change.revoked,
                "reason": reason,
            }),
            ..audit::event(kind::KEY_CHANGE, outcome::SUCCESS, change.at, &self.context)
        }
    }
}

/// A verb for the change, for audit searches.
fn action(change: &KeyChange) -> &'static str {
    match change.to {
        KeyState::Next => "publish",
        KeyState::Active => "activate",
        KeyState::Retired => "retire",
        KeyState::Gone if change.revoked => "revoke",
        KeyState::Gone => "remove",
    }
}

/// Starts the background task of `mayfly serve`: every `every` (the
/// [`Config::key_reload_interval`](crate::config::Config::key_reload_interval)) it runs
/// [`Rotator::tick`] at the clock's time. It takes its dependencies, not the state, so
/// the composition root (`crate::app::Tasks`) owns it. Abort the handle to stop it.
pub fn spawn(
    store: Arc<dyn Store>,
    keyring: Arc<Keyring>,
    clock: Arc<dyn Clock>,
    policy: KeyPolicy,
    every: std::time::Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let rotator = Rotator::new(store.as_ref(), &keyring, policy, SCHEDULER);
        loop {
            tick.tick().await;
            match rotator.tick(clock.now()).await {
                Ok(changes) => {
                    for c in &changes {
                        tracing::info!(
                            kid = %c.id,
                            from = c.from.map_or("new", KeyState::as_str),
                            to = c.to.as_str(),
                            "signing key changed"
                        );
                    }
                }
                // This process cannot follow the store's keys (a master key that no longer
                // opens them, e.g. after a rewrap it was not restarted for): it keeps
                // signing with its last key, valid only until that key is removed.
                Err(RotationError::Keyring(e)) => {
                    tracing::error!(error = %e, source = ?std::error::Error::source(&e), "cannot load the store's signing keys; restart this process with the current master key file");
                }
                Err(e) => {
                    tracing::warn!(error = %e, source = ?std::error::Error::source(&e), "key rotation round failed; the current keys stay in use");
                }
            }
        }
    })
}

/// The admin API's view of an outcome (also what `mayfly keys rotate` prints).
impl From<&RotateOutcome> for crate::api::RotateOut {
    fn from(outcome: &RotateOutcome) -> Self {
        match outcome {
            RotateOutcome::Activated { active, .. } => Self {
                outcome: "activated".into(),
                active: Some(active.clone()),
                next: None,
                activates_at: None,
            },
            RotateOutcome::Pending {
                next, activates_at, ..
            } => Self {
                outcome: "pending".into(),
                active: None,
                next: Some(next.clone()),
                activates_at: Some(*activates_at),
            },
        }
    }
}
